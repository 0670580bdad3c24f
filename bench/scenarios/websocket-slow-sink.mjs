// Backpressure: the feed is about 10x faster than the sink. With the default memory buffer the source must pause its
// socket (TCP then makes the server wait), so RSS stays flat; with `buffer: durable` the backlog goes to the on-disk
// log instead of memory. Bounded by time, not by N: the server cycles through its frames for as long as it is read.

import { join } from 'node:path';
import WebSocket from 'ws';
import { framesFixture, startFrameServer, SUBSCRIBE } from '../lib/ws-server.mjs';
import { dirBytes, sampleRss, rssSummary, prepareSluice } from '../lib/ws-bench.mjs';

// 30 us per record is about 33k records/s. The unthrottled feed into the blackhole runs at 300k-400k records/s
// on the 2-core development VM (websocket->blackhole+schema without the schema), so the sink is roughly 10x slower.
const DELAY_PER_RECORD = '0.03ms';
const SINK_RATE = 1 / 0.03e-3;
// The bare consumer holds this many messages before it pauses the socket: the size of Sluice's default buffer.
const QUEUE_BOUND = 4000;
const BATCH = 1000;

/** 10 s for the default 1M records, less for --quick (but enough samples for a slope). */
const runSeconds = (n) => Math.min(10, Math.max(3, n / 100_000));

function note(impl, r, extra = '') {
  process.stderr.write(
    `${impl}: ${r.records} records through the sink in ${r.seconds.toFixed(1)} s; RSS max ${r.rss_max_mb} MB, second-half mean ${r.rss_second_half_mean_mb} MB, slope ${r.rss_slope_mb_per_s} MB/s${extra}\n`,
  );
}

export function slowSinkScenario({ name, durable }) {
  return {
    name,
    // With the durable buffer the bare client (no log) is the memory reference, not a rival.
    rival: !durable,
    summary: `websocket source (json) into a blackhole sink with delay_per_record ${DELAY_PER_RECORD} (~${Math.round(SINK_RATE / 1000)}k records/s, ~10x slower than the feed), ${durable ? '`buffer: durable` (the backlog goes to the on-disk log)' : 'default memory buffer (the source pauses the socket)'}; runs 10 s, RSS sampled every 100 ms`,
    baseline: `\`ws\` client, JSON.parse per message into an in-memory queue that pauses the socket at ${QUEUE_BOUND} messages; a consumer takes batches of ${BATCH} and waits ${DELAY_PER_RECORD} per record`,
    records: 1_000_000,

    prepare: ({ fixtureDir, n }) => framesFixture(fixtureDir, n),

    impls: {
      async sluice({ n, fixtureDir, workDir }) {
        const server = await startFrameServer(framesFixture(fixtureDir, n).path, { loop: true });
        const dataDir = join(workDir, 'data');
        try {
          const prepared = await prepareSluice(
            {
              name: 'bench',
              source: {
                connector: 'websocket',
                config: { url: server.url, subscription_messages: [SUBSCRIBE], reconnect: false, ...(durable ? { buffer: 'durable' } : {}) },
                format: 'json',
              },
              sink: { connector: 'blackhole', config: { delay_per_record: DELAY_PER_RECORD } },
            },
            { dataDir },
          );
          const rss = sampleRss();
          const t0 = performance.now();
          const run = prepared.start();
          let failed;
          run.handle.done.then((r) => (failed = r));
          await new Promise((r) => setTimeout(r, runSeconds(n) * 1000));
          if (failed) throw new Error(`pipeline ended '${failed.status}': ${failed.error?.message ?? 'no error given'}`);
          const seconds = (performance.now() - t0) / 1000;
          const records = run.handle.stats.records_out;
          const logBytes = dirBytes(join(dataDir, 'pipelines', 'bench', 'buffer'));
          const mem = rssSummary(rss.stop());
          const received = run.handle.metrics.source.snapshot().messages_received;
          await run.end();
          const srv = await server.close();
          const r = { records, seconds, ...mem, messages_received: received, server_frames_sent: srv.frames_sent, server_cpu_s: srv.cpu_s, ...(durable ? { durable_log_mb: Math.round(logBytes / 2 ** 20) } : {}) };
          note('sluice', r, `; ${received} messages received${durable ? `, durable log ${r.durable_log_mb} MB on disk` : ''}`);
          return r;
        } finally {
          await server.close();
        }
      },

      async bare({ n, fixtureDir }) {
        const server = await startFrameServer(framesFixture(fixtureDir, n).path, { loop: true });
        try {
          const rss = sampleRss();
          const t0 = performance.now();
          const queue = [];
          let head = 0;
          let received = 0;
          let consumed = 0;
          let paused = false;
          let stopping = false;
          const ws = new WebSocket(server.url);
          const closed = new Promise((resolve, reject) => {
            ws.on('error', reject);
            ws.on('close', () => (stopping ? resolve() : reject(new Error('the server closed the connection'))));
          });
          closed.catch(() => undefined);
          ws.on('open', () => ws.send(SUBSCRIBE));
          let wake;
          ws.on('message', (data) => {
            queue.push(JSON.parse(data.toString()));
            received++;
            if (queue.length - head >= QUEUE_BOUND && !paused) {
              paused = true;
              ws.pause();
            }
            wake?.();
          });
          const delay = 0.03;
          const consumer = (async () => {
            while (!stopping) {
              if (queue.length === head) {
                await new Promise((r) => (wake = r));
                wake = undefined;
                continue;
              }
              const k = Math.min(BATCH, queue.length - head);
              for (let i = 0; i < k; i++) queue[head + i] = undefined;
              head += k;
              if (head > 10_000) {
                queue.splice(0, head);
                head = 0;
              }
              await new Promise((r) => setTimeout(r, delay * k));
              consumed += k;
              if (paused && queue.length - head < QUEUE_BOUND / 2) {
                paused = false;
                ws.resume();
              }
            }
          })();
          await new Promise((r) => setTimeout(r, runSeconds(n) * 1000));
          const seconds = (performance.now() - t0) / 1000;
          const records = consumed;
          const mem = rssSummary(rss.stop());
          stopping = true;
          wake?.();
          ws.close(1000);
          await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
          await consumer;
          const srv = await server.close();
          const r = { records, seconds, ...mem, messages_received: received, server_frames_sent: srv.frames_sent, server_cpu_s: srv.cpu_s };
          note('bare', r, `; ${received} messages received`);
          return r;
        } finally {
          await server.close();
        }
      },
    },
  };
}

export default slowSinkScenario({ name: 'websocket->slow-sink', durable: false });
