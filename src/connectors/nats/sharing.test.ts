// Connection profiles for nats and nats_jetstream against the real nats-server on 127.0.0.1:4222: endpoints naming the
// same profile share one client connection (counted as established TCP connections of this process), the connection
// stays up while any of them runs, and closes with the last one.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { ensureService } from '../../testing/services.js';
import { newRecordingSink, parsedOptions, type RecordingSink } from '../../testing/harness.js';
import type { PipelineHandle } from '../../core/runtime.js';
import { sinkOptions, sourceOptions } from './index.js';
import { sinkOptions as jsSinkOptions } from '../nats_jetstream/index.js';
import { sharedNatsConnections } from './connection.js';
import { NATS_URL, endpoint, env, pipeline, removeTempDirs, serverConnections, startPipeline, uniq, waitFor, waitRunning } from './testkit.js';

let nc: NatsConnection;
let jsm: JetStreamManager;
const handles: PipelineHandle[] = [];
const streams: string[] = [];

beforeAll(async () => {
  await ensureService('nats');
  nc = await connect({ servers: NATS_URL });
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
const ids = (rec: RecordingSink) => rec.written.map((r) => (r.value as { i: number }).i).filter((i) => i !== undefined);

/** Publishes {i} messages to `subject` until `rec` saw the first (core NATS only delivers while subscribed), then the rest. */
async function deliver(subject: string, rec: RecordingSink, from: number, n: number): Promise<void> {
  await waitFor(async () => {
    nc.publish(subject, enc.encode(JSON.stringify({ warm: true })));
    await nc.flush();
    await new Promise((r) => setTimeout(r, 20));
    return rec.written.length > 0;
  }, `the subscription on '${subject}'`);
  for (let i = from; i < from + n; i++) nc.publish(subject, enc.encode(JSON.stringify({ i })));
  await nc.flush();
  await waitFor(() => ids(rec).length >= n, `${n} records from '${subject}'`);
}

describe('nats connection profiles', () => {
  it('sources and sinks naming one profile share one connection until the last of them stops', async () => {
    const a = uniq('share.a');
    const b = uniq('share.b');
    const stream = uniq('SHARE').toUpperCase();
    streams.push(stream);
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], storage: 'memory' });
    const base = serverConnections();
    const sinks = { ra: newRecordingSink(), rb: newRecordingSink() };
    const e = env(sinks);
    const p = { profile: 'local' };
    // Pipeline 1: nats source -> nats_jetstream sink; pipeline 2: nats source -> recording sink. Three endpoints, one profile.
    const h1 = startPipeline(
      pipeline(
        endpoint('nats', parsedOptions(sourceOptions(), { url: NATS_URL, subject: a }), p),
        endpoint('nats_jetstream', parsedOptions(jsSinkOptions(), { url: NATS_URL, subject: `${stream}.x` }), p),
        { name: 'share-1' },
      ),
      e,
    );
    const h2 = startPipeline(pipeline(endpoint('nats', parsedOptions(sourceOptions(), { url: NATS_URL, subject: b }), p), endpoint('rec', { name: 'rb' }), { name: 'share-2' }), e);
    handles.push(h1, h2);
    await waitRunning(h1);
    await waitRunning(h2);
    expect(serverConnections() - base).toBe(1);
    expect(sharedNatsConnections()).toBe(1);

    await deliver(b, sinks.rb, 0, 20);
    expect(ids(sinks.rb)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    // Pipeline 1 reaches the stream through the shared connection too.
    await waitFor(async () => {
      nc.publish(a, enc.encode('{"i":1}'));
      await nc.flush();
      return (await jsm.streams.info(stream)).state.messages > 0;
    }, 'a message in the stream from pipeline 1');

    // The first pipeline stopping leaves the connection to the second.
    await h1.stop();
    expect(serverConnections() - base).toBe(1);
    sinks.rb.written.length = 0;
    await deliver(b, sinks.rb, 100, 10);
    expect(ids(sinks.rb)).toEqual(Array.from({ length: 10 }, (_, i) => 100 + i));

    await h2.stop();
    await waitFor(() => serverConnections() === base, 'the shared connection to close with the last endpoint');
    expect(sharedNatsConnections()).toBe(0);
  }, 30_000);

  it('endpoints without a profile, or with different connection options, keep connections of their own', async () => {
    const base = serverConnections();
    const sinks = { r1: newRecordingSink(), r2: newRecordingSink() };
    const e = env(sinks);
    const h1 = startPipeline(pipeline(endpoint('nats', parsedOptions(sourceOptions(), { url: NATS_URL, subject: uniq('own.a') })), endpoint('rec', { name: 'r1' }), { name: 'own-1' }), e);
    const h2 = startPipeline(
      pipeline(
        endpoint('nats', parsedOptions(sourceOptions(), { url: NATS_URL, subject: uniq('own.b') }), { profile: 'local' }),
        endpoint('nats', parsedOptions(sinkOptions(), { url: NATS_URL, subject: uniq('own.out'), name: 'other-client' }), { profile: 'local' }),
        { name: 'own-2' },
      ),
      e,
    );
    handles.push(h1, h2);
    await waitRunning(h1);
    await waitRunning(h2);
    expect(serverConnections() - base).toBe(3);
  }, 30_000);
});
