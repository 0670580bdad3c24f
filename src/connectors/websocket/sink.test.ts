import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { createServer, type Server } from 'node:net';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { SluiceError } from '../../core/errors.js';
import { MetricSet } from '../../core/metrics.js';
import { describeOptions, parseOptions, type OptionDoc } from '../../core/spec.js';
import type { Sink, SinkContext, SluiceRecord } from '../../core/types.js';
import { loadConfigText } from '../../config/load.js';
import { startPipeline } from '../../core/runtime.js';
import { defineConnector } from '../../core/spec.js';
import { memoryStateStore } from '../../core/state.js';
import { createFormat } from '../../formats/index.js';
import { jsonPassThrough } from '../../formats/json.js';
import { findConnector } from '../index.js';
import { silentLog, sinkContext, writeAll } from '../../testing/harness.js';
import { clientConnector, createWebSocketSink, sinkOptions, testWebSocketSink, WebSocketClientSink, WebSocketServerSink, type WebSocketSinkOptions } from './sink.js';

// ---- helpers -------------------------------------------------------------------------------------------------

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function options(input: Record<string, unknown>): WebSocketSinkOptions {
  const r = parseOptions(sinkOptions(), input);
  if (!r.ok) throw new Error(r.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  return r.value;
}

function jsonContext(metrics = new MetricSet()): SinkContext & { metricSet: MetricSet } {
  const ctx = sinkContext(createFormat({ name: 'json', options: {} }).encoder(), { metrics });
  return Object.assign(ctx, { metricSet: metrics });
}

const recs = (from: number, n: number, extra: (i: number) => Record<string, unknown> = () => ({})): SluiceRecord[] =>
  Array.from({ length: n }, (_, k) => ({ value: { id: from + k, ...extra(from + k) } }));

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms))),
  ]);
}

/** Messages arriving on one or more sockets, with a promise for "at least n arrived". */
class Inbox {
  readonly msgs: Array<{ text: string; binary: boolean }> = [];
  private waiters: Array<{ n: number; resolve: () => void }> = [];
  attach(ws: WebSocket): this {
    ws.on('message', (data: Buffer, binary: boolean) => {
      this.msgs.push({ text: data.toString('utf8'), binary });
      this.waiters = this.waiters.filter((w) => (this.msgs.length >= w.n ? (w.resolve(), false) : true));
    });
    return this;
  }
  get values(): unknown[] {
    return this.msgs.map((m) => JSON.parse(m.text));
  }
  ids(): number[] {
    return this.values.flatMap((v) => (Array.isArray(v) ? v.map((x) => x.id) : [(v as { id: number }).id]));
  }
  waitFor(n: number, ms = 5000): Promise<void> {
    if (this.msgs.length >= n) return Promise.resolve();
    return within(new Promise<void>((resolve) => this.waiters.push({ n, resolve })), ms, `${n} messages (have ${this.msgs.length})`);
  }
}

interface TestServer {
  wss: WebSocketServer;
  port: number;
  url: string;
  inbox: Inbox;
  sockets: WebSocket[];
  requests: IncomingMessage[];
  close(): Promise<void>;
}

async function testServer(
  opts: { port?: number; autoPong?: boolean; verifyClient?: WebSocketServer['options']['verifyClient']; onConnection?: (ws: WebSocket) => void } = {},
): Promise<TestServer> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: opts.port ?? 0,
    autoPong: opts.autoPong ?? true,
    verifyClient: opts.verifyClient,
    handleProtocols: (p) => [...p][0] ?? false,
  });
  await once(wss, 'listening');
  const port = (wss.address() as { port: number }).port;
  const inbox = new Inbox();
  const sockets: WebSocket[] = [];
  const requests: IncomingMessage[] = [];
  wss.on('connection', (ws, req) => {
    sockets.push(ws);
    requests.push(req);
    inbox.attach(ws);
    opts.onConnection?.(ws);
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const ws of wss.clients) ws.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
  };
  cleanups.push(close);
  return { wss, port, url: `ws://127.0.0.1:${port}/ingest`, inbox, sockets, requests, close };
}

async function clientSink(input: Record<string, unknown>, ctx = jsonContext()) {
  const sink = createWebSocketSink(options({ ping_interval: 0, ...input }), { format: 'json' }) as WebSocketClientSink;
  cleanups.push(() => sink.close());
  await sink.open(ctx);
  return { sink, ctx };
}

async function serverSink(input: Record<string, unknown>, ctx = jsonContext()) {
  const sink = createWebSocketSink(options({ port: 0, ping_interval: 0, ...input }), { format: 'json' }) as WebSocketServerSink;
  cleanups.push(() => sink.close());
  await sink.open(ctx);
  return { sink, ctx, url: `ws://127.0.0.1:${sink.port}${input.path ?? '/'}` };
}

/** A client-mode sink whose sockets the test can see, to wait until the sink noticed a drop. */
async function trackedClientSink(input: Record<string, unknown>, ctx = jsonContext()) {
  const o = options({ ping_interval: 0, ...input });
  const sockets: WebSocket[] = [];
  const base = clientConnector(o);
  const sink = new WebSocketClientSink(o, { format: 'json' }, { connect: (signal) => base.connect(signal).then((ws) => (sockets.push(ws), ws)) });
  cleanups.push(() => sink.close());
  await sink.open(ctx);
  /** Resolves once the sink's current connection has closed (the sink's own close handler ran first). */
  const dropped = () => {
    const ws = sockets[sockets.length - 1]!;
    return ws.readyState === WebSocket.CLOSED ? Promise.resolve() : within(once(ws, 'close').then(() => undefined), 5000, 'the sink to notice the drop');
  };
  return { sink, ctx, sockets, dropped };
}

/** What the runtime does with a failed write: retry it (retriable errors only) after a short pause. */
async function writeRetrying(sink: Sink, records: SluiceRecord[], attempts = 50): Promise<number> {
  for (let i = 1; ; i++) {
    try {
      await sink.write(records);
      return i;
    } catch (e) {
      if (!(e instanceof SluiceError) || !e.retriable || i >= attempts) throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** Ids in order of first arrival; a retried write may deliver a record twice (at least once), never out of order. */
function firstArrivals(ids: number[]): number[] {
  const seen = new Set<number>();
  return ids.filter((i) => (seen.has(i) ? false : (seen.add(i), true)));
}

/** A connected client of the server-mode sink; resolves once the upgrade completed (the sink has registered it). */
async function client(url: string, opts: WebSocket.ClientOptions = {}): Promise<{ ws: WebSocket; inbox: Inbox }> {
  const ws = new WebSocket(url, opts);
  const inbox = new Inbox().attach(ws);
  cleanups.push(() => ws.terminate());
  await within(once(ws, 'open'), 5000, `connect ${url}`);
  return { ws, inbox };
}

/** The HTTP status a refused upgrade answered with. */
async function upgradeStatus(url: string, opts: WebSocket.ClientOptions = {}): Promise<number> {
  const ws = new WebSocket(url, opts);
  cleanups.push(() => ws.terminate());
  return within(
    new Promise<number>((resolve, reject) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', reject);
    }),
    5000,
    'upgrade answer',
  );
}

// ---- options -------------------------------------------------------------------------------------------------

describe('websocket sink options', () => {
  it('chooses the mode from url or port, and says what is wrong otherwise', () => {
    expect(options({ url: 'ws://h/x' }).url).toBe('ws://h/x');
    expect(options({ port: 9000 }).port).toBe(9000);
    const issues = (i: Record<string, unknown>) => {
      const r = parseOptions(sinkOptions(), i);
      return r.ok ? [] : r.issues.map((x) => `${x.path.join('.')}: ${x.message}`);
    };
    expect(issues({})).toEqual([expect.stringMatching(/^url: set `url` to send .* or `port` to serve/)]);
    expect(issues({ url: 'ws://h', port: 1 })).toEqual([expect.stringMatching(/^mode: both `url` .* and `port`/)]);
    expect(issues({ mode: 'client', port: 1 })).toEqual([expect.stringMatching(/^url: client mode needs `url`/)]);
    expect(issues({ mode: 'server', url: 'ws://h' })).toEqual([expect.stringMatching(/^port: server mode needs `port`/)]);
    expect(issues({ mode: 'client', url: 'ws://h', port: 1 })).toEqual([expect.stringMatching(/^port: `port` applies to server mode only/)]);
    expect(issues({ url: 'http://h' })).toEqual([expect.stringMatching(/^url: must be a ws:\/\/ or wss:\/\/ URL/)]);
    expect(issues({ port: 1, tls: { cert: 'c.pem' } })).toEqual([expect.stringMatching(/^tls: serving wss:\/\/ needs both/)]);
  });

  it('accepts the seeds spellings', () => {
    const o = options({
      'websocket.url': 'ws://h/x',
      'websocket.headers': 'X-A:1,X-B:two',
      'websocket.auth.token': 'tok',
      'websocket.reconnect.interval.ms': 250,
      'websocket.connection.timeout.ms': 1500,
      message_type: 'binary',
    });
    expect(o).toMatchObject({
      url: 'ws://h/x',
      headers: { 'X-A': '1', 'X-B': 'two' },
      auth: { bearer: 'tok' },
      reconnect: { enabled: true, interval: 250 },
      connection_timeout: 1500,
      frame_type: 'binary',
    });
  });

  it('describes every option', () => {
    const walk = (docs: OptionDoc[], prefix = ''): void => {
      for (const d of docs) {
        expect(d.description, `${prefix}${d.name}`).not.toBe('');
        if (d.children) walk(d.children, `${prefix}${d.name}.`);
      }
    };
    walk(describeOptions(sinkOptions()));
  });
});

// ---- client mode ---------------------------------------------------------------------------------------------

describe('websocket sink, client mode', () => {
  it('sends one text frame per record, in order, and counts them', async () => {
    const srv = await testServer();
    const ctx = jsonContext();
    const sink = createWebSocketSink(options({ url: srv.url, ping_interval: 0 }), { format: 'json' });
    await writeAll(sink, ctx, [recs(0, 10), recs(10, 25), recs(35, 65)]);
    await srv.inbox.waitFor(100);
    expect(srv.inbox.ids()).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(srv.inbox.msgs.every((m) => !m.binary)).toBe(true);
    expect(ctx.metricSet.snapshot()).toMatchObject({ frames_sent: 100, connects: 1, reconnects: 0 });
  });

  it('passes received JSON through as text frames, also when it arrived as bytes', async () => {
    const srv = await testServer();
    const enc = jsonPassThrough(createFormat({ name: 'json', options: {} }).encoder(), () => true);
    const ctx = sinkContext(enc, { metrics: new MetricSet() });
    const sink = createWebSocketSink(options({ url: srv.url, ping_interval: 0 }), { format: 'json' });
    await writeAll(sink, ctx, [[{ value: { id: 0, p: 1.5 }, raw: Buffer.from('{"id":0, "p":1.50}') }, { value: { id: 1 }, raw: '{"id": 1}' }]]);
    await srv.inbox.waitFor(2);
    expect(srv.inbox.msgs.map((m) => [m.text, m.binary])).toEqual([
      ['{"id":0, "p":1.50}', false],
      ['{"id": 1}', false],
    ]);
  });

  it('sends binary frames when asked', async () => {
    const srv = await testServer();
    const { sink } = await clientSink({ url: srv.url, frame_type: 'binary' });
    await sink.write(recs(0, 3));
    await srv.inbox.waitFor(3);
    expect(srv.inbox.msgs.map((m) => m.binary)).toEqual([true, true, true]);
    expect(srv.inbox.values).toEqual([{ id: 0 }, { id: 1 }, { id: 2 }]);
  });

  it('template (dataTemplate) renders each frame; with array batching the rendered values form one JSON array', async () => {
    const srv = await testServer();
    const { sink } = await clientSink({ url: srv.url, dataTemplate: '{"n":{{ id }},"k":"{{ _key }}"}' });
    await sink.write([{ value: { id: 1, x: 'dropped' }, key: 'a' }]);
    const { sink: arrays } = await clientSink({ url: srv.url, template: '{"n":{{ id }}}', batching: 'array' });
    await arrays.write(recs(5, 2));
    await srv.inbox.waitFor(2);
    expect(srv.inbox.msgs.map((m) => m.text).sort()).toEqual(['[{"n":5},{"n":6}]', '{"n":1,"k":"a"}']);
  });

  it('array batching sends one JSON array per write', async () => {
    const srv = await testServer();
    const { sink } = await clientSink({ url: srv.url, batching: 'array' });
    await sink.write(recs(0, 3));
    await sink.write(recs(3, 2));
    await sink.write([]);
    await srv.inbox.waitFor(2);
    expect(srv.inbox.values).toEqual([[{ id: 0 }, { id: 1 }, { id: 2 }], [{ id: 3 }, { id: 4 }]]);
  });

  it('array batching with a non-JSON format sends its stream encoding', async () => {
    const srv = await testServer();
    const ctx = sinkContext(createFormat({ name: 'csv', options: {} }).encoder());
    const sink = createWebSocketSink(options({ url: srv.url, batching: 'array', ping_interval: 0 }), { format: 'csv' });
    await writeAll(sink, ctx, [[{ value: { a: 1, b: 'x' } }, { value: { a: 2, b: 'y' } }]]);
    await srv.inbox.waitFor(1);
    expect(srv.inbox.msgs[0]!.text.trim().split(/\r?\n/)).toEqual(['a,b', '1,x', '2,y']);
  });

  it('sends the bearer token, headers, origin and subprotocols with the upgrade', async () => {
    const srv = await testServer();
    const { sink } = await clientSink({
      url: srv.url,
      headers: { 'X-Tenant': 'acme' },
      auth: { bearer: 's3cret' },
      origin: 'https://app.example',
      subprotocols: 'v2.feed',
    });
    await sink.write(recs(0, 1));
    await srv.inbox.waitFor(1);
    const h = srv.requests[0]!.headers;
    expect(h.authorization).toBe('Bearer s3cret');
    expect(h['x-tenant']).toBe('acme');
    expect(h.origin).toBe('https://app.example');
    expect(h['sec-websocket-protocol']).toBe('v2.feed');
    expect(srv.requests[0]!.url).toBe('/ingest');
  });

  it('fails at startup when the server refuses the credentials', async () => {
    const srv = await testServer({ verifyClient: (info: { req: IncomingMessage }) => info.req.headers.authorization === 'Bearer right' });
    const sink = createWebSocketSink(options({ url: srv.url, auth: { bearer: 'wrong' }, ping_interval: 0 }));
    const err = await sink.open(jsonContext()).then(
      () => undefined,
      (e: unknown) => e,
    );
    await sink.close?.();
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('AUTH');
    expect((err as SluiceError).message).toMatch(/401/);
    expect((err as SluiceError).message).not.toContain('wrong');
  });

  it('reconnects after the server dropped the connection; acknowledged writes all arrive, in order', async () => {
    const srv = await testServer();
    const { sink, ctx } = await clientSink({ url: srv.url, reconnect: { initial: '20ms', max: '100ms' } });
    await sink.write(recs(0, 50));
    await srv.inbox.waitFor(50);
    srv.sockets[0]!.terminate();
    // Written at once, while the sink may not have noticed the drop yet: such a write fails retriably (its frames
    // went into a dead socket) and the retry goes out on the new connection.
    await within(writeRetrying(sink, recs(50, 50)), 5000, 'write after reconnect');
    await writeRetrying(sink, recs(100, 50));
    await srv.inbox.waitFor(100);
    await within(
      (async () => {
        while (!srv.inbox.ids().includes(149)) await srv.inbox.waitFor(srv.inbox.msgs.length + 1);
      })(),
      5000,
      'the last record',
    );
    expect(firstArrivals(srv.inbox.ids())).toEqual(Array.from({ length: 150 }, (_, i) => i));
    expect(srv.sockets.length).toBe(2);
    expect(ctx.metricSet.snapshot()).toMatchObject({ connects: 2, reconnects: 1, connected: 1 });
  });

  it('a write made after the sink noticed the drop waits for the reconnect and then succeeds', async () => {
    const srv = await testServer();
    const { sink, dropped } = await trackedClientSink({ url: srv.url, reconnect: { initial: '20ms', max: '100ms' } });
    await sink.write(recs(0, 5));
    await srv.inbox.waitFor(5);
    srv.sockets[0]!.terminate();
    await dropped();
    expect(sink.connectionState).toBe('connecting');
    await within(sink.write(recs(5, 5)), 5000, 'write after reconnect');
    await srv.inbox.waitFor(10);
    expect(srv.inbox.ids()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('starts while the server is down and delivers once it is up', async () => {
    const probe = await testServer();
    const port = probe.port;
    await probe.close();
    const { sink } = await clientSink({ url: `ws://127.0.0.1:${port}/`, reconnect: { initial: '20ms', max: '50ms' } });
    expect(sink.connectionState).not.toBe('open');
    const pending = sink.write(recs(0, 5));
    const srv = await testServer({ port });
    await within(pending, 5000, 'write after the server came up');
    await srv.inbox.waitFor(5);
    expect(srv.inbox.ids()).toEqual([0, 1, 2, 3, 4]);
  });

  it('bounds what waits while disconnected: the write beyond max_buffered fails retriably at once', async () => {
    const srv = await testServer();
    const port = srv.port;
    const { sink, ctx, dropped } = await trackedClientSink({
      url: srv.url,
      reconnect: { initial: '20ms', max: '50ms' },
      max_buffered: { records: 5 },
    });
    await sink.write(recs(0, 2));
    await srv.inbox.waitFor(2);
    await srv.close();
    await dropped();
    const a = sink.write(recs(2, 2));
    const b = sink.write(recs(4, 2));
    const c = sink.write(recs(6, 2)); // 6 records would wait: over the bound
    await expect(c).rejects.toMatchObject({ code: 'SINK', retriable: true, message: expect.stringMatching(/max_buffered is 5 records/) });
    expect(ctx.metricSet.snapshot().writes_rejected).toBe(1);
    const srv2 = await testServer({ port });
    await within(Promise.all([a, b]), 5000, 'buffered writes');
    await srv2.inbox.waitFor(4);
    expect(srv2.inbox.ids()).toEqual([2, 3, 4, 5]);
  });

  it('fails a write retriably when no connection comes within write_timeout, and recovers on the retry', async () => {
    const probe = await testServer();
    const port = probe.port;
    const { sink, dropped } = await trackedClientSink({ url: probe.url, reconnect: { initial: '20ms', max: '50ms' }, write_timeout: '150ms' });
    await probe.close();
    await dropped();
    await expect(sink.write(recs(0, 1))).rejects.toMatchObject({ retriable: true, message: expect.stringMatching(/write_timeout/) });
    const srv = await testServer({ port });
    await within(sink.write(recs(0, 1)), 5000, 'retried write');
    await srv.inbox.waitFor(1);
    expect(srv.inbox.ids()).toEqual([0]);
  });

  it('with reconnect disabled, a retried write opens a new connection', async () => {
    const srv = await testServer();
    const { sink } = await clientSink({ url: srv.url, reconnect: false });
    await sink.write(recs(0, 1));
    await srv.inbox.waitFor(1);
    const closed = once(srv.sockets[0]!, 'close');
    srv.sockets[0]!.close(1012, 'restart');
    await closed;
    // The first write after the drop may find the sink still open; the close is noticed soon after.
    await within(
      (async () => {
        for (;;) {
          try {
            await sink.write(recs(1, 1));
            return;
          } catch (e) {
            expect((e as SluiceError).retriable).toBe(true);
          }
        }
      })(),
      5000,
      'write on a new connection',
    );
    await srv.inbox.waitFor(2);
    expect(srv.sockets.length).toBe(2);
  });

  it('with ack: pong, a write completes only when the server answered the ping sent after its frames', async () => {
    let pinged!: (pong: () => void) => void;
    const ping = new Promise<() => void>((r) => (pinged = r));
    const srv = await testServer({
      autoPong: false,
      onConnection: (ws) => ws.on('ping', (data) => pinged(() => ws.pong(data))),
    });
    const { sink } = await clientSink({ url: srv.url, ack: 'pong' });
    let done = false;
    const p = sink.write(recs(0, 3)).then(() => (done = true));
    await srv.inbox.waitFor(3);
    const pong = await within(ping, 5000, 'the ack ping');
    expect(done).toBe(false);
    pong();
    await within(p, 5000, 'the write');
    expect(srv.inbox.ids()).toEqual([0, 1, 2]);
  });

  it('with ack: pong, a connection lost before the pong fails the write retriably although its frames were sent', async () => {
    const srv = await testServer({ autoPong: false, onConnection: (ws) => ws.on('ping', () => ws.terminate()) });
    const { sink } = await clientSink({ url: srv.url, ack: 'pong', reconnect: { initial: '20ms' } });
    await expect(sink.write(recs(0, 2))).rejects.toMatchObject({ code: 'SINK', retriable: true });
    expect(srv.inbox.ids()).toEqual([0, 1]);
  });

  it('with ack: pong, a server that never answers pings fails the write after pong_timeout', async () => {
    const srv = await testServer({ autoPong: false });
    const { sink } = await clientSink({ url: srv.url, ack: 'pong', pong_timeout: '100ms', reconnect: { initial: '20ms' } });
    await expect(sink.write(recs(0, 1))).rejects.toMatchObject({ retriable: true, message: expect.stringMatching(/did not answer a delivery ping/) });
  });

  it('fails the write in flight retriably when the connection drops mid-write', async () => {
    // The server stops reading, so a large write cannot be handed over completely before the drop.
    const srv = await testServer({ onConnection: (ws) => (ws as unknown as { _socket: { pause(): void } })._socket.pause() });
    const { sink } = await clientSink({ url: srv.url, reconnect: { initial: '20ms' } });
    const big = 'x'.repeat(256 * 1024);
    const p = sink.write(Array.from({ length: 128 }, (_, i) => ({ value: { id: i, big } })));
    await within(
      new Promise<void>((r) => (srv.sockets.length ? r() : srv.wss.once('connection', () => r()))),
      5000,
      'connection',
    );
    srv.sockets[0]!.terminate();
    await expect(p).rejects.toMatchObject({ code: 'SINK', retriable: true, message: expect.stringMatching(/dropped while sending/) });
  });
});

// ---- server mode ---------------------------------------------------------------------------------------------

describe('websocket sink, server mode', () => {
  it('broadcasts every record to every client', async () => {
    const { sink, ctx, url } = await serverSink({ path: '/feed' });
    const clients = await Promise.all([client(url), client(url), client(url)]);
    expect(ctx.metricSet.snapshot().clients).toBe(3);
    await sink.write(recs(0, 4));
    await sink.write(recs(4, 6));
    for (const c of clients) await c.inbox.waitFor(10);
    for (const c of clients) expect(c.inbox.ids()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(ctx.metricSet.snapshot()).toMatchObject({ frames_sent: 30, clients: 3 });
  });

  it('discards (and counts) records while nobody is connected', async () => {
    const { sink, ctx } = await serverSink({});
    await sink.write(recs(0, 7));
    expect(ctx.metricSet.snapshot().discarded).toBe(7);
  });

  it('filters per client by the query string', async () => {
    const { sink, url } = await serverSink({});
    const one = await client(`${url}?device=sensor-1`);
    const twoOrThree = await client(`${url}?device=sensor-2&device=sensor-3`);
    const oneAtX = await client(`${url}?device=sensor-1&site=x`);
    const all = await client(url);
    const device = (i: number) => ({ device: `sensor-${(i % 3) + 1}`, site: i % 2 ? 'x' : 'y' });
    await sink.write(recs(0, 12, device));
    await sink.write([{ value: { id: 99 } }, { value: { id: 100, device: 1 } }]);
    await all.inbox.waitFor(14);
    await Promise.all([one.inbox.waitFor(4), twoOrThree.inbox.waitFor(8), oneAtX.inbox.waitFor(2)]);
    expect(one.inbox.ids()).toEqual([0, 3, 6, 9]);
    expect(twoOrThree.inbox.ids()).toEqual([1, 2, 4, 5, 7, 8, 10, 11]);
    expect(oneAtX.inbox.ids()).toEqual([3, 9]);
    // Everything `all` got was sent after the filtered frames of the same write, so nothing else is on its way.
    expect(one.inbox.msgs.length + twoOrThree.inbox.msgs.length + oneAtX.inbox.msgs.length).toBe(14);
  });

  it('array batching sends each client one array of the records its filter selects', async () => {
    const { sink, url } = await serverSink({ batching: 'array' });
    const one = await client(`${url}?device=a`);
    const all = await client(url);
    await sink.write([{ value: { id: 1, device: 'a' } }, { value: { id: 2, device: 'b' } }, { value: { id: 3, device: 'a' } }]);
    await sink.write([{ value: { id: 4, device: 'b' } }]);
    await sink.write([{ value: { id: 5, device: 'a' } }]);
    await all.inbox.waitFor(3);
    await one.inbox.waitFor(2);
    expect(all.inbox.values).toEqual([
      [{ id: 1, device: 'a' }, { id: 2, device: 'b' }, { id: 3, device: 'a' }],
      [{ id: 4, device: 'b' }],
      [{ id: 5, device: 'a' }],
    ]);
    expect(one.inbox.values).toEqual([[{ id: 1, device: 'a' }, { id: 3, device: 'a' }], [{ id: 5, device: 'a' }]]);
  });

  it('skips frames for a slow client while a fast one receives everything and writes stay fast', async () => {
    const { sink, ctx, url } = await serverSink({ slow_client: 'drop', max_client_buffer: '512KiB' });
    const slow = await client(url);
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const fast = await client(url);
    const big = 'x'.repeat(64 * 1024);
    let worst = 0;
    const batches = 100;
    for (let b = 0; b < batches; b++) {
      const t0 = performance.now();
      await sink.write(recs(b * 4, 4, () => ({ big })));
      worst = Math.max(worst, performance.now() - t0);
      await fast.inbox.waitFor((b + 1) * 4, 10_000);
    }
    expect(fast.inbox.ids()).toEqual(Array.from({ length: batches * 4 }, (_, i) => i));
    const m = ctx.metricSet.snapshot();
    expect(m.dropped_slow).toBeGreaterThan(0);
    // What the server holds for the slow client stays near the limit instead of growing with the stream.
    const held = [...(sink as unknown as { server: { clients: Set<{ ws: WebSocket }> } }).server.clients].map((c) => c.ws.bufferedAmount);
    expect(Math.max(...held)).toBeLessThan(512 * 1024 + 5 * 64 * 1024);
    expect(worst).toBeLessThan(100);
    expect(m.clients).toBe(2);
  });

  it('disconnects a slow client with 1013 while a fast one keeps receiving', async () => {
    const { sink, ctx, url } = await serverSink({ slow_client: 'disconnect', max_client_buffer: '256KiB' });
    const slow = await client(url);
    const slowSocket = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    slowSocket.pause();
    const closed = once(slow.ws, 'close');
    const fast = await client(url);
    const big = 'y'.repeat(64 * 1024);
    let n = 0;
    while (ctx.metricSet.snapshot().disconnected_slow !== 1) {
      expect(n).toBeLessThan(4000);
      await sink.write(recs(n, 4, () => ({ big })));
      n += 4;
      await fast.inbox.waitFor(n, 10_000);
    }
    expect(ctx.metricSet.snapshot().clients).toBe(1);
    await sink.write(recs(n, 4));
    await fast.inbox.waitFor(n + 4);
    // Reading again, the slow client drains what it was sent and then finds the close frame.
    slowSocket.resume();
    const [code] = (await within(closed, 5000, 'slow client close')) as [number];
    expect([1013, 1006]).toContain(code);
    expect(fast.inbox.ids()).toEqual(Array.from({ length: n + 4 }, (_, i) => i));
  });

  it('checks the bearer token on upgrade, in constant time, from the header or access_token', async () => {
    const { sink, ctx, url } = await serverSink({ auth: { bearer: 'let-me-in' } });
    expect(await upgradeStatus(url)).toBe(401);
    expect(await upgradeStatus(url, { headers: { Authorization: 'Bearer nope' } })).toBe(401);
    expect(await upgradeStatus(`${url}?access_token=nope`)).toBe(401);
    const byHeader = await client(url, { headers: { Authorization: 'Bearer let-me-in' } });
    const byQuery = await client(`${url}?access_token=let-me-in&device=a`);
    await sink.write([{ value: { id: 1, device: 'b' } }, { value: { id: 2, device: 'a' } }]);
    await byHeader.inbox.waitFor(2);
    await byQuery.inbox.waitFor(1);
    expect(byQuery.inbox.ids()).toEqual([2]);
    expect(ctx.metricSet.snapshot().refused).toBe(3);
  });

  it('checks basic credentials on upgrade', async () => {
    const { url } = await serverSink({ auth: { username: 'u', password: 'p' } });
    expect(await upgradeStatus(url)).toBe(401);
    expect(await upgradeStatus(url.replace('ws://', 'ws://u:bad@'))).toBe(401);
    expect(await upgradeStatus(url.replace('ws://', 'ws://u:p@'))).toBe(101);
  });

  it('refuses other paths with 404 and clients beyond max_clients with 503', async () => {
    const { url } = await serverSink({ path: '/feed', max_clients: 1 });
    expect(await upgradeStatus(url.replace('/feed', '/other'))).toBe(404);
    await client(url);
    expect(await upgradeStatus(url)).toBe(503);
  });

  it('fails at startup naming the port when it is in use', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => blocker.close(() => r())));
    const port = (blocker.address() as { port: number }).port;
    const sink = createWebSocketSink(options({ port }));
    const err = await sink.open(jsonContext()).then(
      () => undefined,
      (e: unknown) => e as SluiceError,
    );
    await sink.close?.();
    expect(err?.message).toBe(`websocket sink cannot listen on 127.0.0.1:${port}: port ${port} is already in use`);
  });

  it('close() says goodbye with 1001 and stops listening', async () => {
    const { sink, url } = await serverSink({});
    const c = await client(url);
    const closed = once(c.ws, 'close');
    await sink.close();
    const [code] = (await within(closed, 5000, 'close')) as [number];
    expect(code).toBe(1001);
    await expect(upgradeStatus(url)).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe('websocket sink connection test', () => {
  it('reports a successful connection, a listenable port, and a port in use', async () => {
    const srv = await testServer();
    const steps: string[] = [];
    const report = (s: { message: string; error?: boolean }) => steps.push(`${s.error ? 'error' : 'ok'}: ${s.message}`);
    const signal = new AbortController().signal;
    await testWebSocketSink(options({ url: srv.url }), report, signal);
    await testWebSocketSink(options({ port: 0, path: '/feed' }), report, signal);
    await expect(testWebSocketSink(options({ port: srv.port }), report, signal)).rejects.toThrow(/already in use/);
    expect(steps).toEqual([
      `ok: connected to ${srv.url}`,
      expect.stringMatching(/^ok: can listen on ws:\/\/127\.0\.0\.1:\d+\/feed$/),
      `error: websocket sink cannot listen on 127.0.0.1:${srv.port}: port ${srv.port} is already in use`,
    ]);
  });
});

// ---- TLS -----------------------------------------------------------------------------------------------------

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!hasOpenssl)('websocket sink over TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ws-tls-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  if (hasOpenssl) {
    // A self-signed certificate for 127.0.0.1; trusting it as the CA is what tls.ca is for.
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
      { stdio: 'ignore' },
    );
  }

  it('server mode serves wss:// with tls.cert and tls.key', async () => {
    const { sink } = await serverSink({ tls: { cert, key } });
    const c = await client(`wss://127.0.0.1:${sink.port}/`, { ca: readFileSync(cert) });
    await sink.write(recs(0, 2));
    await c.inbox.waitFor(2);
    expect(c.inbox.ids()).toEqual([0, 1]);
  });

  it('client mode trusts a private CA given as tls.ca, and refuses the server without it', async () => {
    const https = createHttpsServer({ cert: readFileSync(cert), key: readFileSync(key) });
    const wss = new WebSocketServer({ server: https });
    const inbox = new Inbox();
    wss.on('connection', (ws) => inbox.attach(ws));
    await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          for (const ws of wss.clients) ws.terminate();
          wss.close();
          https.close(() => r());
        }),
    );
    const url = `wss://127.0.0.1:${(https.address() as { port: number }).port}/`;
    const { sink } = await clientSink({ url, tls: { ca: cert } });
    await sink.write(recs(0, 3));
    await inbox.waitFor(3);
    expect(inbox.ids()).toEqual([0, 1, 2]);
    const untrusting = createWebSocketSink(options({ url, ping_interval: 0, reconnect: false }));
    const err = await untrusting.open(jsonContext()).then(
      () => undefined,
      (e: unknown) => e as SluiceError,
    );
    await untrusting.close?.();
    expect(err?.message).toMatch(/^cannot connect to wss:\/\/127\.0\.0\.1:\d+\/: TLS: .*certificate/);
  });
});

// ---- through the runtime -------------------------------------------------------------------------------------

describe('websocket sink in a pipeline', () => {
  it('with ack: pong, loses nothing when the server drops the connection mid-stream: the runtime retries the failed write', async () => {
    let drops = 0;
    const srv = await testServer({
      onConnection: (ws) => {
        // The first connection is cut after a while, mid-stream.
        if (drops++ === 0) ws.on('message', () => srv.inbox.msgs.length >= 1500 && ws.terminate());
      },
    });
    const doc = loadConfigText(
      `
name: to-ws
source: { connector: generator, config: { template: sequence, interval: 0, count: 5000 } }
sink: { connector: blackhole }
batch: { max_records: 200 }
retry: { max_attempts: 20, initial_backoff: 20ms, max_backoff: 200ms }
`,
      'ws.yaml',
    );
    const def = doc.pipelines[0]!;
    def.sink = { ...def.sink!, connector: 'websocket', format: { name: 'json', options: {} }, options: options({ url: srv.url, ack: 'pong', ping_interval: 0, reconnect: { initial: '20ms' } }) };
    const websocket = defineConnector({ name: 'websocket', title: 'WebSocket', description: 'test', sink: { options: sinkOptions(), create: createWebSocketSink, defaultFormat: 'json' } });
    const env = { log: silentLog, state: memoryStateStore(), dataDir: '/tmp/sluice-ws-sink-test', connector: (n: string) => (n === 'websocket' ? websocket : findConnector(n)!) };
    const result = await within(startPipeline(def, env).done, 20_000, 'the pipeline');
    expect(result.status).toBe('completed');
    expect(result.stats.sink_retries).toBeGreaterThan(0);
    await within(
      (async () => {
        while (!srv.inbox.ids().includes(4999)) await srv.inbox.waitFor(srv.inbox.msgs.length + 1);
      })(),
      5000,
      'the last record',
    );
    expect(firstArrivals(srv.inbox.ids())).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(srv.sockets.length).toBe(2);
  });
});
