// `test()` and autocomplete for the Kafka connector, in their own module so the registry does not load kafkajs.

import pino from 'pino';
import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { parseOptions, z, type TestReporter } from '../../core/spec.js';
import { describeSchema, inferSchema } from '../../core/schema.js';
import { createFormat } from '../../formats/index.js';
import { backend, connectError, rootCause } from './client.js';
import { connectionOptionShape, sinkOptions, sourceOptions, tlsEnabled, topicRegex, type KafkaSinkOptions, type KafkaSourceOptions } from './options.js';

const connectionOnly = z.object(connectionOptionShape()).loose();

/** Topics (and `topic/partition` entries) for the control plane's autocomplete; needs only the connection options. */
export async function autocompleteKafka(options: unknown, signal: AbortSignal): Promise<Record<string, string[]>> {
  const r = parseOptions(connectionOnly, options);
  if (!r.ok) throw new ConfigError(r.issues);
  const o = r.value;
  const admin = backend.client(o, pino({ level: 'silent' })).admin();
  try {
    await admin.connect();
    if (signal.aborted) return { topics: [] };
    const topics = (await admin.listTopics()).filter((t) => !t.startsWith('__')).sort();
    const meta = topics.length ? await admin.fetchTopicMetadata({ topics }) : { topics: [] };
    const partitions: string[] = [];
    for (const t of meta.topics) for (const p of [...t.partitions].sort((a, b) => a.partitionId - b.partitionId)) partitions.push(`${t.name}/${p.partitionId}`);
    return { topics, partitions };
  } catch (e) {
    throw connectError(e, o, 'kafka autocomplete');
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

const SAMPLE_SIZE = 20;
const SAMPLE_WAIT_MS = 10_000;

export async function testKafka(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  const schema = role === 'source' ? sourceOptions() : sinkOptions();
  const r = parseOptions(schema as z.ZodType<KafkaSourceOptions | KafkaSinkOptions>, options);
  if (!r.ok) throw new ConfigError(r.issues);
  const o = r.value;
  const log = pino({ level: 'silent' });
  const admin = backend.client(o, log).admin();
  const fail = (e: unknown, msg: string): never => {
    report({ message: msg, error: true });
    throw e instanceof SluiceError ? e : new SluiceError('CONNECT', msg, { cause: e });
  };
  try {
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      report({ message: `connected to ${o.brokers.join(',')}${tlsEnabled(o) ? ' over TLS' : ''}${o.sasl && o.sasl !== 'none' ? ` as '${o.username}' (SASL ${o.sasl})` : ''}: ${cluster.brokers.length} broker(s)`, done: true });
    } catch (e) {
      const err = connectError(e, o, 'kafka');
      fail(err, err.message);
    }
    const existing = await admin.listTopics();
    let topics: string[];
    if (role === 'sink') {
      const t = (o as KafkaSinkOptions).topic;
      if (t.includes('{{')) {
        report({ message: `topic is a template ('${t}'); ${existing.filter((x) => !x.startsWith('__')).length} topic(s) exist`, done: true });
        return;
      }
      topics = [t];
    } else {
      const so = o as KafkaSourceOptions;
      const patterns = so.topic_pattern ? [new RegExp(so.topic_pattern)] : (so.topic ?? []).map(topicRegex).filter((x): x is RegExp => !!x);
      topics = [...(so.topic ?? []).filter((t) => !topicRegex(t)), ...existing.filter((t) => !t.startsWith('__') && patterns.some((p) => p.test(t)))];
      if (!topics.length) fail(new SluiceError('CONFIG', 'no topic matches'), `no topic matches ${patterns.map(String).join(', ')}`);
    }
    for (const t of topics) {
      if (!existing.includes(t)) fail(new SluiceError('CONFIG', `topic '${t}' does not exist`), `topic '${t}' does not exist`);
    }
    const meta = await admin.fetchTopicMetadata({ topics });
    let total = 0;
    const ends: Array<{ topic: string; partition: number; low: string; high: string }> = [];
    for (const t of meta.topics) {
      const offs = await admin.fetchTopicOffsets(t.name);
      let count = 0n;
      for (const p of offs) {
        count += BigInt(p.high) - BigInt(p.low);
        ends.push({ topic: t.name, partition: p.partition, low: p.low, high: p.high });
      }
      total += Number(count);
      report({ message: `topic '${t.name}': ${t.partitions.length} partition(s), ${count} message(s) retained`, done: true });
    }
    if (role === 'sink' || signal.aborted) return;
    if (total === 0) {
      report({ message: 'the topic is empty; no sample to propose a schema from', done: true });
      return;
    }
    const rows = await sample(o as KafkaSourceOptions, ends, signal);
    const decoder = createFormat({ name: 'json', options: {} }).decoder();
    const decoded: unknown[] = [];
    let undecodable = 0;
    for (const v of rows) {
      try {
        decoder.decode(v, decoded, () => void undecodable++);
      } catch {
        undecodable++;
      }
    }
    report({ message: `fetched ${rows.length} sample message(s)`, done: true });
    if (!decoded.length) {
      report({ message: 'the messages are not JSON; use format text, bytes or avro', done: true });
      return;
    }
    report({ message: `proposed schema (from ${decoded.length} row(s)${undecodable ? `, ${undecodable} not JSON` : ''}): ${describeSchema(inferSchema(decoded))}`, done: true });
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * The last messages of the topic, read without a consumer group commit: a throwaway group that seeks each partition
 * near its end and never commits, so testing a source never moves its position.
 */
async function sample(o: KafkaSourceOptions, ends: Array<{ topic: string; partition: number; low: string; high: string }>, signal: AbortSignal): Promise<Uint8Array[]> {
  const client = backend.client(o, pino({ level: 'silent' }));
  const consumer = client.consumer({ groupId: `sluice-test-${process.pid}-${Date.now()}`, maxWaitTimeInMs: 200, retry: { retries: 1 } });
  const out: Uint8Array[] = [];
  const withData = ends.filter((e) => BigInt(e.high) > BigInt(e.low));
  const per = Math.max(1, Math.ceil(SAMPLE_SIZE / withData.length));
  let target = 0;
  for (const e of withData) target += Math.min(per, Number(BigInt(e.high) - BigInt(e.low)));
  target = Math.min(SAMPLE_SIZE, target);
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const timer = setTimeout(finish, SAMPLE_WAIT_MS);
  signal.addEventListener('abort', () => finish(), { once: true });
  try {
    await consumer.connect();
    const topics = [...new Set(withData.map((e) => e.topic))];
    await consumer.subscribe({ topics, fromBeginning: true });
    consumer.on(consumer.events.GROUP_JOIN, () => {
      for (const e of withData) {
        const start = BigInt(e.high) - BigInt(per);
        consumer.seek({ topic: e.topic, partition: e.partition, offset: String(start > BigInt(e.low) ? start : BigInt(e.low)) });
      }
    });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) if (m.value && out.length < SAMPLE_SIZE) out.push(m.value);
        if (out.length >= target) finish();
      },
    });
    await done;
  } catch (e) {
    throw new SluiceError('CONNECT', `fetching a sample failed: ${rootCause(e)}`, { cause: e });
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch((e) => void errorMessage(e));
  }
  return out;
}
