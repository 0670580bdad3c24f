// Raw runtime overhead: records cost nothing to make or to write, so what is left is queueing, batching, acks and
// the per-batch promise traffic between source and sink.

import { runPipeline } from '../lib/sluice.mjs';

const BATCH = 1000;

export default {
  name: 'generator->blackhole',
  summary: 'generator (template sequence, interval 0) into the blackhole sink; no I/O, no encoding',
  baseline: 'a plain loop builds the same record objects ({value: {id}, timestamp, meta: {_offset}}) in batches of 1000 and awaits an async no-op consumer per batch',
  records: 1_000_000,
  target: { records_per_sec: 2_000_000 },
  // The bare loop only allocates: an upper bound, not a rival (docs/benchmarks.md); the target is absolute.
  rival: false,

  impls: {
    async sluice({ n, workDir }) {
      const { seconds, stats } = await runPipeline(
        {
          name: 'bench',
          source: { connector: 'generator', config: { template: 'sequence', interval: 0, count: n, batch_size: BATCH } },
          sink: { connector: 'blackhole' },
        },
        { dataDir: workDir },
      );
      if (stats.records_out !== n) throw new Error(`blackhole received ${stats.records_out} records, expected ${n}`);
      return { records: stats.records_out, seconds };
    },

    async bare({ n }) {
      let received = 0;
      // Counting keeps V8 from proving the batches dead and skipping the allocation we mean to measure.
      const consume = async (batch) => {
        received += batch.length;
      };
      const t0 = performance.now();
      for (let n0 = 0; n0 < n; n0 += BATCH) {
        const k = Math.min(BATCH, n - n0);
        const out = new Array(k);
        const ts = Date.now();
        for (let i = 0; i < k; i++) {
          const seq = n0 + i;
          out[i] = { value: { id: seq }, timestamp: ts, meta: { _offset: seq } };
        }
        await consume(out);
      }
      const seconds = (performance.now() - t0) / 1000;
      if (received !== n) throw new Error(`consumer received ${received} records, expected ${n}`);
      return { records: received, seconds };
    },
  },
};
