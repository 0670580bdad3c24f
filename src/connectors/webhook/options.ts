// Options of the webhook source (an HTTP endpoint that receives pushes) and the webhook/REST sink (HTTP requests per
// record or per batch). Names are snake_case; eKuiper's http_push/rest and Laminar's webhook spellings are aliases.

import { bool, duration, list, num, opt, size, z, headerMap, lazyOptions } from '../../core/spec.js';
import { durableStorageShape } from '../../core/durable-options.js';
import { compileDataTemplate, DataTemplateError } from '../../core/data-template.js';

/** A string option that must compile as a data template; the issue carries the template's line:col. */
function dataTemplateString(meta: Parameters<typeof opt>[1], escape: 'json' | 'none') {
  return opt(
    z.string().superRefine((s, ctx) => {
      try {
        compileDataTemplate(s, { escape });
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: e instanceof DataTemplateError ? e.message : String(e) });
      }
    }),
    meta,
  );
}

const signatureSchema = lazyOptions('webhook:signature', () =>
  z
    .strictObject({
      style: opt(z.enum(['github', 'stripe', 'plain']).default('github'), {
        description:
          '`github`: the header holds `sha256=<hex HMAC of the body>` (`X-Hub-Signature-256`). `stripe`: the header holds `t=<unix time>,v1=<hex HMAC of "<t>.<body>">` (`Stripe-Signature`); old timestamps are refused. `plain`: the header holds the HMAC of the body alone, in `encoding`.',
      }),
      secret: opt(z.string().min(1), { description: 'Shared HMAC secret. Never logged.', secret: true, aliases: ['key', 'signing_secret', 'webhook_secret'] }),
      header: opt(z.string().min(1).optional(), {
        description: 'Header carrying the signature. Default: `X-Hub-Signature-256` (github), `Stripe-Signature` (stripe), `X-Signature` (plain).',
        aliases: ['header_name', 'signature_header'],
      }),
      algorithm: opt(z.enum(['sha256', 'sha1', 'sha512']).default('sha256'), { description: 'HMAC hash.', aliases: ['algo', 'hash'] }),
      encoding: opt(z.enum(['hex', 'base64']).default('hex'), { description: 'How the signature is written (`plain` style).' }),
      tolerance: duration({ default: '5m', description: '`stripe` style: refuse a signature whose timestamp is further than this from now (replay protection).', aliases: ['timestamp_tolerance'] }),
    })
    .optional(),
);

export const sourceOptions = lazyOptions('webhook:source', () =>
  z
    .strictObject({
      host: opt(z.string().min(1).optional(), {
        description:
          'Address to listen on (default `127.0.0.1`, which only accepts local clients; use `0.0.0.0` or `::` to accept others). Under `sluice serve`, giving `host` or `port` makes the source listen on its own port instead of mounting (see `mount`).',
        aliases: ['server_ip', 'httpServerIp', 'bind', 'listen_host', 'address'],
      }),
      port: num({ int: true, min: 0, max: 65535, description: 'TCP port to listen on (default `10081`; `0`: any free port, logged at start).', aliases: ['server_port', 'httpServerPort', 'listen_port'] }).optional(),
      mount: opt(z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.union([z.boolean(), z.literal('auto')])).prefault('auto'), {
        description:
          "`true`: served by `sluice serve`'s own HTTP server under `/v1/webhooks/<pipeline><path>` (no second port; the webhook's own `bearer_token`/`signature` still apply, not the API token); only possible under `sluice serve`. `false`: always listen on `host:port`. `auto`: mount under `sluice serve` when neither `host` nor `port` is given, listen otherwise (always under `sluice run`).",
        aliases: ['mounted', 'mount_under_server'],
      }),
      path: opt(z.string().startsWith('/', { message: "must start with '/'" }).default('/'), {
        description: 'URL path that accepts records; other paths answer 404.',
        aliases: ['endpoint', 'datasource', 'route', 'url_path'],
      }),
      methods: list(z.enum(['POST', 'PUT', 'PATCH']), { description: 'HTTP methods accepted on `path`; others answer 405.', aliases: ['method'] }).prefault(['POST'] as never),
      max_body_size: size({ default: '10MiB', description: 'Largest accepted request body; a larger one answers 413 without being read whole.', aliases: ['max_body_bytes', 'body_limit', 'max_request_size'] }),
      bearer_token: opt(z.string().min(1).optional(), {
        description: 'Require `Authorization: Bearer <token>`; anything else answers 401. Compared in constant time, never logged.',
        aliases: ['token', 'auth_token', 'bearer'],
        secret: true,
      }),
      signature: opt(signatureSchema(), { description: 'Require an HMAC signature of the body (GitHub or Stripe style); a missing or wrong one answers 401.', aliases: ['hmac', 'signature_verification'] }),
      ack: opt(z.enum(['sink', 'buffer', 'immediate']).default('sink'), {
        description:
          'When the sender gets its 2xx. `sink`: after the pipeline\'s sink (or dead-letter sink) accepted every record of the request (at-least-once). `buffer`: after the records were appended to the on-disk durable buffer in the data dir (at-least-once, faster answers). `immediate`: on receipt (at-most-once).',
        aliases: ['acknowledge', 'respond_after', 'ack_mode'],
      }),
      ack_timeout: duration({
        default: '30s',
        description: '`ack: sink`: answer 503 (with `Retry-After`) when the sink has not acknowledged the request in this time; the records stay in the pipeline, so a sender that retries may deliver them twice. Any mode: a request still waiting for room under backpressure after this long is refused with `backpressure_status` (nothing of it entered the pipeline).',
        aliases: ['response_timeout'],
      }),
      max_pending_requests: num({
        int: true,
        min: 0,
        default: 100,
        description: 'Requests held while the pipeline is full (backpressure). Beyond this, requests answer `backpressure_status` with `Retry-After`. Memory is bounded by this times `max_body_size`.',
        aliases: ['max_pending', 'queue_size'],
      }),
      backpressure_status: num({ int: true, default: 503, description: 'Status for requests refused under backpressure: `503` or `429`.', aliases: ['overload_status'] }).refine((n) => n === 429 || n === 503, { message: 'must be 429 or 503' }),
      retry_after: duration({ default: '1s', description: 'The `Retry-After` sent with 429/503 answers (rounded up to whole seconds).' }),
      success_status: num({ int: true, min: 200, max: 299, default: 200, description: 'Status of a successful answer (its body is `{"status":"ok"}`).', aliases: ['response_status'] }),
      ...durableStorageShape('`ack: buffer`: ', '; when full, requests wait (backpressure)'),
    })
    .superRefine((o, ctx) => {
      if (o.bearer_token && o.signature) ctx.addIssue({ code: 'custom', path: ['signature'], message: 'use either `bearer_token` or `signature`, not both' });
    }),
);

export type WebhookSourceOptions = z.output<ReturnType<typeof sourceOptions>>;

const headersSchema = lazyOptions('webhook:headers', () => headerMap());

const authSchema = lazyOptions('webhook:auth', () =>
  z
    .strictObject({
      bearer: opt(z.string().min(1).optional(), { description: 'Sends `Authorization: Bearer <token>`.', aliases: ['token', 'bearer_token'], secret: true }),
      username: opt(z.string().optional(), { description: 'Basic auth user name.', aliases: ['user'] }),
      password: opt(z.string().optional(), { description: 'Basic auth password.', secret: true }),
      api_key: opt(z.string().min(1).optional(), { description: 'Sent in `api_key_header`.', aliases: ['apikey', 'key'], secret: true }),
      api_key_header: opt(z.string().min(1).default('X-API-Key'), { description: 'Header carrying `api_key`.', aliases: ['api_key_name', 'header'] }),
    })
    .refine((a) => [a.bearer !== undefined, a.username !== undefined || a.password !== undefined, a.api_key !== undefined].filter(Boolean).length <= 1, {
      message: 'use one of bearer, username/password or api_key',
    })
    .refine((a) => (a.username === undefined) === (a.password === undefined), { message: 'basic auth needs both username and password' })
    .optional(),
);

export const sinkOptions = lazyOptions('webhook:sink', () =>
  z
    .strictObject({
      url: dataTemplateString(
        {
          description: 'Target URL, `http://` or `https://`; a data template, so `{{ field }}` picks values from the record (escaped for URLs is up to you: use fields that are URL-safe).',
          aliases: ['endpoint', 'uri', 'webhook_url', 'target'],
          examples: ['https://api.example.com/events', 'http://127.0.0.1:8080/devices/{{ device_id }}'],
        },
        'none',
      ).refine((u) => /^https?:\/\//i.test(u), { message: 'must be an http:// or https:// URL' }),
      method: dataTemplateString({ description: 'HTTP method (templated).', aliases: ['http_method', 'verb'] }, 'none').default('POST'),
      headers: opt(headersSchema().optional(), {
        description: 'Extra request headers: a map or `"k1:v1,k2:v2"`; values are data templates. Values are never logged.',
        aliases: ['header', 'http_headers'],
        secret: true,
      }),
      body_template: dataTemplateString(
        {
          description: 'Request body per record as a data template (see docs/templates.md); values are JSON-escaped unless `body_escape: none`. Default: the record encoded with the sink format.',
          aliases: ['dataTemplate', 'data_template', 'template', 'body'],
          examples: ['{"device":"{{ id }}","temp":{{ number temp 1 }},"tags":{{ json tags }}}'],
        },
        'json',
      ).optional(),
      body_escape: opt(z.enum(['json', 'none']).default('json'), { description: 'Escaping of values in `body_template`: `json` (for JSON bodies) or `none` (text bodies).' }),
      batch_mode: opt(
        z.preprocess((v) => (v === true || v === 'true' ? 'single' : v === false || v === 'false' ? 'array' : v), z.enum(['single', 'array', 'ndjson'])).default('single'),
        {
          description:
            '`single`: one request per record. `array`: one request per write with a JSON array of the records. `ndjson`: one request per write, one record per line. Records whose templated method, URL or headers differ go in separate requests. (`sendSingle: true|false` from eKuiper means `single` / `array`.)',
          aliases: ['sendSingle', 'send_single', 'batching', 'mode'],
        },
      ),
      content_type: opt(z.string().optional(), { description: 'The `Content-Type` header. Default: `application/json` (`application/x-ndjson` for ndjson, `text/plain` for text formats).', aliases: ['bodyType', 'body_type'] }),
      auth: opt(authSchema(), { description: 'Credentials: a bearer token, basic auth, or an API key header.', aliases: ['authentication'] }),
      timeout: duration({ default: '30s', description: 'Time for one request (connect, send, and the answer).', aliases: ['request_timeout', 'timeout_ms'] }),
      max_connections: num({ int: true, min: 1, default: 8, description: 'Keep-alive connections per origin.', aliases: ['connections', 'pool_size'] }),
      concurrency: num({ int: true, min: 1, default: 4, description: '`single` mode: requests in flight at once within a write. With more than 1, records of one write may arrive out of order.', aliases: ['parallelism', 'max_in_flight'] }),
      max_attempts: num({ int: true, min: 1, default: 5, description: 'Attempts per request on a network error, a 5xx, 408 or 429 before the write fails (and the pipeline\'s `retry` takes over).', aliases: ['retries', 'retry_count'] }),
      initial_backoff: duration({ default: '200ms', description: 'First delay between attempts; doubles (with jitter) up to `max_backoff`. A `Retry-After` answer overrides it.', aliases: ['retry_interval', 'backoff'] }),
      max_backoff: duration({ default: '10s', description: 'Longest delay between attempts, and the cap on `Retry-After`.' }),
      insecure_skip_verify: bool({ default: false, description: 'Accept any TLS certificate. For tests only.', aliases: ['insecureSkipVerify', 'skip_verify', 'tls_skip_verify'] }),
    }),
);

export type WebhookSinkOptions = z.output<ReturnType<typeof sinkOptions>>;
