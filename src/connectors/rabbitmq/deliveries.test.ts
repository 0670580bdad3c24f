// How deliveries reach the source: fastDeliveries takes each basic.deliver from the channel as its decoded parts
// (against the broker on 127.0.0.1:5672), instead of the client's spread-built message and per-message setImmediate;
// the client's own path stays as the fallback, and both make the same record.

import type { AsyncMessage, Channel } from 'rabbitmq-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SluiceRecord, SourceBatch } from '../../core/types.js';
import { parsedOptions, waitFor } from '../../testing/harness.js';
import { CONSUMER_FRAME_MAX, fastDeliveries, keepRawBodies, openConnection, type DeliverFields } from './connection.js';
import { sourceOptions } from './index.js';
import { RabbitSource } from './source.js';
import { Admin, openRabbitTest, parsedSource, uniqueName } from './testkit.js';

let admin: Admin;
let done: (() => Promise<void>) | undefined;
beforeAll(async () => void ({ admin, done } = await openRabbitTest('sluice-rabbit-deliveries-')), 190_000);
afterAll(() => done?.());

interface Got {
  f: DeliverFields;
  p: Record<string, unknown>;
  b: Buffer;
}

describe('rabbitmq deliveries', () => {
  it('fastDeliveries hands over every delivery as its parts, with whole bodies that do not pin the socket buffer', async () => {
    const queue = await admin.queue(uniqueName('fast'));
    const big = Buffer.alloc(20_000, 'x'); // three 8 KiB frames
    await admin.publish(queue, ['{"id":1}'], { contentType: 'application/json', messageId: 'm-1', headers: { region: 'eu', n: 7 } });
    await admin.publish(queue, [big, Buffer.alloc(0)]);
    const { conn } = openConnection(parsedSource({ queue }) as never, CONSUMER_FRAME_MAX);
    try {
      const ch = await conn.acquire();
      keepRawBodies(ch);
      const got: Got[] = [];
      expect(fastDeliveries(ch, (f, p, b) => void got.push({ f, p, b }))).toBe(true);
      const viaClient: AsyncMessage[] = [];
      const { consumerTag } = await ch.basicConsume({ queue, noAck: true }, (m) => void viaClient.push(m));
      await waitFor(() => got.length === 3, 'three deliveries');
      // The client's handler would have run in a setImmediate by now: it never got them.
      await new Promise((r) => setImmediate(r));
      expect(viaClient).toEqual([]);
      expect(got[0]!.f).toEqual({ consumerTag, deliveryTag: 1, redelivered: false, exchange: '', routingKey: queue });
      // keepRawBodies moved the content type aside, so the JSON body stays bytes.
      expect(got[0]!.p).toMatchObject({ sluiceContentType: 'application/json', messageId: 'm-1', deliveryMode: 2, headers: { region: 'eu', n: 7 } });
      expect(got[0]!.b.toString()).toBe('{"id":1}');
      expect(got[1]!.b.equals(big)).toBe(true);
      expect(got[2]!.b.length).toBe(0);
      // Copies (Node's 8 KiB pool, or a buffer of their own), not slices of the socket's 64 KiB reads.
      for (const { b } of got) expect(b.buffer.byteLength).toBeLessThanOrEqual(Math.max(Buffer.poolSize, b.length));
      await ch.close();
    } finally {
      await conn.close();
    }
  }, 20_000);

  it('fastDeliveries leaves a channel without the expected internals to the client', () => {
    const ch = { _onBody: () => undefined } as unknown as Channel;
    const before = (ch as unknown as { _onBody: unknown })._onBody;
    expect(fastDeliveries(ch, () => undefined)).toBe(false);
    expect((ch as unknown as { _onBody: unknown })._onBody).toBe(before);
  });

  it("the client's path and the fast path make the same record", async () => {
    const batches: SourceBatch[] = [];
    const src = new RabbitSource(parsedOptions(sourceOptions(), { queue: 'q' }));
    Object.assign(src as object, { ctx: { emit: (b: SourceBatch) => void batches.push(b) }, gen: 1 });
    const fields = { consumerTag: 'c', deliveryTag: 1, redelivered: true, exchange: 'x', routingKey: 'k' };
    const props = { sluiceContentType: 'application/json', headers: { region: 'eu', n: 7 }, deliveryMode: 2, timestamp: 1_700_000_000, messageId: 'm-1' };
    const body = Buffer.from('{"id":1}');
    const internals = src as unknown as {
      receive(m: unknown, gen: number): void;
      deliver(f: DeliverFields, p: Record<string, unknown>, b: Buffer, gen: number): void;
    };
    internals.receive({ ...fields, ...props, durable: true, body }, 1);
    internals.deliver({ ...fields, deliveryTag: 2 }, props, body, 1);
    await waitFor(() => batches.length > 0, 'a batch');
    const [a, b] = batches[0]!.records as [SluiceRecord, SluiceRecord];
    expect(b).toEqual({ ...a, meta: { ...a.meta, _delivery_tag: 2 } });
    expect(a).toMatchObject({ value: body, timestamp: 1_700_000_000_000, headers: { region: 'eu', n: '7' } });
    expect(a.meta).toEqual({
      _exchange: 'x',
      _routing_key: 'k',
      _delivery_tag: 1,
      _redelivered: true,
      _properties: { content_type: 'application/json', delivery_mode: 2, message_id: 'm-1', timestamp: 1_700_000_000_000 },
    });
  });
});
