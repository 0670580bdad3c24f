import kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mapScope } from '../../core/state.js';
import { collectSource, parsedOptions } from '../../testing/harness.js';
import type { SourceBatch } from '../../core/types.js';
import { sourceOptions, type KafkaAck, type KafkaSourceOptions } from './index.js';
import { KafkaSource } from './source.js';
import { startTestBroker, uniqueName, type TestBroker } from './test-broker.js';

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
}, 30_000);
afterAll(async () => {
  await broker?.stop();
});

const options = (over: Record<string, unknown>): KafkaSourceOptions => parsedOptions(sourceOptions(), { brokers: broker.brokers, max_wait: '100ms', ...over });

const text = (v: unknown) => Buffer.from(v as Uint8Array).toString('utf8');
const msgs = (from: number, n: number, key = (i: number) => `k${i % 3}`) =>
  Array.from({ length: n }, (_, i) => ({ key: key(from + i), value: JSON.stringify({ id: from + i }) }));

describe('kafka source (against ' + (process.env.KAFKA_BROKERS ? 'KAFKA_BROKERS' : 'the emulator') + ')', () => {
  it('reads from the earliest offset with metadata, keys, headers and timestamps, keeping per-partition order', async () => {
    const topic = uniqueName('src-earliest');
    await broker.createTopic(topic, 3);
    const ts = Date.UTC(2024, 0, 2, 3, 4, 5);
    await broker.produce(topic, [
      ...msgs(0, 30),
      { key: 'h', value: '{"id":30}', headers: { trace: 'abc', bin: Buffer.from([0xff, 0x00]) }, timestamp: String(ts) },
    ]);
    const src = new KafkaSource(options({ topic, offset: 'earliest', group: uniqueName('g') }));
    const out = await collectSource(src, { limit: 31, timeoutMs: 20_000 });
    expect(out.records).toHaveLength(31);
    const ids = out.records.map((r) => JSON.parse(text(r.value)).id).sort((a, b) => a - b);
    expect(ids).toEqual(Array.from({ length: 31 }, (_, i) => i));
    // Each partition's offsets arrive in increasing order, and every batch names its partition.
    const byPartition = new Map<number, number[]>();
    for (const r of out.records) {
      const p = r.meta!._partition as number;
      byPartition.set(p, [...(byPartition.get(p) ?? []), r.meta!._offset as number]);
    }
    for (const offs of byPartition.values()) expect(offs).toEqual([...offs].sort((a, b) => a - b));
    expect(out.batches.every((b: SourceBatch) => b.partition === `${topic}/${(b.ack as KafkaAck).partition}`)).toBe(true);
    const h = out.records.find((r) => JSON.parse(text(r.value)).id === 30)!;
    expect(text(h.key)).toBe('h');
    expect(h.headers?.trace).toBe('abc');
    expect(Buffer.from(h.headers!.bin as Uint8Array)).toEqual(Buffer.from([0xff, 0x00]));
    expect(h.timestamp).toBe(ts);
    expect(h.meta!._topic).toBe(topic);
  }, 40_000);

  it("'latest' skips what is already there and reads what comes after", async () => {
    const topic = uniqueName('src-latest');
    await broker.createTopic(topic, 1);
    await broker.produce(topic, msgs(0, 5));
    const src = new KafkaSource(options({ topic, offset: 'latest', group: uniqueName('g') }));
    const collecting = collectSource(src, { limit: 3, timeoutMs: 20_000 });
    // Produce once the source has joined: its first fetch position is the end as of startup.
    const deadline = Date.now() + 15_000;
    while ((src as unknown as { assigned: Set<string> }).assigned.size === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await broker.produce(topic, msgs(100, 3));
    const out = await collecting;
    expect(out.records.map((r) => JSON.parse(text(r.value)).id)).toEqual([100, 101, 102]);
  }, 40_000);

  it("'group' resumes from the group's committed offset; a restart neither loses nor repeats records", async () => {
    const topic = uniqueName('src-group');
    const group = uniqueName('g');
    await broker.createTopic(topic, 2);
    await broker.produce(topic, msgs(0, 40, (i) => `k${i}`));
    const first = await collectSource(new KafkaSource(options({ topic, offset: 'group', offset_reset: 'earliest', group })), { limit: 40, timeoutMs: 20_000 });
    expect(first.records).toHaveLength(40);
    if (broker.real) {
      // The emulator answers OffsetFetch only for live members; against it the second run below proves the commit.
      const committed = await broker.committed(group, topic);
      expect(Object.values(committed).reduce((s, o) => s + Number(o), 0)).toBe(40);
    }
    await broker.produce(topic, msgs(40, 10, (i) => `k${i}`));
    const second = await collectSource(new KafkaSource(options({ topic, offset: 'group', group })), { limit: 10, timeoutMs: 20_000 });
    expect(second.records.map((r) => JSON.parse(text(r.value)).id).sort((a, b) => a - b)).toEqual(Array.from({ length: 10 }, (_, i) => 40 + i));
  }, 60_000);

  it("'earliest' resumes from the pipeline's own positions after a restart (no loss, no gap)", async () => {
    const topic = uniqueName('src-resume');
    await broker.createTopic(topic, 1);
    await broker.produce(topic, msgs(0, 20));
    const state = mapScope(new Map());
    const o = options({ topic, offset: 'earliest', group: uniqueName('g') });
    const first = await collectSource(new KafkaSource(o), { limit: 20, timeoutMs: 20_000, state });
    expect(first.records).toHaveLength(20);
    await broker.produce(topic, msgs(20, 5));
    const second = await collectSource(new KafkaSource(o), { limit: 5, timeoutMs: 20_000, state });
    expect(second.records.map((r) => JSON.parse(text(r.value)).id)).toEqual([20, 21, 22, 23, 24]);
  }, 60_000);

  it('a regex topic reads every matching topic', async () => {
    const base = uniqueName('src-re');
    await broker.createTopic(`${base}-a`, 1);
    await broker.createTopic(`${base}-b`, 1);
    await broker.produce(`${base}-a`, msgs(0, 2));
    await broker.produce(`${base}-b`, msgs(2, 2));
    const src = new KafkaSource(options({ topic: `/^${base}-.*/`, offset: 'earliest', group: uniqueName('g') }));
    const out = await collectSource(src, { limit: 4, timeoutMs: 20_000 });
    expect(new Set(out.records.map((r) => r.meta!._topic))).toEqual(new Set([`${base}-a`, `${base}-b`]));
  }, 40_000);

  it('an unknown topic fails at startup naming it, with a suggestion', async () => {
    const topic = uniqueName('src-known');
    await broker.createTopic(topic, 1);
    const src = new KafkaSource(options({ topic: topic.slice(0, -1) + 'X', offset: 'earliest' }));
    await expect(collectSource(src, { timeoutMs: 10_000 })).rejects.toThrow(`did you mean '${topic}'?`);
  }, 30_000);

  it('a broker that is down at startup fails with an error naming the brokers, after retrying', async () => {
    const src = new KafkaSource({ ...options({ topic: 'x', offset: 'earliest', retries: 1 }), brokers: ['127.0.0.1:1'] });
    const t0 = Date.now();
    const err = await collectSource(src, { timeoutMs: 20_000 }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/cannot reach Kafka brokers 127\.0\.0\.1:1 \(after 1 retries\).*ECONNREFUSED/);
    expect(Date.now() - t0).toBeGreaterThan(200);
  }, 30_000);
  it.skipIf(!process.env.KAFKA_BROKERS)('a rebalance loses nothing: two members of one group together read every record (needs KAFKA_BROKERS: the emulator has no LeaveGroup/DescribeGroups)', async () => {
    const topic = uniqueName('src-rebalance');
    const group = uniqueName('g');
    await broker.createTopic(topic, 4);
    await broker.produce(topic, msgs(0, 2000, (i) => `k${i}`));
    const o = options({ topic, group, offset: 'group', offset_reset: 'earliest' });
    const seen = new Set<number>();
    const state1 = mapScope(new Map());
    const first = collectSource(new KafkaSource(o), { state: state1, timeoutMs: 25_000 });
    // The second member joins while the first is reading, which moves partitions between them.
    await new Promise((r) => setTimeout(r, 1000));
    await broker.produce(topic, msgs(2000, 2000, (i) => `k${i}`));
    const second = collectSource(new KafkaSource(o), { timeoutMs: 20_000 });
    const [a, b] = await Promise.all([first, second]);
    for (const r of [...a.records, ...b.records]) seen.add(JSON.parse(text(r.value)).id);
    expect(seen.size).toBe(4000);
  }, 60_000);

  it.skipIf(!process.env.KAFKA_BROKERS)("read_committed skips aborted transactions (needs KAFKA_BROKERS: the emulator has no transactions)", async () => {
    const topic = uniqueName('src-txn');
    await broker.createTopic(topic, 1);
    const k = new kafkajs.Kafka({ brokers: broker.brokers.split(','), logLevel: kafkajs.logLevel.NOTHING });
    const p = k.producer({ transactionalId: uniqueName('tx'), idempotent: true, maxInFlightRequests: 1 });
    await p.connect();
    try {
      const aborted = await p.transaction();
      await aborted.send({ topic, messages: [{ value: '{"id":-1}' }] });
      await aborted.abort();
      const ok = await p.transaction();
      await ok.send({ topic, messages: [{ value: '{"id":1}' }] });
      await ok.commit();
    } finally {
      await p.disconnect();
    }
    const committed = await collectSource(new KafkaSource(options({ topic, offset: 'earliest', group: uniqueName('g') })), { limit: 1, timeoutMs: 20_000 });
    expect(committed.records.map((r) => JSON.parse(text(r.value)).id)).toEqual([1]);
    const all = await collectSource(new KafkaSource(options({ topic, offset: 'earliest', read_mode: 'read_uncommitted', group: uniqueName('g') })), { limit: 2, timeoutMs: 20_000 });
    expect(all.records.map((r) => JSON.parse(text(r.value)).id)).toEqual([-1, 1]);
  }, 60_000);
});
