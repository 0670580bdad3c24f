// The Redis stream source in a consumer group (XREADGROUP, XACK only after the sink) into JSON lines on disk, against
// the local Redis. `prepare` fills one stream per bench invocation in a child process (not timed, and outside the
// measured worker); every run reads all of it from the start with a consumer group of its own, which it destroys
// afterwards, and `teardown` deletes the stream.

import { createClient } from 'redis';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkOutput, openBatchWriter } from '../lib/data.mjs';
import { fillInChild, payloadBytes, runUntil, uniqueName, unreachable } from '../lib/brokers.mjs';

const URL = 'redis://127.0.0.1:6379';
// The source's default entries per XREADGROUP.
const COUNT = 500;

const streamFile = (fixtureDir) => join(fixtureDir, 'redis-stream.json');

/** The stream key `prepare` recorded in the fixture directory, or undefined when there is none. */
function preparedKey(fixtureDir) {
  try {
    return JSON.parse(readFileSync(streamFile(fixtureDir), 'utf8')).key;
  } catch {
    return undefined;
  }
}

/** The prepared stream, read by a fresh group `group`; afterwards checks nothing is pending and destroys the group. */
async function withGroup(fixtureDir, n, prefix, fn) {
  const key = preparedKey(fixtureDir);
  if (key === undefined) throw new Error(`no prepared stream recorded in ${fixtureDir}: run this scenario through scripts/bench.mjs (its prepare step fills one)`);
  const group = uniqueName(prefix);
  const redis = createClient({ url: URL });
  redis.on('error', () => undefined);
  await redis.connect();
  try {
    const r = await fn(key, group, payloadBytes(fixtureDir, n));
    const info = (await redis.xInfoGroups(key)).find((g) => g.name === group);
    if (!info) throw new Error(`consumer group '${group}' is missing after the run`);
    if (Number(info.pending) !== 0) throw new Error(`${info.pending} entries still pending (not acknowledged) after the run`);
    return r;
  } finally {
    await redis.xGroupDestroy(key, group).catch(() => undefined);
    await redis.quit();
  }
}

export default {
  name: 'redis-stream->file',
  summary: `redis source (stream pre-filled once per invocation with the ~150-byte trade ticks as field \`payload\`, a fresh consumer group from 0 per run, count ${COUNT}, format json) into a file sink (format json); local Redis`,
  baseline: `node-redis: XGROUP CREATE, a loop of XREADGROUP COUNT ${COUNT} BLOCK 2000, JSON.parse of each payload, JSON.stringify per record, one file write per read, then XACK of its ids`,
  // Issue 9's 1M: the stream is filled once per invocation (about 15 s), and a run lasts 7 to 12 s on this VM.
  records: 1_000_000,
  bytes: true,

  skip: () => unreachable('Redis', 6379),
  async prepare({ fixtureDir, n }) {
    const key = uniqueName('sluice-bench-stream');
    // Recorded before filling, so teardown also deletes a stream whose filling failed halfway.
    writeFileSync(streamFile(fixtureDir), JSON.stringify({ key }));
    await fillInChild('redis', key, n, fixtureDir);
    return { bytes: payloadBytes(fixtureDir, n) };
  },
  async teardown({ fixtureDir }) {
    const key = preparedKey(fixtureDir);
    if (key === undefined) return;
    const redis = createClient({ url: URL });
    redis.on('error', () => undefined);
    await redis.connect();
    try {
      await redis.del(key);
    } finally {
      await redis.quit();
    }
  },

  impls: {
    async sluice({ n, fixtureDir, workDir, fsync }) {
      const outDir = join(workDir, 'out');
      return withGroup(fixtureDir, n, 'bench-sluice', async (key, group, bytes) => {
        const { seconds, stats, first_record_s, stop_s } = await runUntil(
          {
            name: 'bench',
            source: { connector: 'redis', config: { url: URL, streams: [key], group, start_id: '0', count: COUNT }, format: 'json' },
            sink: { connector: 'file', config: { path: join(outDir, 'out.jsonl'), fsync }, format: 'json' },
          },
          { dataDir: join(workDir, 'data'), n },
        );
        return { records: stats.records_out, seconds, bytes, first_record_s, stop_s, ...(await checkOutput(outDir, n)) };
      });
    },

    async bare({ n, fixtureDir, workDir, fsync }) {
      const outDir = join(workDir, 'out');
      return withGroup(fixtureDir, n, 'bench-bare', async (key, group, bytes) => {
        const t0 = performance.now();
        const redis = createClient({ url: URL });
        await redis.connect();
        await redis.xGroupCreate(key, group, '0');
        const out = await openBatchWriter(join(outDir, 'out.jsonl'), { fsync });
        let records = 0;
        while (records < n) {
          const reply = await redis.xReadGroup(group, 'bare', [{ key, id: '>' }], { COUNT, BLOCK: 2000 });
          const entries = reply?.[0]?.messages ?? [];
          if (!entries.length) continue;
          let text = '';
          const ids = new Array(entries.length);
          for (let i = 0; i < entries.length; i++) {
            text += JSON.stringify(JSON.parse(entries[i].message.payload)) + '\n';
            ids[i] = entries[i].id;
          }
          await out.write(text);
          await redis.xAck(key, group, ids);
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
