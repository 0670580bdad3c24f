// HTTP plumbing shared by http_pull, livepeer and sse: auth (static and OAuth2 client credentials), URL redaction,
// bounded body reading and the mapping of HTTP answers to errors a user can act on.

import { createHash } from 'node:crypto';
import { bool, duration, opt, z, headerMap, lazyOptions } from '../../core/spec.js';
import { SluiceError, errorMessage } from '../../core/errors.js';

/** `"k1:v1,k2:v2"` or a map. */
export const headersSchema = lazyOptions('http:headers', () => headerMap());

const oauth2Schema = lazyOptions('http:oauth2', () =>
  z.strictObject({
    token_url: opt(z.string().refine((u) => /^https?:\/\//i.test(u) && URL.canParse(u), { message: 'must be an http:// or https:// URL' }), {
      description: 'Token endpoint of the authorization server.',
      aliases: ['tokenUrl', 'token_endpoint', 'access_token_url'],
    }),
    client_id: opt(z.string().min(1), { description: 'OAuth2 client id.', aliases: ['clientId'] }),
    client_secret: opt(z.string().min(1), { description: 'OAuth2 client secret.', aliases: ['clientSecret'], secret: true }),
    scope: opt(z.string().optional(), { description: 'Space-separated scopes to request.', aliases: ['scopes'] }),
    refresh_before: duration({ default: '30s', description: 'Fetch a new token this long before the current one expires.', advanced: true }),
  }),
);

export const authSchema = lazyOptions('http:auth', () =>
  z
    .strictObject({
      bearer: opt(z.string().min(1).optional(), { description: 'Sends `Authorization: Bearer <token>`.', aliases: ['token', 'bearer_token', 'access_token'], secret: true }),
      username: opt(z.string().optional(), { description: 'Basic auth user name.', aliases: ['user'] }),
      password: opt(z.string().optional(), { description: 'Basic auth password.', secret: true }),
      api_key: opt(z.string().min(1).optional(), { description: 'An API key sent in the header `api_key_header`.', aliases: ['apikey', 'apiKey'], secret: true }),
      api_key_header: opt(z.string().min(1).default('X-API-Key'), { description: 'Header that carries `api_key`.', aliases: ['api_key_name', 'header_name'] }),
      oauth2: opt(oauth2Schema().optional(), { description: 'OAuth2 client-credentials grant: a token is fetched, sent as a bearer token and refreshed before it expires (and after a 401).', aliases: ['oAuth', 'oauth'] }),
    })
    .refine((a) => [a.bearer !== undefined, a.username !== undefined || a.password !== undefined, a.api_key !== undefined, a.oauth2 !== undefined].filter(Boolean).length <= 1, {
      message: 'choose one of bearer, username/password, api_key or oauth2',
    })
    .refine((a) => (a.username === undefined) === (a.password === undefined), { message: 'basic auth needs both username and password' })
    .optional(),
);

export type AuthOptions = z.output<ReturnType<typeof authSchema>>;

export const httpUrl = (description: string, aliases: string[]) =>
  opt(z.string().refine((u) => /^https?:\/\//i.test(u) && URL.canParse(u.replace(/\{\{[^}]*\}\}/g, 'x')), { message: 'must be an http:// or https:// URL' }), {
    description,
    aliases,
  });

export const insecureOption = () =>
  bool({ default: false, description: 'Accept any TLS certificate (self-signed, expired). For tests only.', aliases: ['insecureSkipVerify', 'skip_verify', 'insecure_skip_verify'], advanced: true });

/** The URL for logs and errors: no user info, query values masked (API keys often travel there). */
export function redactUrl(u: string): string {
  try {
    const url = new URL(u);
    url.username = '';
    url.password = '';
    for (const k of [...url.searchParams.keys()]) url.searchParams.set(k, '***');
    return url.toString().replace(/%2A%2A%2A/g, '***');
  } catch {
    return '(invalid url)';
  }
}

/** Adds credentials to request headers; OAuth2 tokens are fetched lazily and refreshed before they expire. */
export class Authenticator {
  private token?: string;
  private expiresAt = 0;
  private fetching?: Promise<void>;
  /** Tokens fetched so far (for tests and the status line). */
  tokensFetched = 0;

  constructor(
    private readonly auth: AuthOptions,
    private readonly timeoutMs: number,
  ) {}

  async apply(headers: Record<string, string>, signal: AbortSignal): Promise<void> {
    const a = this.auth;
    if (!a) return;
    if (a.bearer) headers['authorization'] = `Bearer ${a.bearer}`;
    else if (a.username !== undefined) headers['authorization'] = `Basic ${Buffer.from(`${a.username}:${a.password ?? ''}`).toString('base64')}`;
    else if (a.api_key) headers[a.api_key_header.toLowerCase()] = a.api_key;
    else if (a.oauth2) {
      if (!this.token || Date.now() >= this.expiresAt - a.oauth2.refresh_before) await this.refresh(signal);
      headers['authorization'] = `Bearer ${this.token}`;
    }
  }

  /** A 401 with OAuth2 means the token was revoked or expired early: the next request fetches a new one. */
  invalidate(): boolean {
    if (!this.auth?.oauth2 || !this.token) return false;
    this.token = undefined;
    return true;
  }

  private refresh(signal: AbortSignal): Promise<void> {
    // Concurrent requests share one token fetch.
    return (this.fetching ??= this.fetchToken(signal).finally(() => (this.fetching = undefined)));
  }

  private async fetchToken(signal: AbortSignal): Promise<void> {
    const o = this.auth!.oauth2!;
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: o.client_id, client_secret: o.client_secret });
    if (o.scope) form.set('scope', o.scope);
    const where = `OAuth2 token endpoint ${redactUrl(o.token_url)}`;
    // Loaded here, not at the top: option specs import this module, and every pipeline would otherwise load undici (issue 9).
    const { request } = await import('undici');
    let res;
    try {
      res = await request(o.token_url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: form.toString(),
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.timeoutMs)]),
      });
    } catch (e) {
      throw new SluiceError('CONNECT', `${where}: ${errorMessage(e)}`, { retriable: true, cause: e });
    }
    const text = await res.body.text();
    if (res.statusCode >= 400) {
      throw new SluiceError(res.statusCode >= 500 ? 'CONNECT' : 'AUTH', `${where} answered ${res.statusCode}: ${snippet(text)}`, {
        retriable: res.statusCode >= 500,
        hint: res.statusCode < 500 ? 'check auth.oauth2.client_id, client_secret and scope' : undefined,
      });
    }
    let body: { access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(text);
    } catch {
      throw new SluiceError('AUTH', `${where} answered with a body that is not JSON`);
    }
    if (typeof body.access_token !== 'string') throw new SluiceError('AUTH', `${where} answered without an access_token`);
    this.token = body.access_token;
    const ttl = Number(body.expires_in);
    this.expiresAt = Number.isFinite(ttl) && ttl > 0 ? Date.now() + ttl * 1000 : Number.POSITIVE_INFINITY;
    this.tokensFetched++;
  }
}

/** The start of a response body for an error message: enough to see the server's reason, never a whole document. */
export function snippet(text: string): string {
  const t = text.trim().replace(/\s+/g, ' ');
  return t ? (t.length > 200 ? t.slice(0, 200) + '…' : t) : '(empty body)';
}

/** Reads a response body into one buffer, failing (and cancelling the download) once it exceeds `max` bytes. */
export async function readBounded(body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown }, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += c.length;
    if (n > max) {
      body.destroy();
      throw new SluiceError('CONNECT', `${what}: the response body is larger than max_body_size (${max} bytes)`, {
        hint: 'raise max_body_size, or page through the data with pagination',
      });
    }
    chunks.push(c);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n);
}

export const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('base64');

/** Seconds or an HTTP date, as in `Retry-After`; undefined when absent or unreadable. */
export function retryAfterMs(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  if (/^\d+(\.\d+)?$/.test(s.trim())) return Number(s) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

/** Resolves after `ms`, or early (without error) when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Exponential backoff with ±20% jitter. */
export function backoff(attempt: number, initial: number, max: number): number {
  const base = Math.min(max, initial * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}
