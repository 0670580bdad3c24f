// A broker restart mid-stream: the source reconnects by itself and no persistent message of a durable queue is lost.
// Stops the real RabbitMQ with `rabbitmqctl stop` and always starts it again with the machine's documented command.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipeline } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import { ensureService, stopService } from '../../testing/services.js';
import { newRecordingSink, recordingEndpoint, waitFor, type RecordingSink } from '../../testing/harness.js';
import { Admin, env, ids, jsonBodies, rabbitPipeline, range, uniqSorted, uniqueName, exclusiveBroker } from './testkit.js';

let dataDir: string;
let release: (() => void) | undefined;
beforeAll(async () => {
  // The other RabbitMQ test files must not see the broker go away under them.
  release = await exclusiveBroker();
  await ensureService('rabbitmq');
  dataDir = mkdtempSync(join(tmpdir(), 'sluice-rabbit-restart-'));
}, 160_000);
afterAll(async () => {
  try {
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    await ensureService('rabbitmq');
  } finally {
    release?.();
  }
}, 70_000);

describe('rabbitmq broker restart', () => {
  it('survives a broker restart mid-stream: reconnects and delivers every message (duplicates allowed, no loss)', async () => {
    const N = 3000;
    const admin = new Admin();
    const queue = await admin.queue(uniqueName('restart'));
    await admin.publish(queue, jsonBodies(0, N));
    const sinks: Record<string, RecordingSink> = { main: { ...newRecordingSink(), delayMs: 15 } };
    const def = rabbitPipeline('restart', { queue, prefetch: 200, reconnect_max_backoff: '1s' }, recordingEndpoint('main'), {
      batch: { max_records: 50 },
      metadata: { redelivered: '_redelivered' },
    });
    const h = startPipeline(def, env(sinks, memoryStateStore(), dataDir));
    let restart: (() => Promise<void>) | undefined;
    try {
      await waitFor(() => sinks.main!.written.length >= 300, '300 records before the restart', 20_000);
      restart = await stopService('rabbitmq', 'rabbitmqctl stop', 60_000);
      const duringOutage = sinks.main!.written.length;
      expect(duringOutage).toBeLessThan(N);
      await restart();
      restart = undefined;
      sinks.main!.delayMs = 0;
      await waitFor(() => uniqSorted(ids(sinks.main!.written)).length >= N, `all ${N} ids after the restart`, 60_000);
      expect(h.status()).toBe('running');
      expect(h.metrics.source.values.get('reconnects')?.value).toBeGreaterThanOrEqual(1);
    } finally {
      // The broker must come back even when an assertion failed.
      if (restart) await restart().catch(() => ensureService('rabbitmq'));
      await ensureService('rabbitmq');
    }
    const r = await h.stop();
    expect(r.error?.message).toBeUndefined();
    expect(uniqSorted(ids(sinks.main!.written))).toEqual(range(N));
    // What the broker had delivered but not seen acknowledged before it stopped comes back marked redelivered.
    expect(sinks.main!.written.some((w) => (w.value as { redelivered: boolean }).redelivered)).toBe(true);
    await admin.conn.onConnect(30_000);
    await waitFor(async () => (await admin.ready(queue)) === 0, 'the queue to be empty', 10_000);
    await admin.cleanup();
  }, 150_000);
});
