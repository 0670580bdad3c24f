// A push feed into a file: WebSocket receive, JSON decode and encode, batched file writes, with the feed server in
// its own process on 127.0.0.1.

import { join } from 'node:path';
import WebSocket from 'ws';
import { checkOutput, openBatchWriter } from '../lib/data.mjs';
import { framesFixture, startFrameServer, SUBSCRIBE } from '../lib/ws-server.mjs';
import { sampleRss, rssSummary, prepareSluice, runUntilWritten } from '../lib/ws-bench.mjs';

const BATCH = 1000;

/**
 * The scenario, optionally with a declared schema on the Sluice side (`websocket->file-jsonl+schema`, issue 3's
 * target: "with schema validation on"). The bare program is the same in both: it validates nothing.
 */
export function fileScenario({ name, schema }) {
  return {
    name,
    summary: `websocket source (format json) from a local server pushing N pre-built ~150-byte trade frames, into a file sink (json lines, fsync off)${schema ? ', with the declared schema of websocket->blackhole+schema (prices coerced to float64, so rows are re-encoded: no byte pass-through)' : ''}; stopped gracefully once the sink wrote N records`,
    baseline: '`ws` client, JSON.parse per message, JSON.stringify per record, one write per 1000 lines or per event-loop turn, socket paused while writes lag',
    records: 1_000_000,
    bytes: true,

    prepare: ({ fixtureDir, n }) => framesFixture(fixtureDir, n),

    impls: {
      async sluice({ n, fixtureDir, workDir, fsync }) {
        const { path: frames, bytes } = framesFixture(fixtureDir, n);
        const server = await startFrameServer(frames);
        const outDir = join(workDir, 'out');
        try {
          const prepared = await prepareSluice(
            {
              name: 'bench',
              source: { connector: 'websocket', config: { url: server.url, subscription_messages: [SUBSCRIBE], reconnect: false }, format: 'json', ...(schema ? { schema, bad_data: 'fail' } : {}) },
              sink: { connector: 'file', config: { path: join(outDir, 'out.jsonl'), fsync }, format: 'json' },
            },
            { dataDir: join(workDir, 'data') },
          );
          const { stats, seconds, mem } = await runUntilWritten(prepared, n);
          const srv = await server.close();
          return { records: stats.records_out, seconds, bytes, ...mem, server_cpu_s: srv.cpu_s, ...(await checkOutput(outDir, n)) };
        } finally {
          await server.close();
        }
      },

      async bare({ n, fixtureDir, workDir, fsync }) {
        const { path: frames, bytes } = framesFixture(fixtureDir, n);
        const server = await startFrameServer(frames);
        const outDir = join(workDir, 'out');
        try {
          const rss = sampleRss();
          const t0 = performance.now();
          const out = await openBatchWriter(join(outDir, 'out.jsonl'), { fsync });
          const records = await new Promise((resolve, reject) => {
            const ws = new WebSocket(server.url);
            let text = '';
            let lines = 0;
            let written = 0;
            let inflight = 0;
            let scheduled = false;
            let paused = false;
            let chain = Promise.resolve();
            const finish = () => {
              ws.removeAllListeners('close');
              // Closing the socket is part of the work, as stopping the pipeline is on the Sluice side.
              ws.close(1000);
              resolve(written);
            };
            const flush = () => {
              if (!lines) return;
              const t = text;
              const k = lines;
              text = '';
              lines = 0;
              // More than two writes behind: stop reading, as a bounded queue would.
              if (++inflight > 2 && !paused) {
                paused = true;
                ws.pause();
              }
              chain = chain
                .then(() => out.write(t))
                .then(() => {
                  written += k;
                  inflight--;
                  if (paused && inflight <= 1) {
                    paused = false;
                    ws.resume();
                  }
                  if (written === n) finish();
                })
                .catch(reject);
            };
            const onTick = () => {
              scheduled = false;
              flush();
            };
            ws.on('open', () => ws.send(SUBSCRIBE));
            ws.on('message', (data) => {
              text += JSON.stringify(JSON.parse(data.toString())) + '\n';
              if (++lines === BATCH) flush();
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
          return { records, seconds, bytes, ...mem, server_cpu_s: srv.cpu_s, ...(await checkOutput(outDir, n)) };
        } finally {
          await server.close();
        }
      },
    },
  };
}

export default fileScenario({ name: 'websocket->file-jsonl' });
