// Opening a NATS client for `nats` and `nats_jetstream`. The options both connectors share (and spread into their
// option objects, so they accept the same names and aliases) are in connection-options.ts.

import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, errors, nkeyAuthenticator, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import { SluiceError, errorMessage } from '../../core/errors.js';
import { describeServers, redactServer, type ConnectionOptions } from './connection-options.js';

export { checkConnection, connectionShape, describeServers, redactServer, type ConnectionOptions } from './connection-options.js';

/** PEM or seed text as-is; anything else is read as a file. */
function textOrFile(v: string, what: string, looksInline: (s: string) => boolean, secret = false): string {
  if (looksInline(v)) return v;
  try {
    return readFileSync(v, 'utf8');
  } catch (e) {
    // A mistyped inline seed or key would otherwise be echoed into logs as a "file name".
    if (secret && !/[\\/]|\.\w{1,5}$/.test(v.trim())) {
      throw new SluiceError('CONFIG', `the ${what} is neither a valid inline value nor a readable file (the value is not shown)`, { cause: e });
    }
    throw new SluiceError('CONFIG', `cannot read the ${what} file '${v}': ${errorMessage(e)}`, { cause: e });
  }
}

/** Credentials in the first URL that has a user-info part (`nats://user:pass@host`, `nats://token@host`), decoded. */
function urlCredentials(urls: string[]): { user: string; pass?: string } | undefined {
  for (const u of urls) {
    const m = /^[a-z]+:\/\/([^@/]*)@/i.exec(u);
    if (!m) continue;
    const i = m[1]!.indexOf(':');
    const dec = (x: string) => {
      try {
        return decodeURIComponent(x);
      } catch {
        return x;
      }
    };
    return i < 0 ? { user: dec(m[1]!) } : { user: dec(m[1]!.slice(0, i)), pass: dec(m[1]!.slice(i + 1)) };
  }
  return undefined;
}

/** Client options for nats.js; throws CONFIG errors for unreadable files. */
export function clientOptions(o: ConnectionOptions, name: string): NodeConnectionOptions {
  const opts: NodeConnectionOptions = {
    servers: o.url,
    name: o.name ?? name,
    timeout: o.connection_timeout,
    reconnect: true,
    maxReconnectAttempts: o.max_reconnect_attempts,
    reconnectTimeWait: o.reconnect_wait,
    // A pipeline must see the first failure (wrong host, bad credentials) instead of retrying it silently.
    waitOnFirstConnect: false,
  };
  if (o.user !== undefined) {
    opts.user = o.user;
    opts.pass = o.password;
  }
  if (o.token !== undefined) opts.token = o.token;
  // nats.js ignores the user-info part of a URL; the Go client (and so Timeplus configs) reads `user:pass@` as
  // user/password and a lone `token@` as a token. Explicit options win.
  if (o.user === undefined && o.token === undefined && o.nkey === undefined && o.creds === undefined) {
    const info = urlCredentials(o.url);
    if (info?.pass !== undefined) {
      opts.user = info.user;
      opts.pass = info.pass;
    } else if (info) opts.token = info.user;
  }
  if (o.nkey !== undefined) {
    const seed = textOrFile(o.nkey, 'nkey seed', (s) => /^S[A-Z2-7]{20,}$/.test(s.trim()), true).trim();
    opts.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
  }
  if (o.creds !== undefined) {
    const creds = textOrFile(o.creds, 'credentials', (s) => s.includes('-----BEGIN NATS USER JWT-----'));
    opts.authenticator = credsAuthenticator(new TextEncoder().encode(creds));
  }
  if (o.tls.disable) opts.tls = null;
  else if (o.tls.ca || o.tls.cert || o.tls.skip_verify_server || o.url.some((u) => /^tls:/i.test(u))) {
    const pem = (s: string) => s.includes('-----BEGIN');
    opts.tls = {
      ...(o.tls.ca ? { ca: textOrFile(o.tls.ca, 'TLS CA', pem) } : {}),
      ...(o.tls.cert ? { cert: textOrFile(o.tls.cert, 'TLS certificate', pem) } : {}),
      ...(o.tls.key ? { key: textOrFile(o.tls.key, 'TLS key', pem, true) } : {}),
      ...(o.tls.skip_verify_server ? { rejectUnauthorized: false } : {}),
    };
  }
  return opts;
}

/** Classify a nats.js failure for a user: names the server(s) and the cause, AUTH for refused credentials. */
export function connectError(o: ConnectionOptions, e: unknown, what = 'connecting to NATS'): SluiceError {
  if (e instanceof SluiceError) return e;
  const servers = describeServers(o);
  const msg = errorMessage(e);
  if (e instanceof errors.AuthorizationError || e instanceof errors.UserAuthenticationExpiredError || /authorization|authentication/i.test(msg)) {
    return new SluiceError('AUTH', `${what} (${servers}) failed: the server refused the credentials (${msg})`, {
      cause: e,
      hint: 'check user/password, token, nkey or creds',
    });
  }
  if (o.tls.disable && /tls/i.test(msg)) {
    // nats.js fails with a TypeError about its `tls` option when the server demands TLS and TLS is off.
    return new SluiceError('CONNECT', `${what} (${servers}) failed: the server requires TLS, and \`tls.disable\` is set`, { cause: e, hint: 'remove tls.disable' });
  }
  if (/CERT|certificate|self.signed|TLS|SSL/i.test(msg)) {
    return new SluiceError('CONNECT', `${what} (${servers}) failed: TLS error (${msg})`, {
      cause: e,
      hint: 'set tls.ca to the server CA, or tls.skip_verify_server for tests',
    });
  }
  const tlsNoCert = !o.tls.disable && !o.tls.cert && (o.tls.ca || o.tls.skip_verify_server || o.url.some((u) => /^tls:/i.test(u)));
  if (tlsNoCert && /timeout/i.test(msg)) {
    // A server with `verify: true` ends the TLS handshake when no client certificate comes, and nats.js only sees
    // the connection time out: say what is the likely reason.
    return new SluiceError('CONNECT', `${what} (${servers}) failed: ${msg} during TLS without a client certificate; a server that requires one (verify) drops such connections`, {
      cause: e,
      retriable: true,
      hint: 'set tls.cert and tls.key if the server verifies clients',
    });
  }
  return new SluiceError('CONNECT', `${what} (${servers}) failed: ${msg}`, { cause: e, retriable: true });
}

/** Open a connection; the first attempt's failure is thrown as a SluiceError naming the servers and the cause. */
export async function openNats(o: ConnectionOptions, name: string): Promise<NatsConnection> {
  const opts = clientOptions(o, name);
  try {
    return await connect(opts);
  } catch (e) {
    throw connectError(o, e);
  }
}

// ---- sharing by connection profile ----

/** A connection in use by one endpoint; `release` once the endpoint is done with it (closes it when nobody else uses it). */
export interface NatsLease {
  nc: NatsConnection;
  /** Other endpoints may use the same connection: close nothing on it but your own subscriptions. */
  shared: boolean;
  /** `drain` (default) flushes what was published first; `close` drops the connection at once (a source that is done). */
  release(how?: 'drain' | 'close'): Promise<void>;
}

interface SharedNats {
  key: string;
  nc: Promise<NatsConnection>;
  refs: number;
}

const sharedNats = new Map<string, SharedNats>();

/** The connection options that make two endpoints' connections interchangeable. */
function natsIdentity(o: ConnectionOptions): string {
  const { url, user, password, token, nkey, creds, tls, name, connection_timeout, reconnect_wait, max_reconnect_attempts } = o;
  return JSON.stringify([url, user, password, token, nkey, creds, tls, name, connection_timeout, reconnect_wait, max_reconnect_attempts]);
}

/** Endpoints sharing a connection (tests). */
export function sharedNatsConnections(): number {
  return sharedNats.size;
}

/**
 * A connection for an endpoint. Endpoints naming the same connection profile (with the same connection options) share
 * one, opened by the first and closed (drained) when the last releases it; others get their own.
 */
export async function acquireNats(o: ConnectionOptions, profile: string | undefined, name: string): Promise<NatsLease> {
  if (profile === undefined) {
    const nc = await openNats(o, name);
    return { nc, shared: false, release: (how = 'drain') => endConnection(nc, how) };
  }
  const key = `${profile}\u0000${natsIdentity(o)}`;
  let e = sharedNats.get(key);
  if (!e) {
    const entry: SharedNats = { key, refs: 0, nc: openNats(o, o.name ?? `sluice:profile:${profile}`) };
    sharedNats.set(key, entry);
    const forget = () => {
      if (sharedNats.get(key) === entry) sharedNats.delete(key);
    };
    // A connection that failed to open or closed for good is not handed out again; the next endpoint opens a new one.
    entry.nc.then((nc) => nc.closed().then(forget), forget);
    e = entry;
  }
  const entry = e;
  entry.refs++;
  let nc: NatsConnection;
  try {
    nc = await entry.nc;
  } catch (err) {
    entry.refs--;
    throw err;
  }
  let released = false;
  return {
    nc,
    shared: true,
    async release(how = 'drain') {
      if (released) return;
      released = true;
      if (--entry.refs > 0) {
        // What this endpoint published is on the wire before it reports itself closed.
        if (!nc.isClosed()) await nc.flush().catch(() => undefined);
        return;
      }
      if (sharedNats.get(key) === entry) sharedNats.delete(key);
      await endConnection(nc, how);
    },
  };
}

async function endConnection(nc: NatsConnection, how: 'drain' | 'close'): Promise<void> {
  if (nc.isClosed()) return;
  if (how === 'close') await nc.close().catch(() => undefined);
  else await nc.drain().catch(() => nc.close().catch(() => undefined));
}

/**
 * Watch a connection's status: logs disconnects/reconnects (never credentials) and counts reconnects. Resolves with the
 * error that closed the connection for good (reconnect attempts exhausted), or undefined after a clean close.
 */
export function watchStatus(
  nc: NatsConnection,
  o: ConnectionOptions,
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void },
  onReconnect?: () => void,
): Promise<SluiceError | undefined> {
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') log.warn({ server: redactServer(String(s.server)) }, 'NATS connection lost; reconnecting');
      else if (s.type === 'reconnect') {
        log.info({ server: redactServer(String(s.server)) }, 'NATS connection re-established');
        onReconnect?.();
      } else if (s.type === 'error') log.warn({ err: errorMessage(s.error) }, 'NATS connection error');
    }
  })().catch(() => undefined);
  return nc.closed().then((err) => (err ? connectError(o, err, 'the NATS connection') : undefined));
}

/** `a.b.c` as a path into a row. */
export function fieldGetter(path: string): (row: unknown) => unknown {
  const parts = path.split('.');
  if (parts.length === 1) {
    const k = parts[0]!;
    return (row) => (row !== null && typeof row === 'object' ? (row as Record<string, unknown>)[k] : undefined);
  }
  return (row) => {
    let cur = row;
    for (const p of parts) {
      if (cur === null || typeof cur !== 'object') return undefined;
      cur = (cur as Record<string, unknown>)[p];
    }
    return cur;
  };
}
