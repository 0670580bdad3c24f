// Options of the WebSocket sink, apart from sink.ts so that validating them does not load ws.

import { bool, duration, list, num, opt, size, z, lazyOptions } from '../../core/spec.js';
import { connectionOptionShape } from './options.js';
import { payloadTemplateShape } from '../../core/data-template.js';

export const sinkOptions = lazyOptions('websocket:sink', () => {
  // The client side of the sink accepts exactly the source's connection options (names, aliases, defaults); only the
  // ones that mean something different or extra in server mode get a sink-specific description here.
  const { url: urlOption, ...connectionShape } = connectionOptionShape();
  return z
    .strictObject({
      mode: opt(z.enum(['client', 'server']).optional(), {
        description:
          '`client`: connect to `url` and send every record there. `server`: listen on `host`:`port` and broadcast every record to the connected clients. Default: `client` when `url` is set, `server` when `port` is set.',
      }),
      url: opt(urlOption.optional(), {
        description: 'Client mode: the server to send to, `ws://` or `wss://`.',
        aliases: ['endpoint', 'websocket.url', 'uri'],
        examples: ['ws://localhost:8080/ingest', 'wss://feed.example.com/v1/events'],
      }),
      ...connectionShape,
      auth: opt(connectionShape.auth, {
        description:
          'Client mode: credentials sent with the upgrade request. Server mode: credentials every client must present: `bearer` as `Authorization: Bearer <token>` or the `access_token` query parameter, or `username`/`password` as basic auth; otherwise the upgrade is refused with 401.',
        aliases: ['websocket.auth', 'authentication'],
      }),
      subprotocols: list(z.string(), {
        description:
          'Client mode: subprotocols offered in `Sec-WebSocket-Protocol`. Server mode: the subprotocols accepted (the first one a client offers that is listed here is chosen).',
        aliases: ['protocols', 'subprotocol'],
      }).optional(),
      ping_interval: duration({
        default: '30s',
        description:
          'Send a protocol ping this often (`0` disables). Client mode: a connection whose pong does not come within `pong_timeout` is dropped and reconnected, failing the writes in flight (retriably). Server mode: a client that did not answer the previous ping is disconnected.',
        aliases: ['heartbeat_interval', 'keepalive'],
      }),
      tls: opt(connectionShape.tls, {
        description:
          'Client mode: TLS settings for `wss://` and an `https://` proxy. Server mode: `cert` and `key` (the server certificate and its key) make the sink serve `wss://`.',
      }),
      frame_type: opt(z.enum(['text', 'binary']).optional(), {
        description:
          'WebSocket frame type. Default: `text` when the format produces text (json, text, csv) and `binary` when it produces bytes.',
        aliases: ['message_type'],
      }),
      batching: opt(z.enum(['per_record', 'array']).default('per_record'), {
        description:
          '`per_record`: one frame per record. `array`: one frame per write holding all of its records: a JSON array with the json format, otherwise the format\'s stream encoding (e.g. CSV lines with a header). In server mode each client receives the records its filter selects.',
      }),
      max_buffered: opt(
        z
          .strictObject({
            records: num({ default: 10_000, int: true, min: 1, description: 'Records that may wait for the connection.' }),
            bytes: size({ default: '16MiB', description: 'Encoded bytes that may wait for the connection.' }),
          })
          .prefault({} as never),
        {
          description:
            'Client mode: the most that may wait, unsent, while the sink is (re)connecting. A write that would go beyond it fails at once with a retriable error, so the pipeline backs off instead of memory growing. One write is always accepted when nothing else waits.',
        },
      ),
      ack: opt(z.enum(['socket', 'pong']).default('pong'), {
        description:
          'Client mode, when a write counts as done (default `pong`, so no acknowledged record is lost on a reset). `socket`: once ws handed every frame to the operating system; frames still in TCP buffers when the connection is reset are lost without notice. `pong`: after the frames, a ping is sent, and the write completes when its pong arrives; since frames are read in order, the pong proves the server received every frame before it, and a connection lost first fails the write (retried, so at least once). Costs one round trip per write.',
        aliases: ['delivery', 'acks'],
      }),
      write_timeout: duration({
        default: '30s',
        description:
          'Client mode: how long a write waits for a connection before it fails (retriably; the pipeline retry policy then applies). Frames already handed to a live connection are not affected.',
      }),
      host: opt(z.string().default('127.0.0.1'), {
        description: 'Server mode: the address to listen on. `0.0.0.0` (or `::`) accepts clients from other machines.',
        aliases: ['bind', 'listen_host', 'address'],
      }),
      port: num({ int: true, min: 0, max: 65535, description: 'Server mode: the TCP port to listen on (`0` picks a free one).', aliases: ['listen_port'] }).optional(),
      path: opt(z.string().startsWith('/').default('/'), {
        description: 'Server mode: the URL path clients connect to; upgrades to other paths are refused with 404.',
        aliases: ['endpoint_path'],
      }),
      client_filters: bool({
        default: true,
        description:
          'Server mode: let each client select records with its query string: `?device=sensor-1&site=a` receives only rows whose top-level field `device` is `sensor-1` and `site` is `a` (compared as text); a repeated field (`?device=a&device=b`) matches any of its values. `access_token` is never a filter.',
      }),
      slow_client: opt(z.enum(['drop', 'disconnect']).default('drop'), {
        description:
          'Server mode, for a client whose unsent data exceeds `max_client_buffer`: `drop` skips frames for it until it catches up (counted as `dropped_slow`); `disconnect` closes it with 1013 "try again later" (counted as `disconnected_slow`). Either way the other clients and the pipeline are not slowed down.',
        aliases: ['slow_client_policy'],
      }),
      max_client_buffer: size({
        default: '1MiB',
        description: 'Server mode: unsent bytes a client may have queued before `slow_client` applies to it.',
        aliases: ['client_buffer'],
      }),
      max_clients: num({
        default: 1000,
        int: true,
        min: 1,
        description: 'Server mode: further clients are refused with 503 once this many are connected.',
      }),
      ...payloadTemplateShape(),
    })
    .superRefine((o, ctx) => {
      const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
      const mode = o.mode ?? (o.url !== undefined && o.port === undefined ? 'client' : o.port !== undefined && o.url === undefined ? 'server' : undefined);
      if (mode === undefined) {
        if (o.url !== undefined) issue('mode', 'both `url` (client mode: send to a server) and `port` (server mode: serve clients) are set; remove one or set `mode`');
        else issue('url', 'set `url` to send to a WebSocket server (client mode), or `port` to serve WebSocket clients (server mode)');
        return;
      }
      if (mode === 'client') {
        if (o.url === undefined) return issue('url', 'client mode needs `url`, the server to send to (ws:// or wss://)');
        if (o.port !== undefined) issue('port', '`port` applies to server mode only; in client mode the port is part of `url`');
      } else {
        if (o.port === undefined) return issue('port', 'server mode needs `port`, the port to listen on');
        if (o.url !== undefined) issue('url', '`url` applies to client mode only; server mode listens on `host`, `port` and `path`');
        if ((o.tls.cert === undefined) !== (o.tls.key === undefined)) issue('tls', 'serving wss:// needs both `tls.cert` and `tls.key`');
      }
    });
});

export type WebSocketSinkOptions = z.output<ReturnType<typeof sinkOptions>>;

/** The mode the options select (validation guarantees one applies). */
export function sinkMode(o: Pick<WebSocketSinkOptions, 'mode' | 'url'>): 'client' | 'server' {
  return o.mode ?? (o.url !== undefined ? 'client' : 'server');
}
