// Against the real Mosquitto on 127.0.0.1:1883 (/etc/mosquitto/mosquitto.conf: anonymous access, `persistence true`,
// so sessions and queued QoS 1/2 messages survive a SIGTERM restart; default `max_queued_messages` 1000 per client).
// Every test uses topics and client ids with a random suffix. The tests share one broker and run in this one file, in
// order, because one of them restarts the broker.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import { startPipeline, type PipelineHandle, type RuntimeEnv } from '../../core/runtime.js';
import { memoryStateStore, type StateStore } from '../../core/state.js';
import type { EndpointDef, PipelineDef } from '../../core/model.js';
import type { BadDataPolicy, SluiceRecord } from '../../core/types.js';
import { endpointDef, newRecordingSink, parsedOptions, pipelineDef, recordingEndpoint, recordingEnv, waitFor as pollUntil, type RecordingSink, type TestPipelineOptions } from '../../testing/harness.js';
import { ensureService, portOpen } from '../../testing/services.js';
import { spec } from './index.js';
import { clientsOpened } from './connection.js';
import { sinkOptions, sourceOptions } from './options.js';
import { MqttSink } from './sink.js';
import { createFormat } from '../../formats/index.js';
import { sinkContext } from '../../testing/harness.js';

const BROKER = 'tcp://127.0.0.1:1883';
const run = randomBytes(4).toString('hex');
let seq = 0;
/** A topic (prefix) unique to this run and test. */
const uniq = (name: string) => `sluice-test/${run}/${name}-${++seq}`;

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) {
    try {
      await c();
    } catch {
      /* best effort */
    }
  }
  cleanup = [];
});

let pub: MqttClient;
beforeAll(async () => {
  await ensureService('mosquitto');
  pub = await mqtt.connectAsync(BROKER, { clientId: `sluice-test-pub-${run}`, reconnectPeriod: 200 });
});
afterAll(async () => {
  await pub?.endAsync();
});

const waitFor = (cond: () => boolean, what: string, ms = 10_000) => pollUntil(cond, what, ms, 10);

/** QoS 2: at most 20 publishes in flight, as Mosquitto silently drops QoS 2 messages beyond `max_inflight_messages`. */
async function publish(topic: string, payloads: string[], qos: 0 | 1 | 2 = 1, client = pub): Promise<void> {
  const step = qos === 2 ? 20 : 500;
  for (let i = 0; i < payloads.length; i += step) await Promise.all(payloads.slice(i, i + step).map((p) => client.publishAsync(topic, p, { qos })));
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const json = (ids: number[]) => ids.map((id) => JSON.stringify({ id }));

const env = (sinks: Record<string, RecordingSink>, state: StateStore = memoryStateStore(), dataDir = '/tmp/sluice-mqtt-test') => recordingEnv(sinks, { state, dataDir });

function mqttEndpoint(role: 'source' | 'sink', raw: Record<string, unknown>, extra: Partial<EndpointDef> = {}): EndpointDef {
  const input = { server: BROKER, ...raw };
  const options = role === 'source' ? parsedOptions(sourceOptions(), input) : parsedOptions(sinkOptions(), input);
  return endpointDef('mqtt', options as Record<string, unknown>, { config: raw, ...extra });
}

function pipeline(name: string, source: EndpointDef, sink: EndpointDef, o: Omit<TestPipelineOptions, 'batch'> = {}): PipelineDef {
  return pipelineDef(name, source, sink, { ...o, batch: { linger_ms: 2 }, retry: { initial_backoff_ms: 20, max_backoff_ms: 200, ...o.retry } });
}

function start(def: PipelineDef, e: RuntimeEnv, drainTimeoutMs = 5000): PipelineHandle {
  const h = startPipeline(def, e, { drainTimeoutMs });
  cleanup.push(async () => void (await h.stop()));
  return h;
}

/** Record ids without the probes (`id: -1`) that waitUntilSubscribed publishes. */
const ids = (rs: SluiceRecord[]) => rs.map((r) => (r.value as { id: number }).id).filter((i) => i >= 0);
const distinct = (rs: SluiceRecord[]) => new Set(ids(rs));

describe('mqtt source and sink against mosquitto', () => {
  const cases = [
    { qos: 0, version: '5' },
    { qos: 1, version: '3.1.1' },
    { qos: 2, version: '5' },
  ] as const;
  for (const { qos, version } of cases) {
    it(`round-trips records at QoS ${qos} over MQTT ${version}: source -> sink -> subscriber, with metadata`, async () => {
      const inTopic = uniq(`in-q${qos}`);
      const outTopic = uniq(`out-q${qos}`);
      const got: Array<{ topic: string; payload: string; qos: number; userProperties?: unknown }> = [];
      const sub = await mqtt.connectAsync(BROKER, { protocolVersion: 5 });
      cleanup.push(() => sub.endAsync());
      sub.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), qos: packet.qos, userProperties: packet.properties?.userProperties }));
      await sub.subscribeAsync(`${outTopic}/#`, { qos: 2 });
      const e = env({});
      const h = start(
        pipeline(
          `rt${qos}`,
          mqttEndpoint('source', { topic: `${inTopic}/+`, qos, protocol_version: version }, { metadata_fields: { topic: '_topic', q: '_qos', retained: '_retain' } }),
          mqttEndpoint('sink', { topic: `${outTopic}/{{ device }}`, qos, protocol_version: version, ...(version === '5' ? { user_properties: { origin: '{{ topic }}' } } : {}) }),
        ),
        e,
      );
      await waitUntilSubscribed(`${inTopic}/probe`, h);
      const n = 200;
      await publish(`${inTopic}/dev`, range(0, n).map((i) => JSON.stringify({ id: i, device: `d${i % 2}` })), qos);
      await waitFor(() => got.filter((g) => !g.payload.includes('"probe"')).length >= n, `${n} messages on ${outTopic}`);
      const data = got.filter((g) => !g.payload.includes('"probe"'));
      expect(data.map((g) => JSON.parse(g.payload).id).sort((a, b) => a - b)).toEqual(range(0, n));
      const first = JSON.parse(data.find((g) => JSON.parse(g.payload).id === 3)!.payload);
      expect(first).toMatchObject({ id: 3, device: 'd1', topic: `${inTopic}/dev`, q: qos, retained: false });
      expect(data.find((g) => JSON.parse(g.payload).id === 3)!.topic).toBe(`${outTopic}/d1`);
      expect(data.every((g) => g.qos === qos)).toBe(true);
      if (version === '5') expect(data[0]!.userProperties).toEqual({ origin: `${inTopic}/dev` });
    });
  }

  it('acknowledges QoS 1 messages only after the sink accepted them: a failing sink leaves them with the broker', async () => {
    const topic = uniq('ack');
    const clientId = `sluice-ack-${run}`;
    const src = { topic, qos: 1, client_id: clientId, clean_session: false };
    const sinks: Record<string, RecordingSink> = { main: { ...newRecordingSink(), down: true } };
    const h1 = start(pipeline('ack1', mqttEndpoint('source', src), recordingEndpoint('main'), { retry: { max_attempts: 1000 } }), env(sinks), 500);
    await waitUntilSubscribed(topic, h1);
    await publish(topic, json(range(0, 50)));
    await waitFor(() => h1.stats.records_in >= 50, 'the source to receive 50 messages');
    // Every message reached the pipeline, none reached the sink; stopping now (the drain times out) must not
    // acknowledge any of them.
    await h1.stop();
    expect(sinks.main!.written).toHaveLength(0);

    sinks.main!.down = false;
    const h2 = start(pipeline('ack2', mqttEndpoint('source', src), recordingEndpoint('main')), env(sinks));
    await waitFor(() => distinct(sinks.main!.written).size >= 50, 'the broker to redeliver the 50 unacknowledged messages');
    expect([...distinct(sinks.main!.written)].sort((a, b) => a - b)).toEqual(range(0, 50));
    expect(sinks.main!.written.every((r) => r.meta?._qos === 1)).toBe(true);
    await h2.stop();
    // Acknowledged now: a third session gets nothing more.
    const again: Record<string, RecordingSink> = { main: newRecordingSink() };
    const h3 = start(pipeline('ack3', mqttEndpoint('source', src), recordingEndpoint('main')), env(again));
    await waitUntilSubscribed(topic, h3, 'probe-after');
    expect(ids(again.main!.written)).toEqual([]);
    await h3.stop();
    await dropSession(clientId);
  });

  it('resumes after a pipeline restart without losing what was published while it was stopped (persistent session)', async () => {
    const topic = uniq('resume');
    const clientId = `sluice-resume-${run}`;
    const src = { topic, qos: 1, client_id: clientId, clean_session: false };
    const sinks: Record<string, RecordingSink> = { main: newRecordingSink() };
    const h1 = start(pipeline('resume1', mqttEndpoint('source', src), recordingEndpoint('main')), env(sinks));
    await waitUntilSubscribed(topic, h1);
    await publish(topic, json(range(0, 100)));
    await waitFor(() => distinct(sinks.main!.written).size >= 100, 'the first 100');
    await h1.stop();
    await publish(topic, json(range(100, 300))); // while no pipeline runs
    const h2 = start(pipeline('resume2', mqttEndpoint('source', src), recordingEndpoint('main')), env(sinks));
    await publish(topic, json(range(300, 100)));
    await waitFor(() => distinct(sinks.main!.written).size >= 400, 'all 400 messages');
    expect([...distinct(sinks.main!.written)].sort((a, b) => a - b)).toEqual(range(0, 400));
    await h2.stop();
    await dropSession(clientId);
  });

  it('survives a broker restart mid-stream: reconnects, and loses nothing published after the restart (QoS 1, persistent session)', async () => {
    const topic = uniq('restart');
    const clientId = `sluice-restart-${run}`;
    const sinks: Record<string, RecordingSink> = { main: newRecordingSink() };
    // Reconnecting only every 2 s leaves a window in which the broker is back but the source is not.
    const h = start(pipeline('restart', mqttEndpoint('source', { topic, qos: 1, client_id: clientId, clean_session: false, reconnect_interval: '2s' }), recordingEndpoint('main')), env(sinks));
    await waitUntilSubscribed(topic, h);
    await publish(topic, json(range(0, 100)));
    await waitFor(() => distinct(sinks.main!.written).size >= 100, 'the first 100');
    const pid = execFileSync('pidof', ['mosquitto']).toString().trim().split(/\s+/)[0]!;
    try {
      // SIGTERM: Mosquitto saves its persistence file (sessions, subscriptions, queued messages) on the way out.
      execFileSync('kill', [pid]);
      const deadline = Date.now() + 15_000;
      while ((await portOpen(1883)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await portOpen(1883)).toBe(false);
    } finally {
      await ensureService('mosquitto', 30_000);
    }
    expect(execFileSync('pidof', ['mosquitto']).toString().trim()).not.toBe(pid);
    // Published as soon as the broker is back, before the source reconnected: the restored session queues them.
    const p2 = await mqtt.connectAsync(BROKER, { clientId: `sluice-test-pub2-${run}` });
    cleanup.push(() => p2.endAsync());
    await publish(topic, json(range(100, 200)), 1, p2);
    await waitFor(() => distinct(sinks.main!.written).size >= 300, 'all 300 messages after the broker restart', 20_000);
    expect([...distinct(sinks.main!.written)].sort((a, b) => a - b)).toEqual(range(0, 300));
    expect(h.status()).toBe('running');
    await h.stop();
    await dropSession(clientId);
  }, 60_000);

  it('spreads a shared subscription ($share/group/topic) over two pipelines, each message to one of them', async () => {
    const topic = uniq('share');
    const group = `g${run}`;
    const sinks: Record<string, RecordingSink> = { a: newRecordingSink(), b: newRecordingSink() };
    const e = env(sinks);
    const ha = start(pipeline('share-a', mqttEndpoint('source', { topic: `$share/${group}/${topic}`, qos: 1 }), recordingEndpoint('a')), e);
    const hb = start(pipeline('share-b', mqttEndpoint('source', { topic: `$share/${group}/${topic}`, qos: 1 }), recordingEndpoint('b')), e);
    // Probes go to one member each; repeat until both have seen one, so both subscriptions are live.
    const deadline = Date.now() + 15_000;
    while (!(ha.stats.records_in > 0 && hb.stats.records_in > 0)) {
      if (Date.now() > deadline) throw new Error('the shared subscription did not reach both pipelines');
      await pub.publishAsync(topic, JSON.stringify({ id: -1 }), { qos: 1 });
      await new Promise((r) => setTimeout(r, 20));
    }
    await publish(topic, json(range(0, 200)));
    await waitFor(() => sinks.a!.written.length + sinks.b!.written.length >= 200, '200 messages over both');
    expect(sinks.a!.written.length).toBeGreaterThan(0);
    expect(sinks.b!.written.length).toBeGreaterThan(0);
    expect([...ids(sinks.a!.written), ...ids(sinks.b!.written)].sort((x, y) => x - y)).toEqual(range(0, 200));
  });

  it('keeps QoS 0 messages in the durable buffer across a sink outage and a pipeline restart', async () => {
    const topic = uniq('durable');
    const dataDir = mkdtempSync(join(tmpdir(), 'sluice-mqtt-'));
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const state = memoryStateStore();
    const sinks: Record<string, RecordingSink> = { main: { ...newRecordingSink(), down: true } };
    const src = { topic, qos: 0, buffer: 'durable', buffer_fsync: 'never' };
    const h1 = start(pipeline('durable', mqttEndpoint('source', src), recordingEndpoint('main'), { retry: { max_attempts: 3 } }), env(sinks, state, dataDir));
    await waitUntilSubscribed(topic, h1);
    await publish(topic, json(range(0, 100)), 0);
    // The sink gives up, the pipeline fails: with QoS 0 the broker has nothing left, only the buffer does.
    const r1 = await h1.done;
    expect(r1.status).toBe('failed');
    expect(sinks.main!.written).toHaveLength(0);
    sinks.main!.down = false;
    const h2 = start(pipeline('durable', mqttEndpoint('source', src), recordingEndpoint('main')), env(sinks, state, dataDir));
    await waitFor(() => distinct(sinks.main!.written).size >= 100, 'the 100 buffered messages');
    expect([...distinct(sinks.main!.written)].sort((a, b) => a - b)).toEqual(range(0, 100));
    expect(sinks.main!.written[0]!.meta?._topic).toBe(topic);
    await h2.stop();
  }, 30_000);

  it('sends undecodable payloads to the dead-letter sink with their topic, and acknowledges them', async () => {
    const topic = uniq('bad');
    const sinks: Record<string, RecordingSink> = { main: newRecordingSink(), dlq: newRecordingSink() };
    const h = start(
      pipeline('bad', mqttEndpoint('source', { topic, qos: 1 }, { bad_data: 'dlq' as BadDataPolicy }), recordingEndpoint('main'), { dlq: recordingEndpoint('dlq') }),
      env(sinks),
    );
    await waitUntilSubscribed(topic, h);
    for (const p of ['{"id":1}', '{"id": nope', '{"id":2}']) await pub.publishAsync(topic, p, { qos: 1 });
    await waitFor(() => sinks.main!.written.length >= 2 && sinks.dlq!.written.length >= 1, 'two good and one bad record');
    expect(ids(sinks.main!.written)).toEqual([1, 2]);
    const dead = sinks.dlq!.written[0]!.value as { raw: string; error: string; metadata: Record<string, unknown> };
    expect(dead.raw).toBe('{"id": nope');
    expect(dead.error).toMatch(/JSON/i);
    expect(dead.metadata._topic).toBe(topic);
  });

  it('drops undecodable payloads with bad_data: drop and fails the pipeline naming the reason with bad_data: fail', async () => {
    const topic = uniq('bad2');
    const sinks: Record<string, RecordingSink> = { main: newRecordingSink() };
    const hd = start(pipeline('drop', mqttEndpoint('source', { topic, qos: 1 }, { bad_data: 'drop' as BadDataPolicy }), recordingEndpoint('main')), env(sinks));
    await waitUntilSubscribed(topic, hd);
    for (const p of ['{"id":1}', 'not json', '{"id":2}']) await pub.publishAsync(topic, p, { qos: 1 });
    await waitFor(() => sinks.main!.written.length >= 2 && hd.stats.dropped >= 1, 'two good records and one dropped');
    await hd.stop();

    const topic2 = uniq('bad3');
    const hf = start(pipeline('fail', mqttEndpoint('source', { topic: topic2, qos: 0 }), recordingEndpoint('main')), env(sinks));
    await waitUntilSubscribed(topic2, hf);
    await pub.publishAsync(topic2, 'not json', { qos: 0 });
    const r = await hf.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/bad record/);
  });

  it('shares one client connection between endpoints naming the same connection profile, dispatching by topic', async () => {
    const ta = uniq('share-conn-a');
    const tb = uniq('share-conn-b');
    const out = uniq('share-conn-out');
    const got: string[] = [];
    const sub = await mqtt.connectAsync(BROKER);
    cleanup.push(() => sub.endAsync());
    sub.on('message', (_t, p) => got.push(p.toString()));
    await sub.subscribeAsync(out, { qos: 1 });
    const before = clientsOpened();
    const connsBefore = brokerConnections();
    const sinks: Record<string, RecordingSink> = { b: newRecordingSink() };
    const e = env(sinks);
    const profile = { profile: 'local' };
    const h1 = start(pipeline('conn-a', mqttEndpoint('source', { topic: ta, qos: 1 }, profile), mqttEndpoint('sink', { topic: out, qos: 1 }, profile)), e);
    const h2 = start(pipeline('conn-b', mqttEndpoint('source', { topic: tb, qos: 1 }, profile), recordingEndpoint('b')), e);
    await waitUntilSubscribed(ta, h1, 'probe', out, got);
    await waitUntilSubscribed(tb, h2);
    expect(clientsOpened() - before).toBe(1);
    expect(brokerConnections() - connsBefore).toBe(1);
    await publish(ta, json(range(0, 20)));
    await publish(tb, json(range(100, 20)));
    await waitFor(() => got.filter((g) => !g.includes('probe')).length >= 20 && ids(sinks.b!.written).length >= 20, 'both streams');
    expect(got.filter((g) => !g.includes('probe')).map((g) => JSON.parse(g).id).sort((a, b) => a - b)).toEqual(range(0, 20));
    expect(ids(sinks.b!.written).sort((a, b) => a - b)).toEqual(range(100, 20));
  });

  it('template (dataTemplate) renders the payload the subscriber receives', async () => {
    const out = uniq('tpl');
    const got: Array<[string, string]> = [];
    const sub = await mqtt.connectAsync(BROKER);
    cleanup.push(() => sub.endAsync());
    sub.on('message', (t, p) => got.push([t, p.toString()]));
    await sub.subscribeAsync(`${out}/#`, { qos: 1 });
    const sink = new MqttSink(parsedOptions(sinkOptions(), { server: BROKER, topic: `${out}/{{ lower dev }}`, qos: 1, dataTemplate: '{"d":"{{ dev }}","t":{{ number temp 1 }}}' }));
    await sink.open(sinkContext(createFormat({ name: 'json', options: {} }).encoder()));
    cleanup.push(() => sink.close());
    await sink.write([{ value: { dev: 'A', temp: 21.25 } }, { value: { dev: 'B"x', temp: 3 } }]);
    await waitFor(() => got.length === 2, 'both messages');
    expect(got).toEqual([
      [`${out}/a`, '{"d":"A","t":21.3}'],
      [`${out}/b"x`, '{"d":"B\\"x","t":3.0}'],
    ]);
  });

  it('test() connects, subscribes, samples a retained message and proposes a schema', async () => {
    const topic = uniq('probe');
    await pub.publishAsync(topic, JSON.stringify({ temp: 21.5, room: 'a' }), { qos: 1, retain: true });
    cleanup.push(() => pub.publishAsync(topic, '', { qos: 1, retain: true }).then(() => undefined));
    const steps: Array<{ message: string; error?: boolean }> = [];
    await spec.test!({ server: BROKER, topic }, 'source', (s) => steps.push(s), new AbortController().signal);
    const text = steps.map((s) => s.message).join('\n');
    expect(text).toMatch(/connecting to tcp:\/\/127\.0\.0\.1:1883/);
    expect(text).toMatch(/subscribed to/);
    expect(text).toMatch(/received 1 message/);
    expect(text).toMatch(/proposed schema.*temp/);
    expect(steps.some((s) => s.error)).toBe(false);

    const failed: Array<{ message: string; error?: boolean }> = [];
    await expect(spec.test!({ server: 'tcp://127.0.0.1:1', topic, connect_timeout: '2s' }, 'source', (s) => failed.push(s), new AbortController().signal)).rejects.toThrow(/127\.0\.0\.1:1/);
    expect(failed.at(-1)).toMatchObject({ error: true });
  });

  it('keeps up with a slow sink through backpressure without losing QoS 1 messages (20k records)', async () => {
    const topic = uniq('load');
    const sinks: Record<string, RecordingSink> = { main: { ...newRecordingSink(), delayMs: 10 } };
    // The in-flight window (max_inflight 1000) bounds what is unacknowledged; a smaller pipeline buffer makes the
    // source pause reading as well.
    const h = start(pipeline('load', mqttEndpoint('source', { topic, qos: 1 }), recordingEndpoint('main'), { buffer: { max_records: 300 } }), env(sinks));
    await waitUntilSubscribed(topic, h);
    const n = 20_000;
    const payload = (i: number) => JSON.stringify({ id: i, v: 'x'.repeat(80) });
    const t0 = Date.now();
    // Paced to at most 800 outstanding messages: while the source pauses reading, Mosquitto holds the backlog in its
    // per-client queue and drops QoS 1 messages beyond `max_queued_messages` (1000), persistent session or not.
    for (let i = 0; i < n; i += 500) {
      await waitFor(() => sinks.main!.written.length >= i - 300, 'the pipeline to keep up', 20_000);
      await publish(topic, range(i, 500).map(payload));
    }
    await waitFor(() => sinks.main!.written.length >= n, `${n} records`, 30_000);
    const secs = (Date.now() - t0) / 1000;
    expect(distinct(sinks.main!.written).size).toBe(n);
    expect(ids(sinks.main!.written)).toHaveLength(n);
    await h.stop();
    expect(h.metrics.source.snapshot().pauses).toBeGreaterThan(0);
    console.log(`mqtt QoS 1 -> slow sink: ${n} records in ${secs.toFixed(2)} s (${Math.round(n / secs)} records/s)`);
  }, 60_000);


  it('stays connected while reading is paused for longer than the keep-alive (a stalled sink)', async () => {
    const topic = uniq('stall');
    const sinks: Record<string, RecordingSink> = { main: newRecordingSink() };
    const h = start(pipeline('stall', mqttEndpoint('source', { topic, qos: 1, keepalive: '1s' }), recordingEndpoint('main'), { buffer: { max_records: 5 } }), env(sinks));
    await waitUntilSubscribed(topic, h);
    await waitFor(() => sinks.main!.written.length >= 1, 'the probe');
    sinks.main!.delayMs = 3000; // 3x the keep-alive: mqtt.js would declare the connection dead after 1.5x
    await publish(topic, json(range(0, 50)));
    await waitFor(() => ids(sinks.main!.written).length >= 1, 'the first stalled write', 10_000);
    sinks.main!.delayMs = 0;
    await waitFor(() => ids(sinks.main!.written).length >= 50, 'all 50 records', 15_000);
    await h.stop();
    const m = h.metrics.source.snapshot();
    expect(m.pauses).toBeGreaterThan(0);
    expect(m.reconnects).toBe(0);
    expect(ids(sinks.main!.written).sort((a, b) => a - b)).toEqual(range(0, 50));
  }, 30_000);
});

/** Established TCP connections from this process to the broker, as the kernel sees them. */
function brokerConnections(): number {
  const out = execFileSync('ss', ['-tnpH', 'state', 'established', '( dport = :1883 )']).toString();
  return out.split('\n').filter((l) => l.includes(`pid=${process.pid},`)).length;
}

/**
 * Publishes probe messages until the pipeline's sink shows one, proving the subscription is live (the SUBACK has no
 * event of its own here). Probes are `{"id": -1, "probe": true}`; tests filter them out by id.
 */
async function waitUntilSubscribed(topic: string, h: PipelineHandle, _label = 'probe', outTopic?: string, outGot?: string[]): Promise<void> {
  const deadline = Date.now() + 15_000;
  const before = h.stats.records_in;
  while (Date.now() < deadline) {
    if (h.status() === 'failed') throw h.lastError() ?? new Error('pipeline failed');
    await pub.publishAsync(topic, JSON.stringify({ id: -1, probe: true, device: 'probe' }), { qos: 0 });
    const until = Date.now() + 200;
    while (Date.now() < until && h.stats.records_in === before) await new Promise((r) => setTimeout(r, 10));
    if (h.stats.records_in > before && (!outTopic || outGot!.length > 0)) return;
  }
  throw new Error(`the source on ${topic} did not receive a probe within 15 s`);
}

/** Ends a persistent session so the broker does not keep it (a clean connect with the same id replaces it). */
async function dropSession(clientId: string): Promise<void> {
  const c = await mqtt.connectAsync(BROKER, { clientId, clean: true });
  await c.endAsync();
}
