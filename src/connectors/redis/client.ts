// Connections to Redis: the URL and its overrides, a bounded first connect, endless reconnects afterwards, and
// errors that name the server (never the password).

import { createClient, RESP_TYPES, type RedisClientType } from 'redis';
import type { Logger } from 'pino';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { ConnectionOptions } from './options.js';

export type Client = RedisClientType;
/** A client whose bulk strings come back as Buffers (binary formats). */
export type BufferClient = ReturnType<Client['withTypeMapping']>;

export interface Endpoint {
  url: string;
  /** host:port/db, for messages. */
  shown: string;
}

/** The effective URL: eKuiper's bare `host:port` gets a scheme, and host/port/db/user/password/tls override. */
export function endpointOf(o: ConnectionOptions): Endpoint {
  let raw = o.url.trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) raw = `redis://${raw}`;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new SluiceError('CONFIG', `url: '${redactUrl(o.url)}' is not a Redis URL (expected redis://host:port[/db])`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new SluiceError('CONFIG', `url: scheme '${u.protocol.replace(':', '')}' is not supported; use redis:// or rediss://`);
  }
  if (o.tls) u.protocol = 'rediss:';
  if (o.host) u.hostname = o.host;
  if (o.port !== undefined) u.port = String(o.port);
  if (o.db !== undefined) u.pathname = `/${o.db}`;
  if (o.username !== undefined) u.username = encodeURIComponent(o.username);
  if (o.password !== undefined) u.password = encodeURIComponent(o.password);
  const db = u.pathname.replace(/^\//, '') || '0';
  const shown = `${u.protocol === 'rediss:' ? 'rediss' : 'redis'}://${u.hostname}:${u.port || '6379'}/${db}`;
  return { url: u.toString(), shown };
}

export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, (_m, cred: string) => `//${cred.includes(':') ? `${cred.split(':')[0]}:***` : '***'}@`);
}

export interface OpenOptions {
  /** Client name shown by CLIENT LIST. */
  name: string;
  log?: Logger;
  /** Called on each reconnect attempt after the connection was lost. */
  onReconnect?: () => void;
  /**
   * Fail commands at once while disconnected instead of queueing them until the reconnect. Sinks want this: the
   * pipeline's retry policy (backoff, max attempts) then governs an outage, and a retried batch is not also waiting
   * in the client's queue.
   */
  failWhileOffline?: boolean;
}

/** Errors that mean the server refused the credentials rather than being unreachable. */
function isAuthError(e: unknown): boolean {
  const m = errorMessage(e);
  return /WRONGPASS|NOAUTH|NOPERM|invalid (username|password)/i.test(m);
}

/** A connected client; rejects after `connect_retries` failed attempts with a message naming the server and cause. */
export async function openClient(o: ConnectionOptions, opts: OpenOptions): Promise<Client> {
  const ep = endpointOf(o);
  let ready = false;
  let lastError: unknown;
  const client = createClient({
    url: ep.url,
    name: opts.name,
    disableOfflineQueue: opts.failWhileOffline ?? false,
    socket: {
      connectTimeout: o.connect_timeout,
      rejectUnauthorized: !o.tls_skip_verify,
      reconnectStrategy: (retries: number, cause: Error) => {
        lastError = cause;
        if (!ready) {
          if (isAuthError(cause) || retries >= o.connect_retries) return false;
          return Math.min(o.reconnect_max_delay, 100 * 2 ** retries);
        }
        opts.onReconnect?.();
        return Math.min(o.reconnect_max_delay, 50 * 2 ** Math.min(retries, 10));
      },
    },
  } as Parameters<typeof createClient>[0]) as unknown as Client;
  let lastLogged = '';
  client.on('error', (e: unknown) => {
    lastError = e;
    // The client reports every failed reconnect attempt; one line per distinct cause is enough.
    const m = errorMessage(e);
    if (ready && m !== lastLogged) {
      lastLogged = m;
      opts.log?.warn({ server: ep.shown, err: m }, 'redis connection lost; reconnecting');
    }
  });
  client.on('ready', () => {
    if (ready && lastLogged) opts.log?.info({ server: ep.shown }, 'redis reconnected');
    lastLogged = '';
    ready = true;
  });
  try {
    await client.connect();
  } catch (e) {
    destroyClient(client);
    const cause = lastError ?? e;
    if (isAuthError(cause)) throw new SluiceError('AUTH', `redis ${ep.shown}: the server refused the credentials (${errorMessage(cause)}); check username and password`, { cause });
    throw new SluiceError('CONNECT', `redis ${ep.shown}: cannot connect: ${errorMessage(cause)}`, { cause, retriable: true, hint: 'check url/host/port and that the server is running' });
  }
  return client;
}

// ---- sharing by connection profile ----

/** A command connection in use by one endpoint; `release` it once done (it closes when nobody else uses it). */
export interface ClientLease {
  client: Client;
  /**
   * Other endpoints use the same connection. It queues commands while reconnecting (sources' acknowledgements wait for
   * the server to come back), so a sink that wants to fail fast while offline checks `client.isReady` itself.
   */
  shared: boolean;
  release(): Promise<void>;
}

interface SharedClient {
  client: Promise<Client>;
  refs: number;
  onReconnect: Set<() => void>;
}

const sharedClients = new Map<string, SharedClient>();

/** Shared command connections open now (tests). */
export function sharedRedisClients(): number {
  return sharedClients.size;
}

/**
 * A command connection for an endpoint. Endpoints naming the same connection profile (with the same server, database,
 * credentials and connection settings) share one; others get their own, opened with `opts`. Blocking reads and pub/sub
 * subscriptions cannot share a connection and never come from here.
 */
export async function acquireClient(o: ConnectionOptions, profile: string | undefined, opts: OpenOptions): Promise<ClientLease> {
  if (profile === undefined) {
    const client = await openClient(o, opts);
    return { client, shared: false, release: () => closeClient(client) };
  }
  const key = `${profile}\u0000${JSON.stringify([endpointOf(o).url, o.tls_skip_verify, o.connect_timeout, o.connect_retries, o.reconnect_max_delay])}`;
  let e = sharedClients.get(key);
  if (!e) {
    const onReconnect = new Set<() => void>();
    const entry: SharedClient = {
      refs: 0,
      onReconnect,
      client: openClient(o, { name: `sluice-profile-${profile}`.replace(/\s/g, '_'), log: opts.log, onReconnect: () => onReconnect.forEach((f) => f()) }),
    };
    sharedClients.set(key, entry);
    // A connection that failed to open is not handed out again; the next endpoint tries anew.
    entry.client.catch(() => {
      if (sharedClients.get(key) === entry) sharedClients.delete(key);
    });
    e = entry;
  }
  const entry = e;
  entry.refs++;
  const mine = opts.onReconnect;
  if (mine) entry.onReconnect.add(mine);
  let client: Client;
  try {
    client = await entry.client;
  } catch (err) {
    entry.refs--;
    if (mine) entry.onReconnect.delete(mine);
    throw err;
  }
  let released = false;
  return {
    client,
    shared: true,
    async release() {
      if (released) return;
      released = true;
      if (mine) entry.onReconnect.delete(mine);
      if (--entry.refs > 0) return;
      if (sharedClients.get(key) === entry) sharedClients.delete(key);
      await closeClient(client);
    },
  };
}

/** The same connection settings on a new socket (blocking reads and subscriptions need their own). */
export async function duplicateOf(o: ConnectionOptions, opts: OpenOptions): Promise<Client> {
  return openClient(o, opts);
}

/** Bulk strings as Buffers, for binary formats (bytes, avro, protobuf). */
export function withBuffers(c: Client): BufferClient {
  return c.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
}

/** Formats that decode text; anything else gets raw bytes. */
const TEXT_FORMATS = new Set(['json', 'text', 'csv', 'debezium-json', 'debezium-json-upsert', 'ndjson', 'jsonl']);
export function wantsBytes(format: string): boolean {
  return !TEXT_FORMATS.has(format);
}

/** Drop the connection now; a client that is already closed is fine. */
export function destroyClient(c: Client | undefined): void {
  if (!c) return;
  try {
    c.destroy();
  } catch {
    // already closed
  }
}

export async function closeClient(c: Client | undefined): Promise<void> {
  if (!c) return;
  try {
    if (c.isOpen) await c.close();
  } catch {
    destroyClient(c);
  }
}

/** A SluiceError for a failed command, naming what was done and where. */
export function commandError(what: string, ep: Endpoint, e: unknown): SluiceError {
  const m = errorMessage(e);
  if (/^WRONGTYPE/.test(m)) return new SluiceError('CONFIG', `redis ${ep.shown}: ${what}: the key holds a different type (${m})`, { cause: e });
  if (isAuthError(e)) return new SluiceError('AUTH', `redis ${ep.shown}: ${what}: ${m}`, { cause: e });
  return new SluiceError('CONNECT', `redis ${ep.shown}: ${what}: ${m}`, { cause: e, retriable: true });
}
