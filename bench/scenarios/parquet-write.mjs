// Parquet write (issue 7): the trade ticks from a JSON-lines file into Parquet files through the file sink, against a
// bare program that parses the same lines and writes them with hyparquet-writer's ParquetWriter directly, one row group
// per batch of the same size, to one file. Same schema (declared), same codec (snappy), same row groups.

import { readdirSync, writeSync, openSync, closeSync, fsyncSync, mkdirSync, renameSync, readSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { jsonlFixture, readJsonLines } from '../lib/data.mjs';
import { runPipeline } from '../lib/sluice.mjs';

const BATCH = 10_000;
const SCHEMA = {
  fields: [
    { name: 'e', type: 'string' },
    { name: 'E', type: 'int64' },
    { name: 's', type: 'string' },
    { name: 't', type: 'int64' },
    { name: 'p', type: 'string' },
    { name: 'q', type: 'string' },
    { name: 'b', type: 'int64' },
    { name: 'a', type: 'int64' },
    { name: 'T', type: 'int64' },
    { name: 'm', type: 'boolean' },
  ],
};

/**
 * Rows in the Parquet files under `dir`, from their footers (not timed). Only the footer is read: reading whole files
 * back put ~40 MB of buffers (a 19 MB file and its copy) into the worker after the run, and that, not the write path,
 * was the peak RSS the bench reported for both sides.
 */
async function countRows(dir) {
  const { parquetMetadata } = await import('hyparquet');
  let rows = 0;
  const files = readdirSync(dir).filter((f) => f.endsWith('.parquet'));
  for (const f of files) {
    const fd = openSync(join(dir, f), 'r');
    try {
      const size = fstatSync(fd).size;
      const tail = Buffer.alloc(8);
      readSync(fd, tail, 0, 8, size - 8);
      // <metadata><metadata length: u32 LE>PAR1 at the end of the file; hyparquet parses the footer from the end.
      const len = tail.readUInt32LE(0) + 8;
      const footer = new Uint8Array(len);
      readSync(fd, footer, 0, len, size - len);
      rows += Number(parquetMetadata(footer).num_rows);
    } finally {
      closeSync(fd);
    }
  }
  return { output_rows: rows, output_files: files.length };
}

function check(r, n) {
  if (r.output_rows !== n) throw new Error(`the Parquet output holds ${r.output_rows} rows, expected ${n}`);
  return r;
}

export default {
  name: 'file-jsonl->parquet',
  summary: `JSON lines (~150-byte trade ticks) from a file into one Parquet file (declared schema of 10 columns, snappy), batches and row groups of ${BATCH}`,
  baseline: `fs.createReadStream, split on newlines, JSON.parse, columns built per ${BATCH} rows and written with hyparquet-writer's ParquetWriter (one row group each) to a .tmp file, footer, rename`,
  records: 500_000,
  bytes: true,
  // Issue 7 asks for at least 90% of bare hyparquet-writer.
  target: { baseline_ratio: 0.9 },

  prepare: ({ fixtureDir, n }) => jsonlFixture(fixtureDir, n),

  impls: {
    async sluice({ n, fixtureDir, workDir, fsync }) {
      const { path: input, bytes } = jsonlFixture(fixtureDir, n);
      const outDir = join(workDir, 'out');
      const { seconds, stats } = await runPipeline(
        {
          name: 'bench',
          source: { connector: 'file', config: { path: input }, format: 'json' },
          // The schema on the sink gives the Parquet columns without validating every row at the source.
          sink: { connector: 'file', config: { path: join(outDir, 'part-{n}.parquet'), fsync }, format: { name: 'parquet', row_group_size: BATCH }, schema: SCHEMA },
          batch: { max_records: BATCH, max_bytes: '64MB' },
          buffer: { max_records: 4 * BATCH, max_bytes: '64MB' },
        },
        { dataDir: join(workDir, 'data') },
      );
      return check({ records: stats.records_out, seconds, bytes, ...(await countRows(outDir)) }, n);
    },

    async bare({ n, fixtureDir, workDir, fsync }) {
      const { path: input, bytes } = jsonlFixture(fixtureDir, n);
      const { ParquetWriter, ByteWriter } = await import('hyparquet-writer');
      const outDir = join(workDir, 'out');
      mkdirSync(outDir, { recursive: true });
      const t0 = performance.now();
      const path = join(outDir, 'part-0.parquet');
      const fd = openSync(`${path}.tmp`, 'w');
      const bw = new ByteWriter();
      const drain = () => {
        writeSync(fd, new Uint8Array(bw.buffer, 0, bw.index));
        bw.index = 0;
      };
      const schema = [
        { name: 'root', num_children: 10 },
        ...SCHEMA.fields.map((f) =>
          f.type === 'string'
            ? { name: f.name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' }
            : f.type === 'int64'
              ? { name: f.name, type: 'INT64', repetition_type: 'OPTIONAL' }
              : { name: f.name, type: 'BOOLEAN', repetition_type: 'OPTIONAL' },
        ),
      ];
      const writer = new ParquetWriter({ writer: bw, schema, codec: 'SNAPPY' });
      let records = 0;
      const flush = (rows) => {
        const columnData = SCHEMA.fields.map((f) => ({
          name: f.name,
          data: rows.map((r) => (f.type === 'int64' ? BigInt(r[f.name]) : r[f.name])),
        }));
        writer.write({ columnData, rowGroupSize: BATCH });
        drain();
        if (fsync) fsyncSync(fd);
        records += rows.length;
      };
      await readJsonLines(input, BATCH, flush);
      writer.finish();
      drain();
      if (fsync) fsyncSync(fd);
      closeSync(fd);
      renameSync(`${path}.tmp`, path);
      const seconds = (performance.now() - t0) / 1000;
      return check({ records, seconds, bytes, ...(await countRows(outDir)) }, n);
    },
  },
};
