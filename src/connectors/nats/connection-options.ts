// Connection options shared by `nats` and `nats_jetstream` (servers, auth, TLS, reconnects). Kept apart from
// connection.ts so that validating options does not load the NATS client.

import { bool, duration, num, opt, z, lazyOptions } from '../../core/spec.js';

/** `[nats://a:4222, nats://b:4222]` as a list, or the same as one string (Timeplus writes the brackets in a string). */
const urlList = lazyOptions('nats:servers', () =>
  z.preprocess(
    (v) => {
      if (typeof v !== 'string') return v;
      const s = v.trim().replace(/^\[/, '').replace(/\]$/, '');
      return s
        .split(',')
        .map((x) => x.trim().replace(/^["']|["']$/g, ''))
        .filter(Boolean);
    },
    z
      .array(
        z.string().refine((u) => /^(nats|tls|ws|wss):\/\/[^\s]+$/i.test(u) || /^[\w.-]+(:\d+)?$/.test(u) || /^\[[\da-f:]+\](:\d+)?$/i.test(u), {
          message: 'must be a NATS server URL such as nats://127.0.0.1:4222 (or host:port)',
        }),
      )
      .min(1, { message: 'needs at least one server URL' }),
  ),
);

const tlsSchema = lazyOptions('nats:tls', () =>
  z
    .strictObject({
      disable: bool({ default: false, description: 'Never use TLS, even if the server offers it (Timeplus `tls.disable`).' }),
      skip_verify_server: bool({
        default: false,
        description: 'Accept any server certificate (self-signed, expired, wrong host). For tests only: it disables the protection TLS gives.',
        aliases: ['skip_verify', 'insecure_skip_verify', 'insecure'],
      }),
      ca: opt(z.string().optional(), { description: 'CA certificate(s) to trust instead of the system store: a file path or the PEM text.', aliases: ['ca_file', 'root_ca', 'ca_cert'] }),
      cert: opt(z.string().optional(), { description: 'Client certificate for mutual TLS: a file path or the PEM text.', aliases: ['cert_file', 'client_cert'] }),
      key: opt(z.string().optional(), { description: 'Private key of the client certificate: a file path or the PEM text.', aliases: ['key_file', 'client_key'], secret: true }),
    })
    .refine((t) => (t.cert === undefined) === (t.key === undefined), { message: 'mutual TLS needs both `cert` and `key`' })
    .prefault({} as never),
);

export const connectionShape = lazyOptions('nats:connection', () =>
  ({
    url: opt(urlList(), {
      description: 'NATS server URL(s): a list, or a comma-separated string. The client connects to one and fails over to the others.',
      aliases: ['urls', 'servers', 'server', 'nats_url', 'nats.url'],
      examples: [['nats://127.0.0.1:4222']],
    }),
    user: opt(z.string().min(1).optional(), { description: 'User name (user/password authentication).', aliases: ['username', 'nats.user'] }),
    password: opt(z.string().optional(), { description: 'Password of `user`.', aliases: ['pass', 'nats.password'], secret: true }),
    token: opt(z.string().min(1).optional(), { description: 'Authentication token.', aliases: ['auth_token', 'nats.token'], secret: true }),
    nkey: opt(z.string().min(1).optional(), {
      description: 'NKey seed (`SU...`) for NKey authentication: the seed itself, or a file that holds it.',
      aliases: ['nkey_seed', 'seed', 'nkey_file'],
      secret: true,
    }),
    creds: opt(z.string().min(1).optional(), {
      description: 'Credentials file (`.creds`, a user JWT and its NKey seed) for decentralised JWT authentication.',
      aliases: ['credentials', 'credentials_file', 'creds_file', 'user_credentials'],
    }),
    tls: opt(tlsSchema(), { description: 'TLS settings. TLS is used when the URL is `tls://` or the server requires it.' }),
    name: opt(z.string().optional(), { description: 'Client connection name shown by the server (`nats server report connections`). Default: `sluice:<pipeline>`.', advanced: true }),
    connection_timeout: duration({ default: '10s', description: 'How long the first connection attempt may take.', aliases: ['connect_timeout', 'timeout'] }),
    reconnect_wait: duration({ default: '1s', description: 'Delay between reconnect attempts (with jitter).', aliases: ['reconnect_time_wait', 'reconnect_delay'], advanced: true }),
    max_reconnect_attempts: num({
      int: true,
      min: -1,
      default: -1,
      description: 'Reconnect attempts per server before the connection is given up and the pipeline fails; -1 retries forever.',
      aliases: ['max_reconnects'],
      advanced: true,
    }),
  }),
);

export type ConnectionOptions = z.output<z.ZodObject<ReturnType<typeof connectionShape>>>;

/** Cross-field checks every connection options object needs; call from the option object's superRefine. */
export function checkConnection(o: ConnectionOptions, ctx: z.RefinementCtx): void {
  if (o.password !== undefined && o.user === undefined) ctx.addIssue({ code: 'custom', path: ['password'], message: '`password` needs a `user`' });
  if (o.user !== undefined && o.password === undefined) ctx.addIssue({ code: 'custom', path: ['user'], message: '`user` needs a `password`' });
  const kinds = [o.user !== undefined && 'user/password', o.token !== undefined && 'token', o.nkey !== undefined && 'nkey', o.creds !== undefined && 'creds'].filter(Boolean);
  if (kinds.length > 1) ctx.addIssue({ code: 'custom', path: [], message: `choose one authentication method, not ${kinds.join(' and ')}` });
  if (o.tls.disable && (o.tls.ca || o.tls.cert || o.url.some((u) => /^tls:/i.test(u)))) {
    ctx.addIssue({ code: 'custom', path: ['tls', 'disable'], message: '`tls.disable` contradicts a tls:// URL or TLS certificates' });
  }
}

/** The URL as it may appear in logs and errors: credentials in the user-info part are removed. */
export function redactServer(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, '$1');
}

export function describeServers(o: ConnectionOptions): string {
  return o.url.map(redactServer).join(', ');
}
