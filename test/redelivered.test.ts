// "At-least-once with duplicates counted": acknowledging sources count what they deliver again (possible duplicates)
// as `redelivered`, summed into the pipeline's stats. Against the real local servers: a sink that fails makes the
// first run end without acknowledging; the next run gets the same messages again and counts each of them, while
// first deliveries count nothing.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { startPipeline, type PipelineHandle } from '../src/core/runtime.js';
import { memoryStateStore } from '../src/core/state.js';
import { endpointDef, newRecordingSink, parsedOptions, pipelineDef, recordingEndpoint, recordingEnv, waitFor, type RecordingSink } from '../src/testing/harness.js';
import { ensureService } from '../src/testing/services.js';
import { sourceOptions as jsSourceOptions } from '../src/connectors/nats_jetstream/index.js';
import { NATS_URL, uniq } from '../src/connectors/nats/testkit.js';
import { Admin, jsonBodies, openRabbitTest, rabbitPipeline, uniqueName } from '../src/connectors/rabbitmq/testkit.js';
import { sourceOptions as redisSourceOptions } from '../src/connectors/redis/index.js';
import { addEntries, adminClient, cleanup, parsed, pendingCount, uniquePrefix } from '../src/connectors/redis/testkit.js';
import type { Client } from '../src/connectors/redis/client.js';
import { createMetricsRegistry } from '../src/server/metrics.js';
import { spec as fileSpec } from '../src/connectors/file/index.js';
import { appendFileSync, writeFileSync } from 'node:fs';
import { sourceOptions as kafkaSourceOptions } from '../src/connectors/kafka/index.js';
import { startTestBroker, uniqueName as kafkaName, type TestBroker } from '../src/connectors/kafka/test-broker.js';

let dataDir: string;
beforeAll(() => void (dataDir = mkdtempSync(join(tmpdir(), 'sluice-redelivered-'))));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const env = (sinks: Record<string, RecordingSink>, state = memoryStateStore()) => recordingEnv(sinks, { state, dataDir });
const redelivered = (h: PipelineHandle) => [h.stats.redelivered, h.metrics.source.snapshot().redelivered ?? 0];
const distinct = (rec: RecordingSink, field: string) => new Set(rec.written.map((r) => (r.value as Record<string, number>)[field])).size;

async function stopped(h: PipelineHandle) {
  const r = await h.stop();
  expect(r.error?.message).toBeUndefined();
  return r;
}

describe('redelivered: nats_jetstream (delivery count > 1)', () => {
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  const streams: string[] = [];
  beforeAll(async () => {
    await ensureService('nats');
    nc = await connect({ servers: NATS_URL });
    jsm = await jetstreamManager(nc);
  });
  afterAll(async () => {
    for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
    await nc?.close();
  });

  it("counts the messages a failed run left unacknowledged when the next run gets them again; first deliveries count 0", async () => {
    const name = uniq('RD').toUpperCase();
    streams.push(name);
    await jsm.streams.add({ name, subjects: [`${name}.>`] });
    const js = jetstream(nc);
    await Promise.all(Array.from({ length: 200 }, (_, i) => js.publish(`${name}.m`, JSON.stringify({ i }))));
    const rec = newRecordingSink();
    rec.down = true;
    const src = endpointDef('nats_jetstream', parsedOptions(jsSourceOptions(), { url: NATS_URL, stream: name, durable: 'rd', ack_wait: '60s' }));
    const def = pipelineDef('rd-js', src, recordingEndpoint('m'), { retry: { max_attempts: 1000 } });
    const h1 = startPipeline(def, env({ m: rec }), { drainTimeoutMs: 300 });
    await waitFor(() => rec.writes >= 2, 'the sink to fail');
    expect(redelivered(h1)).toEqual([0, 0]);
    await h1.stop(); // nak'ed on stop: redelivered to the next run at once
    rec.down = false;
    const h2 = startPipeline(def, env({ m: rec }));
    await waitFor(() => distinct(rec, 'i') >= 200, 'the 200 redelivered messages');
    expect(redelivered(h2)).toEqual([200, 200]);
    await stopped(h2);
    // Acknowledged now: new messages are first deliveries.
    await Promise.all(Array.from({ length: 50 }, (_, i) => js.publish(`${name}.m`, JSON.stringify({ i: 200 + i }))));
    const h3 = startPipeline(def, env({ m: rec }));
    await waitFor(() => distinct(rec, 'i') >= 250, '50 new messages');
    expect(redelivered(h3)).toEqual([0, 0]);
    await stopped(h3);
  }, 30_000);
});

describe('redelivered: rabbitmq (the redelivered flag)', () => {
  let admin: Admin;
  let done: (() => Promise<void>) | undefined;
  beforeAll(async () => void ({ admin, done } = await openRabbitTest('sluice-rd-rabbit-')), 190_000);
  afterAll(() => done?.());

  it('counts the messages a failed run left unacknowledged when the broker delivers them again', async () => {
    const queue = await admin.queue(uniqueName('rd'));
    await admin.publish(queue, jsonBodies(0, 80));
    const rec = { ...newRecordingSink(), down: true };
    const failed = startPipeline(rabbitPipeline('rd-fail', { queue }, recordingEndpoint('m'), { retry: { max_attempts: 2 } }), env({ m: rec }));
    expect(redelivered(failed)).toEqual([0, 0]);
    expect((await failed.done).status).toBe('failed');
    await waitFor(async () => (await admin.ready(queue)) === 80, 'the 80 messages back in the queue', 10_000);
    rec.down = false;
    const h2 = startPipeline(rabbitPipeline('rd-ok', { queue }, recordingEndpoint('m')), env({ m: rec }));
    await waitFor(() => distinct(rec, 'id') >= 80, '80 records after the restart');
    expect(redelivered(h2)).toEqual([80, 80]);
    await admin.publish(queue, jsonBodies(80, 20));
    await waitFor(() => distinct(rec, 'id') >= 100, '20 new messages');
    expect(redelivered(h2)).toEqual([80, 80]);
    await stopped(h2);
  }, 60_000);
});

describe('redelivered: redis streams (own pending entries re-read)', () => {
  let admin: Client;
  const P = uniquePrefix('rd');
  beforeAll(async () => {
    await ensureService('redis');
    admin = await adminClient();
  }, 60_000);
  afterAll(async () => {
    await cleanup(admin, P).catch(() => undefined);
    admin?.destroy();
  });

  it('counts the pending entries a failed run left when the next run re-reads them; new entries count 0', async () => {
    const stream = `${P}s`;
    await addEntries(admin, stream, 0, 150);
    const state = memoryStateStore();
    const rec = newRecordingSink();
    rec.down = true;
    const def = (attempts: number) =>
      pipelineDef('rd-redis', endpointDef('redis', parsed(redisSourceOptions(), { streams: stream, group: 'g', start_id: '0', block: '200ms' }) as Record<string, unknown>), recordingEndpoint('m'), {
        retry: { max_attempts: attempts },
      });
    const failed = startPipeline(def(2), env({ m: rec }, state));
    expect((await failed.done).status).toBe('failed');
    expect(failed.stats.redelivered).toBe(0);
    expect(await pendingCount(admin, stream, 'g')).toBe(150);
    rec.down = false;
    // Same pipeline name, same consumer: its own pending entries come first.
    const h2 = startPipeline(def(10), env({ m: rec }, state));
    await waitFor(() => distinct(rec, 'i') >= 150, '150 records');
    expect(redelivered(h2)).toEqual([150, 150]);
    // Exported for Prometheus: the pipeline family and the source's connector metric.
    const text = await createMetricsRegistry(() => [{ name: 'rd-redis', handle: h2 }], { processMetrics: false }).metrics();
    expect(text).toContain('sluice_pipeline_redelivered_total{pipeline="rd-redis"} 150');
    expect(text).toMatch(/sluice_connector_metric\{[^}]*metric="redelivered"[^}]*\} 150/);
    await addEntries(admin, stream, 150, 30);
    await waitFor(() => distinct(rec, 'i') >= 180, '30 new entries');
    expect(redelivered(h2)).toEqual([150, 150]);
    await stopped(h2);
  }, 30_000);
});

describe('redelivered: kafka (offsets at or below the highest one this pipeline emitted before)', () => {
  let broker: TestBroker;
  beforeAll(async () => void (broker = await startTestBroker()), 30_000);
  afterAll(() => broker?.stop());

  it('counts the records a failed run emitted when the next run reads them again; new records count 0', async () => {
    const topic = kafkaName('rd');
    await broker.createTopic(topic, 2);
    const rows = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ key: `k${(from + i) % 5}`, value: JSON.stringify({ id: from + i }) }));
    await broker.produce(topic, rows(0, 60));
    const state = memoryStateStore();
    const rec = { ...newRecordingSink(), down: true };
    const def = (attempts: number) =>
      pipelineDef(
        'rd-kafka',
        endpointDef('kafka', parsedOptions(kafkaSourceOptions(), { brokers: broker.brokers, topic, offset: 'earliest', max_wait: '100ms' }) as Record<string, unknown>),
        recordingEndpoint('m'),
        { retry: { max_attempts: attempts } },
      );
    const failed = startPipeline(def(2), env({ m: rec }, state));
    expect((await failed.done).status).toBe('failed');
    expect(failed.stats.redelivered).toBe(0);
    rec.down = false;
    const h2 = startPipeline(def(10), env({ m: rec }, state));
    await waitFor(() => distinct(rec, 'id') >= 60, '60 records');
    expect(redelivered(h2)).toEqual([60, 60]);
    await broker.produce(topic, rows(60, 40));
    await waitFor(() => distinct(rec, 'id') >= 100, '40 new records');
    expect(redelivered(h2)).toEqual([60, 60]);
    await stopped(h2);
  }, 60_000);
});

describe('redelivered: file (records re-read below where an earlier run had emitted)', () => {
  it('counts the lines a failed run emitted when the next run reads them again; appended lines count 0', async () => {
    const path = join(dataDir, 'rd-in.jsonl');
    const lines = (from: number, n: number) => Array.from({ length: n }, (_, i) => `{"id":${from + i}}\n`).join('');
    writeFileSync(path, lines(0, 120));
    const state = memoryStateStore();
    const rec = { ...newRecordingSink(), down: true };
    const def = (attempts: number) =>
      pipelineDef('rd-file', endpointDef('file', parsedOptions(fileSpec.source!.options, { path, mode: 'follow', poll_interval: '20ms' }) as Record<string, unknown>), recordingEndpoint('m'), {
        retry: { max_attempts: attempts },
      });
    const failed = startPipeline(def(2), env({ m: rec }, state));
    expect((await failed.done).status).toBe('failed');
    expect(failed.stats.redelivered).toBe(0);
    rec.down = false;
    const h2 = startPipeline(def(10), env({ m: rec }, state));
    await waitFor(() => distinct(rec, 'id') >= 120, '120 records');
    expect(redelivered(h2)).toEqual([120, 120]);
    appendFileSync(path, lines(120, 30));
    await waitFor(() => distinct(rec, 'id') >= 150, '30 appended records');
    expect(redelivered(h2)).toEqual([120, 120]);
    await stopped(h2);
  }, 30_000);
});
