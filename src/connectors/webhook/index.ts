// `webhook`: an HTTP endpoint source (eKuiper's http_push, Laminar's Webhook source) that answers 2xx only once the
// records are safe, and an HTTP request sink (eKuiper's rest, Laminar's Webhook sink) with data templates. The
// implementations (and undici) load when a pipeline first uses them.

import { defineConnector } from '../../core/spec.js';
import { lazySink, lazySource } from '../../core/lazy.js';
import { sinkOptions, sourceOptions, type WebhookSinkOptions, type WebhookSourceOptions } from './options.js';

export { sinkOptions, sourceOptions, type WebhookSinkOptions, type WebhookSourceOptions } from './options.js';

export const SOURCE_METADATA = {
  _path: 'the request path, with its query string',
  _headers: 'the request headers (lower-case names), without Authorization and Cookie',
  _remote_addr: "the sender's IP address",
  _received_at: 'when the request was received (milliseconds since the epoch); also the record timestamp',
  _method: 'the HTTP method',
};

export const spec = defineConnector({
  name: 'webhook',
  aliases: ['http_push', 'httppush', 'rest', 'http', 'Webhook'],
  title: 'Webhook / REST',
  description:
    'Receives records pushed over HTTP (single JSON records, arrays, NDJSON) with bearer-token or GitHub/Stripe-style HMAC authentication, a body size limit, 2xx answers only once the records reached the sink or the durable buffer, and 429/503 with Retry-After under backpressure. Sends records as HTTP requests with templated method, URL, headers and body (data templates), one per record or batched as a JSON array or NDJSON, with retries honouring Retry-After.',
  source: {
    options: sourceOptions,
    create: (o: WebhookSourceOptions, info) => lazySource(async () => new (await import('./source.js')).WebhookSource(o, info)),
    defaultFormat: 'json',
    replayable: false,
    metadata: SOURCE_METADATA,
  },
  sink: {
    options: sinkOptions,
    create: (o: WebhookSinkOptions, info) => lazySink(async () => new (await import('./sink.js')).WebhookSink(o, info)),
    defaultFormat: 'json',
  },
  test: async (options, role, report, signal) => (await import('./probe.js')).testWebhook(options, role, report, signal),
});

export default spec;
