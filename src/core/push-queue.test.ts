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

  it('under a steady flow into a pipeline that keeps asking to wait, holds memory for the queued records only', async () => {
    const emitted: number[] = [];
    let release: (() => void) | undefined;
    const q = new PushQueue({
      capacity: 50,
      overflow: 'drop_newest',
      maxBatch: 10,
      // Every batch makes the pipeline wait, so the queue never runs empty while messages keep arriving.
      emit: (records: SluiceRecord[]) => {
        for (const r of records) emitted.push(r.value as number);
        return new Promise<void>((r) => (release = r));
      },
      log: silentLog,
      dropped: { inc: () => undefined },
      depth: { set: () => undefined },
      dropContext: {},
      dropMessage: 'full',
    });
    let most = 0;
    for (let v = 0; v < 5000; v++) {
      q.push({ value: v });
      // Ten arrive per read; from the third read on, the pipeline takes one batch (ten) per read, so the queue never empties.
      if (v % 10 === 9) await tick();
      if (v % 10 === 9 && v >= 29) {
        release?.();
        await tick();
      }
      most = Math.max(most, q.slots);
    }
    expect(emitted).toEqual(Array.from({ length: emitted.length }, (_, i) => i));
    expect(emitted.length).toBe(4990);
    expect(q.depth).toBe(10);
    // Emitted records must not stay reachable from the queue: its array follows the depth (at most 50), not the 5000.
    expect(most).toBeLessThanOrEqual(2 * 50);
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
