// The fault-injection harness: the real CLI as a child process, one producer per source, one collector per sink, the
// faults (kill -9, a stopped sink server, a dropped source connection, a slow consumer) and the invariant checks that
// follow every case (no loss, bounded duplicates, order per key, bounded memory, metrics that add up).
//
// Randomness (where the kills land, when the outage starts) comes from one seed: FAULT_SEED=<n> replays a run, and
// every assertion message names the seed. FAULT_RECORDS=<n> changes the record count (default 100k).

import { expect } from 'vitest';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { createClient } from 'redis';
import { Connection } from 'rabbitmq-client';
import mqtt from 'mqtt';
import { WebSocketServer, type WebSocket } from 'ws';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { ensureService, serviceStartCommand, stopService } from '../../src/testing/services.js';
import { startTestBroker, type TestBroker } from '../../src/connectors/kafka/test-broker.js';

export const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'bin', 'sluice.js');
export const CLI_BUILT = existsSync(join(ROOT, 'dist', 'cli', 'main.js'));

export const N = Number(process.env.FAULT_RECORDS ?? 100_000);
export const SEED = Number(process.env.FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** Records are spread over this many keys; order is checked per key (Kafka partitions by it). */
export const KEYS = 16;
const PAD = 'x'.repeat(120);

/** mulberry32: small, seedable, good enough to place faults. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Row {
  id: number;
  k: number;
  seq: number;
}
export const payload = (i: number) => `{"id":${i},"k":${i % KEYS},"seq":${Math.floor(i / KEYS)},"pad":"${PAD}"}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll a condition (the condition is the assertion, the poll interval is not) until it holds or the bound passes. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs: number, every = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (seed ${SEED})`);
    await sleep(every);
  }
}

type Cleanup = () => Promise<void> | void;
const cleanups: Cleanup[] = [];
/** Each case's cleanups (registered anywhere below it, even from callbacks) are its own, run when it ends. */
const caseCleanups = new AsyncLocalStorage<Cleanup[]>();
/** Register cleanup (processes by PID, servers, temp dirs): run when the case ends, or by `runCleanups`. */
export function onCleanup(fn: Cleanup): void {
  (caseCleanups.getStore() ?? cleanups).push(fn);
}
export async function runCleanups(): Promise<void> {
  await cleanUp(cleanups);
}
async function cleanUp(list: Cleanup[]): Promise<void> {
  for (const fn of list.splice(0).reverse()) {
    try {
      await fn();
    } catch {
      // keep cleaning
    }
  }
}

export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sluice-fault-'));
  onCleanup(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

export const uniq = (p: string) => `fault_${p}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;

// ---- the Sluice process ------------------------------------------------------------------------------------------

export interface FinalStats {
  status: string;
  records_in: number;
  records_out: number;
  dlq: number;
  dropped: number;
  unrouted: number;
  filtered: number;
  errors: number;
  sink_retries: number;
  source: Record<string, number>;
}

/** One `sluice run` child: its exit, its log, its peak RSS (sampled from /proc), its final counters. */
export class Sluice {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  log = '';
  peakRssKb = 0;
  /** The newest `buffer_appended` of a progress line (durable buffers): records this run appended to its log. */
  appended = 0;
  private readonly statsFile: string;
  private readonly sampler: NodeJS.Timeout;

  constructor(file: string, dataDir: string) {
    this.statsFile = join(dataDir, `stats-${Date.now()}-${randomBytes(2).toString('hex')}.json`);
    this.child = spawn(
      process.execPath,
      [CLI, 'run', file, '--data-dir', dataDir, '--log-format', 'json', '--no-status', '--stats-interval', '50ms', '--stats-file', this.statsFile],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const child = this.child;
    this.exited = new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
    let buf = '';
    const onData = (d: Buffer) => {
      const s = d.toString();
      // Keep the tail only: a long run logs a progress line every 50 ms.
      this.log = (this.log + s).slice(-200_000);
      buf += s;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.includes('"progress"')) continue;
        try {
          const j = JSON.parse(line) as { msg?: string; source?: { buffer_appended?: number } };
          if (typeof j.source?.buffer_appended === 'number') this.appended = Math.max(this.appended, j.source.buffer_appended);
        } catch {
          // not a log line
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    this.sampler = setInterval(() => this.sample(), 25);
    void this.exited.then(() => clearInterval(this.sampler));
    onCleanup(async () => {
      clearInterval(this.sampler);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await this.exited;
    });
  }

  private sample() {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'));
      if (m) this.peakRssKb = Math.max(this.peakRssKb, Number(m[1]));
    } catch {
      // exited
    }
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM: drain, commit, exit 0. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.child.kill('SIGTERM');
    return this.exited;
  }

  /** The final counters of the (single) pipeline, from --stats-file. */
  stats(): FinalStats {
    const j = JSON.parse(readFileSync(this.statsFile, 'utf8')) as { pipelines: Record<string, FinalStats> };
    return Object.values(j.pipelines)[0]!;
  }

  /** Waits until the pipeline logged that it runs (sinks open, source started). */
  async started(timeoutMs = 20_000): Promise<void> {
    await until(() => this.log.includes('pipeline started') || !this.running, 'the pipeline to start', timeoutMs);
    if (!this.log.includes('pipeline started')) throw new Error(`sluice exited before starting:\n${this.log.slice(-3000)}`);
  }
}

/** Kill the TCP connections the Sluice process holds to a server port (both ends see a reset): a dropped link. */
export function dropConnections(pid: number, port: number): number {
  const out = execFileSync('ss', ['-tnpH', 'state', 'established', 'dport', `= :${port}`], { encoding: 'utf8' });
  let n = 0;
  for (const line of out.split('\n')) {
    if (!line.includes(`pid=${pid},`)) continue;
    const local = line.trim().split(/\s+/)[2]!; // Recv-Q Send-Q Local Peer ...
    const sport = local.slice(local.lastIndexOf(':') + 1);
    execFileSync('ss', ['-K', 'dst', '127.0.0.1', 'dport', `= :${port}`, 'sport', `= :${sport}`], { stdio: 'ignore' });
    n++;
  }
  return n;
}

// ---- sinks (collectors) ------------------------------------------------------------------------------------------

export interface SinkFixture {
  /** The `sink:` block (YAML flow mapping). */
  yaml: string;
  /** Rows the sink's system holds now, in arrival order. */
  rows(): Promise<Row[]>;
  /** How many rows it holds (cheap). */
  count(): Promise<number>;
  /** How many distinct ids it holds. */
  unique(): Promise<number>;
  close(): Promise<void>;
  /** Whether the sink writes each accepted record exactly once by itself (none here: all are at-least-once). */
  exactlyOnce: boolean;
}

/** JSON lines with fsync on: a batch is acknowledged only once it is on disk. */
export function fileSink(dir: string): SinkFixture {
  const path = join(dir, 'out.jsonl');
  let cache: { size: number; rows: Row[]; rest: string } = { size: 0, rows: [], rest: '' };
  const ids = new Set<number>();
  const read = (): Row[] => {
    if (!existsSync(path)) return [];
    const buf = readFileSync(path);
    if (buf.length === cache.size) return cache.rows;
    const text = cache.rest + buf.subarray(cache.size).toString('utf8');
    const lines = text.split('\n');
    const rest = lines.pop()!;
    for (const l of lines) {
      if (!l) continue;
      const r = JSON.parse(l) as Row;
      cache.rows.push({ id: r.id, k: r.k, seq: r.seq });
      ids.add(r.id);
    }
    cache = { size: buf.length, rows: cache.rows, rest };
    return cache.rows;
  };
  return {
    yaml: `{ connector: file, config: { path: ${JSON.stringify(path)}, fsync: true }, format: json }`,
    rows: async () => read(),
    count: async () => read().length,
    unique: async () => (read(), ids.size),
    close: async () => undefined,
    exactlyOnce: false,
  };
}

export const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
export const PG_STOP = () => `pg_ctlcluster --skip-systemctl-redirect ${serviceStartCommand('postgres').split(' ')[2]} main stop -m immediate`;

/** A PostgreSQL table; `pos` (bigserial) keeps the arrival order. */
export async function postgresSink(): Promise<SinkFixture> {
  await ensureService('postgres');
  const table = uniq('pg');
  // The test's own connections; idle ones die with the server in the outage case and are replaced on the next query.
  const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
  pool.on('error', () => undefined);
  const q = async <T>(sql: string): Promise<T[]> => (await pool.query(sql)).rows as T[];
  await q(`CREATE TABLE ${table} (pos bigserial PRIMARY KEY, id integer NOT NULL, k integer NOT NULL, seq integer NOT NULL, pad text)`);
  return {
    yaml: `{ connector: postgres, config: { url: ${JSON.stringify(PG_URL)}, table: ${table}, connect_timeout: 2s }, format: json }`,
    rows: () => q<Row>(`SELECT id, k, seq FROM ${table} ORDER BY pos`),
    count: async () => Number((await q<{ n: string }>(`SELECT count(*) AS n FROM ${table}`))[0]!.n),
    unique: async () => Number((await q<{ n: string }>(`SELECT count(DISTINCT id) AS n FROM ${table}`))[0]!.n),
    close: async () => {
      await ensureService('postgres');
      await q(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
      await pool.end();
    },
    exactlyOnce: false,
  };
}

/** An HTTP endpoint behind the webhook sink (NDJSON batches) that answers each request only after `usPerRecord` per line. */
export async function slowHttpSink(usPerRecord: number): Promise<SinkFixture> {
  const rows: Row[] = [];
  const ids = new Set<number>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const lines = Buffer.concat(chunks).toString('utf8').split('\n').filter(Boolean);
      setTimeout(() => {
        // Recorded when answered: a request the sink gave up on before the answer would be retried (a duplicate).
        for (const l of lines) {
          const r = JSON.parse(l) as Row;
          rows.push({ id: r.id, k: r.k, seq: r.seq });
          ids.add(r.id);
        }
        res.writeHead(200).end('ok');
      }, Math.ceil((lines.length * usPerRecord) / 1000));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const close = () => new Promise<void>((r) => server.close(() => r()));
  onCleanup(close);
  return {
    // One request at a time per write (ndjson): the order the server sees is the order written.
    yaml: `{ connector: webhook, config: { url: "http://127.0.0.1:${port}/", batch_mode: ndjson, timeout: 30s }, format: json }`,
    rows: async () => rows,
    count: async () => rows.length,
    unique: async () => ids.size,
    close: async () => {
      server.closeAllConnections();
    },
    exactlyOnce: false,
  };
}

// ---- sources (producers) -----------------------------------------------------------------------------------------

export interface SourceFixture {
  name: string;
  /** The `source:` block (YAML flow mapping). */
  yaml: string;
  /** `file` in read mode finishes by itself: the CLI exits once everything is written. */
  finite: boolean;
  /** Records a source can have delivered to the pipeline but not acknowledged (prefetch, in-flight window). */
  inflight: number;
  /** Write the N records; `delivered` lets a producer without broker-side flow control (MQTT) pace itself. */
  produce(delivered: () => Promise<number>): Promise<void>;
  /** Port of the server the source reads from (for dropping its connection), if any. */
  port?: number;
  /** Drop the source's connection; undefined when the source has none. */
  drop?(s: Sluice): Promise<void>;
  /**
   * Ids that may be missing without breaking the source's guarantee (a push source's loss window on kill -9).
   * Called with the runs in order; default: none.
   */
  lossWindow?(): Set<number>;
  /**
   * A known limitation, documented in docs/guarantees.md: after a kill -9 or a dropped connection this source
   * redelivers the unacknowledged records behind newer ones, so per-key order does not hold across the fault (loss and
   * duplicate bounds still do).
   */
  reordersOnRedelivery?: string;
  /** Called after each kill -9, before the restart (push sources note what the dead run had appended). */
  afterKill?(s: Sluice): void;
  close(): Promise<void>;
}

const chunked = async (n: number, size: number, fn: (from: number, to: number) => Promise<void>) => {
  for (let from = 0; from < n; from += size) await fn(from, Math.min(n, from + size));
};

export function fileSource(dir: string): SourceFixture {
  const path = join(dir, 'in.jsonl');
  return {
    name: 'file',
    yaml: `{ connector: file, config: { path: ${JSON.stringify(path)} }, format: json }`,
    finite: true,
    inflight: 0,
    async produce() {
      const lines: string[] = [];
      for (let i = 0; i < N; i++) lines.push(payload(i));
      writeFileSync(path, lines.join('\n') + '\n');
    },
    close: async () => undefined,
  };
}

let broker: TestBroker | undefined;
export async function kafkaSource(): Promise<SourceFixture> {
  broker ??= await startTestBroker();
  const b = broker;
  const topic = uniq('kafka');
  await b.createTopic(topic, 4);
  const port = Number(b.brokers.split(':').pop());
  return {
    name: 'kafka',
    yaml: `{ connector: kafka, config: { brokers: ${JSON.stringify(b.brokers)}, topic: ${topic}, group: ${topic}, offset: group, offset_reset: earliest, max_wait: 100ms, session_timeout: 6s, heartbeat_interval: 1s, rebalance_timeout: 10s }, format: json }`,
    finite: false,
    inflight: 4 * 2000,
    async produce() {
      await chunked(N, 5000, async (from, to) => {
        const msgs = [];
        for (let i = from; i < to; i++) msgs.push({ key: String(i % KEYS), value: payload(i) });
        await b.produce(topic, msgs);
      });
    },
    port,
    async drop(s) {
      dropConnections(s.pid, port);
    },
    close: async () => undefined,
  };
}
export async function stopKafka(): Promise<void> {
  await broker?.stop();
  broker = undefined;
}

export const NATS_URL = 'nats://127.0.0.1:4222';
export async function jetstreamSource(): Promise<SourceFixture> {
  await ensureService('nats');
  const stream = uniq('js');
  const subject = `${stream}.in`;
  const nc: NatsConnection = await natsConnect({ servers: NATS_URL, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [subject] });
  const js = jetstream(nc);
  return {
    name: 'nats_jetstream',
    yaml: `{ connector: nats_jetstream, config: { url: ${NATS_URL}, stream: ${stream}, durable: ${stream}_c, ack_wait: 5s, reconnect_wait: 200ms }, format: json }`,
    finite: false,
    inflight: 1024,
    reordersOnRedelivery:
      'JetStream redelivers the messages of a dead connection or process only once ack_wait expires, after newer ones the source already received',
    async produce() {
      // A publish whose PubAck times out (a loaded machine) is sent again; the message id makes the stream keep one copy.
      const publish = async (i: number): Promise<void> => {
        for (let attempt = 1; ; attempt++) {
          try {
            await js.publish(subject, payload(i), { msgID: String(i), timeout: 10_000 });
            return;
          } catch (e) {
            if (attempt >= 5) throw e;
          }
        }
      };
      await chunked(N, 500, async (from, to) => {
        const ps = [];
        for (let i = from; i < to; i++) ps.push(publish(i));
        await Promise.all(ps);
      });
    },
    port: 4222,
    async drop(s) {
      dropConnections(s.pid, 4222);
    },
    async close() {
      await jsm.streams.delete(stream).catch(() => undefined);
      await nc.close();
    },
  };
}

export async function rabbitSource(): Promise<SourceFixture> {
  await ensureService('rabbitmq');
  const queue = uniq('rmq');
  const conn = new Connection({ url: 'amqp://guest:guest@127.0.0.1:5672', retryLow: 200, retryHigh: 1000 });
  conn.on('error', () => undefined);
  await conn.queueDeclare({ queue, durable: true });
  return {
    name: 'rabbitmq',
    yaml: `{ connector: rabbitmq, config: { url: "amqp://guest:guest@127.0.0.1:5672", queue: ${queue}, prefetch: 2000, reconnect_max_backoff: 500ms }, format: json }`,
    finite: false,
    inflight: 2000,
    async produce() {
      const pub = conn.createPublisher({ confirm: true });
      try {
        await chunked(N, 5000, async (from, to) => {
          const ps = [];
          for (let i = from; i < to; i++) ps.push(pub.send({ routingKey: queue, durable: true }, payload(i)));
          await Promise.all(ps);
        });
      } finally {
        await pub.close();
      }
    },
    port: 5672,
    async drop(s) {
      dropConnections(s.pid, 5672);
    },
    async close() {
      await conn.queueDelete({ queue }).catch(() => undefined);
      await conn.close();
    },
  };
}

export async function redisSource(): Promise<SourceFixture> {
  await ensureService('redis');
  const stream = uniq('redis');
  const c = createClient({ url: 'redis://127.0.0.1:6379' });
  c.on('error', () => undefined);
  await c.connect();
  return {
    name: 'redis',
    yaml: `{ connector: redis, config: { url: "redis://127.0.0.1:6379", mode: stream, streams: [${stream}], group: g, consumer: c1, start_id: "0", count: 500, block: 200ms, reconnect_max_delay: 500ms }, format: json }`,
    finite: false,
    inflight: 500,
    async produce() {
      await chunked(N, 5000, async (from, to) => {
        const m = c.multi();
        for (let i = from; i < to; i++) m.xAdd(stream, '*', { payload: payload(i) });
        await m.execAsPipeline();
      });
    },
    port: 6379,
    async drop(s) {
      dropConnections(s.pid, 6379);
    },
    async close() {
      await c.del(stream).catch(() => undefined);
      await c.quit().catch(() => undefined);
    },
  };
}

/**
 * MQTT QoS 1 with a persistent session. MQTT has no flow control from subscriber to publisher: mosquitto queues at most
 * `max_queued_messages` (1000 by default) per session beyond the in-flight window, and drops the rest. So the producer
 * keeps at most WINDOW messages ahead of what reached the sink; beyond the broker's queue, no subscriber can help.
 */
export async function mqttSource(): Promise<SourceFixture> {
  await ensureService('mosquitto');
  const topic = uniq('mqtt');
  const clientId = topic;
  // Outstanding at the broker is this plus what reached the sink but is not acknowledged yet (and, after a kill, its
  // redelivery): kept well under the 1000 queued messages.
  const WINDOW = 300;
  // Create the persistent session and its subscription first, so the broker queues for it from the first publish.
  const pre = await mqtt.connectAsync('mqtt://127.0.0.1:1883', { clientId, clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 0 });
  await pre.subscribeAsync(topic, { qos: 1 });
  await pre.endAsync();
  return {
    name: 'mqtt',
    yaml: `{ connector: mqtt, config: { url: "mqtt://127.0.0.1:1883", topic: ${topic}, qos: 1, client_id: ${clientId}, clean_session: false, reconnect_interval: 200ms }, format: json }`,
    finite: false,
    inflight: 1000,
    async produce(delivered) {
      // The subscription must exist before publishing: the first run creates the session.
      const pub = await mqtt.connectAsync('mqtt://127.0.0.1:1883', { clientId: `${topic}-pub`, reconnectPeriod: 200 });
      pub.on('error', () => undefined);
      try {
        let done = 0;
        // The sink's server may be down (the outage case): no progress then.
        const progress = async (last: number) => delivered().catch(() => last);
        let seen = await progress(0);
        while (done < N) {
          if (done - seen >= WINDOW) {
            await sleep(10);
            seen = await progress(seen);
            continue;
          }
          const to = Math.min(N, done + Math.min(200, WINDOW - (done - seen)));
          const ps = [];
          for (let i = done; i < to; i++) ps.push(pub.publishAsync(topic, payload(i), { qos: 1 }));
          await Promise.all(ps);
          done = to;
        }
      } finally {
        await pub.endAsync();
      }
    },
    port: 1883,
    async drop(s) {
      dropConnections(s.pid, 1883);
    },
    async close() {
      // End the persistent session.
      const c = await mqtt.connectAsync('mqtt://127.0.0.1:1883', { clientId, clean: true, reconnectPeriod: 0 });
      await c.endAsync();
    },
  };
}

/**
 * A WebSocket server feeding a `buffer: durable` source. It never re-sends: each connection continues with the next id
 * not yet sent. On kill -9 what the dead run had read from its socket but not appended to its log is lost (the window
 * the durable buffer documents); the run's own progress lines say how many records it appended, so the ids
 * [first id of that connection, + appended) must all arrive, and only ids after them may be missing.
 */
export async function wsSource(): Promise<SourceFixture> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const port = (wss.address() as { port: number }).port;
  let next = 0;
  let confirmed = 0;
  let current: { ws: WebSocket; first: number } | undefined;
  const connections: Array<{ first: number; sent: number }> = [];
  const window = new Set<number>();
  let producing = false;
  let wake: (() => void) | undefined;
  wss.on('connection', (ws) => {
    current = { ws, first: next };
    confirmed = next;
    connections.push({ first: next, sent: next });
    ws.on('close', () => {
      if (current?.ws === ws) current = undefined;
    });
    ws.on('error', () => undefined);
    wake?.();
  });
  const close = () =>
    new Promise<void>((r) => {
      for (const c of wss.clients) c.terminate();
      wss.close(() => r());
    });
  onCleanup(close);
  return {
    name: 'websocket',
    yaml: `{ connector: websocket, config: { url: "ws://127.0.0.1:${port}/", buffer: durable, buffer_fsync: never, reconnect: { initial: 20ms, max: 200ms } }, format: json }`,
    finite: false,
    inflight: 0,
    async produce() {
      producing = true;
      while (next < N) {
        const c = current;
        if (!c || c.ws.readyState !== c.ws.OPEN) {
          await new Promise<void>((r) => {
            wake = r;
            setTimeout(r, 50);
          });
          continue;
        }
        // Keep the socket's own buffer small so what was "sent" is close to what the kernel took.
        if (c.ws.bufferedAmount > 256 * 1024) {
          await sleep(2);
          continue;
        }
        const to = Math.min(N, next + 500);
        for (let i = next; i < to - 1; i++) c.ws.send(payload(i));
        // The send callback fires once ws handed the frame to the kernel: what a cut connection can still deliver.
        c.ws.send(payload(to - 1), (err) => {
          if (!err && current === c) confirmed = Math.max(confirmed, to);
        });
        next = to;
        connections[connections.length - 1]!.sent = next;
        await new Promise((r) => setImmediate(r));
      }
      producing = false;
    },
    port,
    async drop() {
      // Server side: the connection is cut at once (no close handshake). Frames still in ws's own buffer never reach
      // the kernel, so no receiver could get them: that is the window of a cut WebSocket, and the server re-sends nothing.
      for (let i = confirmed; i < next; i++) window.add(i);
      current?.ws.terminate();
    },
    afterKill(s) {
      const c = connections[connections.length - 1];
      if (!c) return;
      // Appended by the dead run: guaranteed. Sent after that on this connection: the loss window.
      for (let i = c.first + s.appended; i < c.sent; i++) window.add(i);
      current?.ws.terminate();
    },
    lossWindow: () => window,
    async close() {
      void producing;
      await close();
    },
  };
}

// ---- the checks --------------------------------------------------------------------------------------------------

export interface Verdict {
  received: number;
  unique: number;
  missing: number[];
  /** Missing ids that were inside the source's documented loss window. */
  inWindow: number;
  duplicates: number;
  /** First occurrences of a key's records that came out of order (a later seq before an earlier one). */
  orderViolations: string[];
}

/**
 * Every id of 0..N-1 arrived (except the documented window), duplicates counted, and per key the first occurrence
 * of each record comes in seq order. Replays after a fault repeat what came before (duplicates), so order is
 * checked on first occurrences: a record may reappear, but no record may overtake an earlier one of its key.
 */
export function verify(rows: Row[], window: Set<number> = new Set()): Verdict {
  const seen = new Uint8Array(N);
  let duplicates = 0;
  let unique = 0;
  const lastSeq = new Array<number>(KEYS).fill(-1);
  const orderViolations: string[] = [];
  for (const r of rows) {
    if (r.id < 0 || r.id >= N) throw new Error(`unexpected id ${r.id}`);
    if (seen[r.id]) {
      duplicates++;
      continue;
    }
    seen[r.id] = 1;
    unique++;
    if (r.seq < lastSeq[r.k]!) {
      if (orderViolations.length < 5) orderViolations.push(`key ${r.k}: seq ${r.seq} after ${lastSeq[r.k]}`);
    } else lastSeq[r.k] = r.seq;
  }
  const missing: number[] = [];
  let inWindow = 0;
  for (let i = 0; i < N; i++) {
    if (seen[i]) continue;
    if (window.has(i)) inWindow++;
    else missing.push(i);
  }
  // Per-key order is checked against the seq of each key's records: with ids missing in the window, later ones
  // still come after earlier ones.
  return { received: rows.length, unique, missing, inWindow, duplicates, orderViolations };
}

/** in = out + dlq + dropped + unrouted + filtered, from the final counters of a run that ended normally. */
export function accounted(s: FinalStats): boolean {
  return s.records_in === s.records_out + s.dlq + s.dropped + s.unrouted + s.filtered;
}

// ---- pipelines ---------------------------------------------------------------------------------------------------

export function pipelineFile(dir: string, name: string, source: SourceFixture, sink: SinkFixture): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    [
      `name: ${name}`,
      `source: ${source.yaml}`,
      `sink: ${sink.yaml}`,
      'batch: { max_records: 1000, linger: 5ms }',
      'buffer: { max_records: 4000, max_bytes: 16MB }',
      // A sink outage of several seconds must be waited out, not given up on.
      'retry: { max_attempts: 1000, initial_backoff: 50ms, max_backoff: 500ms }',
      '',
    ].join('\n'),
  );
  return file;
}

export { ensureService, stopService, sleep };

// ---- one case ----------------------------------------------------------------------------------------------------

export const SOURCES: Record<string, (dir: string) => Promise<SourceFixture>> = {
  file: async (dir) => fileSource(dir),
  kafka: () => kafkaSource(),
  nats_jetstream: () => jetstreamSource(),
  rabbitmq: () => rabbitSource(),
  redis: () => redisSource(),
  mqtt: () => mqttSource(),
  websocket: () => wsSource(),
};

export interface FaultContext {
  /** The Sluice process running now. */
  run(): Sluice;
  /** kill -9 the running process and start a new one on the same data dir. */
  killAndRestart(): Promise<Sluice>;
  source: SourceFixture;
  sink: SinkFixture;
  rand: () => number;
  /** Resolves once the sink holds at least this many distinct ids (or the run ended by itself). */
  reached(ids: number, timeoutMs?: number): Promise<boolean>;
}

export interface CaseReport {
  source: SourceFixture;
  verdict: Verdict;
  /** Final counters of the last run (it ended normally). */
  stats: FinalStats;
  runs: number;
  peakRssMb: number;
  /** Rows the sink holds at the end (with duplicates). */
  rows: number;
  seconds: number;
}

export async function runCase(o: Parameters<typeof runCaseInner>[0]): Promise<CaseReport> {
  const list: Cleanup[] = [];
  try {
    return await caseCleanups.run(list, () => runCaseInner(o));
  } finally {
    await cleanUp(list);
  }
}

async function runCaseInner(o: {
  source: string;
  sink: (dir: string) => Promise<SinkFixture>;
  fault: (c: FaultContext) => Promise<void>;
  /** Bound for waiting until every id arrived after the fault. */
  timeoutMs?: number;
}): Promise<CaseReport> {
  const t0 = Date.now();
  const dir = tempDir();
  const source = await SOURCES[o.source]!(dir);
  onCleanup(() => source.close());
  const sink = await o.sink(dir);
  onCleanup(() => sink.close());
  const file = pipelineFile(dir, `fault-${o.source}`, source, sink);
  const data = join(dir, 'data');
  const rand = rng(SEED ^ [...o.source].reduce((h, ch) => Math.imul(h, 31) + ch.charCodeAt(0), 7));
  if (source.finite) await source.produce(() => sink.unique());
  const runs = [new Sluice(file, data)];
  const current = () => runs[runs.length - 1]!;
  await current().started();
  let produceError: unknown;
  const producing = source.finite ? Promise.resolve() : source.produce(() => sink.unique()).catch((e: unknown) => void (produceError = e));
  const ctx: FaultContext = {
    run: current,
    async killAndRestart() {
      await current().kill9();
      source.afterKill?.(current());
      runs.push(new Sluice(file, data));
      await current().started();
      return current();
    },
    source,
    sink,
    rand,
    async reached(ids, timeoutMs = 30_000) {
      // A kill -9 can lose a push source's loss window for good, and once the producer is done nothing replaces it:
      // the sink can then hold at most N minus the window, which counts as reaching any kill point past that. The
      // invariants checked afterwards still require every id outside the window.
      const reachable = () => Math.min(ids, N - (source.lossWindow?.().size ?? 0));
      try {
        await until(async () => !current().running || (await sink.unique()) >= reachable(), `${ids} ids in the sink`, timeoutMs);
      } catch (e) {
        const log = current().log.split('\n').filter((l) => !l.includes('"progress"'));
        throw new Error(`${(e as Error).message}: ${await sink.unique()} so far; the run's log (without progress lines) ends with:\n${log.slice(-30).join('\n')}`);
      }
      return current().running;
    },
  };
  await o.fault(ctx);
  await producing;
  if (produceError) throw produceError;
  const window = source.lossWindow?.() ?? new Set<number>();
  const timeoutMs = o.timeoutMs ?? 30_000;
  if (source.finite) {
    await until(() => !current().running, 'the finite pipeline to finish', timeoutMs);
  } else {
    try {
      await until(async () => (await sink.unique()) >= N - window.size && verify(await sink.rows(), window).missing.length === 0, 'every id in the sink', timeoutMs, 100);
    } catch (e) {
      const log = current().log.split('\n').filter((l) => !l.includes('"progress"'));
      throw new Error(`${(e as Error).message}: ${await sink.unique()} of ${N} arrived; the last run's log (without progress lines) ends with:\n${log.slice(-40).join('\n')}`);
    }
  }
  const exit = await current().stop();
  if (exit.code !== 0) throw new Error(`the last run exited with ${exit.code ?? exit.signal} (seed ${SEED}):\n${current().log.slice(-3000)}`);
  const rows = await sink.rows();
  return {
    source,
    verdict: verify(rows, window),
    stats: current().stats(),
    runs: runs.length,
    peakRssMb: Math.round(Math.max(...runs.map((r) => r.peakRssKb)) / 1024),
    rows: rows.length,
    seconds: (Date.now() - t0) / 1000,
  };
}

/** Print what a case measured (the suite's numbers go into the report). */
export function describeReport(name: string, r: CaseReport): string {
  const v = r.verdict;
  return `${name}: ${N} records, ${r.runs} run(s), ${r.rows} rows, ${v.duplicates} duplicates, ${v.inWindow} in the loss window, peak RSS ${r.peakRssMb} MB, ${r.seconds.toFixed(1)} s (seed ${SEED})`;
}

/** Peak RSS any run may reach: a pipeline that held the whole stream in memory (100k records, ~200 B each, as
 * objects) would go far beyond it; the measured peak is ~110-150 MB. */
export const RSS_BOUND_MB = Number(process.env.FAULT_RSS_MB ?? 260);

/**
 * The invariants every case ends with. `maxDuplicates`: the documented bound for the case (0 for a single run
 * without a fault on the sink path). `singleRun`: the final counters cover the whole stream, so records_out must
 * equal what the sink holds.
 */
export function expectInvariants(
  name: string,
  r: CaseReport,
  o: { maxDuplicates: number; singleRun: boolean; sinkRewrites?: number; orderExempt?: string },
): void {
  const v = r.verdict;
  const at = `${name} (seed ${SEED}; replay with FAULT_SEED=${SEED})`;
  console.log(describeReport(name, r));
  expect(v.missing.slice(0, 10), `${at}: ${v.missing.length} ids lost`).toEqual([]);
  if (o.orderExempt) {
    // Not skipped silently: the reason is printed with the case and listed in docs/guarantees.md.
    if (v.orderViolations.length) console.warn(`${at}: known limitation, order per key not checked: ${o.orderExempt} (${v.orderViolations.join('; ')})`);
  } else expect(v.orderViolations, `${at}: order per key`).toEqual([]);
  expect(v.duplicates, `${at}: duplicates within the bound ${o.maxDuplicates}`).toBeLessThanOrEqual(o.maxDuplicates);
  expect(r.peakRssMb, `${at}: peak RSS`).toBeLessThanOrEqual(RSS_BOUND_MB);
  const s = r.stats;
  expect(['stopped', 'completed'], at).toContain(s.status);
  expect(s.records_in, `${at}: in = out + dlq + dropped + unrouted + filtered (${JSON.stringify(s)})`).toBe(
    s.records_out + s.dlq + s.dropped + s.unrouted + s.filtered,
  );
  expect(s.dlq + s.dropped + s.errors, `${at}: no record was bad`).toBe(0);
  if (o.singleRun) {
    // Each record counted at least once; the sink may hold more rows than were counted only where a write was
    // retried after it had in fact succeeded (`sinkRewrites`: a COMMIT whose answer was lost).
    expect(s.records_out, `${at}: records_out counts every record`).toBeGreaterThanOrEqual(v.unique);
    expect(r.rows - s.records_out, `${at}: rows beyond records_out (rewritten batches)`).toBeGreaterThanOrEqual(0);
    expect(r.rows - s.records_out, `${at}: rows beyond records_out (rewritten batches)`).toBeLessThanOrEqual(o.sinkRewrites ?? 0);
  } else expect(s.records_out, `${at}: the last run wrote at most what the sink holds`).toBeLessThanOrEqual(r.rows);
}
