import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsedOptions, sinkContext } from '../../testing/harness.js';
import { createFormat } from '../../formats/index.js';
import type { SluiceRecord } from '../../core/types.js';
import { sinkOptions, spec, type KafkaSinkOptions } from './index.js';
import { KafkaSink } from './sink.js';
import { startTestBroker, uniqueName, type TestBroker } from './test-broker.js';
import { FakeSchemaRegistry } from '../../testing/schema-registry.js';

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
}, 30_000);
afterAll(async () => {
  await broker?.stop();
});

const options = (over: Record<string, unknown>): KafkaSinkOptions => parsedOptions(sinkOptions(), { brokers: broker.brokers, retries: 1, ...over });

const ctx = () => sinkContext(createFormat({ name: 'json', options: {} }).encoder(), { pipeline: 'sinktest' });

async function write(o: KafkaSinkOptions, batches: SluiceRecord[][]): Promise<void> {
  const sink = new KafkaSink(o);
  await sink.open(ctx());
  try {
    for (const b of batches) await sink.write(b);
  } finally {
    await sink.close();
  }
}

describe('kafka sink (against ' + (process.env.KAFKA_BROKERS ? 'KAFKA_BROKERS' : 'the emulator') + ')', () => {
  it('writes keys from a field, timestamps from a field, headers from fields and templates', async () => {
    const topic = uniqueName('sink-fields');
    await broker.createTopic(topic, 3);
    const ts = Date.UTC(2024, 1, 3, 4, 5, 6);
    const rows = Array.from({ length: 30 }, (_, i) => ({ value: { id: i, user: `u${i % 4}`, at: new Date(ts + i).toISOString(), region: 'eu' } }));
    await write(options({ topic, key_field: 'user', timestamp_field: 'at', header_fields: ['region'], headers: { origin: 'sluice-{{ region }}' } }), [rows]);
    const got = await broker.readTopic(topic, 30);
    expect(got).toHaveLength(30);
    const one = got.find((m) => JSON.parse(m.value).id === 5)!;
    expect(one).toMatchObject({ key: 'u1', timestamp: String(ts + 5), headers: { region: 'eu', origin: 'sluice-eu' } });
    // The default (murmur2) partitioner sends one key to one partition.
    const partOf = new Map<string, Set<number>>();
    for (const m of got) partOf.set(m.key!, (partOf.get(m.key!) ?? new Set()).add(m.partition));
    for (const s of partOf.values()) expect(s.size).toBe(1);
  }, 40_000);

  it.skipIf(!process.env.KAFKA_BROKERS)('gzip round trip (needs KAFKA_BROKERS: the emulator accepts gzip batches but never returns them to consumers)', async () => {
    const topic = uniqueName('sink-gzip');
    await broker.createTopic(topic, 1);
    await write(options({ topic, compression: 'gzip' }), [Array.from({ length: 100 }, (_, i) => ({ value: { id: i, pad: 'x'.repeat(100) } }))]);
    const got = await broker.readTopic(topic, 100);
    expect(got.map((m) => JSON.parse(m.value).id)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  }, 40_000);

  it('a key template; without one, record keys, headers and timestamps pass through', async () => {
    const topic = uniqueName('sink-keys');
    await broker.createTopic(topic, 1);
    await write(options({ topic, key: '{{ a }}-{{ b }}' }), [[{ value: { a: 1, b: 'x' } }]]);
    await write(options({ topic }), [[{ value: { c: 1 }, key: Buffer.from('raw-key'), headers: { h: 'v' }, timestamp: 1700000000000 }]]);
    const got = await broker.readTopic(topic, 2);
    expect(got.map((m) => m.key)).toEqual(['1-x', 'raw-key']);
    expect(got[1]).toMatchObject({ headers: { h: 'v' }, timestamp: '1700000000000' });
  }, 40_000);

  it('template (dataTemplate) renders the message value', async () => {
    const topic = uniqueName('sink-tpl');
    await broker.createTopic(topic, 1);
    await write(options({ topic, dataTemplate: '{"id":{{ id }},"who":"{{ upper user }}","at":"{{ date ts "YYYY-MM-DD" }}"}' }), [
      [{ value: { id: 1, user: 'ann "a"', ts: Date.UTC(2024, 4, 6), other: 'x' } }],
    ]);
    const got = await broker.readTopic(topic, 1);
    expect(got[0]!.value).toBe('{"id":1,"who":"ANN \\"A\\"","at":"2024-05-06"}');
    expect(JSON.parse(got[0]!.value)).toEqual({ id: 1, who: 'ANN "A"', at: '2024-05-06' });
  }, 40_000);

  it('a templated topic with Avro + registry (topic_name strategy) registers and uses one subject per resolved topic', async () => {
    const reg = await new FakeSchemaRegistry().start();
    try {
      const base = uniqueName('sink-subj');
      await broker.createTopic(`${base}-eu`, 1);
      await broker.createTopic(`${base}-us`, 1);
      const schema = { type: 'record', name: 'Order', fields: [{ name: 'id', type: 'long' }, { name: 'region', type: 'string' }] };
      const format = createFormat({ name: 'avro', options: { schema_registry_address: reg.url, schema, auto_register: true } });
      const encoder = format.encoder();
      await encoder.prepare?.(); // what the runtime does before open: no topic yet, so nothing is registered
      const sink = new KafkaSink(options({ topic: `${base}-{{ region }}` }));
      await sink.open(sinkContext(encoder, { pipeline: 'sinktest' }));
      try {
        const recs = (from: number) => [0, 1, 2, 3].map((i) => ({ value: { id: from + i, region: i % 2 ? 'us' : 'eu' } }));
        await sink.write(recs(0));
        await sink.write(recs(10));
      } finally {
        await sink.close();
      }
      // One registration per subject, cached for the second write.
      expect(reg.count(`POST /subjects/${base}-eu-value/versions`)).toBe(1);
      expect(reg.count(`POST /subjects/${base}-us-value/versions`)).toBe(1);
      expect(reg.log.filter((l) => l.startsWith('POST /subjects/')).length).toBe(2);
      const eu = await broker.readTopic(`${base}-eu`, 4);
      const us = await broker.readTopic(`${base}-us`, 4);
      expect(eu).toHaveLength(4);
      expect(us).toHaveLength(4);
      // Each message decodes with the schema its own subject holds.
      const reader = createFormat({ name: 'avro', options: { schema_registry_address: reg.url } });
      const payloads = [...eu, ...us].map((m) => Buffer.from(m.value, 'latin1'));
      expect(payloads.every((p) => p[0] === 0)).toBe(true);
      await reader.prepare?.(payloads);
      const rows: unknown[] = [];
      const dec = reader.decoder();
      for (const p of payloads) dec.decode(p, rows, (e) => { throw e; });
      expect(rows.map((r) => (r as { id: number }).id).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 10, 11, 12, 13]);
    } finally {
      await reg.stop();
    }
  }, 40_000);

  it('through the runtime: a conditional topic template with Avro + registry writes each topic under its own subject', async () => {
    const reg = await new FakeSchemaRegistry().start();
    const { startPipeline } = await import('../../core/runtime.js');
    const { memoryStateStore } = await import('../../core/state.js');
    const { endpointDef, pipelineDef, pipelineEnv } = await import('../../testing/harness.js');
    const { spec: generator } = await import('../generator/index.js');
    const dataDir = mkdtempSync(join(tmpdir(), 'sluice-kafka-rt-'));
    try {
      const base = uniqueName('sink-rt');
      await broker.createTopic(`${base}-lo`, 1);
      await broker.createTopic(`${base}-hi`, 1);
      const schema = { type: 'record', name: 'Seq', fields: [{ name: 'id', type: 'long' }] };
      const def = pipelineDef(
        'kafka-rt',
        endpointDef('generator', parsedOptions(generator.source!.options, { template: 'sequence', count: 10, interval: 0 })),
        endpointDef('kafka', options({ topic: `${base}-{{#if gte id 5}}hi{{else}}lo{{/if}}` }), {
          format: { name: 'avro', options: { schema_registry_address: reg.url, schema, auto_register: true } },
        }),
      );
      const h = startPipeline(def, pipelineEnv({ state: memoryStateStore(), dataDir }));
      const r = await h.done;
      expect(r.error?.message).toBeUndefined();
      expect(r.status).toBe('completed');
      expect(reg.log.filter((l) => l.startsWith('POST /subjects/')).sort()).toEqual([`POST /subjects/${base}-hi-value/versions`, `POST /subjects/${base}-lo-value/versions`]);
      expect(await broker.readTopic(`${base}-lo`, 5)).toHaveLength(5);
      expect(await broker.readTopic(`${base}-hi`, 5)).toHaveLength(5);
    } finally {
      await reg.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 40_000);

  it('a record without the field a topic template needs fails the write naming the field', async () => {
    const sink = new KafkaSink(options({ topic: 'x-{{ region }}' }));
    await sink.open(ctx());
    try {
      await expect(sink.write([{ value: { id: 1 } }])).rejects.toThrow(/template 'x-\{\{ region \}\}': field 'region' is missing/);
    } finally {
      await sink.close();
    }
  }, 20_000);

  it('a topic that does not exist fails with a retriable error naming it', async () => {
    const sink = new KafkaSink(options({ topic: uniqueName('sink-missing') }));
    await sink.open(ctx());
    try {
      const err = await sink.write([{ value: { id: 1 } }]).catch((e) => e);
      expect(err.message).toMatch(/writing 1 record\(s\) to topic sink-missing-.* failed/);
      expect(err.retriable).toBe(true);
    } finally {
      await sink.close();
    }
  }, 40_000);

  it('brokers that are down at open fail with an error naming them', async () => {
    const sink = new KafkaSink({ ...options({ topic: 't' }), brokers: ['127.0.0.1:1'] });
    await expect(sink.open(ctx())).rejects.toThrow(/kafka sink: cannot reach Kafka brokers 127\.0\.0\.1:1 .*ECONNREFUSED/);
  }, 20_000);

  it.skipIf(!process.env.KAFKA_BROKERS)('exactly_once writes each batch in a transaction (needs KAFKA_BROKERS: the emulator has no transactions)', async () => {
    const topic = uniqueName('sink-tx');
    await broker.createTopic(topic, 1);
    await write(options({ topic, commit_mode: 'exactly_once', transactional_id: uniqueName('tx') }), [[{ value: { id: 1 } }, { value: { id: 2 } }]]);
    const got = await broker.readTopic(topic, 2);
    expect(got.map((m) => JSON.parse(m.value).id)).toEqual([1, 2]);
  }, 60_000);

  it.skipIf(!process.env.KAFKA_BROKERS)('an idempotent producer writes several multi-message batches (needs KAFKA_BROKERS: the emulator fails idempotent producers after the first multi-message batch)', async () => {
    const topic = uniqueName('sink-idem');
    await broker.createTopic(topic, 2);
    const batch = (from: number) => Array.from({ length: 50 }, (_, i) => ({ value: { id: from + i } }));
    await write(options({ topic, idempotent: true }), [batch(0), batch(50), batch(100)]);
    const got = await broker.readTopic(topic, 150);
    expect(new Set(got.map((m) => JSON.parse(m.value).id)).size).toBe(150);
  }, 60_000);

  it('autocomplete lists topics and partitions; test() reports the topic and proposes a schema from a sample', async () => {
    const topic = uniqueName('sink-auto');
    await broker.createTopic(topic, 2);
    await broker.produce(topic, [{ value: '{"id":1,"name":"a"}' }, { value: '{"id":2,"name":"b","price":1.5}' }]);
    const ac = await spec.autocomplete!({ bootstrapServers: broker.brokers }, new AbortController().signal);
    expect(ac.topics).toContain(topic);
    expect(ac.partitions).toEqual(expect.arrayContaining([`${topic}/0`, `${topic}/1`]));
    const steps: string[] = [];
    await spec.test!({ brokers: broker.brokers, topic }, 'source', (s) => steps.push(s.message), new AbortController().signal);
    expect(steps[0]).toMatch(new RegExp(`connected to ${broker.brokers.replace(/\./g, '\\.')}`));
    expect(steps).toContain(`topic '${topic}': 2 partition(s), 2 message(s) retained`);
    expect(steps.find((s) => s.startsWith('proposed schema'))).toMatch(/id.*int64.*name.*string/s);
    const sinkSteps: string[] = [];
    await spec.test!({ brokers: broker.brokers, topic }, 'sink', (s) => sinkSteps.push(s.message), new AbortController().signal);
    expect(sinkSteps.length).toBe(2);
    const failing: Array<{ message: string; error?: boolean }> = [];
    await expect(spec.test!({ brokers: '127.0.0.1:1', topic, retries: 0 }, 'source', (s) => failing.push(s), new AbortController().signal)).rejects.toThrow(/127\.0\.0\.1:1/);
    expect(failing.at(-1)).toMatchObject({ error: true });
  }, 60_000);
});
