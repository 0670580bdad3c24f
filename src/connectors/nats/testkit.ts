// Test helpers shared by the nats and nats_jetstream tests: a recording sink that can be taken down, pipelines
// around a connector, unique names and event-driven waits.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { z } from 'zod';
import { startPipeline, type PipelineHandle, type RuntimeEnv } from '../../core/runtime.js';
import { memoryStateStore, type StateStore } from '../../core/state.js';
import { DEFAULT_BATCH, DEFAULT_BUFFER, DEFAULT_RETRY, type EndpointDef, type PipelineDef } from '../../core/model.js';
import { parseOptions, type ConnectorSpec } from '../../core/spec.js';
import { SluiceError } from '../../core/errors.js';
import type { BadDataPolicy, SluiceRecord } from '../../core/types.js';

export const NATS_URL = 'nats://127.0.0.1:4222';
export const STOP_NATS = 'start-stop-daemon --stop --oknodo --retry 10 --exec /usr/sbin/nats-server';

export const uniq = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;

/** A sink that records what it got; while `down`, writes fail (a retriable outage); `delayMs` slows each write. */
export interface Rec {
  written: SluiceRecord[];
  down: boolean;
  delayMs: number;
  writes: number;
}

export const newRec = (): Rec => ({ written: [], down: false, delayMs: 0, writes: 0 });

export function recSpec(sinks: Record<string, Rec>): ConnectorSpec {
  return {
    name: 'rec',
    title: '',
    description: '',
    sink: {
      options: z.object({ name: z.string() }),
      create: (o: { name: string }) => ({
        async open() {},
        async write(records: SluiceRecord[]) {
          const s = sinks[o.name]!;
          s.writes++;
          if (s.delayMs) await new Promise((r) => setTimeout(r, s.delayMs));
          if (s.down) throw new SluiceError('SINK', 'sink is down', { retriable: true });
          for (const r of records) s.written.push(r);
        },
      }),
    },
  };
}

export function env(specs: ConnectorSpec[], sinks: Record<string, Rec>, state: StateStore = memoryStateStore(), dataDir = tempDir()): RuntimeEnv {
  const rec = recSpec(sinks);
  const byName = new Map(specs.map((s) => [s.name, s]));
  return { log: pino({ level: 'silent' }), state, dataDir, connector: (n) => byName.get(n) ?? rec };
}

const dirs: string[] = [];
export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sluice-nats-'));
  dirs.push(d);
  return d;
}
export function removeTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export function parsed<T>(schema: z.ZodType<T, any>, input: Record<string, unknown>): T {
  const r = parseOptions(schema, input);
  if (!r.ok) throw new Error(r.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n'));
  return r.value;
}

export function endpoint(connector: string, options: unknown, o: { bad?: BadDataPolicy; meta?: Record<string, string>; format?: string } = {}): EndpointDef {
  return {
    connector,
    options: options as Record<string, unknown>,
    config: options as Record<string, unknown>,
    format: { name: o.format ?? 'json', options: {} },
    bad_data: o.bad ?? 'fail',
    metadata_fields: o.meta ?? {},
  };
}

export function pipeline(source: EndpointDef, sink: EndpointDef, o: { dlq?: EndpointDef; name?: string; retry?: Partial<typeof DEFAULT_RETRY>; batch?: Partial<typeof DEFAULT_BATCH>; buffer?: Partial<typeof DEFAULT_BUFFER> } = {}): PipelineDef {
  return {
    name: o.name ?? 'nats-test',
    source,
    sink,
    dlq: o.dlq,
    batch: { ...DEFAULT_BATCH, linger_ms: 0, ...o.batch },
    buffer: { ...DEFAULT_BUFFER, ...o.buffer },
    retry: { ...DEFAULT_RETRY, initial_backoff_ms: 20, max_backoff_ms: 200, ...o.retry },
  };
}

/** Poll `cond` until true or the deadline, failing with `what`. The condition is the assertion; the poll is not. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function waitRunning(h: PipelineHandle, timeoutMs = 10_000): Promise<void> {
  await waitFor(() => h.status() === 'running' || h.status() === 'failed', `pipeline '${h.name}' to run`, timeoutMs);
  if (h.status() === 'failed') throw h.lastError();
}

export { startPipeline, memoryStateStore };
