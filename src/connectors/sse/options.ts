// sse options: the URL and auth of http_pull, an event-type filter, reconnect policy and the optional durable buffer.

import { duration, list, num, opt, size, z, lazyOptions } from '../../core/spec.js';
import { durableStorageShape, durableOnFullBlocking } from '../../core/durable-options.js';
import { authSchema, headersSchema, httpUrl, insecureOption } from '../http_pull/http.js';

const reconnectSchema = lazyOptions('sse:reconnect', () =>
  z
    .strictObject({
      initial: duration({ default: '1s', description: 'Delay before the first reconnect when the server sent no `retry:`; later delays double up to `max`, with ±20% jitter. A `retry:` from the server replaces this value.', aliases: ['initial_backoff', 'min'] }),
      max: duration({ default: '30s', description: 'Longest delay between attempts.', aliases: ['max_backoff'] }),
      max_retries: num({ int: true, min: 0, description: 'Consecutive failed attempts before the source fails. Unset: retry forever. The count starts over once a connection delivered an event.' }).optional(),
    })
    .prefault({} as never),
);

export const sseOptions = lazyOptions('sse:source', () =>
  z.strictObject({
    url: httpUrl('The event stream URL, `http://` or `https://`.', ['endpoint', 'uri', 'stream_url']),
    headers: opt(headersSchema().optional(), { description: 'Extra request headers: a map, or `"k1:v1,k2:v2"`. Values are never logged.', aliases: ['header'], secret: true }),
    auth: opt(authSchema(), { description: 'Credentials: bearer token, basic auth, an API key header, or OAuth2 client credentials.', aliases: ['authentication'] }),
    events: list(z.string().min(1), { description: 'Event types to keep (the `event:` field; events without one are `message`). Unset: every event.', aliases: ['event_types', 'event_filter', 'event'] }).optional(),
    last_event_id: opt(z.string().optional(), { description: 'The `Last-Event-ID` to send on the first connect when no position was committed yet.', aliases: ['start_id', 'initial_event_id'] }),
    reconnect: opt(reconnectSchema(), { description: 'Reconnection policy after the stream ends or fails.' }),
    connect_timeout: duration({ default: '30s', description: 'How long connecting and receiving the response headers may take.', aliases: ['connection_timeout', 'timeout'] }),
    idle_timeout: duration({ default: '5m', description: 'Reconnect when nothing (not even a comment/keep-alive) arrived for this long; 0 = never.', aliases: ['read_timeout', 'heartbeat_timeout'] }),
    max_event_size: size({ default: '16MiB', description: 'Largest accepted event; a stream that sends a longer one without finishing it is reconnected.', advanced: true }),
    buffer: opt(z.enum(['memory', 'durable']).default('memory'), {
      description: '`durable`: append every received event to a log in the data dir before it enters the pipeline, and delete it only once the sink acknowledged it (survives sink outages and restarts).',
    }),
    ...durableStorageShape(),
    ...durableOnFullBlocking('reading the stream'),
    insecure: insecureOption(),
  }),
);

export type SseOptions = z.output<ReturnType<typeof sseOptions>>;
