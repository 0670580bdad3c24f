// kill -9 at random points, restart on the same data dir: every replayable source resumes from its committed position
// (at-least-once into a file sink with fsync on), and the WebSocket source with the durable buffer loses nothing it had
// appended to its log.

import { afterAll, afterEach, describe, it } from 'vitest';
import { CLI_BUILT, N, expectInvariants, fileSink, runCase, runCleanups, stopKafka, SOURCES } from './harness.js';

const KILLS = 3;
const BUFFER = 4000;
const BATCH = 1000;

describe.skipIf(!CLI_BUILT)('fault: kill -9 at random points, then restart', () => {
  afterEach(runCleanups);
  afterAll(stopKafka);

  it.each(Object.keys(SOURCES))('%s -> file: no loss, bounded duplicates, order per key across 3 kills', async (name) => {
    let inflight = 0;
    const r = await runCase({
      source: name,
      sink: async (dir) => fileSink(dir),
      async fault(c) {
        inflight = c.source.inflight;
        // Kill points: distinct random fractions of the stream, in order.
        const points = Array.from({ length: KILLS }, () => 0.05 + c.rand() * 0.9).sort((a, b) => a - b);
        for (const p of points) {
          if (!(await c.reached(Math.floor(p * N)))) break; // a finite run ended before this point
          await c.killAndRestart();
        }
      },
    });
    // At-least-once: a kill can repeat what was written but not yet committed: at most the records between the source
    // and the sink (queue + one batch) plus what the source holds unacknowledged.
    expectInvariants(`kill -9 ${name}`, r, { maxDuplicates: KILLS * (BUFFER + BATCH + inflight), singleRun: false, orderExempt: r.source.reordersOnRedelivery });
  }, 60_000);
});
