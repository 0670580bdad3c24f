// `sse`: a Server-Sent Events client with event-type filtering, Last-Event-ID resume and the server's retry interval.

import { defineConnector } from '../../core/spec.js';
import { lazySource } from '../../core/lazy.js';
import { sseOptions, type SseOptions } from './options.js';

export { sseOptions, type SseOptions } from './options.js';

export const SOURCE_METADATA = {
  _event: 'the event type (`event:` field; `message` when the server sent none)',
  _id: 'the event id (`id:` field), or the last id seen before it',
  _url: 'the stream URL, without user info and with query values masked',
  _received_at: 'when the event arrived (milliseconds since the epoch); also the record timestamp',
};

export const spec = defineConnector({
  name: 'sse',
  aliases: ['server_sent_events', 'eventsource', 'event_source'],
  title: 'Server-Sent Events',
  description:
    'Reads a Server-Sent Events stream (text/event-stream): event-type filter, Last-Event-ID resume across reconnects and restarts, the server\'s retry interval, reconnect with backoff, bearer/basic/API-key/OAuth2 auth, and an optional on-disk buffer.',
  source: {
    options: sseOptions,
    create: (o: SseOptions) => lazySource(async () => new (await import('./source.js')).SseSource(o)),
    defaultFormat: 'json',
    replayable: false,
    metadata: SOURCE_METADATA,
  },
  test: async (options, _role, report, signal) => {
    const { parseOrThrow } = await import('../http_pull/probe.js');
    return (await import('./probe.js')).testSse(parseOrThrow(sseOptions(), options), report, signal);
  },
});

export default spec;
