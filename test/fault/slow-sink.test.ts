// A slow consumer: an HTTP endpoint (behind the webhook sink) that answers each batch only after a delay, far slower
// than any source. Backpressure must reach the source, so memory stays flat while the whole stream goes through.

import { afterAll, afterEach, describe, it } from 'vitest';
import { CLI_BUILT, SOURCES, expectInvariants, runCase, runCleanups, slowHttpSink, stopKafka } from './harness.js';

/** 80 µs per record, answered per batch: at most ~12k records/s, below every source here. */
const US_PER_RECORD = 80;

describe.skipIf(!CLI_BUILT)('fault: a slow consumer fills the sink', () => {
  afterEach(runCleanups);
  afterAll(stopKafka);

  it.each(Object.keys(SOURCES))('%s -> slow HTTP endpoint: memory bounded, no loss, no duplicates, order per key', async (name) => {
    const r = await runCase({
      source: name,
      sink: () => slowHttpSink(US_PER_RECORD),
      async fault() {
        // The slowness is the fault; nothing else happens.
      },
    });
    expectInvariants(`slow sink ${name}`, r, { maxDuplicates: 0, singleRun: true });
  }, 60_000);
});
