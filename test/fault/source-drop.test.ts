// The source's connection drops mid-stream, three times at random points: the TCP connections Sluice holds to the
// broker are killed (`ss -K`, both ends see a reset), or the WebSocket server cuts its client. The source reconnects
// by itself in the same run; the broker redelivers what was not acknowledged.

import { afterAll, afterEach, describe, it } from 'vitest';
import { CLI_BUILT, N, SOURCES, expectInvariants, fileSink, runCase, runCleanups, stopKafka } from './harness.js';

const DROPS = 3;
const BUFFER = 4000;
const BATCH = 1000;

// `file` has no connection to drop.
const names = Object.keys(SOURCES).filter((n) => n !== 'file');

describe.skipIf(!CLI_BUILT)('fault: the source connection drops', () => {
  afterEach(runCleanups);
  afterAll(stopKafka);

  it.each(names)('%s -> file: reconnects, no loss, bounded duplicates, order per key, one run', async (name) => {
    let inflight = 0;
    const r = await runCase({
      source: name,
      sink: async (dir) => fileSink(dir),
      async fault(c) {
        inflight = c.source.inflight;
        const points = Array.from({ length: DROPS }, () => 0.05 + c.rand() * 0.85).sort((a, b) => a - b);
        for (const p of points) {
          await c.reached(Math.floor(p * N));
          await c.source.drop!(c.run());
        }
        if (!c.run().running) throw new Error(`the pipeline did not survive the dropped connections:\n${c.run().log.slice(-3000)}`);
      },
    });
    // Redelivered after a drop: what the broker had sent but Sluice had not acknowledged.
    expectInvariants(`source drop ${name}`, r, {
      maxDuplicates: DROPS * (BUFFER + BATCH + inflight),
      singleRun: true,
      orderExempt: r.source.reordersOnRedelivery,
    });
  }, 60_000);
});
