// The Redis source and sink inside real pipelines against the local server: acknowledgement after the sink,
// restarts, bad data, the durable buffer for pub/sub, a Redis restart mid-stream, and a load case.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipeline, type PipelineHandle } from '../../core/runtime.js';
import { memoryStateStore, type StateStore } from '../../core/state.js';
import { DEFAULT_RETRY, type EndpointDef, type PipelineDef } from '../../core/model.js';
import type { BadDataPolicy, SluiceRecord } from '../../core/types.js';
import { ensureService, stopService } from '../../testing/services.js';
import type { Client } from './client.js';
import { sinkOptions, sourceOptions, spec } from './index.js';
import { RedisSink } from './sink.js';
import { endpointDef, newRecordingSink, pipelineDef, recordingEndpoint, recordingEnv, sinkContext, type RecordingSink } from '../../testing/harness.js';
import { createFormat } from '../../formats/index.js';
import { addEntries, adminClient, cleanup, parsed, pendingCount, uniquePrefix, waitFor } from './testkit.js';

let admin: Client;
let dataDir: string;
const P = uniquePrefix('pipe');

beforeAll(async () => {
  await ensureService('redis');
  admin = await adminClient();
  dataDir = mkdtempSync(join(tmpdir(), 'sluice-redis-pipe-'));
}, 60_000);

afterAll(async () => {
  if (admin) {
    await cleanup(admin, P).catch(() => undefined);
    admin.destroy();
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const env = (sinks: Record<string, RecordingSink>, state: StateStore) => recordingEnv(sinks, { state, dataDir });

function pipeline(name: string, source: Record<string, unknown>, sink: EndpointDef, o: { bad?: BadDataPolicy; dlq?: EndpointDef; attempts?: number } = {}): PipelineDef {
  const src = endpointDef('redis', parsed(sourceOptions(), { block: '200ms', ...source }) as Record<string, unknown>, { bad_data: o.bad ?? 'fail' });
  return pipelineDef(name, src, sink, { dlq: o.dlq, retry: { max_attempts: o.attempts ?? DEFAULT_RETRY.max_attempts } });
}

const ids = (rs: SluiceRecord[]) => rs.map((r) => (r.value as { i: number }).i);
const range = (from: number, n: number) => Array.from({ length: n }, (_, k) => from + k);

async function stopped(h: PipelineHandle) {
  const r = await h.stop();
  expect(r.error?.message).toBeUndefined();
  return r;
}

describe('redis stream source in a pipeline', () => {
  it('acknowledges only after the sink: a failing sink leaves every entry pending, a restart delivers them all', async () => {
    const stream = `${P}ack`;
    const group = 'ackgroup';
    await addEntries(admin, stream, 0, 200);
    const state = memoryStateStore();
    const sinks = { out: newRecordingSink() };
    sinks.out.down = true;
    const src = { streams: stream, group, start_id: '0' };
    const failing = startPipeline(pipeline('redis-ack', src, recordingEndpoint('out'), { attempts: 3 }), env(sinks, state));
    const r1 = await failing.done;
    expect(r1.status).toBe('failed');
    expect(r1.error!.message).toMatch(/sink is down/);
    expect(sinks.out.writes).toBe(3);
    expect(await pendingCount(admin, stream, group)).toBe(200);

    // Same pipeline name -> same consumer name: its own pending entries come first.
    sinks.out.down = false;
    const h2 = startPipeline(pipeline('redis-ack', src, recordingEndpoint('out')), env(sinks, state));
    await waitFor(() => sinks.out.written.length >= 200, '200 records');
    await waitFor(async () => (await pendingCount(admin, stream, group)) === 0, 'XACK of every entry');
    await stopped(h2);
    expect(ids(sinks.out.written)).toEqual(range(0, 200));

    // A graceful restart resumes after the last acknowledged entry: nothing lost, nothing repeated.
    await addEntries(admin, stream, 200, 100);
    const h3 = startPipeline(pipeline('redis-ack', src, recordingEndpoint('out')), env(sinks, state));
    await waitFor(() => sinks.out.written.length >= 300, '300 records');
    await stopped(h3);
    expect(ids(sinks.out.written)).toEqual(range(0, 300));
    expect(await pendingCount(admin, stream, group)).toBe(0);
  }, 30_000);

  it('bad payloads follow bad_data: dlq gets them with the entry metadata, fail stops without acknowledging', async () => {
    const stream = `${P}bad`;
    await admin.xAdd(stream, '*', { payload: '{"i":1}' });
    await admin.xAdd(stream, '*', { payload: '{not json' });
    await admin.xAdd(stream, '*', { other: 'x' });
    await admin.xAdd(stream, '*', { payload: '{"i":2}' });
    const sinks = { out: newRecordingSink(), dead: newRecordingSink() };
    const h = startPipeline(pipeline('redis-bad', { streams: stream, group: 'g', start_id: '0' }, recordingEndpoint('out'), { bad: 'dlq', dlq: recordingEndpoint('dead') }), env(sinks, memoryStateStore()));
    await waitFor(() => sinks.out.written.length === 2 && sinks.dead.written.length === 2, 'good and dead-lettered records');
    await waitFor(async () => (await pendingCount(admin, stream, 'g')) === 0, 'XACK of the bad entries too');
    await stopped(h);
    expect(ids(sinks.out.written)).toEqual([1, 2]);
    const dead = sinks.dead.written.map((r) => r.value as { raw: string; error: string; metadata: Record<string, unknown> });
    expect(dead.map((d) => d.raw).sort()).toEqual(['{"other":"x"}', '{not json'].sort());
    expect(dead.find((d) => d.raw === '{"other":"x"}')!.error).toMatch(/has no field 'payload' \(fields: other\)/);
    expect(dead[0]!.metadata).toMatchObject({ _stream: stream });

    const failSinks = { out: newRecordingSink() };
    const f = startPipeline(pipeline('redis-bad-fail', { streams: stream, group: 'g2', start_id: '0' }, recordingEndpoint('out'), { bad: 'fail' }), env(failSinks, memoryStateStore()));
    const r = await f.done;
    expect(r.status).toBe('failed');
    expect(r.error!.message).toMatch(/bad record/);
    // Nothing from the bad entry on is acknowledged; it is read again after the fix.
    expect(await pendingCount(admin, stream, 'g2')).toBeGreaterThanOrEqual(3);
  }, 30_000);

  it('survives a Redis restart mid-stream: reconnects, re-creates the group and keeps delivering (source and sink)', async () => {
    const stream = `${P}restart`;
    const out = `${P}restart-out`;
    await addEntries(admin, stream, 0, 50);
    const sinks = { out: newRecordingSink() };
    const state = memoryStateStore();
    // Redis -> Redis: the source reads `stream`, the sink XADDs to `out`.
    const redisSink = endpointDef('redis', parsed(sinkOptions(), { mode: 'stream', key: out }) as Record<string, unknown>);
    const h = startPipeline(pipeline('redis-restart', { streams: stream, group: 'g', start_id: '0' }, redisSink), env(sinks, state));
    await waitFor(async () => (await admin.xLen(out)) === 50, '50 entries in the output stream');
    // A sink of its own, to see what a write does while the server is down.
    const probe = new RedisSink(parsed(sinkOptions(), { mode: 'list', key: `${P}probe` }));
    await probe.open(sinkContext(createFormat({ name: 'json', options: {} }).encoder()));
    let restart: (() => Promise<void>) | undefined;
    try {
      restart = await stopService('redis', 'redis-cli -p 6379 shutdown nosave', 30_000);
      // Fails at once (retriable, naming the server) rather than hanging, so the pipeline's retry policy applies.
      const err = await probe.write([{ value: { x: 1 } }]).catch((e) => e);
      expect(err).toMatchObject({ code: 'CONNECT', retriable: true });
      expect(err.message).toMatch(/^redis redis:\/\/127\.0\.0\.1:6379\/0: writing 1 records/);
      await restart();
      restart = undefined;
    } finally {
      if (restart) await restart();
      await ensureService('redis');
    }
    // This server keeps nothing across a restart: the old entries, the group and the output are gone.
    await waitFor(async () => admin.isReady, 'the admin client to reconnect');
    await waitFor(() => probe.write([{ value: { x: 2 } }]).then(() => true, () => false), 'a sink write to succeed after the restart');
    await probe.close();
    expect(await admin.lRange(`${P}probe`, 0, -1)).toEqual(['{"x":2}']);
    await addEntries(admin, stream, 50, 50);
    await waitFor(async () => (await admin.xLen(out).catch(() => 0)) === 50, 'the 50 new entries in the output stream', 20_000);
    expect(h.status()).toBe('running');
    expect(h.metrics.source.values.get('reconnects')!.value).toBeGreaterThan(0);
    const entries = await admin.xRange(out, '-', '+');
    expect(entries.map((e) => JSON.parse(e.message.payload!).i)).toEqual(range(50, 50));
    await stopped(h);
    expect(await pendingCount(admin, stream, 'g')).toBe(0);
  }, 60_000);

  it('load: 20k entries through the pipeline in batches', async () => {
    const stream = `${P}load`;
    for (let i = 0; i < 20_000; i += 5000) await addEntries(admin, stream, i, 5000);
    const sinks = { out: newRecordingSink() };
    const t0 = Date.now();
    const h = startPipeline(pipeline('redis-load', { streams: stream, group: 'g', start_id: '0', count: 1000 }, recordingEndpoint('out')), env(sinks, memoryStateStore()));
    await waitFor(() => sinks.out.written.length >= 20_000, '20k records', 30_000);
    const ms = Date.now() - t0;
    await stopped(h);
    expect(ids(sinks.out.written)).toEqual(range(0, 20_000));
    await waitFor(async () => (await pendingCount(admin, stream, 'g')) === 0, 'every entry acknowledged');
    console.log(`redis stream -> pipeline: 20000 records in ${ms} ms (${Math.round(20_000 / (ms / 1000))} records/s)`);
  }, 60_000);
});

describe('redis list and pub/sub sources in a pipeline', () => {
  it('reliable list: a failing sink leaves the elements in the processing list; a restart delivers them', async () => {
    const key = `${P}jobs`;
    await admin.rPush(key, range(0, 20).map((i) => JSON.stringify({ i })));
    const sinks = { out: newRecordingSink() };
    sinks.out.down = true;
    const state = memoryStateStore();
    const src = { key, reliable: true, consumer: 'w' };
    const r1 = await startPipeline(pipeline('redis-jobs', src, recordingEndpoint('out'), { attempts: 2 }), env(sinks, state)).done;
    expect(r1.status).toBe('failed');
    expect(await admin.lLen(`${key}:processing:w`)).toBe(20);
    sinks.out.down = false;
    const h = startPipeline(pipeline('redis-jobs', src, recordingEndpoint('out')), env(sinks, state));
    await waitFor(() => sinks.out.written.length >= 20, '20 records');
    await waitFor(async () => (await admin.lLen(`${key}:processing:w`)) === 0, 'the processing list to empty');
    await stopped(h);
    expect(ids(sinks.out.written)).toEqual(range(0, 20));
  }, 30_000);

  it('pub/sub with buffer: durable loses nothing across a sink outage and a pipeline restart', async () => {
    const channel = `${P}events`;
    const sinks = { out: newRecordingSink() };
    sinks.out.down = true;
    const state = memoryStateStore();
    const src = { channels: channel, buffer: 'durable', buffer_fsync: 'never' };
    // A short drain timeout: the stop gives up on the dead sink instead of retrying it for the whole test.
    const h1 = startPipeline(pipeline('redis-pubsub-durable', src, recordingEndpoint('out'), { attempts: 1000 }), env(sinks, state), { drainTimeoutMs: 500 });
    await waitFor(async () => Number((await admin.pubSubNumSub(channel))[channel]) === 1, 'the subscription');
    const m = admin.multi();
    for (let i = 0; i < 300; i++) m.publish(channel, JSON.stringify({ i }));
    await m.execAsPipeline();
    await waitFor(() => sinks.out.writes >= 2, 'the sink to be retried');
    // Stopping with the sink still down: the buffered messages stay on disk.
    await h1.stop();
    expect(sinks.out.written).toHaveLength(0);
    sinks.out.down = false;
    const h2 = startPipeline(pipeline('redis-pubsub-durable', src, recordingEndpoint('out')), env(sinks, state));
    await waitFor(() => sinks.out.written.length >= 300, '300 records from the buffer');
    await stopped(h2);
    expect(ids(sinks.out.written)).toEqual(range(0, 300));
    expect(sinks.out.written[0]!.meta).toMatchObject({ _channel: channel, _pattern: null });
  }, 30_000);
});
