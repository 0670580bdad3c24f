// The same feed as websocket->file-jsonl into the blackhole sink, with a declared schema: what receiving, decoding
// and validating cost without any output I/O. Prices and quantities arrive as strings (as Binance sends them) and
// are coerced to float64.

import { join } from 'node:path';
import WebSocket from 'ws';
import { framesFixture, startFrameServer, SUBSCRIBE } from '../lib/ws-server.mjs';
import { sampleRss, rssSummary, prepareSluice, runUntilWritten } from '../lib/ws-bench.mjs';

export const SCHEMA = {
  fields: [
    { name: 'e', type: 'string', nullable: false },
    { name: 'E', type: 'int64', nullable: false },
    { name: 's', type: 'string', nullable: false },
    { name: 't', type: 'int64', nullable: false },
    { name: 'p', type: 'float64', nullable: false },
    { name: 'q', type: 'float64', nullable: false },
    { name: 'b', type: 'int64', nullable: false },
    { name: 'a', type: 'int64', nullable: false },
    { name: 'T', type: 'int64', nullable: false },
    { name: 'm', type: 'boolean', nullable: false },
  ],
};

// The checks below are the ones docs/schemas.md gives for these types and values, written out by hand: a required
// field must be present and not null (nor empty, for non-strings); a numeric string must be a plain decimal number.
const NUMERIC = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

function bad(field, why) {
  return new Error(`field '${field}': ${why}`);
}

function str(row, f) {
  const v = row[f];
  if (v === undefined || v === null) throw bad(f, 'missing (not nullable)');
  if (typeof v !== 'string') {
    if (typeof v === 'number' || typeof v === 'boolean') row[f] = String(v);
    else throw bad(f, `expected string, got ${typeof v}`);
  }
}

function f64(row, f) {
  const v = row[f];
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw bad(f, 'not finite');
    return;
  }
  if (v === undefined || v === null || v === '') throw bad(f, 'missing (not nullable)');
  if (typeof v !== 'string' || !NUMERIC.test(v)) throw bad(f, `expected float64, got ${typeof v} '${v}'`);
  row[f] = Number(v);
}

function i64(row, f) {
  const v = row[f];
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw bad(f, 'not a safe integer');
    return;
  }
  if (v === undefined || v === null || v === '') throw bad(f, 'missing (not nullable)');
  if (typeof v !== 'string' || !NUMERIC.test(v)) throw bad(f, `expected int64, got ${typeof v} '${v}'`);
  const x = Number(v);
  if (!Number.isSafeInteger(x)) throw bad(f, 'not a safe integer');
  row[f] = x;
}

function bool(row, f) {
  const v = row[f];
  if (typeof v === 'boolean') return;
  if (v === undefined || v === null || v === '') throw bad(f, 'missing (not nullable)');
  throw bad(f, `expected boolean, got ${typeof v}`);
}

function validate(row) {
  if (row === null || typeof row !== 'object' || Array.isArray(row)) throw new Error('not a JSON object');
  str(row, 'e');
  i64(row, 'E');
  str(row, 's');
  i64(row, 't');
  f64(row, 'p');
  f64(row, 'q');
  i64(row, 'b');
  i64(row, 'a');
  i64(row, 'T');
  bool(row, 'm');
  return row;
}

export default {
  name: 'websocket->blackhole+schema',
  summary: 'the websocket->file-jsonl feed into the blackhole sink, with a declared schema (string, int64, float64 coerced from the string prices, boolean; all required)',
  baseline: '`ws` client, JSON.parse per message, the same type checks and coercions written by hand, records counted in batches of 1000',
  records: 1_000_000,
  bytes: true,

  prepare: ({ fixtureDir, n }) => framesFixture(fixtureDir, n),

  impls: {
    async sluice({ n, fixtureDir, workDir }) {
      const { path: frames, bytes } = framesFixture(fixtureDir, n);
      const server = await startFrameServer(frames);
      try {
        const prepared = await prepareSluice(
          {
            name: 'bench',
            source: {
              connector: 'websocket',
              config: { url: server.url, subscription_messages: [SUBSCRIBE], reconnect: false },
              format: 'json',
              schema: SCHEMA,
              bad_data: 'fail',
            },
            sink: { connector: 'blackhole' },
          },
          { dataDir: join(workDir, 'data') },
        );
        const { stats, seconds, mem } = await runUntilWritten(prepared, n);
        const srv = await server.close();
        if (stats.records_out !== n || stats.errors) throw new Error(`blackhole got ${stats.records_out} records (${stats.errors} errors), expected ${n}`);
        return { records: stats.records_out, seconds, bytes, ...mem, server_cpu_s: srv.cpu_s };
      } finally {
        await server.close();
      }
    },

    async bare({ n, fixtureDir }) {
      const { path: frames, bytes } = framesFixture(fixtureDir, n);
      const server = await startFrameServer(frames);
      try {
        const rss = sampleRss();
        const t0 = performance.now();
        let sample;
        const records = await new Promise((resolve, reject) => {
          const ws = new WebSocket(server.url);
          let batch = [];
          let count = 0;
          ws.on('open', () => ws.send(SUBSCRIBE));
          ws.on('message', (data) => {
            let row;
            try {
              row = validate(JSON.parse(data.toString()));
            } catch (e) {
              reject(new Error(`message ${count + batch.length + 1}: ${e.message}`));
              ws.terminate();
              return;
            }
            batch.push(row);
            if (batch.length === 1000 || count + batch.length === n) {
              // Consume the batch the way a sink would receive it, so the rows are not dead on arrival.
              sample ??= batch[0];
              count += batch.length;
              batch = [];
              if (count === n) {
                ws.removeAllListeners('close');
                ws.close(1000);
                resolve(count);
              }
            }
          });
          ws.on('error', reject);
          ws.on('close', () => reject(new Error(`connection closed after ${count} records`)));
        });
        const seconds = (performance.now() - t0) / 1000;
        const mem = rssSummary(rss.stop());
        const srv = await server.close();
        if (typeof sample.p !== 'number') throw new Error('price was not coerced');
        return { records, seconds, bytes, ...mem, server_cpu_s: srv.cpu_s };
      } finally {
        await server.close();
      }
    },
  },
};
