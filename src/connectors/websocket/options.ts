// WebSocket options. The connection part (`connectionOptionShape`) is shared with the sink, so both ends accept the
// same auth, TLS, proxy and reconnect settings under the same names and aliases.

import { bool, duration, list, num, opt, size, z, headerMap, lazyOptions } from '../../core/spec.js';
import { durableStorageShape, durableOnFullBlocking } from '../../core/durable-options.js';
import { compileTemplate, TemplateError } from './template.js';

/** A string option that must be a valid template; the issue names the column of the problem. */
export function templateString(meta: Parameters<typeof opt>[1]) {
  return opt(
    z.string().superRefine((s, ctx) => {
      try {
        compileTemplate(s);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: e instanceof TemplateError ? e.message : String(e) });
      }
    }),
    meta,
  );
}

/** `"k1:v1,k2:v2"` (the Kafka Connect form) or a map. */
const headersSchema = lazyOptions('websocket:headers', () => headerMap());

const PEM_OR_PATH = 'A file path, or the PEM text itself.';

const tlsSchema = lazyOptions('websocket:tls', () =>
  z
    .strictObject({
      ca: opt(z.string().optional(), { description: `CA certificate(s) to trust instead of the system store. ${PEM_OR_PATH}`, aliases: ['ca_file', 'ca_cert'] }),
      cert: opt(z.string().optional(), { description: `Client certificate for mutual TLS. ${PEM_OR_PATH}`, aliases: ['cert_file', 'client_cert'] }),
      key: opt(z.string().optional(), { description: `Private key of the client certificate. ${PEM_OR_PATH}`, aliases: ['key_file', 'client_key'], secret: true }),
      passphrase: opt(z.string().optional(), { description: 'Passphrase of an encrypted private key.', secret: true, advanced: true }),
      skip_verify: bool({
        default: false,
        description: 'Accept any server certificate (self-signed, expired, wrong host). For tests only: it disables the protection TLS gives.',
        aliases: ['skip_verify_server', 'insecure_skip_verify', 'insecure'],
      }),
      server_name: opt(z.string().optional(), { description: 'Host name to verify the certificate against (SNI), when it differs from the URL host.', aliases: ['servername', 'sni'], advanced: true }),
      disable: bool({ default: false, description: 'Connect without TLS even if the URL says `wss://` (accepted for Timeplus configs).' }),
    })
    .prefault({} as never),
);

const authSchema = lazyOptions('websocket:auth', () =>
  z
    .strictObject({
      bearer: opt(z.string().min(1).optional(), { description: 'Sends `Authorization: Bearer <token>`.', aliases: ['token', 'bearer_token'], secret: true }),
      username: opt(z.string().optional(), { description: 'Basic auth user name.', aliases: ['user'] }),
      password: opt(z.string().optional(), { description: 'Basic auth password.', secret: true }),
    })
    .refine((a) => !(a.bearer && (a.username !== undefined || a.password !== undefined)), { message: 'use either a bearer token or username/password, not both' })
    .refine((a) => (a.username === undefined) === (a.password === undefined), { message: 'basic auth needs both username and password' })
    .optional(),
);

/** `reconnect: false` is short for `{ enabled: false }`; Kafka Connect's `interval.ms` arrives as `{ interval: { ms } }`. */
const reconnectSchema = lazyOptions('websocket:reconnect', () =>
  z.preprocess(
    (v) => (typeof v === 'boolean' || v === 'true' || v === 'false' ? { enabled: v } : v),
    z
      .strictObject({
        enabled: bool({ default: true, description: 'Reconnect after a close, a reset or a failed attempt. `false`: the source fails instead, naming the close code and reason.' }),
        initial: duration({ default: '500ms', description: 'First delay before reconnecting; later delays grow by `multiplier` up to `max`, each with ±20% jitter.', aliases: ['initial_backoff', 'min'] }),
        max: duration({ default: '30s', description: 'Longest delay between attempts.', aliases: ['max_backoff'] }),
        multiplier: num({ default: 2, min: 1, description: 'Growth factor of the delay after each failed attempt.' }),
        interval: z
          .preprocess((v) => (v && typeof v === 'object' && 'ms' in v ? (v as { ms: unknown }).ms : v), duration({}).optional())
          .meta({ description: 'A fixed delay between attempts instead of exponential backoff (Kafka Connect `websocket.reconnect.interval.ms`).', 'x-kind': 'duration' }),
        max_retries: num({ int: true, min: 0, description: 'Consecutive failed attempts before the source fails. Unset: retry forever. The count starts over once a connection delivered data (or stayed up for `max`).' }).optional(),
      })
      .prefault({} as never),
  ).meta({ description: 'Reconnection policy.', aliases: ['websocket.reconnect'] }),
);

/** Everything needed to open one client connection; the sink spreads this into its own options. */
export const connectionOptionShape = lazyOptions('websocket:connection', () =>
  ({
    url: opt(
      z.string().refine((u) => /^wss?:\/\//i.test(u) && URL.canParse(u), { message: 'must be a ws:// or wss:// URL' }),
      { description: 'Server URL, `ws://` or `wss://`.', aliases: ['endpoint', 'websocket.url', 'uri'], examples: ['wss://stream.binance.com:9443/ws'] },
    ),
    headers: opt(headersSchema().optional(), {
      description: 'Extra HTTP headers on the upgrade request: a map, or `"k1:v1,k2:v2"`. Values are never logged.',
      aliases: ['websocket.headers', 'header'],
      secret: true,
    }),
    auth: opt(authSchema(), { description: 'Credentials sent with the upgrade request.', aliases: ['websocket.auth', 'authentication'] }),
    subprotocols: list(z.string(), { description: 'Subprotocols offered in `Sec-WebSocket-Protocol`.', aliases: ['protocols', 'subprotocol'] }).optional(),
    origin: opt(z.string().optional(), { description: 'The `Origin` header, for servers that check it.' }),
    reconnect: reconnectSchema(),
    connection_timeout: duration({ default: '30s', description: 'How long opening the connection (TCP, TLS, proxy and HTTP upgrade) may take.', aliases: ['websocket.connection.timeout.ms', 'connect_timeout', 'handshake_timeout'] }),
    ping_interval: duration({ default: '30s', description: 'Send a protocol ping this often (0 = never). With `ping_message`, that text is sent instead.', aliases: ['heartbeat_interval', 'keepalive'] }),
    pong_timeout: duration({ default: '10s', description: 'Reconnect when nothing (no pong, no message) arrived this long after a ping: the connection is dead even if TCP has not noticed.' }),
    max_message_size: size({ default: '64MiB', description: 'Largest accepted message. A larger one is reported and the connection is re-opened; it is never buffered whole.', aliases: ['max_payload', 'max_frame_size'] }),
    compression: bool({ default: false, description: 'Offer permessage-deflate compression.', aliases: ['permessage_deflate', 'per_message_deflate'] }),
    proxy_url: opt(
      z.string().refine((u) => /^https?:\/\//i.test(u) && URL.canParse(u), { message: 'must be an http:// or https:// URL' }).optional(),
      { description: 'Connect through this HTTP proxy (CONNECT tunnel), e.g. `http://user:pass@proxy:3128`.', aliases: ['proxy', 'http_proxy'], secret: true },
    ),
    tls: opt(tlsSchema(), { description: 'TLS settings for `wss://` (and an `https://` proxy).' }),
  }),
);

const handshakeStep = lazyOptions('websocket:handshake', () =>
  z.union([
    z.strictObject({
      send: templateString({ description: 'Message to send (templated).' }),
      type: opt(z.enum(['text', 'binary']).default('text'), { description: 'Frame type.' }),
    }),
    z.strictObject({
      expect: z
        .strictObject({
          json: opt(z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(), {
            description: 'Every listed field (dotted path) must equal the value.',
          }),
          regex: opt(
            z
              .string()
              .refine((r) => {
                try {
                  new RegExp(r);
                  return true;
                } catch {
                  return false;
                }
              }, { message: 'not a valid regular expression' })
              .optional(),
            { description: 'The message text must match this regular expression.' },
          ),
          timeout: duration({ default: '10s', description: 'Fail the attempt when no matching message arrived in this time.' }),
        })
        .refine((e) => e.json !== undefined || e.regex !== undefined, { message: 'expect needs `json` or `regex`' }),
    }),
    z.strictObject({ sleep: duration({ description: 'Wait this long.' }) }),
  ]),
);

export const sourceOptionShape = lazyOptions('websocket:source shape', () =>
  ({
    ...connectionOptionShape(),
    subscription_messages: opt(
      z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(templateString({ description: 'A message (templated).' }))).optional(),
      {
        description: 'Messages sent in order after connecting (and after the handshake), on every reconnect. Templated.',
        aliases: ['open_message', 'open_messages', 'subscription_message', 'websocket.subscription.message', 'initial_message'],
      },
    ),
    open_message_type: opt(z.enum(['text', 'binary']).default('text'), { description: 'Frame type of the subscription messages.', aliases: ['subscription_message_type'] }),
    handshake: opt(z.array(handshakeStep()).optional(), {
      description:
        'Steps run on every (re)connect before the connection counts as live: `{send: ..., type: text|binary}`, `{expect: {json: {field: value}, regex: ..., timeout: 10s}}`, `{sleep: 1s}`. A failed step fails the attempt, which is retried with backoff.',
    }),
    subscriptions: list(z.string(), { description: 'Channel names to subscribe to, rendered into `subscription_template` as `{{ channels }}` (all) or `{{ channel }}` (one message each).', aliases: ['channels', 'streams'] }).optional(),
    subscription_template: templateString({
      description: 'Subscription message for `subscriptions`, e.g. `{"method":"SUBSCRIBE","params":{{ channels }},"id":1}`. With `{{ channel }}` one message is sent per channel.',
    }).optional(),
    max_subscriptions_per_connection: num({ int: true, min: 1, description: 'Spread `subscriptions` over several connections with at most this many channels each; they act as one source.', aliases: ['max_streams_per_connection'] }).optional(),
    ping_message: templateString({ description: 'Application-level ping text sent every `ping_interval` instead of a protocol ping (e.g. `ping` for OKX).', aliases: ['app_ping', 'heartbeat_message'] }).optional(),
    pong_match: opt(z.string().optional(), { description: 'Replies to `ping_message`: a message equal to this text, or matching it as `/regex/`, is consumed and never reaches the pipeline.', aliases: ['pong_message'] }),
    idle_timeout: duration({ default: 0, description: 'Reconnect and re-subscribe when no data message arrived this long, even if pongs do (0 = off).', aliases: ['data_timeout', 'stale_timeout'] }),
    queue_size: num({
      int: true,
      min: 1,
      default: 1000,
      description:
        'Messages held in memory while the pipeline is busy (the pipeline buffer holds more). Larger values keep more records alive and cost throughput in garbage collection (measured: 10000 was 25% slower than 1000).',
      aliases: ['websocket.message.queue.size', 'message_queue_size'],
    }),
    overflow: opt(z.enum(['backpressure', 'drop_oldest', 'drop_newest']).default('backpressure'), {
      description: 'When the queue is full: `backpressure` stops reading the socket so TCP pushes back on the server; `drop_oldest` / `drop_newest` keep reading and discard (counted in `dropped`).',
      aliases: ['overflow_policy', 'on_full'],
    }),
    buffer: opt(z.enum(['memory', 'durable']).default('memory'), { description: '`durable`: append every received message to a log in the data dir before it enters the pipeline, and delete it only once the sink acknowledged it (survives sink outages and restarts).' }),
    ...durableStorageShape(),
    ...durableOnFullBlocking('reading the socket'),
    sequence_field: opt(z.string().min(1).optional(), { description: 'Dotted path (in the whole message) of a number that grows by 1 per message; a jump is counted in `gaps` and logged. Messages are then decoded as JSON by the source itself.', aliases: ['sequence_path'] }),
    reconnect_on_gap: bool({ default: false, description: 'Reconnect (and so re-subscribe and re-snapshot) when `sequence_field` jumps.' }),
  }),
);

export const sourceOptions = lazyOptions('websocket:source', () =>
  z.strictObject(sourceOptionShape()).superRefine((o, ctx) => {
    if (o.subscriptions?.length && !o.subscription_template) {
      ctx.addIssue({ code: 'custom', path: ['subscription_template'], message: '`subscriptions` needs a `subscription_template` such as {"method":"SUBSCRIBE","params":{{ channels }}}' });
    }
    if (o.max_subscriptions_per_connection !== undefined && !o.subscriptions?.length) {
      ctx.addIssue({ code: 'custom', path: ['max_subscriptions_per_connection'], message: 'only applies together with `subscriptions`' });
    }
    if (o.pong_match !== undefined && o.ping_message === undefined) {
      ctx.addIssue({ code: 'custom', path: ['pong_match'], message: '`pong_match` needs a `ping_message`' });
    }
  }),
);

export type ConnectionOptions = z.output<z.ZodObject<ReturnType<typeof connectionOptionShape>>>;
export type WebSocketSourceOptions = z.output<ReturnType<typeof sourceOptions>>;
export type HandshakeStep = NonNullable<WebSocketSourceOptions['handshake']>[number];
