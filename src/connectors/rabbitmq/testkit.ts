// Helpers for the RabbitMQ tests: unique names, an admin connection, publishing, counting, cleanup, pipelines.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { z } from 'zod';
import { Connection } from 'rabbitmq-client';
import { SluiceError } from '../../core/errors.js';
import { DEFAULT_BATCH, DEFAULT_BUFFER, DEFAULT_RETRY, type EndpointDef, type PipelineDef } from '../../core/model.js';
import type { RuntimeEnv } from '../../core/runtime.js';
import { parseOptions, type ConnectorSpec } from '../../core/spec.js';
import type { StateStore } from '../../core/state.js';
import type { BadDataPolicy, SluiceRecord } from '../../core/types.js';
import { sinkOptions, sourceOptions, spec } from './index.js';

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

export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface Rec {
  written: SluiceRecord[];
  /** While set, writes fail (a sink outage). */
  down: boolean;
  delayMs?: number;
}

/** Runtime env with the rabbitmq connector and `rec` (a recording sink that can be made to fail). */
export function env(sinks: Record<string, Rec>, state: StateStore, dataDir: string): RuntimeEnv {
  const rec: ConnectorSpec = {
    name: 'rec',
    title: '',
    description: '',
    sink: {
      options: z.object({ name: z.string() }),
      create: (o: { name: string }) => ({
        async open() {},
        async write(records: SluiceRecord[]) {
          const s = sinks[o.name]!;
          if (s.delayMs) await new Promise((r) => setTimeout(r, s.delayMs));
          if (s.down) throw new SluiceError('SINK', 'sink is down', { retriable: true });
          for (const r of records) s.written.push(r);
        },
      }),
    },
  };
  return { log: pino({ level: 'silent' }), state, dataDir, connector: (n) => (n === 'rabbitmq' ? spec : rec) };
}

export function parsedSource(o: Record<string, unknown>): Record<string, unknown> {
  const r = parseOptions(sourceOptions, { url: URL_, ...o });
  if (!r.ok) throw new Error(r.issues.map((i) => i.message).join('; '));
  return r.value as Record<string, unknown>;
}

export function parsedSink(o: Record<string, unknown>): Record<string, unknown> {
  const r = parseOptions(sinkOptions, { url: URL_, ...o });
  if (!r.ok) throw new Error(r.issues.map((i) => i.message).join('; '));
  return r.value as Record<string, unknown>;
}

export function endpoint(connector: string, options: Record<string, unknown>, extra: Partial<EndpointDef> = {}): EndpointDef {
  return { connector, options, config: options, format: { name: 'json', options: {} }, bad_data: 'fail', metadata_fields: {}, ...extra };
}

export function rabbitPipeline(
  name: string,
  source: Record<string, unknown>,
  sink: EndpointDef,
  o: { bad?: BadDataPolicy; dlq?: EndpointDef; retry?: Partial<typeof DEFAULT_RETRY>; buffer?: typeof DEFAULT_BUFFER; batch?: Partial<typeof DEFAULT_BATCH>; metadata?: Record<string, string>; format?: string } = {},
): PipelineDef {
  return {
    name,
    source: endpoint('rabbitmq', parsedSource(source), { bad_data: o.bad ?? 'fail', metadata_fields: o.metadata ?? {}, format: { name: o.format ?? 'json', options: {} } }),
    sink,
    dlq: o.dlq,
    batch: { ...DEFAULT_BATCH, linger_ms: 1, ...o.batch },
    buffer: o.buffer ?? DEFAULT_BUFFER,
    retry: { ...DEFAULT_RETRY, initial_backoff_ms: 10, max_backoff_ms: 50, ...o.retry },
  };
}

export const jsonBodies = (from: number, n: number) => Array.from({ length: n }, (_, i) => JSON.stringify({ id: from + i }));
export const ids = (recs: SluiceRecord[]) => recs.map((r) => (r.value as { id: number }).id);
export const range = (n: number) => Array.from({ length: n }, (_, i) => i);
export const uniqSorted = (xs: number[]) => [...new Set(xs)].sort((a, b) => a - b);
