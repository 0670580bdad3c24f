// End-to-end latency at a fixed offered rate: the feed server writes 20k frames/s, each stamped with the wall-clock
// time it was written at, and the receiving side takes `now - stamp` for every record once its batch is in the file.
// Default batching on the Sluice side (batch.linger 5 ms, 1000 records); the bare client writes once per event-loop
// turn or per 1000 lines. The first second is warm-up and not counted. Throughput here is the offered rate on both sides; the numbers that matter are p50/p99.

import { join } from 'node:path';
import WebSocket from 'ws';
import { checkOutput, openBatchWriter } from '../lib/data.mjs';
import { stampedFramesFixture, startFrameServer, SUBSCRIBE, wallMs } from '../lib/ws-server.mjs';
import { latencySummary, prepareSluice, rssSummary, runUntilWritten, sampleRss } from '../lib/ws-bench.mjs';

const RATE = 20_000;
const BATCH = 1000;
// The first second of the feed is left out of the percentiles (JIT warm-up, first file open); both sides alike.
const WARMUP = RATE;

export default {
  name: 'websocket->file-jsonl@20k',
  summary: `the websocket->file-jsonl pipeline (default batching) fed at ${RATE / 1000}k frames/s, each frame stamped with its send time; latency = time its batch was written to the file - send time`,
  baseline: '`ws` client, JSON.parse + JSON.stringify per message, one write per event-loop turn or 1000 lines; latency taken the same way after each write',
  records: 200_000,
  bytes: true,
  paced: true,
  target: { latency_p99_ms: 10 },

  prepare: ({ fixtureDir, n }) => stampedFramesFixture(fixtureDir, n),

  impls: {
    async sluice({ n, fixtureDir, workDir, fsync }) {
      const { path: frames, bytes } = stampedFramesFixture(fixtureDir, n);
      const server = await startFrameServer(frames, { rate: RATE });
      const outDir = join(workDir, 'out');
      const lat = new Float64Array(n);
      let k = 0;
      try {
        const prepared = await prepareSluice(
          {
            name: 'bench',
            source: { connector: 'websocket', config: { url: server.url, subscription_messages: [SUBSCRIBE], reconnect: false }, format: 'json' },
            sink: { connector: 'file', config: { path: join(outDir, 'out.jsonl'), fsync }, format: 'json' },
          },
          {
            dataDir: join(workDir, 'data'),
            onWritten(records) {
              const now = wallMs();
              for (let i = 0; i < records.length && k < n; i++) lat[k++] = now - records[i].value.S;
            },
          },
        );
        const { stats, seconds, mem } = await runUntilWritten(prepared, n);
        const srv = await server.close();
        return { records: stats.records_out, seconds, bytes, ...latencySummary(lat, k, WARMUP), ...mem, server_cpu_s: srv.cpu_s, ...(await checkOutput(outDir, n)) };
      } finally {
        await server.close();
      }
    },

    async bare({ n, fixtureDir, workDir, fsync }) {
      const { path: frames, bytes } = stampedFramesFixture(fixtureDir, n);
      const server = await startFrameServer(frames, { rate: RATE });
      const outDir = join(workDir, 'out');
      const lat = new Float64Array(n);
      let k = 0;
      try {
        const rss = sampleRss();
        const t0 = performance.now();
        const out = await openBatchWriter(join(outDir, 'out.jsonl'), { fsync });
        const records = await new Promise((resolve, reject) => {
          const ws = new WebSocket(server.url);
          let text = '';
          let sent = [];
          let written = 0;
          let scheduled = false;
          let chain = Promise.resolve();
          const flush = () => {
            if (!sent.length) return;
            const t = text;
            const s = sent;
            text = '';
            sent = [];
            chain = chain
              .then(() => out.write(t))
              .then(() => {
                const now = wallMs();
                for (let i = 0; i < s.length && k < n; i++) lat[k++] = now - s[i];
                written += s.length;
                if (written === n) {
                  ws.removeAllListeners('close');
                  ws.close(1000);
                  resolve(written);
                }
              })
              .catch(reject);
          };
          const onTick = () => {
            scheduled = false;
            flush();
          };
          ws.on('open', () => ws.send(SUBSCRIBE));
          ws.on('message', (data) => {
            const row = JSON.parse(data.toString());
            sent.push(row.S);
            text += JSON.stringify(row) + '\n';
            if (sent.length === BATCH) flush();
            else if (!scheduled) {
              scheduled = true;
              setImmediate(onTick);
            }
          });
          ws.on('error', reject);
          ws.on('close', () => reject(new Error(`connection closed after ${written} records`)));
        });
        await out.close();
        const seconds = (performance.now() - t0) / 1000;
        const mem = rssSummary(rss.stop());
        const srv = await server.close();
        return { records, seconds, bytes, ...latencySummary(lat, k, WARMUP), ...mem, server_cpu_s: srv.cpu_s, ...(await checkOutput(outDir, n)) };
      } finally {
        await server.close();
      }
    },
  },
};
