// JetStream against the real nats-server on 127.0.0.1:4222 (-js): options, sink -> source round trip with metadata,
// Msg-Id de-duplication, acks only after the sink, resume after a pipeline restart, a broker restart mid-stream,
// bad data, autocomplete and test(). Every test uses its own stream and removes it.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { ensureService, stopService } from '../../testing/services.js';
import { parseOptions } from '../../core/spec.js';
import { memoryStateStore } from '../../core/state.js';
import { createFormat } from '../../formats/index.js';
import { newRecordingSink, parsedOptions, sinkContext, type RecordingSink } from '../../testing/harness.js';
import type { PipelineHandle } from '../../core/runtime.js';
import { MetricSet } from '../../core/metrics.js';
import { spec, sinkOptions, sourceOptions } from './index.js';
import { JetStreamSink } from './sink.js';
import { sourceOptions as natsSourceOptions } from '../nats/index.js';
import { NATS_URL, STOP_NATS, endpoint, env, pipeline, removeTempDirs, startPipeline, uniq, waitFor, waitRunning } from '../nats/testkit.js';

let nc: NatsConnection;
let jsm: JetStreamManager;
const handles: PipelineHandle[] = [];
const streams: string[] = [];

beforeAll(async () => {
  await ensureService('nats');
  nc = await connect({ servers: NATS_URL, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  jsm = await jetstreamManager(nc);
});
afterEach(async () => {
  for (const h of handles.splice(0)) await h.stop();
  for (const s of streams.splice(0)) await jsm.streams.delete(s).catch(() => undefined);
});
afterAll(async () => {
  await nc?.close();
  removeTempDirs();
});

const enc = new TextEncoder();

/** A fresh file-backed stream capturing `<name>.>` with `n` JSON messages {i} in it. */
async function stream(n = 0, storage: 'file' | 'memory' = 'file'): Promise<{ name: string; subject: string }> {
  const name = uniq('S').toUpperCase();
  streams.push(name);
  await jsm.streams.add({ name, subjects: [`${name}.>`], storage });
  const js = jetstream(nc);
  for (let off = 0; off < n; off += 1000) {
    const acks = [];
    for (let i = off; i < Math.min(n, off + 1000); i++) acks.push(js.publish(`${name}.m`, enc.encode(JSON.stringify({ i }))));
    await Promise.all(acks);
  }
  return { name, subject: `${name}.>` };
}

const ids = (rec: RecordingSink) => rec.written.map((r) => (r.value as { i: number }).i);
const distinct = (rec: RecordingSink) => new Set(ids(rec)).size;

describe('nats_jetstream options', () => {
  it('accepts the Timeplus names with defaults, and requires subject or stream', () => {
    const o = parsedOptions(sourceOptions(), { url: '[nats://127.0.0.1:4222]', subject: 'a.>', durable: 'd', 'tls.disable': 'true' });
    expect(o).toMatchObject({ deliver: 'all', ack_wait: 30_000, max_ack_pending: 1024, prefetch_count: 524288, bind: false, durable: 'd' });
    expect(parsedOptions(sourceOptions(), { url: NATS_URL, stream_name: 'S', consumer: 'c', deliver_policy: 'by_start_time', start_time: '2026-01-02T03:04:05Z', nak_delay: '2s' })).toMatchObject({
      stream: 'S',
      durable: 'c',
      start_time: '2026-01-02T03:04:05.000Z',
      nak_delay: 2000,
    });
    const none = parseOptions(sourceOptions(), { url: NATS_URL });
    expect(!none.ok && none.issues.map((i) => i.message).join()).toMatch(/either `subject` or `stream` is required/);
    const typo = parseOptions(sourceOptions(), { url: NATS_URL, stream: 'S', max_ack_pendng: 5 });
    expect(!typo.ok && typo.issues[0]!.message).toBe("unknown option 'max_ack_pendng'; did you mean 'max_ack_pending'?");
    const deliver = parseOptions(sourceOptions(), { url: NATS_URL, stream: 'S', deliver: 'first' });
    expect(!deliver.ok && deliver.issues[0]!.message).toMatch(/must be one of "all", "last", "new", "by_start_time"/);
    const sink = parsedOptions(sinkOptions(), { url: NATS_URL, subject: 'o.{{ r }}', msg_id: 'id', stream: { name: 'O', subjects: 'o.>', max_age: '1h' } });
    expect(sink.create_stream).toMatchObject({ name: 'O', subjects: ['o.>'], max_age: 3_600_000, storage: 'file' });
    expect(sink.msg_id_field).toBe('id');
  });
});

describe('nats_jetstream sink and source', () => {
  it('round trip: the sink creates the stream and publishes; the source reads every message with its metadata', async () => {
    const name = uniq('RT').toUpperCase();
    streams.push(name);
    const sink = new JetStreamSink(parsedOptions(sinkOptions(), { url: NATS_URL, subject: `${name}.{{ kind }}`, msg_id_field: 'id', headers: { h: 'v-{{ id }}' }, create_stream: { name, subjects: [`${name}.>`] } }));
    await sink.open(sinkContext(createFormat({ name: 'json', options: {} }).encoder()));
    const N = 10_000;
    for (let off = 0; off < N; off += 1000) {
      await sink.write(Array.from({ length: 1000 }, (_, k) => ({ value: { i: off + k, id: `id-${off + k}`, kind: (off + k) % 2 ? 'b' : 'a' } })));
    }
    await sink.close();
    expect((await jsm.streams.info(name)).state.messages).toBe(N);

    const rec = newRecordingSink();
    const o = parsedOptions(sourceOptions(), { url: NATS_URL, stream: name, durable: 'rt' });
    const h = startPipeline(
      pipeline(endpoint('nats_jetstream', o, { meta: { st: '_stream', seq: '_sequence', subj: '_subject', dc: '_delivery_count', hd: '_headers' } }), endpoint('rec', { name: 'm' })),
      env({ m: rec }),
    );
    handles.push(h);
    await waitFor(() => rec.written.length >= N, `${N} records`);
    expect(ids(rec)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(rec.written[1]!.value).toMatchObject({ st: name, seq: 2, subj: `${name}.b`, dc: 1, hd: { h: 'v-id-1', 'Nats-Msg-Id': 'id-1' } });
    expect(rec.written[1]!.timestamp).toBeGreaterThan(Date.now() - 60_000);
    await waitFor(async () => (await jsm.consumers.info(name, 'rt')).ack_floor.stream_seq === N, 'every message to be acknowledged');
  });

  it('Nats-Msg-Id from msg_id_field: a re-sent batch is stored once', async () => {
    const { name } = await stream();
    const sink = new JetStreamSink(parsedOptions(sinkOptions(), { url: NATS_URL, subject: `${name}.x`, msg_id_field: 'order.id' }));
    const metrics = new MetricSet();
    await sink.open(sinkContext(createFormat({ name: 'json', options: {} }).encoder(), { metrics }));
    const batch = Array.from({ length: 500 }, (_, i) => ({ value: { order: { id: `o${i}` } } }));
    await sink.write(batch);
    await sink.write(batch); // what a retry after a lost PubAck does
    await sink.write(batch.slice(0, 10).concat([{ value: { order: { id: 'new' } } }]));
    expect((await jsm.streams.info(name)).state.messages).toBe(501);
    expect(metrics.snapshot()).toMatchObject({ duplicates: 510, messages_published: 501 });
    await expect(sink.write([{ value: { other: 1 } }])).rejects.toThrow(/msg_id_field 'order.id' is missing/);
    await sink.close();
  });

  it('template renders the stored payload', async () => {
    const { name } = await stream();
    const sink = new JetStreamSink(parsedOptions(sinkOptions(), { url: NATS_URL, subject: `${name}.t`, template: '{"id":"{{ order.id }}","q":{{ json q }}}' }));
    await sink.open(sinkContext(createFormat({ name: 'json', options: {} }).encoder()));
    await sink.write([{ value: { order: { id: 'a"1' }, q: [1, 2], other: true } }]);
    const m = await jsm.streams.getMessage(name, { last_by_subj: `${name}.t` });
    expect(m!.string()).toBe('{"id":"a\\"1","q":[1,2]}');
    await sink.close();
  });

  it('a subject no stream captures fails the write retriably, naming the subject', async () => {
    const subject = uniq('nostream');
    const sink = new JetStreamSink(parsedOptions(sinkOptions(), { url: NATS_URL, subject, publish_timeout: '1s' }));
    await sink.open(sinkContext(createFormat({ name: 'json', options: {} }).encoder()));
    const err = await sink.write([{ value: { a: 1 } }]).catch((e) => e);
    expect(err.message).toContain(`subject '${subject}'`);
    expect(err.retriable).toBe(true);
    await sink.close();
  });
});

describe('nats_jetstream acknowledgement', () => {
  it('acks nothing while the sink fails; on stop the messages are nak\'ed and redelivered to the next run', async () => {
    const { name } = await stream(300);
    const rec = newRecordingSink();
    rec.down = true;
    const o = parsedOptions(sourceOptions(), { url: NATS_URL, stream: name, durable: 'acks', ack_wait: '60s' });
    const def = pipeline(endpoint('nats_jetstream', o), endpoint('rec', { name: 'm' }), { retry: { max_attempts: 1000 } });
    const h = startPipeline(def, env({ m: rec }), { drainTimeoutMs: 300 });
    await waitFor(() => rec.writes >= 3, 'the sink to fail a few times');
    const during = await jsm.consumers.info(name, 'acks');
    expect(during.ack_floor.stream_seq).toBe(0);
    expect(during.num_ack_pending).toBe(300);
    await h.stop();
    // Nak'ed on stop: redelivered at once (not after the 60 s ack_wait) to the next run, which acks them.
    rec.down = false;
    const h2 = startPipeline(def, env({ m: rec }));
    handles.push(h2);
    await waitFor(() => distinct(rec) >= 300, 'the 300 redelivered records', 10_000);
    expect([...new Set(ids(rec))].sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(rec.written.every((r) => (r.meta!._delivery_count as number) >= 2)).toBe(true);
    await waitFor(async () => (await jsm.consumers.info(name, 'acks')).ack_floor.stream_seq === 300, 'the acks');
  });

  it('a pipeline restart resumes after the last acknowledged message without loss', async () => {
    const N = 20_000;
    const { name } = await stream(N);
    const rec = newRecordingSink();
    const o = parsedOptions(sourceOptions(), { url: NATS_URL, stream: name, durable: 'resume' });
    const def = pipeline(endpoint('nats_jetstream', o), endpoint('rec', { name: 'm' }), { batch: { max_records: 500 } });
    const h = startPipeline(def, env({ m: rec }));
    await waitFor(() => rec.written.length >= N / 4, 'a quarter of the stream');
    await h.stop();
    const first = rec.written.length;
    expect(first).toBeLessThan(N);
    const h2 = startPipeline(def, env({ m: rec }));
    handles.push(h2);
    await waitFor(() => distinct(rec) >= N, `all ${N} records`, 30_000);
    // A graceful stop drains and acks what was delivered, so the second run starts right after it.
    expect(rec.written.length).toBe(N);
    expect(ids(rec)).toEqual(Array.from({ length: N }, (_, i) => i));
  });

  it('bad payloads: fail stops without acking the record; drop acks it and goes on', async () => {
    const { name } = await stream();
    const js = jetstream(nc);
    await js.publish(`${name}.m`, enc.encode('{"i":0}'));
    await js.publish(`${name}.m`, enc.encode('{broken'));
    await js.publish(`${name}.m`, enc.encode('{"i":2}'));
    const rec = newRecordingSink();
    const failOpts = parsedOptions(sourceOptions(), { url: NATS_URL, stream: name, durable: 'bad' });
    const h = startPipeline(pipeline(endpoint('nats_jetstream', failOpts, { bad: 'fail' }), endpoint('rec', { name: 'm' }), { batch: { max_records: 1 } }), env({ m: rec }));
    const res = await h.done;
    expect(res.status).toBe('failed');
    expect(res.error!.message).toMatch(/bad record/);
    const info = await jsm.consumers.info(name, 'bad');
    expect(info.ack_floor.stream_seq).toBeLessThan(2);

    const rec2 = newRecordingSink();
    const h2 = startPipeline(pipeline(endpoint('nats_jetstream', failOpts, { bad: 'drop' }), endpoint('rec', { name: 'm' })), env({ m: rec2 }));
    handles.push(h2);
    await waitFor(() => rec2.written.some((r) => (r.value as { i: number }).i === 2), 'the record after the bad one');
    await waitFor(async () => (await jsm.consumers.info(name, 'bad')).ack_floor.stream_seq === 3, 'the bad record to be acked under drop');
    expect(h2.stats.dropped).toBe(1);
  });
});

describe('nats_jetstream broker restart', () => {
  it('survives a nats-server restart mid-stream: the source and the sink reconnect, nothing is lost or stored twice', async () => {
    const N = 20_000;
    const { name } = await stream(N);
    const rec = newRecordingSink();
    rec.delayMs = 5;
    const o = parsedOptions(sourceOptions(), { url: NATS_URL, stream: name, durable: 'restart', reconnect_wait: '200ms', ack_wait: '5s' });
    const h = startPipeline(pipeline(endpoint('nats_jetstream', o), endpoint('rec', { name: 'm' }), { batch: { max_records: 200 }, retry: { max_attempts: 1000 } }), env({ m: rec }));
    handles.push(h);
    // A core NATS pipeline on the same server: it must come back after the restart too.
    const coreSubject = uniq('core');
    const coreRec = newRecordingSink();
    const hc = startPipeline(
      pipeline(endpoint('nats', parsedOptions(natsSourceOptions(), { url: NATS_URL, subject: coreSubject, reconnect_wait: '200ms' })), endpoint('rec', { name: 'c' }), { name: 'core' }),
      env({ c: coreRec }),
    );
    handles.push(hc);
    // The sink writes batches through the restart, retrying failed ones as the runtime does; ids de-duplicate them.
    const sinkStream = (await stream()).name;
    const sink = new JetStreamSink(parsedOptions(sinkOptions(), { url: NATS_URL, subject: `${sinkStream}.x`, msg_id_field: 'i', publish_timeout: '1s', reconnect_wait: '200ms' }));
    await sink.open(sinkContext(createFormat({ name: 'json', options: {} }).encoder()));
    const M = 3000;
    let retries = 0;
    let stopping = false;
    const writing = (async () => {
      for (let off = 0; off < M; off += 100) {
        // The second half is written while the server goes down and comes back.
        if (off === M / 2) await waitFor(() => stopping, 'the server to be stopped', 30_000);
        const batch = Array.from({ length: 100 }, (_, k) => ({ value: { i: off + k } }));
        for (;;) {
          try {
            await sink.write(batch);
            break;
          } catch (e) {
            if (!(e as { retriable?: boolean }).retriable) throw e;
            retries++;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }
    })();
    await waitRunning(h);
    await waitFor(() => rec.written.length >= N / 5, 'a fifth of the stream');
    stopping = true;
    const start = await stopService('nats', STOP_NATS, 20_000);
    try {
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      await start();
    }
    rec.delayMs = 0;
    await waitFor(() => distinct(rec) >= N, `all ${N} records after the restart`, 45_000);
    expect(h.status()).toBe('running');
    expect(h.metrics.source.snapshot().reconnects).toBeGreaterThanOrEqual(1);
    expect([...new Set(ids(rec))].sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));

    await writing;
    await sink.close();
    expect(retries).toBeGreaterThan(0);
    expect((await jsm.streams.info(sinkStream)).state.messages).toBe(M);

    await waitFor(async () => {
      nc.publish(coreSubject, enc.encode('{"after":true}'));
      await nc.flush();
      await new Promise((r) => setTimeout(r, 50));
      return coreRec.written.length > 0;
    }, 'the core NATS source to receive after the restart', 20_000);
    expect(hc.status()).toBe('running');
  }, 90_000);
});

describe('nats_jetstream autocomplete and test()', () => {
  it('lists streams, their subjects and the durable consumers of the named stream', async () => {
    const { name, subject } = await stream();
    await jsm.consumers.add(name, { durable_name: 'ac', ack_policy: 'explicit' });
    const ac = await spec.autocomplete!({ url: NATS_URL, stream: name }, new AbortController().signal);
    expect(ac.stream).toContain(name);
    expect(ac.subject).toContain(subject);
    expect(ac.durable).toEqual(['ac']);
  });

  it('test() reports connection, JetStream, stream and consumer; a missing bound consumer fails', async () => {
    const { name } = await stream(3);
    const steps: string[] = [];
    await spec.test!({ url: NATS_URL, stream: name, durable: 'nope' }, 'source', (s) => steps.push(s.message), new AbortController().signal);
    expect(steps.join('\n')).toMatch(/JetStream is enabled/);
    expect(steps.join('\n')).toMatch(new RegExp(`stream '${name}': 3 message\\(s\\)`));
    expect(steps.at(-1)).toMatch(/consumer 'nope' does not exist yet/);
    await expect(spec.test!({ url: NATS_URL, stream: name, durable: 'nope', bind: true }, 'source', () => undefined, new AbortController().signal)).rejects.toThrow(/bind: true/);
    await expect(spec.test!({ url: NATS_URL, subject: uniq('zz') }, 'sink', () => undefined, new AbortController().signal)).rejects.toThrow(/no stream captures subject/);
  });
});
