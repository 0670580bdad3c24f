// The sink's server goes away for several seconds mid-stream (PostgreSQL stopped with `-m immediate`, then started
// again with the machine's documented command): the pipeline retries instead of failing, nothing is committed at
// the source meanwhile, and once the server is back every record arrives, in order per key, in the same run.

import { afterAll, afterEach, describe, it } from 'vitest';
import { CLI_BUILT, N, PG_STOP, SOURCES, ensureService, expectInvariants, postgresSink, runCase, runCleanups, sleep, stopKafka, stopService } from './harness.js';

/** How long the server stays down: longer than several retry backoffs (max_backoff 500ms in the pipeline). */
const OUTAGE_MS = 3000;
const BATCH = 1000;

describe.skipIf(!CLI_BUILT)('fault: the sink server (PostgreSQL) stops for several seconds', () => {
  afterEach(async () => {
    await ensureService('postgres');
    await runCleanups();
  });
  afterAll(stopKafka);

  it.each(Object.keys(SOURCES))('%s -> postgres: retried through the outage, no loss, order per key, one run', async (name) => {
    const r = await runCase({
      source: name,
      sink: () => postgresSink(),
      async fault(c) {
        await c.reached(Math.floor((0.2 + c.rand() * 0.4) * N));
        const start = await stopService('postgres', PG_STOP());
        try {
          await sleep(OUTAGE_MS); // the outage itself: how long the server stays down
        } finally {
          await start();
        }
        if (!c.run().running) throw new Error(`the pipeline did not survive the outage:\n${c.run().log.slice(-3000)}`);
      },
    });
    // A batch whose COMMIT reached the server just before it died, but whose answer did not, is written again. A
    // source with a redelivery timer (JetStream ack_wait, 5 s here) redelivers its in-flight window when the stall
    // outlasts it.
    expectInvariants(`sink outage ${name}`, r, { maxDuplicates: BATCH + r.source.inflight, singleRun: true, sinkRewrites: BATCH });
  }, 60_000);
});
