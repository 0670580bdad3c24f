// CSV decoding (header row, quoting rules) on top of the same file I/O as the JSON-lines scenario.

import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse';
import { runPipeline } from '../lib/sluice.mjs';
import { checkOutput, csvFixture, openBatchWriter } from '../lib/data.mjs';

const BATCH = 1000;
// The file source's default read_chunk_size, so both sides make the same number of read calls.
const READ_CHUNK = 256 * 1024;

export default {
  name: 'file-csv->file-jsonl',
  summary: 'CSV with a header row (the trade-tick fields, ~100 bytes a row) from a file, written as JSON lines',
  baseline: 'fs.createReadStream piped into csv-parse (columns from the header), JSON.stringify per record, one write per 1000 records',
  records: 1_000_000,
  bytes: true,

  prepare: ({ fixtureDir, n }) => csvFixture(fixtureDir, n),

  impls: {
    async sluice({ n, fixtureDir, workDir, fsync }) {
      const { path: input, bytes } = csvFixture(fixtureDir, n);
      const outDir = join(workDir, 'out');
      const { seconds, stats } = await runPipeline(
        {
          name: 'bench',
          source: { connector: 'file', config: { path: input }, format: 'csv' },
          sink: { connector: 'file', config: { path: join(outDir, 'out.jsonl'), fsync }, format: 'json' },
        },
        { dataDir: join(workDir, 'data') },
      );
      return { records: stats.records_out, seconds, bytes, ...(await checkOutput(outDir, n)) };
    },

    async bare({ n, fixtureDir, workDir, fsync }) {
      const { path: input, bytes } = csvFixture(fixtureDir, n);
      const outDir = join(workDir, 'out');
      const t0 = performance.now();
      const out = await openBatchWriter(join(outDir, 'out.jsonl'), { fsync });
      let rows = [];
      let records = 0;
      const flush = async () => {
        let text = '';
        for (const r of rows) text += JSON.stringify(r) + '\n';
        records += rows.length;
        rows = [];
        await out.write(text);
      };
      for await (const row of createReadStream(input, { highWaterMark: READ_CHUNK }).pipe(parse({ columns: true }))) {
        rows.push(row);
        if (rows.length === BATCH) await flush();
      }
      if (rows.length) await flush();
      await out.close();
      const seconds = (performance.now() - t0) / 1000;
      return { records, seconds, bytes, ...(await checkOutput(outDir, n)) };
    },
  },
};
