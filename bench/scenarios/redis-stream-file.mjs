// The Redis stream source in a consumer group (XREADGROUP, XACK only after the sink) into JSON lines on disk, against
// the local Redis. Each run fills a stream of its own (not timed) and deletes it afterwards.

import { createClient } from 'redis';
import { join } from 'node:path';
import { checkOutput, openBatchWriter } from '../lib/data.mjs';
import { payloadBytes, payloads, runUntil, uniqueName, unreachable } from '../lib/brokers.mjs';

const URL = 'redis://127.0.0.1:6379';
// The source's default entries per XREADGROUP.
const COUNT = 500;

async function withStream(fixtureDir, n, fn) {
  const redis = createClient({ url: URL });
  redis.on('error', () => undefined);
  await redis.connect();
  const key = uniqueName('bench-stream');
  let msgs = payloads(fixtureDir, n);
  try {
    for (let i = 0; i < n; i += 1000) {
      const m = redis.multi();
      for (const p of msgs.slice(i, i + 1000)) m.xAdd(key, '*', { payload: p });
      await m.execAsPipeline();
    }
    const len = await redis.xLen(key);
    if (len !== n) throw new Error(`filled stream holds ${len} entries, expected ${n}`);
    const bytes = payloadBytes(msgs);
    // The payloads are in Redis now; holding them through the run would count them in both sides' peak RSS.
    msgs = undefined;
    const r = await fn(key, bytes);
    const groups = await redis.xInfoGroups(key);
    const pending = groups.reduce((s, g) => s + Number(g.pending), 0);
    if (pending !== 0) throw new Error(`${pending} entries still pending (not acknowledged) after the run`);
    return r;
  } finally {
    await redis.del(key).catch(() => undefined);
    await redis.quit();
  }
}

export default {
  name: 'redis-stream->file',
  summary: `redis source (stream pre-filled with the ~150-byte trade ticks as field \`payload\`, a fresh consumer group from 0, count ${COUNT}, format json) into a file sink (format json); local Redis`,
  baseline: `node-redis: XGROUP CREATE, a loop of XREADGROUP COUNT ${COUNT} BLOCK 2000, JSON.parse of each payload, JSON.stringify per record, one file write per read, then XACK of its ids`,
  // A run at 200k lasted about 1.3 s, so connecting and stopping were a visible share of it.
  records: 500_000,
  bytes: true,

  skip: () => unreachable('Redis', 6379),

  impls: {
    async sluice({ n, fixtureDir, workDir, fsync }) {
      const outDir = join(workDir, 'out');
      return withStream(fixtureDir, n, async (key, bytes) => {
        const { seconds, stats, first_record_s, stop_s } = await runUntil(
          {
            name: 'bench',
            source: { connector: 'redis', config: { url: URL, streams: [key], group: 'bench', start_id: '0', count: COUNT }, format: 'json' },
            sink: { connector: 'file', config: { path: join(outDir, 'out.jsonl'), fsync }, format: 'json' },
          },
          { dataDir: join(workDir, 'data'), n },
        );
        return { records: stats.records_out, seconds, bytes, first_record_s, stop_s, ...(await checkOutput(outDir, n)) };
      });
    },

    async bare({ n, fixtureDir, workDir, fsync }) {
      const outDir = join(workDir, 'out');
      return withStream(fixtureDir, n, async (key, bytes) => {
        const t0 = performance.now();
        const redis = createClient({ url: URL });
        await redis.connect();
        await redis.xGroupCreate(key, 'bench', '0', { MKSTREAM: true });
        const out = await openBatchWriter(join(outDir, 'out.jsonl'), { fsync });
        let records = 0;
        while (records < n) {
          const reply = await redis.xReadGroup('bench', 'bare', [{ key, id: '>' }], { COUNT, BLOCK: 2000 });
          const entries = reply?.[0]?.messages ?? [];
          if (!entries.length) continue;
          let text = '';
          const ids = new Array(entries.length);
          for (let i = 0; i < entries.length; i++) {
            text += JSON.stringify(JSON.parse(entries[i].message.payload)) + '\n';
            ids[i] = entries[i].id;
          }
          await out.write(text);
          await redis.xAck(key, 'bench', ids);
          records += entries.length;
        }
        await out.close();
        await redis.quit();
        const seconds = (performance.now() - t0) / 1000;
        return { records, seconds, bytes, ...(await checkOutput(outDir, n)) };
      });
    },
  },
};
