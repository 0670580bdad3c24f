// Test helpers shared by the nats and nats_jetstream tests: pipelines around a connector with recording sinks (from
// src/testing/harness.ts), unique names and waits.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPipeline, type PipelineHandle, type RuntimeEnv } from '../../core/runtime.js';
import { memoryStateStore, type StateStore } from '../../core/state.js';
import type { EndpointDef, PipelineDef } from '../../core/model.js';
import type { BadDataPolicy } from '../../core/types.js';
import { endpointDef, pipelineDef, recordingEnv, waitFor as pollUntil, type RecordingSink, type TestPipelineOptions } from '../../testing/harness.js';

export const NATS_URL = 'nats://127.0.0.1:4222';
export const STOP_NATS = 'start-stop-daemon --stop --oknodo --retry 10 --exec /usr/sbin/nats-server';

export const uniq = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;

/** The registered connectors and recording sinks `sinks` (connector `rec`, see src/testing/harness.ts). */
export const env = (sinks: Record<string, RecordingSink>, state: StateStore = memoryStateStore(), dataDir = tempDir()): RuntimeEnv => recordingEnv(sinks, { state, dataDir });

const dirs: string[] = [];
export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sluice-nats-'));
  dirs.push(d);
  return d;
}
export function removeTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export function endpoint(connector: string, options: unknown, o: { bad?: BadDataPolicy; meta?: Record<string, string>; format?: string; profile?: string } = {}): EndpointDef {
  return endpointDef(connector, options as Record<string, unknown>, {
    format: { name: o.format ?? 'json', options: {} },
    bad_data: o.bad ?? 'fail',
    metadata_fields: o.meta ?? {},
    ...(o.profile ? { profile: o.profile } : {}),
  });
}

/** Established TCP connections from this process to the local server on `port`, as the kernel sees them. */
export function serverConnections(port = 4222): number {
  const out = execFileSync('ss', ['-tnpH', 'state', 'established', `( dport = :${port} )`]).toString();
  return out.split('\n').filter((l) => l.includes(`pid=${process.pid},`)).length;
}

export function pipeline(source: EndpointDef, sink: EndpointDef, o: TestPipelineOptions & { name?: string } = {}): PipelineDef {
  return pipelineDef(o.name ?? 'nats-test', source, sink, { ...o, batch: { linger_ms: 0, ...o.batch }, retry: { initial_backoff_ms: 20, max_backoff_ms: 200, ...o.retry } });
}

/** Poll `cond` until true or the deadline, failing with `what`. The condition is the assertion; the poll is not. */
export const waitFor = (cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000) => pollUntil(cond, what, timeoutMs);

export async function waitRunning(h: PipelineHandle, timeoutMs = 10_000): Promise<void> {
  await waitFor(() => h.status() === 'running' || h.status() === 'failed', `pipeline '${h.name}' to run`, timeoutMs);
  if (h.status() === 'failed') throw h.lastError();
}

export { startPipeline, memoryStateStore };
