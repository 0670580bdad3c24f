// `websocket`: a WebSocket client source (subscriptions, handshake scripts, reconnects, liveness watchdogs,
// backpressure, an optional durable buffer) and a client or broadcast-server sink (sink.ts, server.ts). ws is imported
// when a pipeline or a test first uses the connector.

import { defineConnector } from '../../core/spec.js';
import { lazySink, lazySource } from '../../core/lazy.js';
import { sourceOptions, type WebSocketSourceOptions } from './options.js';
import { sinkOptions, type WebSocketSinkOptions } from './sink-options.js';

export type { SourceObserver } from './source.js';
export { sourceOptions, connectionOptionShape, sourceOptionShape, templateString } from './options.js';
export type { ConnectionOptions, WebSocketSourceOptions, HandshakeStep } from './options.js';
export { sinkOptions, type WebSocketSinkOptions } from './sink-options.js';
export { compileTemplate, TemplateError, TEMPLATE_FUNCTIONS, type Template, type TemplateVars } from './template.js';

export const SOURCE_METADATA = {
  _received_at: 'when the message arrived (milliseconds since the epoch); also the record timestamp',
  _connection_id: 'which socket and session delivered it: `<connection>.<attempt>`, e.g. `0.3` for the third connect of the first connection',
  _url: 'the server URL, without credentials and with query values masked',
  _message_type: '`text` or `binary` (the WebSocket frame type)',
};

export const spec = defineConnector({
  name: 'websocket',
  aliases: ['ws', 'WebSocket', 'websockets'],
  title: 'WebSocket',
  description:
    'Reads a WebSocket feed: ordered subscription messages and a templated handshake (auth, HMAC signatures) on every reconnect, reconnect with backoff on any close, protocol and app-level heartbeats, a data-staleness watchdog, TCP backpressure or counted drops, an optional on-disk buffer that survives sink outages and restarts, and subscriptions sharded over several sockets. Writes records as frames to a server (client mode) or serves them to connected clients (server mode).',
  source: {
    options: sourceOptions,
    create: (o: WebSocketSourceOptions, info) => lazySource(async () => new (await import('./source.js')).WebSocketSource(o, info)),
    defaultFormat: 'json',
    replayable: false,
    metadata: SOURCE_METADATA,
  },
  sink: {
    options: sinkOptions,
    create: (o: WebSocketSinkOptions, info) => lazySink(async () => (await import('./sink.js')).createWebSocketSink(o, info)),
    defaultFormat: 'json',
  },
  test: async (options, role, report, signal) => (await import('./probe.js')).testWebSocket(options, role, report, signal),
});

export default spec;
