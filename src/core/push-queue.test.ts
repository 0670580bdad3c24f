import { describe, expect, it } from 'vitest';
import { PushQueue } from './push-queue.js';
import { silentLog } from '../testing/harness.js';
import type { SluiceRecord } from './types.js';

function queue(overflow: 'drop_newest' | 'drop_oldest') {
  const emitted: number[][] = [];
  let dropped = 0;
  let release: (() => void) | undefined;
  const q = new PushQueue({
    capacity: 3,
    overflow,
    maxBatch: 2,
    emit: (records: SluiceRecord[]) => {
      emitted.push(records.map((r) => r.value as number));
      // The pipeline asks to wait after the first batch until released.
      if (emitted.length === 1) return new Promise<void>((r) => (release = r));
      return undefined;
    },
    log: silentLog,
    dropped: { inc: (n = 1) => void (dropped += n) },
    depth: { set: () => undefined },
    dropContext: {},
    dropMessage: 'full',
  });
  return { q, emitted, dropped: () => dropped, release: () => release?.() };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('push queue', () => {
  it('emits one socket read per tick in bounded batches, holds while the pipeline waits, and drops the newest when full', async () => {
    const t = queue('drop_newest');
    for (const v of [1, 2]) t.q.push({ value: v });
    await tick();
    expect(t.emitted).toEqual([[1, 2]]);
    for (const v of [3, 4, 5, 6, 7]) t.q.push({ value: v });
    await tick();
    expect(t.emitted).toHaveLength(1);
    expect(t.dropped()).toBe(2);
    t.release();
    await tick();
    expect(t.emitted).toEqual([[1, 2], [3, 4], [5]]);
    expect(t.q.maxDepth).toBe(3);
  });

  it('drops the oldest instead when told to, and a final flush ignores the wait', async () => {
    const t = queue('drop_oldest');
    t.q.push({ value: 0 });
    await tick();
    for (const v of [1, 2, 3, 4]) t.q.push({ value: v });
    t.q.flush(true);
    expect(t.emitted).toEqual([[0], [2, 3], [4]]);
    expect(t.dropped()).toBe(1);
  });
});
