// The sink's batch publisher (publisher.ts) against the real nats-server on 127.0.0.1:4222: PubAck parsing, the
// headers js.publish would have set (expected stream, Nats-Msg-Id), and a subject nobody answers on (the batch's
// timer). Every test uses its own stream and removes it.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { ensureService } from '../../testing/services.js';
import { createFormat } from '../../formats/index.js';
import { parsedOptions, sinkContext } from '../../testing/harness.js';
import { sinkOptions } from './index.js';
import { JetStreamSink } from './sink.js';
import { AckPublisher, parsePubAck } from './publisher.js';
import { NATS_URL, uniq } from '../nats/testkit.js';

let nc: NatsConnection;
let jsm: JetStreamManager;
const streams: string[] = [];

beforeAll(async () => {
  await ensureService('nats');
  nc = await connect({ servers: NATS_URL });
  jsm = await jetstreamManager(nc);
});
afterEach(async () => {
  for (const s of streams.splice(0)) await jsm.streams.delete(s).catch(() => undefined);
});
afterAll(async () => {
  await nc?.close();
});

async function stream(): Promise<string> {
  const name = uniq('P').toUpperCase();
  streams.push(name);
  await jsm.streams.add({ name, subjects: [`${name}.>`], storage: 'memory' });
  return name;
}

const json = () => createFormat({ name: 'json', options: {} }).encoder();

describe('parsePubAck', () => {
  it('reads stored, duplicate and error answers as the server writes them', () => {
    expect(parsePubAck('{"stream":"S", "seq":3}')).toEqual({ ok: true, duplicate: false });
    expect(parsePubAck('{"stream":"S", "seq":3,"duplicate": true}')).toEqual({ ok: true, duplicate: true });
    expect(parsePubAck('{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},"stream":"S","seq":0}')).toEqual({
      ok: false,
      error: 'expected stream does not match (400/10060)',
    });
    expect(parsePubAck('{"seq":1}')).toMatchObject({ ok: false, error: expect.stringContaining('invalid acknowledgement') });
  });
});

describe('AckPublisher', () => {
  it('answers every message of a batch in order, and a stream stores exactly them', async () => {
    const name = await stream();
    const pub = new AckPublisher(nc);
    const msgs = Array.from({ length: 2500 }, (_, i) => ({ subject: `${name}.m`, payload: JSON.stringify({ i }) }));
    const results = await pub.publish(msgs, 5000);
    expect(results.filter((r) => r?.ok).length).toBe(2500);
    expect((await jsm.streams.info(name)).state.messages).toBe(2500);
    const last = await jsm.streams.getMessage(name, { last_by_subj: `${name}.m` });
    expect(last!.json()).toEqual({ i: 2499 });
    pub.close();
  });

  it('leaves a message nobody acknowledges unanswered once the batch timer fires', async () => {
    // A core subscriber that never replies: the server has a responder, so no 503 comes back either.
    const subject = uniq('silent');
    const silent = nc.subscribe(subject, { callback: () => undefined });
    await nc.flush();
    const pub = new AckPublisher(nc);
    const name = await stream();
    const t0 = Date.now();
    const results = await pub.publish([{ subject: `${name}.a`, payload: '1' }, { subject, payload: '2' }], 300);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(results[0]).toEqual({ ok: true, duplicate: false });
    expect(results[1]).toBeUndefined();
    silent.unsubscribe();
    pub.close();
  });
});

describe('nats_jetstream sink publishing', () => {
  it('expect_stream: a publish that lands in another stream fails the write, naming the server\'s reason', async () => {
    const name = await stream();
    const sink = new JetStreamSink(parsedOptions(sinkOptions(), { url: NATS_URL, subject: `${name}.x`, expect_stream: 'OTHER', publish_timeout: '2s' }));
    await sink.open(sinkContext(json()));
    const err = await sink.write([{ value: { a: 1 } }, { value: { a: 2 } }]).catch((e) => e);
    expect(err.message).toContain(`subject '${name}.x' was not acknowledged (2 of 2 failed)`);
    expect(err.message).toMatch(/expected stream does not match/);
    expect(err.retriable).toBe(true);
    expect((await jsm.streams.info(name)).state.messages).toBe(0);
    await sink.close();
  });

  it('a subject answered by something other than a stream fails after publish_timeout, not before', async () => {
    const subject = uniq('notastream');
    const silent = nc.subscribe(subject, { callback: () => undefined });
    await nc.flush();
    const sink = new JetStreamSink(parsedOptions(sinkOptions(), { url: NATS_URL, subject, publish_timeout: '300ms' }));
    await sink.open(sinkContext(json()));
    const t0 = Date.now();
    const err = await sink.write([{ value: { a: 1 } }]).catch((e) => e);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(err.message).toContain('no acknowledgement within 300 ms (publish_timeout)');
    expect(err.retriable).toBe(true);
    silent.unsubscribe();
    await sink.close();
  });
});
