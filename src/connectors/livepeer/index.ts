// `livepeer`: the Livepeer Studio API (streams, sessions, assets) polled through http_pull with bearer auth. The
// options are Timeplus's (interval, api_key, data_type); everything else comes from http_pull.

import { bool, defineConnector, duration, opt, size, z, lazyOptions } from '../../core/spec.js';
import { lazySource } from '../../core/lazy.js';
import { SOURCE_METADATA } from '../http_pull/index.js';
import { pullOptions, type HttpPullOptions } from '../http_pull/options.js';
import { httpUrl } from '../http_pull/http.js';

/** The documented list endpoints of https://livepeer.studio/api. */
export const LIVEPEER_ENDPOINTS = { streams: '/stream', sessions: '/session', assets: '/asset' } as const;

export const livepeerOptions = lazyOptions('livepeer:source', () =>
  z.strictObject({
    api_key: opt(z.string().min(1), { description: 'Livepeer Studio API key, sent as `Authorization: Bearer <key>`.', aliases: ['apiKey', 'token', 'api_token'], secret: true }),
    interval: duration({ default: '300s', description: 'Time between polls, e.g. `300s`.', aliases: ['poll_interval', 'polling_interval'] }),
    endpoint: opt(z.enum(['streams', 'sessions', 'assets']).default('streams'), {
      description: 'What to read: `streams` (`GET /stream`), `sessions` (`GET /session`) or `assets` (`GET /asset`). Each poll emits one row per object.',
      aliases: ['resource', 'data', 'kind'],
    }),
    data_type: opt(z.enum(['json', 'text']).optional(), { description: 'Payload format (Timeplus spelling); the same as the endpoint `format`. `json` gives one row per object, `text` one row per response.' }),
    base_url: httpUrl('API base URL; change it for a proxy or a test server.', ['api_url', 'url', 'server']).default('https://livepeer.studio/api'),
    timeout: duration({ default: '10s', description: 'How long one request may take; a timeout is retried.', aliases: ['request_timeout'] }),
    max_body_size: size({ default: '16MiB', description: 'Largest accepted response body.', advanced: true }),
    emit: opt(z.enum(['every', 'changes']).default('every'), { description: '`every` poll, or only when the response `changes` (ETag or body hash).', aliases: ['emit_mode'] }),
    insecure: bool({ default: false, description: 'Accept any TLS certificate. For tests only.', advanced: true }),
  }),
);

export type LivepeerOptions = z.output<ReturnType<typeof livepeerOptions>>;

/** The http_pull options the preset stands for. */
export function toPullOptions(o: LivepeerOptions): HttpPullOptions {
  return pullOptions().parse({
    url: o.base_url.replace(/\/+$/, '') + LIVEPEER_ENDPOINTS[o.endpoint],
    auth: { bearer: o.api_key },
    interval: o.interval,
    timeout: o.timeout,
    max_body_size: o.max_body_size,
    emit: o.emit,
    insecure: o.insecure,
  });
}

export const spec = defineConnector({
  name: 'livepeer',
  aliases: ['livepeer_studio'],
  title: 'Livepeer',
  description: 'Polls the Livepeer Studio API (streams, sessions or assets) with your API key and emits one row per object; a preset over http_pull with its retries, timeouts and change detection.',
  source: {
    options: livepeerOptions,
    create: (o: LivepeerOptions, info) => lazySource(async () => new (await import('../http_pull/source.js')).HttpPullSource(toPullOptions(o), info)),
    defaultFormat: (o: LivepeerOptions) => o.data_type ?? 'json',
    replayable: false,
    metadata: SOURCE_METADATA,
  },
  test: async (options, _role, report, signal) => {
    const probe = await import('../http_pull/probe.js');
    return probe.testHttpPull(toPullOptions(probe.parseOrThrow(livepeerOptions(), options)), report, signal);
  },
});

export default spec;
