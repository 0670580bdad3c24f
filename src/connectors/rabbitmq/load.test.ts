// Load: a queue of 30k JSON messages through a pipeline to a discarding sink, beside a bare rabbitmq-client loop that
// consumes, JSON-parses and acks in batches, on the same broker in the same run. Prints both rates.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipeline } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import { newRecordingSink, recordingEndpoint, waitFor, type RecordingSink } from '../../testing/harness.js';
import { Admin, env, rabbitPipeline, uniqueName, openRabbitTest } from './testkit.js';

const N = 30_000;
const body = (i: number) => JSON.stringify({ id: i, symbol: 'BTCUSDT', price: 64000.5 + (i % 100), qty: 0.25, side: i % 2 ? 'buy' : 'sell', ts: 1700000000000 + i });

let admin: Admin;
let dataDir: string;
let done: (() => Promise<void>) | undefined;
beforeAll(async () => void ({ admin, dataDir, done } = await openRabbitTest('sluice-rabbit-load-')), 190_000);
afterAll(() => done?.());

async function fill(queue: string) {
  await admin.queue(queue);
  const bodies = Array.from({ length: N }, (_, i) => body(i));
  for (let i = 0; i < N; i += 5000) await admin.publish(queue, bodies.slice(i, i + 5000));
}

describe('rabbitmq load', () => {
  it(`moves ${N} messages to a sink and acknowledges them all; rate beside a bare client loop`, async () => {
    const q1 = uniqueName('load-bare');
    const q2 = uniqueName('load-pipe');
    await fill(q1);
    await fill(q2);

    // Bare: the same client, raw channel, prefetch 2000, JSON.parse each body, ack multiple every 500.
    const ch = await admin.conn.acquire();
    await ch.basicQos({ prefetchCount: 2000 });
    let bareStart = 0;
    let seen = 0;
    let parsed = 0;
    await new Promise<void>((resolve) => {
      void ch.basicConsume({ queue: q1 }, (m) => {
        if (seen === 0) bareStart = performance.now();
        const b = m.body as unknown;
        parsed += (typeof b === 'object' && !(b instanceof Buffer) ? b : JSON.parse(String(b))) ? 1 : 0;
        if (++seen % 500 === 0 || seen === N) ch.basicAck({ deliveryTag: m.deliveryTag, multiple: true });
        if (seen === N) resolve();
      });
    });
    const bareMs = performance.now() - bareStart;
    await ch.close();
    expect(parsed).toBe(N);

    // Timed from the first record on, like the bare loop: connection setup is not throughput.
    let count = 0;
    let start = 0;
    let end = 0;
    const push = (...records: unknown[]) => {
      if (count === 0) start = performance.now();
      const before = count;
      count += records.length;
      if (before < N && count >= N) end = performance.now();
    };
    // A recording sink that counts instead of keeping 30k records.
    const sinks: Record<string, RecordingSink> = { main: { ...newRecordingSink(), written: { push } as unknown as RecordingSink['written'] } };
    const def = rabbitPipeline('load', { queue: q2, passive: true }, recordingEndpoint('main'));
    const h = startPipeline(def, env(sinks, memoryStateStore(), dataDir));
    await waitFor(() => count >= N, `${N} records`, 50_000);
    const pipeMs = end - start;
    await waitFor(async () => (await admin.ready(q2)) === 0, 'the queue to be empty');
    const r = await h.stop();
    expect(r.error).toBeUndefined();
    expect(count).toBe(N);
    const rate = (ms: number) => Math.round((N / ms) * 1000);
    console.log(`rabbitmq -> sink: ${rate(pipeMs)} msg/s (${Math.round(pipeMs)} ms); bare client loop: ${rate(bareMs)} msg/s (${Math.round(bareMs)} ms); ratio ${(bareMs / pipeMs).toFixed(2)}`);
  }, 60_000);
});
