// Read-decode-encode-write on local files: the JSON codec, line framing, file I/O and checkpointing together.

import { join } from 'node:path';
import { runPipeline } from '../lib/sluice.mjs';
import { checkOutput, jsonlFixture, openBatchWriter, readJsonLines } from '../lib/data.mjs';

const BATCH = 1000;

export default {
  name: 'file-jsonl->file-jsonl',
  summary: 'JSON lines (~150-byte trade ticks) from a file, decoded and re-encoded as JSON lines into another file',
  baseline: 'fs.createReadStream (utf8), split on newlines, JSON.parse per line, JSON.stringify per record, one write per 1000 records',
  records: 1_000_000,
  bytes: true,

  prepare: ({ fixtureDir, n }) => jsonlFixture(fixtureDir, n),

  impls: {
    async sluice({ n, fixtureDir, workDir, fsync }) {
      const { path: input, bytes } = jsonlFixture(fixtureDir, n);
      const outDir = join(workDir, 'out');
      const { seconds, stats } = await runPipeline(
        {
          name: 'bench',
          source: { connector: 'file', config: { path: input }, format: 'json' },
          sink: { connector: 'file', config: { path: join(outDir, 'out.jsonl'), fsync }, format: 'json' },
        },
        { dataDir: join(workDir, 'data') },
      );
      return { records: stats.records_out, seconds, bytes, ...(await checkOutput(outDir, n)) };
    },

    async bare({ n, fixtureDir, workDir, fsync }) {
      const { path: input, bytes } = jsonlFixture(fixtureDir, n);
      const outDir = join(workDir, 'out');
      const t0 = performance.now();
      const out = await openBatchWriter(join(outDir, 'out.jsonl'), { fsync });
      let records = 0;
      const flush = async (rows) => {
        let text = '';
        for (const r of rows) text += JSON.stringify(r) + '\n';
        records += rows.length;
        await out.write(text);
      };
      await readJsonLines(input, BATCH, flush);
      await out.close();
      const seconds = (performance.now() - t0) / 1000;
      return { records, seconds, bytes, ...(await checkOutput(outDir, n)) };
    },
  },
};
