// Helpers for the RabbitMQ tests: unique names, an admin connection, publishing, counting, cleanup, pipelines.
// Recording sinks, endpoints and waits come from src/testing/harness.ts.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Connection } from 'rabbitmq-client';
import type { EndpointDef, PipelineDef } from '../../core/model.js';
import type { RuntimeEnv } from '../../core/runtime.js';
import type { StateStore } from '../../core/state.js';
import type { BadDataPolicy, SluiceRecord } from '../../core/types.js';
import { endpointDef, parsedOptions, pipelineDef, recordingEnv, waitFor, type RecordingSink, type TestPipelineOptions } from '../../testing/harness.js';
import { ensureService } from '../../testing/services.js';
import { sinkOptions, sourceOptions } from './index.js';

export const URL_ = 'amqp://guest:guest@127.0.0.1:5672';

export const uniqueName = (prefix: string) => `sluice-test-${prefix}-${randomBytes(4).toString('hex')}`;

/** A connection for arranging and inspecting the broker, with a record of what to delete afterwards. */
export class Admin {
  readonly conn = new Connection({ url: URL_, retryLow: 200, retryHigh: 1000, connectionName: 'sluice-test-admin' });
  private queues = new Set<string>();
  private exchanges = new Set<string>();

  constructor() {
    this.conn.on('error', () => undefined);
  }

  trackQueue(q: string) {
    this.queues.add(q);
    return q;
  }
  trackExchange(e: string) {
    this.exchanges.add(e);
    return e;
  }

  async queue(name: string, args?: Record<string, unknown>): Promise<string> {
    await this.conn.queueDeclare({ queue: name, durable: true, arguments: args as never });
    return this.trackQueue(name);
  }

  /** Publishes persistent messages to a queue (default exchange), with confirms. */
  async publish(queue: string, bodies: Array<string | Buffer>, props: Record<string, unknown> = {}): Promise<void> {
    const pub = this.conn.createPublisher({ confirm: true });
    try {
      const all: Promise<void>[] = [];
      for (const b of bodies) all.push(pub.send({ routingKey: queue, durable: true, ...props }, typeof b === 'string' ? Buffer.from(b) : b));
      await Promise.all(all);
    } finally {
      await pub.close();
    }
  }

  /** Ready (not unacknowledged) messages in a queue. */
  async ready(queue: string): Promise<number> {
    const r = await this.conn.queueDeclare({ queue, passive: true });
    return r.messageCount;
  }

  /** Takes every ready message of a queue (acknowledging them). */
  async drain(queue: string): Promise<Array<{ body: Buffer; redelivered: boolean; headers?: Record<string, unknown>; routingKey: string; contentType?: string; messageId?: string; durable: boolean }>> {
    const out = [];
    const ch = await this.conn.acquire();
    try {
      for (;;) {
        const m = await ch.basicGet({ queue, noAck: true });
        if (!m) break;
        const body = Buffer.isBuffer(m.body) ? m.body : Buffer.from(typeof m.body === 'string' ? m.body : JSON.stringify(m.body));
        out.push({ body, redelivered: m.redelivered, headers: m.headers, routingKey: m.routingKey, contentType: m.contentType, messageId: m.messageId, durable: m.durable ?? false });
      }
    } finally {
      await ch.close();
    }
    return out;
  }

  async cleanup(): Promise<void> {
    for (const q of this.queues) await this.conn.queueDelete({ queue: q }).catch(() => undefined);
    for (const e of this.exchanges) await this.conn.exchangeDelete({ exchange: e }).catch(() => undefined);
    await this.conn.close();
  }
}

// Test files run in parallel, and one of them stops the broker. Files that use the broker register themselves here;
// the restart test first raises a marker (new users wait), then waits until no registered user is left.
const LOCKS = join(tmpdir(), 'sluice-rabbitmq-test-locks');
const MARKER = join(LOCKS, 'restarting');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Registers a test file as using the broker (waiting out a restart in progress); returns the release function. */
export async function useBroker(): Promise<() => void> {
  mkdirSync(LOCKS, { recursive: true });
  const me = join(LOCKS, `user-${process.pid}-${randomBytes(4).toString('hex')}`);
  const end = Date.now() + 120_000;
  for (;;) {
    writeFileSync(me, '');
    if (!existsSync(MARKER)) return () => rmSync(me, { force: true });
    rmSync(me, { force: true });
    if (Date.now() > end) throw new Error('another test file kept the RabbitMQ broker restarting for 120 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** For the broker-restart test: waits until no other file uses the broker and keeps new ones out until released. */
export async function exclusiveBroker(): Promise<() => void> {
  mkdirSync(LOCKS, { recursive: true });
  writeFileSync(MARKER, String(process.pid));
  const release = () => rmSync(MARKER, { force: true });
  try {
    await waitFor(() => {
      const users = readdirSync(LOCKS).filter((n) => n.startsWith('user-'));
      for (const u of users) if (!alive(Number(u.split('-')[1]))) rmSync(join(LOCKS, u), { force: true });
      return readdirSync(LOCKS).filter((n) => n.startsWith('user-')).length === 0;
    }, 'the other RabbitMQ test files to finish', 90_000);
  } catch (e) {
    release();
    throw e;
  }
  return release;
}

/** An admin connection and a data folder for one test file, holding the broker against a restart (see useBroker). */
export interface RabbitTest {
  admin: Admin;
  dataDir: string;
  /** Deletes what the admin created and the data folder, then lets the broker go. */
  done(): Promise<void>;
}

export async function openRabbitTest(dirPrefix: string): Promise<RabbitTest> {
  const release = await useBroker();
  let admin: Admin | undefined;
  let dataDir: string | undefined;
  const done = async () => {
    try {
      await admin?.cleanup();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    } finally {
      release();
    }
  };
  try {
    await ensureService('rabbitmq');
    admin = new Admin();
    await admin.conn.onConnect(10_000);
    dataDir = mkdtempSync(join(tmpdir(), dirPrefix));
    return { admin, dataDir, done };
  } catch (e) {
    await done();
    throw e;
  }
}

/** Runtime env with the registered connectors and `rec` (recording sinks that can be made to fail). */
export const env = (sinks: Record<string, RecordingSink>, state: StateStore, dataDir: string): RuntimeEnv => recordingEnv(sinks, { state, dataDir });

export const parsedSource = (o: Record<string, unknown>) => parsedOptions(sourceOptions(), { url: URL_, ...o }) as Record<string, unknown>;

export const parsedSink = (o: Record<string, unknown>) => parsedOptions(sinkOptions(), { url: URL_, ...o }) as Record<string, unknown>;

export function rabbitPipeline(
  name: string,
  source: Record<string, unknown>,
  sink: EndpointDef,
  o: TestPipelineOptions & { bad?: BadDataPolicy; metadata?: Record<string, string>; format?: string } = {},
): PipelineDef {
  const src = endpointDef('rabbitmq', parsedSource(source), { bad_data: o.bad ?? 'fail', metadata_fields: o.metadata ?? {}, format: { name: o.format ?? 'json', options: {} } });
  return pipelineDef(name, src, sink, o);
}

export const jsonBodies = (from: number, n: number) => Array.from({ length: n }, (_, i) => JSON.stringify({ id: from + i }));
export const ids = (recs: SluiceRecord[]) => recs.map((r) => (r.value as { id: number }).id);
export const range = (n: number) => Array.from({ length: n }, (_, i) => i);
export const uniqSorted = (xs: number[]) => [...new Set(xs)].sort((a, b) => a - b);
