// RabbitMQ sink, source<->sink round trips, connection errors, test() and autocomplete, against 127.0.0.1:5672.

import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipeline } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import type { SluiceRecord } from '../../core/types.js';
import { createFormat } from '../../formats/index.js';
import { sinkContext, endpointDef, newRecordingSink, recordingEndpoint, waitFor, type RecordingSink } from '../../testing/harness.js';
import { spec, type RabbitSinkOptions } from './index.js';
import { RabbitSink } from './sink.js';
import { Admin, env, ids, jsonBodies, parsedSink, rabbitPipeline, range, uniqueName, URL_, openRabbitTest } from './testkit.js';

let admin: Admin;
let dataDir: string;
let done: (() => Promise<void>) | undefined;
beforeAll(async () => void ({ admin, dataDir, done } = await openRabbitTest('sluice-rabbit-')), 190_000);
afterAll(() => done?.());

const jsonEncoder = () => createFormat({ name: 'json', options: {} }).encoder();

async function openSink(o: Record<string, unknown>): Promise<RabbitSink> {
  const sink = new RabbitSink(parsedSink(o) as RabbitSinkOptions, { format: 'json' });
  await sink.open(sinkContext(jsonEncoder()));
  return sink;
}

describe('rabbitmq sink', () => {
  it('publishes persistent, confirmed messages with templated routing keys, headers and message ids', async () => {
    const exchange = admin.trackExchange(uniqueName('x'));
    const eu = uniqueName('eu');
    const us = uniqueName('us');
    const sink = await openSink({ exchange, exchange_type: 'topic', routing_key: 'orders.{{ region }}', headers: { origin: 'sluice', region: '{{ region }}' }, message_id: '{{ id }}' });
    await admin.queue(eu);
    await admin.queue(us);
    await admin.conn.queueBind({ queue: eu, exchange, routingKey: 'orders.eu' });
    await admin.conn.queueBind({ queue: us, exchange, routingKey: 'orders.us' });
    const records: SluiceRecord[] = range(100).map((i) => ({ value: { id: i, region: i % 2 ? 'us' : 'eu' } }));
    await sink.write(records);
    await sink.close();
    // write() resolved, so the broker has confirmed every message: they are all queued already.
    expect(await admin.ready(eu)).toBe(50);
    expect(await admin.ready(us)).toBe(50);
    const got = await admin.drain(eu);
    expect(got.map((m) => JSON.parse(m.body.toString()).id)).toEqual(range(50).map((i) => i * 2));
    expect(got[0]).toMatchObject({ routingKey: 'orders.eu', contentType: 'application/json', messageId: '0', durable: true, headers: { origin: 'sluice', region: 'eu' } });
  }, 20_000);

  it('template (dataTemplate) renders the message body that arrives in the queue', async () => {
    const exchange = admin.trackExchange(uniqueName('x-tpl'));
    const q = uniqueName('tpl');
    const sink = await openSink({ exchange, exchange_type: 'direct', routing_key: 'k', dataTemplate: '{"order":{{ id }},"tags":"{{ join tags "|" }}"}' });
    await admin.queue(q);
    await admin.conn.queueBind({ queue: q, exchange, routingKey: 'k' });
    await sink.write([{ value: { id: 7, tags: ['a', 'b'], skipped: true } }]);
    await sink.close();
    const got = await admin.drain(q);
    expect(got.map((m) => m.body.toString())).toEqual(['{"order":7,"tags":"a|b"}']);
  }, 20_000);

  it('mandatory: an unroutable message fails the write and names the routing key', async () => {
    const exchange = admin.trackExchange(uniqueName('x-mand'));
    const sink = await openSink({ exchange, exchange_type: 'direct', routing_key: 'nowhere', mandatory: true });
    await expect(sink.write([{ value: { id: 1 } }])).rejects.toThrow(/could not be routed.*routing key 'nowhere'/);
    await sink.close();
  }, 20_000);

  it('a missing exchange fails the open with its name and the way out', async () => {
    const sink = new RabbitSink(parsedSink({ exchange: uniqueName('missing') }) as RabbitSinkOptions);
    await expect(sink.open(sinkContext(jsonEncoder()))).rejects.toThrow(/checking exchange 'sluice-test-missing-\w+' exists on amqp:\/\/guest@127\.0\.0\.1:5672\/%2F failed: .*NOT_FOUND|no exchange/);
    await sink.close();
  }, 20_000);

  it('wrong credentials fail fast with an AUTH error that does not contain the password', async () => {
    const sink = new RabbitSink(parsedSink({ url: 'amqp://guest:s3cr3t-pw@127.0.0.1:5672' }) as RabbitSinkOptions);
    const err = await sink.open(sinkContext(jsonEncoder())).then(() => undefined, (e: Error) => e);
    await sink.close();
    expect(err?.message).toMatch(/connecting the sink on amqp:\/\/guest@127\.0\.0\.1:5672\/%2F failed: .*ACCESS_REFUSED|username\/password/);
    expect(err?.message).not.toContain('s3cr3t-pw');
    const sinks: Record<string, RecordingSink> = { main: newRecordingSink() };
    const r = await startPipeline(
      rabbitPipeline('auth', { url: 'amqp://guest:s3cr3t-pw@127.0.0.1:5672', queue: uniqueName('never') }, recordingEndpoint('main')),
      env(sinks, memoryStateStore(), dataDir),
    ).done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/connecting on amqp:\/\/guest@127\.0\.0\.1:5672\/%2F failed/);
    expect(r.error?.message).not.toContain('s3cr3t-pw');
  }, 30_000);
});

describe('rabbitmq round trip', () => {
  it('queue -> rabbitmq sink -> exchange -> bound queue: every record arrives once, metadata usable in templates', async () => {
    const input = await admin.queue(uniqueName('rt-in'));
    const exchange = admin.trackExchange(uniqueName('rt-x'));
    const output = uniqueName('rt-out');
    admin.trackQueue(output);
    await admin.publish(input, jsonBodies(0, 1000));
    const sinks: Record<string, RecordingSink> = { main: newRecordingSink() };
    // Copy: the sink declares the exchange and republishes with a key derived from the source's metadata.
    const copy = rabbitPipeline('copy', { queue: input }, endpointDef('rabbitmq', parsedSink({ exchange, exchange_type: 'topic', routing_key: 'copy.{{ _routing_key }}' })));
    // Read back: a second source declares `output` and binds it to the exchange.
    const read = rabbitPipeline('read', { queue: output, bindings: [{ exchange, routing_key: 'copy.#', exchange_type: 'topic' }] }, recordingEndpoint('main'), { metadata: { rk: '_routing_key', ex: '_exchange' } });
    const e = env(sinks, memoryStateStore(), dataDir);
    const reader = startPipeline(read, e);
    await waitFor(async () => admin.conn.queueDeclare({ queue: output, passive: true }).then(() => true, () => false), 'the output queue');
    const copier = startPipeline(copy, e);
    await waitFor(() => sinks.main!.written.length >= 1000, '1000 records read back');
    expect((await copier.stop()).error).toBeUndefined();
    expect((await reader.stop()).error).toBeUndefined();
    expect(ids(sinks.main!.written)).toEqual(range(1000));
    expect(sinks.main!.written[0]!.value).toMatchObject({ rk: `copy.${input}`, ex: exchange });
    expect(await admin.ready(input)).toBe(0);
    expect(await admin.ready(output)).toBe(0);
  }, 30_000);
});

describe('rabbitmq test() and autocomplete', () => {
  it('test() reports connection, queue and a sample message, which it puts back', async () => {
    const queue = await admin.queue(uniqueName('t'));
    await admin.publish(queue, ['{"a":1}'], { contentType: 'application/json' });
    const steps: string[] = [];
    await spec.test!({ url: URL_, queue }, 'source', (s) => steps.push(s.message), new AbortController().signal);
    expect(steps[0]).toBe('connected to amqp://guest@127.0.0.1:5672/%2F');
    expect(steps[1]).toMatch(new RegExp(`queue '${queue}' exists: 1 ready message\\(s\\), 0 consumer`));
    expect(steps[2]).toMatch(/first message: 7 bytes \(application\/json\) from exchange '\(default\)'.*put back/);
    expect(await admin.ready(queue)).toBe(1);
    const missing: string[] = [];
    await expect(spec.test!({ url: URL_, queue: uniqueName('nope'), passive: true }, 'source', (s) => missing.push(s.message), new AbortController().signal)).rejects.toThrow(/does not exist/);
    const sink: string[] = [];
    await spec.test!({ url: URL_, exchange: 'amq.topic' }, 'sink', (s) => sink.push(s.message), new AbortController().signal);
    expect(sink).toEqual(['connected to amqp://guest@127.0.0.1:5672/%2F', "exchange 'amq.topic' exists", 'publisher confirms are available']);
    const bad: string[] = [];
    await expect(spec.test!({ url: 'amqp://nobody:wrong@127.0.0.1:5672', queue }, 'source', (s) => bad.push(s.message), new AbortController().signal)).rejects.toThrow(/ACCESS_REFUSED|username/);
    expect(bad.join('\n')).not.toContain('wrong');
  }, 30_000);

  it('autocomplete lists queues and exchanges from the management API, and nothing without it', async () => {
    let auth: string | undefined;
    const server: Server = createServer((req, res) => {
      auth = req.headers.authorization;
      res.setHeader('content-type', 'application/json');
      if (req.url?.startsWith('/api/queues/%2F')) res.end(JSON.stringify([{ name: 'orders' }, { name: 'amq.gen-x1' }, { name: 'audit' }]));
      else if (req.url?.startsWith('/api/exchanges/%2F')) res.end(JSON.stringify([{ name: '' }, { name: 'amq.topic' }]));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as { port: number }).port;
      const got = await spec.autocomplete!({ url: URL_, management_url: `http://127.0.0.1:${port}` }, new AbortController().signal);
      expect(got).toEqual({ queues: ['audit', 'orders'], exchanges: ['amq.topic'] });
      expect(auth).toBe('Basic ' + Buffer.from('guest:guest').toString('base64'));
    } finally {
      server.close();
    }
    // The plugin is not enabled on this machine's broker: no suggestions, no error.
    expect(await spec.autocomplete!({ url: URL_, management_url: 'http://127.0.0.1:1' }, new AbortController().signal)).toEqual({ queues: [], exchanges: [] });
  }, 20_000);
});
