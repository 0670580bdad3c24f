// The Kafka source's consume path: fetch, slicing, JSON decoding, acknowledgement and offset commits, against the
// go-mokapi Kafka emulator. The emulator takes about 3 s to let a consumer join a group, which both sides pay inside
// the timing; `first_record_s` and `after_first_records_per_sec` in the JSON show the flow without it. The topic is
// filled once per `npm run bench` invocation; every run reads it from the start with a consumer group of its own, so
// reading leaves the next run the same input.

import kafkajs from 'kafkajs';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { kafkaEmulatorInfo, MOKAPI_BIN, payloadBytes, payloadReader, runUntil, setKafkaTopic, startKafkaEmulator, uniqueName } from '../lib/brokers.mjs';

const { Kafka, logLevel } = kafkajs;
const TOPIC = 'bench-kafka-in';
// The Kafka source hands the pipeline at most this many records per emit, and its commits follow those slices.
const SLICE = 1000;

export default {
  name: 'kafka->blackhole',
  summary: 'kafka source (offset earliest, a fresh group per run, format json) into the blackhole sink; emulator on 127.0.0.1, topic pre-filled with the ~150-byte trade ticks, 1 partition',
  baseline:
    'a kafkajs consumer (same group/fetch settings: maxWait 500 ms, 1 MiB per partition) with eachBatch, JSON.parse per message, resolveOffset + commitOffsets per 1000-message slice (one commit request in flight, later ones coalesced, as the source does), final commit before disconnect',
  records: 50_000,
  bytes: true,

  async skip() {
    if (!existsSync(MOKAPI_BIN)) return `the Kafka emulator binary is missing (${MOKAPI_BIN}); run npm install`;
  },
  async prepare({ fixtureDir, n }) {
    const info = await startKafkaEmulator(fixtureDir);
    const kafka = new Kafka({ clientId: 'sluice-bench-fill', brokers: [info.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    await Promise.all([admin.connect(), producer.connect()]);
    try {
      await setKafkaTopic(info, admin, TOPIC);
      const reader = payloadReader(fixtureDir, n);
      try {
        for (let msgs = reader.next(1000); msgs.length; msgs = reader.next(1000)) {
          await producer.sendBatch({ topicMessages: [{ topic: TOPIC, messages: msgs.map((value) => ({ value })) }] });
        }
      } finally {
        reader.close();
      }
      const high = (await admin.fetchTopicOffsets(TOPIC)).reduce((s, p) => s + Number(p.high), 0);
      if (high !== n) throw new Error(`filled topic holds ${high} messages, expected ${n}`);
      return { bytes: payloadBytes(fixtureDir, n) };
    } finally {
      await Promise.all([admin.disconnect(), producer.disconnect()]);
    }
  },

  impls: {
    async sluice({ n, fixtureDir, workDir }) {
      const { brokers } = kafkaEmulatorInfo(fixtureDir);
      const group = uniqueName('bench-sluice');
      const { seconds, stats, first_record_s } = await runUntil(
        {
          name: 'bench',
          source: { connector: 'kafka', config: { brokers, topic: TOPIC, offset: 'earliest', group }, format: 'json' },
          sink: { connector: 'blackhole' },
        },
        { dataDir: join(workDir, 'data'), n },
      );
      if (stats.records_out !== n) throw new Error(`blackhole received ${stats.records_out} records, expected ${n}`);
      const committed = await groupOffset(brokers, group);
      if (committed !== undefined && committed !== n) throw new Error(`group committed offset ${committed}, expected ${n}`);
      return { records: stats.records_out, seconds, bytes: stats.bytes_in, committed, first_record_s, after_first_records_per_sec: n / (seconds - first_record_s) };
    },

    async bare({ n, fixtureDir }) {
      const { brokers } = kafkaEmulatorInfo(fixtureDir);
      const group = uniqueName('bench-bare');
      const t0 = performance.now();
      const kafka = new Kafka({ clientId: 'sluice', brokers: [brokers], logLevel: logLevel.NOTHING, connectionTimeout: 10_000, requestTimeout: 30_000 });
      const consumer = kafka.consumer({ groupId: group, sessionTimeout: 30_000, heartbeatInterval: 3000, maxWaitTimeInMs: 500, maxBytesPerPartition: 1 << 20, retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 10_000 } });
      let received = 0;
      let bytes = 0;
      let sink = 0;
      let want;
      let flushing;
      const commit = () => {
        if (flushing) return flushing;
        flushing = (async () => {
          while (want) {
            const w = want;
            want = undefined;
            await consumer.commitOffsets([w]);
          }
        })().finally(() => (flushing = undefined));
        return flushing;
      };
      let first;
      let finish;
      const done = new Promise((r) => (finish = r));
      await consumer.connect();
      await consumer.subscribe({ topics: [TOPIC], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset, isRunning, isStale }) => {
          const msgs = batch.messages;
          first ??= performance.now();
          for (let from = 0; from < msgs.length; from += SLICE) {
            if (!isRunning() || isStale()) return;
            const to = Math.min(msgs.length, from + SLICE);
            for (let i = from; i < to; i++) {
              const v = msgs[i].value;
              bytes += v.length;
              // Counting a field keeps the parse from being optimised away, as the blackhole counts records.
              if (JSON.parse(v).e) sink++;
            }
            received += to - from;
            const last = msgs[to - 1].offset;
            resolveOffset(last);
            want = { topic: batch.topic, partition: batch.partition, offset: (BigInt(last) + 1n).toString() };
            void commit();
            if (received >= n) finish();
          }
        },
      });
      await done;
      await consumer.pause([{ topic: TOPIC }]);
      while (flushing || want) await commit();
      await consumer.disconnect();
      const seconds = (performance.now() - t0) / 1000;
      if (received !== n || sink !== n) throw new Error(`consumer received ${received} messages (${sink} parsed), expected ${n}`);
      const committed = await groupOffset(brokers, group);
      if (committed !== undefined && committed !== n) throw new Error(`group committed offset ${committed}, expected ${n}`);
      const first_record_s = (first - t0) / 1000;
      return { records: received, seconds, bytes, committed, first_record_s, after_first_records_per_sec: n / (seconds - first_record_s) };
    },
  },
};

/**
 * The group's committed offset, where the broker can tell. The emulator answers OffsetFetch only for members it still
 * knows and has no LeaveGroup, so after a consumer disconnected it may refuse: then there is nothing to check.
 */
async function groupOffset(brokers, groupId) {
  const admin = new Kafka({ clientId: 'sluice-bench-check', brokers: [brokers], logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const res = await admin.fetchOffsets({ groupId, topics: [TOPIC] });
    return res[0].partitions.reduce((s, p) => s + Number(p.offset), 0);
  } catch (e) {
    if (/not aware of this member/i.test(e.message)) return undefined;
    throw e;
  } finally {
    await admin.disconnect();
  }
}
