// Core NATS against the real nats-server on 127.0.0.1:4222: options, round trips, request-reply, bad data, the
// durable buffer across a sink outage and a restart, the slow-consumer bound, and test().

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { ensureService } from '../../testing/services.js';
import { parseOptions } from '../../core/spec.js';
import { memoryStateStore } from '../../core/state.js';
import { createFormat } from '../../formats/index.js';
import { newRecordingSink, parsedOptions, sinkContext, type RecordingSink } from '../../testing/harness.js';
import type { PipelineHandle } from '../../core/runtime.js';
import { spec, sinkOptions, sourceOptions } from './index.js';
import { NatsSink } from './sink.js';
import { NATS_URL, endpoint, env, pipeline, removeTempDirs, startPipeline, tempDir, uniq, waitFor, waitRunning } from './testkit.js';

let nc: NatsConnection;
const handles: PipelineHandle[] = [];

beforeAll(async () => {
  await ensureService('nats');
  nc = await connect({ servers: NATS_URL });
});
afterEach(async () => {
  for (const h of handles.splice(0)) await h.stop();
});
afterAll(async () => {
  await nc?.close();
  removeTempDirs();
});

const enc = new TextEncoder();

/** Publishes warm-up messages until the pipeline's subscription is live (core NATS only delivers while subscribed). */
async function warmUp(subject: string, rec: RecordingSink): Promise<void> {
  await waitFor(async () => {
    nc.publish(subject, enc.encode('{"warm":true}'));
    await nc.flush();
    await new Promise((r) => setTimeout(r, 30));
    return rec.written.some((r) => (r.value as { warm?: boolean }).warm);
  }, 'the subscription to become live');
}
const data = (rec: RecordingSink) => rec.written.filter((r) => !(r.value as { warm?: boolean }).warm);

describe('nats options', () => {
  it('accepts the seed spellings: url list or bracketed string, aliases, dotted tls keys', () => {
    const a = parsedOptions(sourceOptions(), { url: '[nats://127.0.0.1:4222, nats://127.0.0.1:4223]', subject: 'a.>', 'tls.disable': true });
    expect(a.url).toEqual(['nats://127.0.0.1:4222', 'nats://127.0.0.1:4223']);
    expect(a.tls.disable).toBe(true);
    const b = parsedOptions(sourceOptions(), { servers: ['nats://h:4222'], subject: 'a.*.b', queue_group: 'g', username: 'u', pass: 'p', 'tls.skip_verify_server': true });
    expect(b).toMatchObject({ url: ['nats://h:4222'], queue: 'g', user: 'u', password: 'p', buffer: 'memory', queue_size: 65536 });
    expect(b.tls.skip_verify_server).toBe(true);
    // Timeplus lists prefetch_count and nak_delay for core nats as well.
    expect(parsedOptions(sourceOptions(), { url: NATS_URL, subject: 'x', prefetch_count: 10, nak_delay: '1s' })).toMatchObject({ queue_size: 10, nak_delay: 1000 });
  });

  it('rejects unknown keys with a suggestion, bad subjects and conflicting auth, naming the option', () => {
    const r = parseOptions(sourceOptions(), { url: NATS_URL, subjet: 'a' });
    expect(r.ok).toBe(false);
    const msgs = !r.ok ? r.issues.map((i) => `${i.path.join('.')}: ${i.message}`) : [];
    expect(msgs.join('\n')).toContain("subjet: unknown option 'subjet'; did you mean 'subject'?");
    const bad = parseOptions(sourceOptions(), { url: NATS_URL, subject: 'a.>.b' });
    expect(!bad.ok && bad.issues[0]!.message).toMatch(/'>' only at the end/);
    const auth = parseOptions(sourceOptions(), { url: NATS_URL, subject: 'a', token: 't', user: 'u', password: 'p' });
    expect(!auth.ok && auth.issues.map((i) => i.message).join()).toMatch(/choose one authentication method/);
    const url = parseOptions(sourceOptions(), { url: 'http://x', subject: 'a' });
    expect(!url.ok && url.issues[0]!.message).toMatch(/NATS server URL/);
    const tpl = parseOptions(sinkOptions(), { url: NATS_URL, subject: 'a.{{ region' });
    expect(!tpl.ok && tpl.issues[0]!.message).toMatch(/missing '}}'/);
  });

  it('fails to connect with an error naming the server and the cause', async () => {
    const o = parsedOptions(sourceOptions(), { url: 'nats://127.0.0.1:1', subject: 'x', connection_timeout: '2s' });
    const h = startPipeline(pipeline(endpoint('nats', o), endpoint('rec', { name: 'm' })), env({ m: newRecordingSink() }));
    const res = await h.done;
    expect(res.status).toBe('failed');
    expect(res.error!.message).toContain('nats://127.0.0.1:1');
  });
});

describe('nats source', () => {
  it('delivers published messages in order with _subject, _reply and _headers metadata', async () => {
    const base = uniq('src');
    const rec = newRecordingSink();
    const o = parsedOptions(sourceOptions(), { url: NATS_URL, subject: `${base}.>` });
    const h = startPipeline(
      pipeline(endpoint('nats', o, { meta: { subj: '_subject', reply: '_reply', hdrs: '_headers' } }), endpoint('rec', { name: 'm' })),
      env({ m: rec }),
    );
    handles.push(h);
    await waitRunning(h);
    await warmUp(`${base}.warm`, rec);
    const N = 5000;
    const hd = headers();
    hd.set('trace', 't-1');
    for (let i = 0; i < N; i++) nc.publish(`${base}.${i % 2 ? 'odd' : 'even'}`, enc.encode(JSON.stringify({ i })), i === 0 ? { headers: hd, reply: 'inbox.x' } : undefined);
    await nc.flush();
    await waitFor(() => data(rec).length >= N, `${N} records`);
    const rows = data(rec).map((r) => r.value as { i: number; subj: string; reply: string | null; hdrs: Record<string, string> | null });
    expect(rows.map((r) => r.i)).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(rows[0]).toMatchObject({ subj: `${base}.even`, reply: 'inbox.x', hdrs: { trace: 't-1' } });
    expect(rows[1]).toMatchObject({ subj: `${base}.odd`, reply: null });
  });

  it('applies bad_data: drop skips undecodable payloads, dlq keeps their bytes and subject', async () => {
    const base = uniq('bad');
    const main = newRecordingSink();
    const dead = newRecordingSink();
    const o = parsedOptions(sourceOptions(), { url: NATS_URL, subject: `${base}.*` });
    const h = startPipeline(pipeline(endpoint('nats', o, { bad: 'dlq' }), endpoint('rec', { name: 'm' }), { dlq: endpoint('rec', { name: 'd' }) }), env({ m: main, d: dead }));
    handles.push(h);
    await waitRunning(h);
    await warmUp(`${base}.warm`, main);
    nc.publish(`${base}.x`, enc.encode('{"ok":1}'));
    nc.publish(`${base}.x`, enc.encode('{not json'));
    nc.publish(`${base}.x`, enc.encode('{"ok":2}'));
    await nc.flush();
    await waitFor(() => data(main).length === 2 && dead.written.length === 1, 'two good and one dead-lettered record');
    const d = dead.written[0]!.value as { raw: string; metadata: Record<string, unknown>; error: string };
    expect(d.raw).toBe('{not json');
    expect(d.metadata._subject).toBe(`${base}.x`);
    expect(h.stats.errors).toBe(1);

    const failRec = newRecordingSink();
    const h2 = startPipeline(pipeline(endpoint('nats', parsedOptions(sourceOptions(), { url: NATS_URL, subject: `${base}.f` }), { bad: 'fail' }), endpoint('rec', { name: 'f' }), { name: 'fail' }), env({ f: failRec }));
    handles.push(h2);
    await waitRunning(h2);
    await warmUp(`${base}.f`, failRec);
    nc.publish(`${base}.f`, enc.encode('oops'));
    await nc.flush();
    const res = await h2.done;
    expect(res.status).toBe('failed');
    expect(res.error!.message).toMatch(/bad record/);
  });

  it('buffer: memory bounds the queue while the sink is slow and counts the drops', async () => {
    const base = uniq('slow');
    const rec = newRecordingSink();
    const o = parsedOptions(sourceOptions(), { url: NATS_URL, subject: base, queue_size: 100 });
    const h = startPipeline(
      pipeline(endpoint('nats', o), endpoint('rec', { name: 'm' }), { buffer: { max_records: 50 }, batch: { max_records: 50 } }),
      env({ m: rec }),
    );
    handles.push(h);
    await waitRunning(h);
    await warmUp(base, rec);
    const before = data(rec).length;
    rec.delayMs = 100;
    const N = 2000;
    for (let i = 0; i < N; i++) nc.publish(base, enc.encode(JSON.stringify({ i })));
    await nc.flush();
    const m = () => h.metrics.source.snapshot();
    await waitFor(() => (m().messages_received ?? 0) >= N + before, 'the burst to arrive');
    rec.delayMs = 0;
    // Everything that was not dropped reaches the sink; dropped + delivered accounts for every message.
    await waitFor(() => data(rec).length - before + (m().dropped ?? 0) >= N, 'delivered + dropped to cover the burst');
    const got = data(rec).slice(before).map((r) => (r.value as { i: number }).i);
    expect(m().dropped).toBeGreaterThan(0);
    expect(got.length + m().dropped!).toBe(N);
    expect(got).toEqual([...got].sort((a, b) => a - b));
  });
});

describe('nats durable buffer', () => {
  it('loses nothing across a sink outage and a pipeline restart', async () => {
    const base = uniq('dur');
    const dataDir = tempDir();
    const state = memoryStateStore();
    const rec = newRecordingSink();
    const o = parsedOptions(sourceOptions(), { url: NATS_URL, subject: base, buffer: 'durable', buffer_fsync: 'never' });
    const def = pipeline(endpoint('nats', o), endpoint('rec', { name: 'm' }), { retry: { max_attempts: 1000 } });
    const h = startPipeline(def, env({ m: rec }, state, dataDir), { drainTimeoutMs: 300 });
    await waitRunning(h);
    await warmUp(base, rec);
    rec.down = true;
    const N = 3000;
    for (let i = 0; i < N; i++) nc.publish(base, enc.encode(JSON.stringify({ i })));
    await nc.flush();
    // Everything reached the log while the sink was down; the pipeline stops with none of it acknowledged.
    await waitFor(() => h.stats.records_in >= N, 'the burst to be appended');
    await h.stop();
    expect(data(rec)).toHaveLength(0);
    rec.down = false;
    const h2 = startPipeline(def, env({ m: rec }, state, dataDir));
    handles.push(h2);
    await waitFor(() => data(rec).length >= N, `all ${N} records after the restart`);
    const ids = data(rec).map((r) => (r.value as { i: number }).i);
    expect(new Set(ids).size).toBe(N);
    expect(ids).toEqual(Array.from({ length: N }, (_, i) => i));
  });
});

describe('nats sink', () => {
  it('publishes to a templated subject with headers; the write resolves after the server has them', async () => {
    const base = uniq('sink');
    const got: Array<{ subject: string; data: string; h?: string; fwd?: string }> = [];
    const sub = nc.subscribe(`${base}.>`, { callback: (_e, m) => void got.push({ subject: m.subject, data: m.string(), h: m.headers?.get('x-id'), fwd: m.headers?.get('from-source') }) });
    await nc.flush();
    const sink = new NatsSink(parsedOptions(sinkOptions(), { url: NATS_URL, subject: `${base}.{{ region }}.{{ dev.id }}`, headers: { 'x-id': 'id-{{ n }}' } }));
    await sink.open(sinkContext(createFormat({ name: 'json', options: {} }).encoder()));
    const N = 1000;
    await sink.write(Array.from({ length: N }, (_, n) => ({ value: { n, region: n % 2 ? 'eu' : 'us', dev: { id: `d${n % 3}` } }, headers: { 'from-source': 'yes' } })));
    await nc.flush();
    await waitFor(() => got.length === N, `${N} messages`);
    expect(got[0]).toEqual({ subject: `${base}.us.d0`, data: '{"n":0,"region":"us","dev":{"id":"d0"}}', h: 'id-0', fwd: 'yes' });
    expect(got[5]!.subject).toBe(`${base}.eu.d2`);
    // A record without the template's field fails the write with the field's name.
    await expect(sink.write([{ value: { n: 1 } }])).rejects.toThrow(/field 'region' is missing/);
    await sink.close();
    sub.unsubscribe();
  });

  it('template (dataTemplate) renders the payload the subscriber receives; the subject template takes helpers', async () => {
    const base = uniq('tpl');
    const got: Array<{ subject: string; data: string }> = [];
    const sub = nc.subscribe(`${base}.>`, { callback: (_e, m) => void got.push({ subject: m.subject, data: m.string() }) });
    await nc.flush();
    const sink = new NatsSink(parsedOptions(sinkOptions(), { url: NATS_URL, subject: `${base}.{{ lower region }}`, dataTemplate: '{{ region }}:{{ n }} key={{ _key }}', template_escape: 'none' }));
    await sink.open(sinkContext(createFormat({ name: 'json', options: {} }).encoder()));
    await sink.write([{ value: { n: 1, region: 'EU' }, key: 'k1' }, { value: { n: 2, region: 'US' } }]);
    await nc.flush();
    await waitFor(() => got.length === 2, '2 messages');
    expect(got).toEqual([
      { subject: `${base}.eu`, data: 'EU:1 key=k1' },
      { subject: `${base}.us`, data: 'US:2 key=' },
    ]);
    await sink.close();
    sub.unsubscribe();
  });

  it('request: true waits for each reply, and fails (retriably) when nobody answers', async () => {
    const subject = uniq('req');
    const seen: string[] = [];
    const responder = nc.subscribe(subject, { callback: (_e, m) => void (seen.push(m.string()), m.respond(enc.encode('ok'))) });
    await nc.flush();
    const sink = new NatsSink(parsedOptions(sinkOptions(), { url: NATS_URL, subject, request: true, request_timeout: '2s' }));
    await sink.open(sinkContext(createFormat({ name: 'json', options: {} }).encoder()));
    await sink.write([{ value: { a: 1 } }, { value: { a: 2 } }]);
    expect(seen).toEqual(['{"a":1}', '{"a":2}']);
    responder.unsubscribe();
    await nc.flush();
    const err = await sink.write([{ value: { a: 3 } }]).catch((e) => e);
    expect(err.message).toMatch(new RegExp(`request to subject '${subject}' got no reply`));
    expect(err.retriable).toBe(true);
    await sink.close();
  });
});

describe('nats test()', () => {
  it('reports each step; a wrong port fails naming the server', async () => {
    const steps: string[] = [];
    await spec.test!({ url: NATS_URL, subject: uniq('t') }, 'sink', (s) => steps.push(s.message), new AbortController().signal);
    expect(steps[0]).toMatch(/connecting to nats:\/\/127.0.0.1:4222/);
    expect(steps.join('\n')).toMatch(/connected to .*NATS 2\./);
    const bad: Array<{ message: string; error?: boolean }> = [];
    await expect(spec.test!({ url: 'nats://127.0.0.1:1', subject: 'x', connection_timeout: '1s' }, 'source', (s) => bad.push(s), new AbortController().signal)).rejects.toThrow(/127.0.0.1:1/);
    expect(bad.at(-1)!.error).toBe(true);
  });
});
