// The RabbitMQ source inside real pipelines, against the broker on 127.0.0.1:5672: acknowledgement after the sink,
// requeue and dead-lettering on failure, resume after a restart, bad data, backpressure bounded by the prefetch.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipeline, type PipelineHandle } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import { newRecordingSink, recordingEndpoint, waitFor, type RecordingSink } from '../../testing/harness.js';
import { Admin, env, ids, jsonBodies, rabbitPipeline, range, uniqueName, openRabbitTest } from './testkit.js';

let admin: Admin;
let dataDir: string;
let done: (() => Promise<void>) | undefined;
beforeAll(async () => void ({ admin, dataDir, done } = await openRabbitTest('sluice-rabbit-pipe-')), 190_000);
afterAll(() => done?.());

async function stopped(h: PipelineHandle) {
  const r = await h.stop();
  expect(r.error?.message).toBeUndefined();
  return r;
}

describe('rabbitmq source in pipelines', () => {
  it('delivers every message with its metadata and acknowledges them all once written', async () => {
    const queue = await admin.queue(uniqueName('meta'));
    await admin.publish(queue, jsonBodies(0, 300), { messageId: 'm-1', contentType: 'application/json', headers: { region: 'eu', n: 7 } });
    const sinks: Record<string, RecordingSink> = { main: newRecordingSink() };
    const def = rabbitPipeline('meta', { queue, passive: true }, recordingEndpoint('main'), {
      metadata: { rk: '_routing_key', ex: '_exchange', redelivered: '_redelivered', props: '_properties', hdrs: '_headers' },
    });
    const h = startPipeline(def, env(sinks, memoryStateStore(), dataDir));
    await waitFor(() => sinks.main!.written.length >= 300, '300 records');
    await waitFor(async () => (await admin.ready(queue)) === 0, 'the queue to be empty');
    await stopped(h);
    // Acked, not merely delivered: nothing comes back once the consumer is gone.
    expect(await admin.ready(queue)).toBe(0);
    expect(ids(sinks.main!.written)).toEqual(range(300));
    const row = sinks.main!.written[0]!.value as Record<string, any>;
    expect(row.rk).toBe(queue);
    expect(row.ex).toBe('');
    expect(row.redelivered).toBe(false);
    expect(row.props).toMatchObject({ content_type: 'application/json', message_id: 'm-1', delivery_mode: 2 });
    expect(typeof row.props.timestamp).toBe('number');
    expect(row.hdrs).toEqual({ region: 'eu', n: '7' });
  }, 30_000);

  it('gives each message its own properties when they change from one message to the next', async () => {
    const queue = await admin.queue(uniqueName('props'));
    // Plain persistent, then with a content type, then transient, then with a message id, then plain again: each
    // change must show in `_properties` even though repeated properties are shared between records.
    await admin.publish(queue, jsonBodies(0, 10));
    await admin.publish(queue, jsonBodies(10, 10), { contentType: 'application/json' });
    await admin.publish(queue, jsonBodies(20, 10), { durable: false });
    await admin.publish(queue, jsonBodies(30, 10), { messageId: 'm-2' });
    await admin.publish(queue, jsonBodies(40, 10));
    const sinks: Record<string, RecordingSink> = { main: newRecordingSink() };
    const def = rabbitPipeline('props', { queue, passive: true }, recordingEndpoint('main'), { metadata: { props: '_properties' } });
    const h = startPipeline(def, env(sinks, memoryStateStore(), dataDir));
    await waitFor(() => sinks.main!.written.length >= 50, '50 records');
    await stopped(h);
    const props = sinks.main!.written.map((r) => (r.value as Record<string, unknown>).props);
    expect(ids(sinks.main!.written)).toEqual(range(50));
    for (let i = 0; i < 50; i++) {
      const want = i < 10 || i >= 40 ? { delivery_mode: 2 } : i < 20 ? { content_type: 'application/json', delivery_mode: 2 } : i < 30 ? { delivery_mode: 1 } : { delivery_mode: 2, message_id: 'm-2' };
      // The publishing client stamps every message with the time (seconds).
      const { timestamp, ...rest } = props[i] as Record<string, unknown>;
      expect(typeof timestamp, `record ${i}`).toBe('number');
      expect(rest, `record ${i}`).toEqual(want);
    }
  }, 30_000);

  it('a failing sink acknowledges nothing: the messages stay in the queue and come back redelivered', async () => {
    const queue = await admin.queue(uniqueName('fail'));
    await admin.publish(queue, jsonBodies(0, 50));
    const sinks: Record<string, RecordingSink> = { main: { ...newRecordingSink(), down: true } };
    const def = rabbitPipeline('fail', { queue }, recordingEndpoint('main'), { retry: { max_attempts: 3 } });
    const r = await startPipeline(def, env(sinks, memoryStateStore(), dataDir)).done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/sink is down/);
    // The failed consumer's connection is closed: every message is ready again (on_failure: requeue).
    await waitFor(async () => (await admin.ready(queue)) === 50, 'all 50 messages back in the queue', 10_000);
    sinks.main!.down = false;
    const h2 = startPipeline(rabbitPipeline('fail2', { queue }, recordingEndpoint('main'), { metadata: { redelivered: '_redelivered' } }), env(sinks, memoryStateStore(), dataDir));
    await waitFor(() => sinks.main!.written.length >= 50, '50 records after the restart');
    await stopped(h2);
    expect(ids(sinks.main!.written)).toEqual(range(50));
    expect(sinks.main!.written.every((w) => (w.value as { redelivered: boolean }).redelivered === true)).toBe(true);
    expect(await admin.ready(queue)).toBe(0);
  }, 30_000);

  it('on_failure: dead_letter rejects unwritten messages to the queue\'s dead-letter exchange', async () => {
    const dead = await admin.queue(uniqueName('dead'));
    const queue = admin.trackQueue(uniqueName('dlx-src'));
    await admin.conn.queueDeclare({ queue, durable: true, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': dead } });
    await admin.publish(queue, jsonBodies(0, 20));
    const sinks: Record<string, RecordingSink> = { main: { ...newRecordingSink(), down: true } };
    const def = rabbitPipeline('dlx', { queue, on_failure: 'dead_letter', dead_letter_exchange: '', dead_letter_routing_key: dead }, recordingEndpoint('main'), { retry: { max_attempts: 2 } });
    const r = await startPipeline(def, env(sinks, memoryStateStore(), dataDir)).done;
    expect(r.status).toBe('failed');
    await waitFor(async () => (await admin.ready(dead)) === 20, '20 dead-lettered messages', 10_000);
    expect(await admin.ready(queue)).toBe(0);
    const got = await admin.drain(dead);
    expect(got.map((m) => JSON.parse(m.body.toString()).id)).toEqual(range(20));
    expect(got[0]!.headers?.['x-death']).toBeDefined();
  }, 30_000);

  it('a stopped and restarted pipeline resumes without loss', async () => {
    const queue = await admin.queue(uniqueName('resume'));
    await admin.publish(queue, jsonBodies(0, 2000));
    const sinks: Record<string, RecordingSink> = { main: { ...newRecordingSink(), delayMs: 5 } };
    const def = rabbitPipeline('resume', { queue, prefetch: 100 }, recordingEndpoint('main'), { batch: { max_records: 50 } });
    const h = startPipeline(def, env(sinks, memoryStateStore(), dataDir));
    await waitFor(() => sinks.main!.written.length >= 300, 'some records before the stop');
    await stopped(h);
    const first = sinks.main!.written.length;
    expect(first).toBeLessThan(2000);
    // A graceful stop drains what was handed over and acks it; the rest is still in the queue.
    expect(await admin.ready(queue)).toBe(2000 - first);
    sinks.main!.delayMs = 0;
    const h2 = startPipeline(def, env(sinks, memoryStateStore(), dataDir));
    await waitFor(() => sinks.main!.written.length >= 2000, 'all 2000 records');
    await stopped(h2);
    expect(ids(sinks.main!.written)).toEqual(range(2000));
  }, 40_000);

  it('bad payloads follow bad_data: dlq gets them, the good ones go through, all are acknowledged', async () => {
    const queue = await admin.queue(uniqueName('bad'));
    await admin.publish(queue, ['{"id":0}', 'not json', '{"id":2}', '{"id": 3', '{"id":4}']);
    const sinks: Record<string, RecordingSink> = { main: newRecordingSink(), dlq: newRecordingSink() };
    const def = rabbitPipeline('bad', { queue }, recordingEndpoint('main'), { bad: 'dlq', dlq: recordingEndpoint('dlq') });
    const h = startPipeline(def, env(sinks, memoryStateStore(), dataDir));
    await waitFor(() => sinks.main!.written.length >= 3 && sinks.dlq!.written.length >= 2, '3 good and 2 bad records');
    await waitFor(async () => (await admin.ready(queue)) === 0, 'the queue to be empty');
    await stopped(h);
    expect(ids(sinks.main!.written)).toEqual([0, 2, 4]);
    const dead = sinks.dlq!.written.map((r) => r.value as { raw: string; error: string; metadata: Record<string, unknown> });
    expect(dead.map((d) => d.raw)).toEqual(['not json', '{"id": 3']);
    expect(dead[0]!.metadata._routing_key).toBe(queue);
  }, 30_000);

  it('bad_data: fail stops the pipeline; with on_failure: dead_letter the bad message ends up dead-lettered, not looping', async () => {
    const dead = await admin.queue(uniqueName('bad-dead'));
    const queue = uniqueName('bad-fail');
    await admin.publish(dead, []);
    const sinks: Record<string, RecordingSink> = { main: newRecordingSink() };
    const def = rabbitPipeline('badfail', { queue, on_failure: 'dead_letter', dead_letter_exchange: '', dead_letter_routing_key: dead }, recordingEndpoint('main'), { bad: 'fail' });
    // The pipeline declares the queue with its dead-letter arguments.
    admin.trackQueue(queue);
    const h = startPipeline(def, env(sinks, memoryStateStore(), dataDir));
    await waitFor(async () => (await admin.conn.queueDeclare({ queue, passive: true }).then(() => true, () => false)), 'the queue to be declared');
    await admin.publish(queue, ['{"id":0}', '{"id":1}', 'garbage']);
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/bad record/);
    // Everything not acknowledged is rejected: the bad message, and good ones of its batch (at-least-once).
    await waitFor(async () => (await admin.ready(queue)) === 0 && (await admin.ready(dead)) >= 1, 'the bad message dead-lettered', 10_000);
    const bodies = (await admin.drain(dead)).map((m) => m.body.toString());
    expect(bodies[bodies.length - 1]).toBe('garbage');
    // Records before the bad one may or may not have been written, depending on how the deliveries were batched.
    expect([[], [0], [0, 1]]).toContainEqual(ids(sinks.main!.written));
  }, 30_000);

  it('backpressure: the prefetch bounds what is in flight while the sink is slow', async () => {
    const queue = await admin.queue(uniqueName('bp'));
    await admin.publish(queue, jsonBodies(0, 600));
    const sinks: Record<string, RecordingSink> = { main: { ...newRecordingSink(), delayMs: 10 } };
    const def = rabbitPipeline('bp', { queue, prefetch: 40 }, recordingEndpoint('main'), { batch: { max_records: 20 }, buffer: { max_records: 30, max_bytes: 1 << 20 } });
    const h = startPipeline(def, env(sinks, memoryStateStore(), dataDir));
    let maxQueued = 0;
    await waitFor(() => {
      maxQueued = Math.max(maxQueued, h.stats.queued);
      return sinks.main!.written.length >= 600;
    }, 'all 600 records', 30_000);
    await stopped(h);
    expect(maxQueued).toBeLessThanOrEqual(40);
    expect(ids(sinks.main!.written)).toEqual(range(600));
  }, 40_000);
});

