// Opening one client connection (auth, headers, TLS, proxy, compression, timeouts) and the reconnect backoff.
// Shared by the source and the sink.

import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import type { Duplex } from 'node:stream';
import WebSocket, { type ClientOptions } from 'ws';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { ConnectionOptions } from './options.js';

/** The URL as it may appear in logs and errors: no user info, no query values (API keys often travel there). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    for (const k of [...u.searchParams.keys()]) u.searchParams.set(k, '***');
    return u.toString().replace(/%2A%2A%2A/g, '***');
  } catch {
    return '<invalid url>';
  }
}

const CLOSE_CODES: Record<number, string> = {
  1000: 'normal closure',
  1001: 'going away',
  1002: 'protocol error',
  1003: 'unsupported data',
  1005: 'no status code',
  1006: 'abnormal closure: the connection dropped without a close frame',
  1007: 'invalid payload data',
  1008: 'policy violation',
  1009: 'message too big',
  1010: 'missing extension',
  1011: 'internal server error',
  1012: 'service restart',
  1013: 'try again later',
  1014: 'bad gateway',
  1015: 'TLS handshake failure',
};

/** `1006 (abnormal closure: ...)`, or with the server's reason. */
export function describeClose(code: number, reason: string | Buffer): string {
  const r = typeof reason === 'string' ? reason : reason.toString('utf8');
  const known = CLOSE_CODES[code] ?? (code >= 4000 ? 'application-defined' : 'unknown');
  return `code ${code} (${known})${r ? `, reason '${r.slice(0, 200)}'` : ''}`;
}

/** PEM text as-is, anything else read as a file. */
function pem(v: string | undefined, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (v.includes('-----BEGIN')) return v;
  try {
    return readFileSync(v, 'utf8');
  } catch (e) {
    throw new SluiceError('CONFIG', `cannot read TLS ${what} file '${v}': ${errorMessage(e)}`, { cause: e });
  }
}

/** The TLS material and checks, in the shape both `tls.connect` and `ws` accept. */
export interface TlsSettings {
  ca?: string;
  cert?: string;
  key?: string;
  passphrase?: string;
  rejectUnauthorized: boolean;
  servername?: string;
}

export function tlsOptions(o: ConnectionOptions['tls']): TlsSettings {
  return {
    ca: pem(o.ca, 'ca'),
    cert: pem(o.cert, 'cert'),
    key: pem(o.key, 'key'),
    passphrase: o.passphrase,
    rejectUnauthorized: !o.skip_verify,
    servername: o.server_name,
  };
}

/** The headers of the upgrade request (auth included). */
export function upgradeHeaders(o: Pick<ConnectionOptions, 'headers' | 'auth'>): Record<string, string> {
  const h: Record<string, string> = { ...(o.headers ?? {}) };
  if (o.auth?.bearer) h.Authorization = `Bearer ${o.auth.bearer}`;
  else if (o.auth?.username !== undefined) h.Authorization = `Basic ${Buffer.from(`${o.auth.username}:${o.auth.password ?? ''}`).toString('base64')}`;
  return h;
}

/** The URL actually dialled: `tls.disable` turns wss:// into ws:// (Timeplus configs). */
export function effectiveUrl(o: Pick<ConnectionOptions, 'url' | 'tls'>): string {
  return o.tls.disable ? o.url.replace(/^wss:/i, 'ws:') : o.url;
}

export interface OpenOptions {
  signal?: AbortSignal;
  /** Overrides the URL of the options (a shard of the source may use another). */
  url?: string;
  /**
   * Called with the socket as soon as it exists. Attach 'message' and 'error' listeners here: frames that arrive
   * together with the upgrade response are emitted right after 'open', before an awaiting caller could attach them.
   */
  setup?: (ws: WebSocket) => void;
}

/**
 * Open a client connection and resolve once the upgrade succeeded. Rejects with a SluiceError that names the URL
 * (redacted) and the cause: `AUTH` for 401/403, `CONNECT` (retriable) for everything else. Listeners for messages
 * belong in `setup`.
 */
export function openWebSocket(o: ConnectionOptions, oo: OpenOptions = {}): Promise<WebSocket> {
  const url = oo.url ?? effectiveUrl(o);
  const shown = redactUrl(url);
  const secure = /^wss:/i.test(url);
  const tls: Partial<TlsSettings> = secure ? tlsOptions(o.tls) : {};
  const opts: ClientOptions = {
    ...tls,
    headers: upgradeHeaders(o),
    origin: o.origin,
    handshakeTimeout: o.connection_timeout,
    maxPayload: o.max_message_size,
    perMessageDeflate: o.compression,
    // Text frames are checked for UTF-8 by the source, so a bad one becomes bad data instead of closing the socket.
    skipUTF8Validation: true,
    followRedirects: true,
    maxRedirects: 5,
  };
  if (o.proxy_url) opts.createConnection = proxyConnector(o.proxy_url, secure ? (tls as TlsSettings) : undefined, o.connection_timeout) as unknown as ClientOptions['createConnection'];
  return new Promise<WebSocket>((resolve, reject) => {
    let settled = false;
    let ws: WebSocket;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      oo.signal?.removeEventListener('abort', onAbort);
      ws.off('open', onOpen);
      ws.off('error', onError);
      ws.off('unexpected-response', onResponse);
      if (err) {
        // A listener stays so a late socket error after the failure cannot become an uncaught exception.
        ws.on('error', () => undefined);
        if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
        reject(err);
      } else resolve(ws);
    };
    const onOpen = () => finish();
    const onError = (e: Error) => finish(connectError(shown, e, o.connection_timeout, o.proxy_url));
    const onResponse = (_req: unknown, res: IncomingMessage) => {
      res.resume();
      finish(rejectionError(shown, res));
    };
    const onAbort = () => finish(new SluiceError('CONNECT', `connecting to ${shown} was cancelled`));
    try {
      ws = new WebSocket(url, o.subprotocols ?? [], opts);
    } catch (e) {
      reject(new SluiceError('CONFIG', `cannot connect to ${shown}: ${errorMessage(e)}`, { cause: e }));
      return;
    }
    ws.on('open', onOpen);
    ws.on('error', onError);
    oo.setup?.(ws);
    ws.on('unexpected-response', onResponse);
    if (oo.signal?.aborted) onAbort();
    else oo.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function rejectionError(shown: string, res: IncomingMessage): SluiceError {
  const status = res.statusCode ?? 0;
  const text = `${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`;
  if (status === 401 || status === 403) {
    return new SluiceError('AUTH', `${shown} rejected the credentials: HTTP ${text}`, {
      hint: 'check auth (bearer token or username/password) and headers',
      retriable: true,
    });
  }
  return new SluiceError('CONNECT', `${shown} refused the WebSocket upgrade: HTTP ${text}`, { retriable: true });
}

function connectError(shown: string, e: Error, timeoutMs: number, proxy?: string): SluiceError {
  if (e instanceof SluiceError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  let msg = errorMessage(e);
  if (/timeout|timed out/i.test(msg) && !code) msg = `no answer within ${timeoutMs} ms (connection_timeout)`;
  else if (code === 'ECONNREFUSED') msg = 'connection refused';
  else if (code === 'ENOTFOUND') msg = 'host not found';
  else if (code === 'ECONNRESET') msg = 'connection reset';
  else if (code && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) msg = `TLS: ${msg} (set tls.ca to trust a private CA)`;
  return new SluiceError('CONNECT', `cannot connect to ${shown}${proxy ? ` via proxy ${redactUrl(proxy)}` : ''}: ${msg}`, { cause: e, retriable: true });
}

/**
 * `createConnection` for ws that tunnels through an HTTP proxy with CONNECT, then (for wss) starts TLS on the tunnel.
 * Node's http client accepts the callback form, so the tunnel can be set up asynchronously.
 */
function proxyConnector(proxyUrl: string, tls: TlsSettings | undefined, timeoutMs: number) {
  const proxy = new URL(proxyUrl);
  return (target: { host?: string; hostname?: string; port?: number | string; servername?: string }, cb: (err: Error | null, socket?: Duplex) => void) => {
    const host = (target.hostname ?? target.host ?? '').replace(/^\[(.*)\]$/, '$1');
    const port = Number(target.port);
    const authority = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    const headers: Record<string, string> = { Host: authority };
    if (proxy.username) {
      headers['Proxy-Authorization'] = `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}`;
    }
    const req = (proxy.protocol === 'https:' ? httpsRequest : httpRequest)({
      host: proxy.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: proxy.port || (proxy.protocol === 'https:' ? 443 : 80),
      method: 'CONNECT',
      path: authority,
      headers,
      timeout: timeoutMs,
      agent: false,
    });
    let done = false;
    const fail = (err: Error) => {
      if (done) return;
      done = true;
      req.destroy();
      cb(err);
    };
    req.once('timeout', () => fail(new Error(`proxy ${redactUrl(proxyUrl)} did not answer within ${timeoutMs} ms`)));
    req.once('error', (e) => fail(new Error(`proxy ${redactUrl(proxyUrl)}: ${errorMessage(e)}`)));
    req.once('connect', (res, socket) => {
      if (done) return socket.destroy();
      if (res.statusCode !== 200) {
        socket.destroy();
        return fail(new Error(`proxy ${redactUrl(proxyUrl)} refused the tunnel to ${authority}: HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim()));
      }
      done = true;
      req.setTimeout(0);
      if (!tls) return cb(null, socket);
      const secure = tlsConnect({ ...tls, socket, servername: tls.servername ?? (/^[\d.:]+$/.test(host) ? undefined : host) });
      // ws waits for 'secureConnect' through the http client, as with its own tls connector.
      cb(null, secure);
    });
    req.end();
    return undefined;
  };
}

/** Delays between reconnect attempts: exponential with ±20% jitter, or a fixed interval. */
export class Backoff {
  private attempt = 0;
  constructor(private readonly o: ConnectionOptions['reconnect']) {}

  /** Consecutive failures so far. */
  get failures(): number {
    return this.attempt;
  }

  /** The delay before the next attempt, or undefined when `max_retries` is used up. */
  next(): number | undefined {
    const r = this.o;
    if (r.max_retries !== undefined && this.attempt >= r.max_retries) return undefined;
    const n = this.attempt++;
    // A fixed interval is taken as given (Kafka Connect semantics); only the exponential form is capped and jittered.
    if (r.interval !== undefined) return r.interval;
    return Math.round(Math.min(r.max, r.initial * r.multiplier ** n) * (0.8 + Math.random() * 0.4));
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Wait `ms` or until the signal aborts; the timer never outlives the wait. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener('abort', done, { once: true });
  });
}
