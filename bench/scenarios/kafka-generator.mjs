// The Kafka sink's produce path: encoding, message building and one acknowledged sendBatch per pipeline batch, against
// the go-mokapi Kafka emulator. The emulator, not the client, sets the pace (about 13k messages/s on this VM), so
// this shows what Sluice adds on top of a producer that waits for the broker, not Kafka's speed.

import kafkajs from 'kafkajs';
import { runPipeline } from '../lib/sluice.mjs';
import { kafkaEmulatorInfo, MOKAPI_BIN, setKafkaTopic, startKafkaEmulator, uniqueName } from '../lib/brokers.mjs';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const { Kafka, logLevel, Partitioners, CompressionTypes } = kafkajs;
const BATCH = 1000;

/** A fresh topic per run: the emulator keeps everything in memory, and a per-run count is easy to check. */
async function withTopic(fixtureDir, fn) {
  const info = kafkaEmulatorInfo(fixtureDir);
  const kafka = new Kafka({ clientId: 'sluice-bench-admin', brokers: [info.brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topic = uniqueName('bench-gen');
  try {
    await setKafkaTopic(info, admin, topic);
    const r = await fn(info.brokers, topic);
    const offsets = await admin.fetchTopicOffsets(topic);
    const written = offsets.reduce((s, p) => s + Number(p.high), 0);
    return { ...r, topic_messages: written };
  } finally {
    await setKafkaTopic(info, admin, topic, false).catch(() => undefined);
    await admin.disconnect();
  }
}

function check(r, n) {
  if (r.topic_messages !== n) throw new Error(`topic holds ${r.topic_messages} messages, expected ${n}`);
  return r;
}

export default {
  name: 'generator->kafka',
  summary: 'generator (template sequence, batch_size 1000) into the kafka sink (format json, acks all), one sendBatch per 1000-record batch, emulator on 127.0.0.1',
  baseline: 'a kafkajs producer (same partitioner and retry settings) sends the same {"id":N} JSON values with a timestamp, 1000 per sendBatch with acks -1, one request at a time',
  records: 50_000,

  async skip() {
    if (!existsSync(MOKAPI_BIN)) return `the Kafka emulator binary is missing (${MOKAPI_BIN}); run npm install`;
  },
  prepare: ({ fixtureDir }) => startKafkaEmulator(fixtureDir).then(() => undefined),

  impls: {
    async sluice({ n, fixtureDir, workDir }) {
      const r = await withTopic(fixtureDir, async (brokers, topic) => {
        const { seconds, stats } = await runPipeline(
          {
            name: 'bench',
            source: { connector: 'generator', config: { template: 'sequence', interval: 0, count: n, batch_size: BATCH } },
            sink: { connector: 'kafka', config: { brokers, topic }, format: 'json' },
          },
          { dataDir: join(workDir, 'data') },
        );
        return { records: stats.records_out, seconds };
      });
      return check(r, n);
    },

    async bare({ n, fixtureDir }) {
      const r = await withTopic(fixtureDir, async (brokers, topic) => {
        const t0 = performance.now();
        // The sink's client settings (src/connectors/kafka/sink.ts and client.ts), so both sides speak the same way.
        const kafka = new Kafka({ clientId: 'sluice', brokers: [brokers], logLevel: logLevel.NOTHING, connectionTimeout: 10_000, requestTimeout: 30_000 });
        const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false, retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 10_000 } });
        await producer.connect();
        let records = 0;
        for (let n0 = 0; n0 < n; n0 += BATCH) {
          const k = Math.min(BATCH, n - n0);
          const messages = new Array(k);
          const ts = String(Date.now());
          for (let i = 0; i < k; i++) messages[i] = { value: JSON.stringify({ id: n0 + i }), timestamp: ts };
          await producer.sendBatch({ topicMessages: [{ topic, messages }], acks: -1, timeout: 30_000, compression: CompressionTypes.None });
          records += k;
        }
        await producer.disconnect();
        return { records, seconds: (performance.now() - t0) / 1000 };
      });
      return check(r, n);
    },
  },
};
