// Read-decode-encode-write on local files: the JSON codec, line framing, file I/O and checkpointing together.

import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { runPipeline } from '../lib/sluice.mjs';
import { checkOutput, jsonlFixture, openBatchWriter } from '../lib/data.mjs';

const BATCH = 1000;
// The file source's default read_chunk_size, so both sides make the same number of read calls.
const READ_CHUNK = 256 * 1024;

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
      let rows = [];
      let records = 0;
      const flush = async () => {
        let text = '';
        for (const r of rows) text += JSON.stringify(r) + '\n';
        records += rows.length;
        rows = [];
        await out.write(text);
      };
      let carry = '';
      for await (const chunk of createReadStream(input, { encoding: 'utf8', highWaterMark: READ_CHUNK })) {
        const text = carry + chunk;
        let start = 0;
        for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
          if (nl > start) rows.push(JSON.parse(text.slice(start, nl)));
          start = nl + 1;
          if (rows.length === BATCH) await flush();
        }
        carry = text.slice(start);
      }
      if (carry.trim()) rows.push(JSON.parse(carry));
      if (rows.length) await flush();
      await out.close();
      const seconds = (performance.now() - t0) / 1000;
      return { records, seconds, bytes, ...(await checkOutput(outDir, n)) };
    },
  },
};
