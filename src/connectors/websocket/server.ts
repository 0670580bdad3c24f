// Server mode of the WebSocket sink: a broadcast hub. Delivery is at most once by design: a record reaches the clients
// connected when it is written, and a client that cannot keep up loses frames (or its connection) rather than slowing
// down the pipeline or the other clients.

import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { Counter, Gauge, SinkContext, SluiceRecord } from '../../core/types.js';
import type { FrameEncoder } from './sink.js';

export interface BroadcastServerOptions {
  host: string;
  port: number;
  path: string;
  bearer?: string;
  basic?: { username: string; password: string };
  /** PEM text; both set = wss://. */
  cert?: string;
  key?: string;
  subprotocols?: string[];
  compression: boolean;
  clientFilters: boolean;
  slowClient: 'drop' | 'disconnect';
  maxClientBuffer: number;
  maxClients: number;
  /** 0 disables. */
  pingInterval: number;
  /** One frame per write per client instead of one per record. */
  arrays: boolean;
}

/** field -> accepted values; a row matches when every field has one of its values. */
export type ClientFilter = Map<string, Set<string>>;

interface Client {
  ws: WebSocket;
  filter?: ClientFilter;
  /** Clients with the same filter share one encoded array frame. */
  filterKey: string;
  alive: boolean;
}

/** The query parameter that may carry the bearer token (browsers cannot set headers on a WebSocket). */
export const TOKEN_PARAM = 'access_token';

const SLOW_CLOSE_GRACE_MS = 1000;
const STOP_GRACE_MS = 2000;

export class WebSocketBroadcastServer {
  private http?: Server;
  private wss?: WebSocketServer;
  private readonly clients = new Set<Client>();
  private pingTimer?: NodeJS.Timeout;
  private listening?: { host: string; port: number };
  private readonly m: {
    clients: Gauge;
    frames: Counter;
    bytes: Counter;
    droppedSlow: Counter;
    disconnectedSlow: Counter;
    discarded: Counter;
    refused: Counter;
  };

  constructor(
    private readonly o: BroadcastServerOptions,
    private readonly enc: FrameEncoder,
    private readonly ctx: SinkContext,
  ) {
    const mx = ctx.metrics;
    this.m = {
      clients: mx.gauge('clients', 'connected WebSocket clients'),
      frames: mx.counter('frames_sent', 'frames handed to client sockets (one per client)'),
      bytes: mx.counter('bytes_sent', 'payload bytes handed to client sockets'),
      droppedSlow: mx.counter('dropped_slow', 'frames skipped for clients over max_client_buffer'),
      disconnectedSlow: mx.counter('disconnected_slow', 'clients closed (1013) for being over max_client_buffer'),
      discarded: mx.counter('discarded', 'records written while no client was connected'),
      refused: mx.counter('refused', 'upgrade requests refused (path, auth, max_clients)'),
    };
  }

  /** The bound port (differs from the option with `port: 0`). */
  get port(): number | undefined {
    return this.listening?.port;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  async start(): Promise<void> {
    const tls = this.o.cert !== undefined && this.o.key !== undefined;
    const http = tls ? createHttpsServer({ cert: this.o.cert, key: this.o.key }) : createHttpServer();
    const protocols = this.o.subprotocols;
    const wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: this.o.compression,
      // Clients of a broadcast hub have nothing large to say; a big message is a misbehaving peer.
      maxPayload: 64 * 1024,
      handleProtocols: protocols?.length ? (offered) => protocols.find((p) => offered.has(p)) ?? false : undefined,
    });
    http.on('request', (_req, res) => {
      res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket', Connection: 'close' });
      res.end(`This is a WebSocket endpoint; connect with ws${tls ? 's' : ''}:// to ${this.o.path}\n`);
    });
    http.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head));
    http.on('clientError', (_e, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        const where = `${this.o.host}:${this.o.port}`;
        const why =
          e.code === 'EADDRINUSE'
            ? `port ${this.o.port} is already in use`
            : e.code === 'EACCES'
              ? `no permission to listen on port ${this.o.port}`
              : e.code === 'EADDRNOTAVAIL'
                ? `address ${this.o.host} is not available on this machine`
                : errorMessage(e);
        reject(
          new SluiceError('SINK', `websocket sink cannot listen on ${where}: ${why}`, {
            cause: e,
            hint: e.code === 'EADDRINUSE' ? 'stop the other process or choose another `port`' : undefined,
          }),
        );
      };
      http.once('error', onError);
      http.listen(this.o.port, this.o.host, () => {
        http.off('error', onError);
        resolve();
      });
    });
    http.on('error', (e) => this.ctx.log.error({ err: errorMessage(e) }, 'websocket sink: server error'));
    this.http = http;
    this.wss = wss;
    const addr = http.address();
    this.listening = { host: this.o.host, port: typeof addr === 'object' && addr ? addr.port : this.o.port };
    this.ctx.log.info({ url: `ws${tls ? 's' : ''}://${this.o.host}:${this.listening.port}${this.o.path}` }, 'websocket sink: listening');
    if (this.o.pingInterval > 0) this.pingTimer = setInterval(() => this.pingAll(), this.o.pingInterval);
  }

  /** Hand each record to every matching client's socket; never waits for a client. */
  broadcast(records: SluiceRecord[]): void {
    if (records.length === 0) return;
    if (this.clients.size === 0) {
      this.m.discarded.inc(records.length);
      return;
    }
    if (this.o.arrays) return this.broadcastArrays(records);
    for (const r of records) {
      // Encoded once, on demand: a record no client selects costs no encoding.
      let frame: { data: Buffer; binary: boolean } | undefined;
      for (const c of this.clients) {
        if (c.filter && !matches(c.filter, r.value)) continue;
        frame ??= this.enc.one(r.value, r);
        this.send(c, frame);
      }
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.pingTimer);
    const closing = [...this.clients].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.ws.readyState === WebSocket.CLOSED) return resolve();
          const t = setTimeout(() => {
            c.ws.terminate();
            resolve();
          }, STOP_GRACE_MS);
          c.ws.once('close', () => {
            clearTimeout(t);
            resolve();
          });
          c.ws.close(1001, 'server shutting down');
        }),
    );
    await Promise.all(closing);
    this.clients.clear();
    this.m.clients.set(0);
    this.wss?.close();
    const http = this.http;
    this.http = undefined;
    if (http) {
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
    }
  }

  private broadcastArrays(records: SluiceRecord[]): void {
    const frames = new Map<string, { data: Buffer; binary: boolean } | null>();
    for (const c of this.clients) {
      let frame = frames.get(c.filterKey);
      if (frame === undefined) {
        const values: unknown[] = [];
        const recs: SluiceRecord[] = [];
        for (const r of records) if (!c.filter || matches(c.filter, r.value)) values.push(r.value), recs.push(r);
        frame = values.length ? this.enc.many(values, recs) : null;
        frames.set(c.filterKey, frame);
      }
      if (frame) this.send(c, frame);
    }
  }

  private send(c: Client, frame: { data: Buffer; binary: boolean }): void {
    const ws = c.ws;
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > this.o.maxClientBuffer) {
      if (this.o.slowClient === 'drop') {
        this.m.droppedSlow.inc();
        return;
      }
      this.removeClient(c);
      this.m.disconnectedSlow.inc();
      this.ctx.log.warn({ buffered: ws.bufferedAmount }, 'websocket sink: disconnecting a slow client');
      ws.close(1013, 'try again later');
      // Its close frame queues behind the data it is not reading; do not keep that data around waiting for it.
      setTimeout(() => ws.terminate(), SLOW_CLOSE_GRACE_MS).unref();
      return;
    }
    ws.send(frame.data, { binary: frame.binary });
    this.m.frames.inc();
    this.m.bytes.inc(frame.data.length);
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {});
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== this.o.path) return this.refuse(socket, 404);
    if (!this.authorized(req, url)) return this.refuse(socket, 401, { 'WWW-Authenticate': this.o.bearer !== undefined ? 'Bearer' : 'Basic realm="sluice"' });
    if (this.clients.size >= this.o.maxClients) return this.refuse(socket, 503);
    const filter = this.o.clientFilters ? parseFilter(url.searchParams) : undefined;
    this.wss!.handleUpgrade(req, socket, head, (ws) => this.addClient(ws, filter));
  }

  private authorized(req: IncomingMessage, url: URL): boolean {
    if (this.o.bearer === undefined && this.o.basic === undefined) return true;
    const header = req.headers.authorization ?? '';
    if (this.o.bearer !== undefined) {
      const m = /^Bearer\s+(.+)$/i.exec(header);
      const given = m?.[1]?.trim() ?? url.searchParams.get(TOKEN_PARAM) ?? '';
      return sameSecret(given, this.o.bearer);
    }
    const m = /^Basic\s+(.+)$/i.exec(header);
    const given = m ? Buffer.from(m[1]!.trim(), 'base64').toString('utf8') : '';
    return sameSecret(given, `${this.o.basic!.username}:${this.o.basic!.password}`);
  }

  private refuse(socket: Duplex, status: number, headers: Record<string, string> = {}): void {
    this.m.refused.inc();
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n${extra}\r\n`);
    socket.destroy();
  }

  private addClient(ws: WebSocket, filter: ClientFilter | undefined): void {
    const c: Client = { ws, filter, filterKey: filter ? filterKey(filter) : '', alive: true };
    this.clients.add(c);
    this.m.clients.set(this.clients.size);
    ws.on('error', () => {});
    ws.on('pong', () => (c.alive = true));
    ws.once('close', () => this.removeClient(c));
  }

  private removeClient(c: Client): void {
    if (this.clients.delete(c)) this.m.clients.set(this.clients.size);
  }

  private pingAll(): void {
    for (const c of this.clients) {
      if (!c.alive) {
        this.removeClient(c);
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }
}

/** `?device=a&device=b&site=x` -> device in {a, b} and site = x; the token parameter is not a filter. */
export function parseFilter(params: URLSearchParams): ClientFilter | undefined {
  const f: ClientFilter = new Map();
  for (const [k, v] of params) {
    if (k === TOKEN_PARAM || k === '') continue;
    let s = f.get(k);
    if (!s) f.set(k, (s = new Set()));
    s.add(v);
  }
  return f.size ? f : undefined;
}

function filterKey(f: ClientFilter): string {
  return JSON.stringify([...f].map(([k, s]) => [k, [...s].sort()]).sort(([a], [b]) => (String(a) < String(b) ? -1 : 1)));
}

/** Top-level fields only, compared as text; a missing field, null or an object never matches. */
export function matches(f: ClientFilter, row: unknown): boolean {
  if (row === null || typeof row !== 'object') return false;
  for (const [field, values] of f) {
    const v = (row as Record<string, unknown>)[field];
    let text: string;
    if (typeof v === 'string') text = v;
    else if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') text = String(v);
    else if (v instanceof Date) text = v.toISOString();
    else return false;
    if (!values.has(text)) return false;
  }
  return true;
}

/** Compares digests so neither the content nor the length of the secret leaks through timing. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
