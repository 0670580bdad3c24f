// Loopback WebSocket servers with fault injection and a source driver, for the connector's tests.

import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer, type ServerOptions } from 'ws';
import pino from 'pino';
import { MetricSet } from '../../core/metrics.js';
import { mapScope } from '../../core/state.js';
import type { BadRecord, SluiceRecord, SourceBatch, SourceContext } from '../../core/types.js';
import { parsedOptions, waitFor as pollUntil } from '../../testing/harness.js';
import { sourceOptions, type WebSocketSourceOptions } from './options.js';
import { WebSocketSource } from './source.js';

/** Wait until `cond` holds, checking every 5 ms; fails with `what` after `ms`. */
export const waitFor = (cond: () => boolean, what: string, ms = 5000) => pollUntil(cond, what, ms, 5);

export interface ServerConn {
  ws: WebSocket;
  req: IncomingMessage;
  received: string[];
}

export interface TestServer {
  url: string;
  port: number;
  wss: WebSocketServer;
  conns: ServerConn[];
  /** Every message from every client, in arrival order. */
  received: string[];
  /** Called for each new connection. */
  onConnection?: (c: ServerConn) => void;
  /** Called for each message a client sends. */
  onMessage?: (c: ServerConn, text: string) => void;
  live(): ServerConn[];
  close(): Promise<void>;
}

export async function startServer(opts: ServerOptions = {}): Promise<TestServer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...opts });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const port = (wss.address() as AddressInfo).port;
  const s: TestServer = {
    url: `ws://127.0.0.1:${port}/feed`,
    port,
    wss,
    conns: [],
    received: [],
    live: () => s.conns.filter((c) => c.ws.readyState === WebSocket.OPEN),
    async close() {
      for (const c of s.conns) c.ws.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
  wss.on('connection', (ws, req) => {
    const c: ServerConn = { ws, req, received: [] };
    s.conns.push(c);
    ws.on('error', () => undefined);
    ws.on('message', (d, isBinary) => {
      const t = isBinary ? `<binary>${(d as Buffer).toString('utf8')}` : (d as Buffer).toString('utf8');
      c.received.push(t);
      s.received.push(t);
      s.onMessage?.(c, t);
    });
    s.onConnection?.(c);
  });
  return s;
}

export const options = (input: Record<string, unknown>): WebSocketSourceOptions => parsedOptions(sourceOptions(), input);

export interface Driven {
  source: WebSocketSource;
  records: SluiceRecord[];
  batches: SourceBatch[];
  bad: BadRecord[];
  metrics: MetricSet;
  steps: string[];
  /** Resolves or rejects with the source's run(). */
  done: Promise<void>;
  /** Makes emit return this promise until it is replaced (a slow pipeline). */
  block?: Promise<void>;
  stop(): Promise<void>;
  metric(name: string): number;
}

/** Run a source against an in-test pipeline that takes everything (unless `block` is set). */
export function drive(input: Record<string, unknown>, format = 'json'): Driven {
  const source = new WebSocketSource(options(input), { format }, { step: (m) => d.steps.push(m) });
  const ac = new AbortController();
  const metrics = new MetricSet();
  const d: Driven = {
    source,
    records: [],
    batches: [],
    bad: [],
    metrics,
    steps: [],
    done: Promise.resolve(),
    async stop() {
      ac.abort();
      await d.done.catch(() => undefined);
      await source.close();
    },
    metric: (name) => {
      source.publish();
      return metrics.snapshot()[name] ?? 0;
    },
  };
  const ctx: SourceContext = {
    pipeline: 'test',
    role: 'source',
    log: pino({ level: 'silent' }),
    state: mapScope(new Map()),
    metrics,
    signal: ac.signal,
    dataDir: '/tmp/sluice-ws-test',
    emit(b) {
      d.batches.push(b);
      for (const r of b.records) d.records.push(r);
      return d.block;
    },
    bad(rs) {
      d.bad.push(...rs);
    },
    decoder() {
      throw new Error('not used');
    },
  };
  d.done = source.run(ctx);
  d.done.catch(() => undefined);
  return d;
}

export const texts = (rs: SluiceRecord[]) => rs.map((r) => (typeof r.value === 'string' ? r.value : JSON.stringify(r.value)));
