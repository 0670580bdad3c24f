// A broker that goes away mid-stream and comes back. Against the emulator the broker is killed and started again on
// the same port and folder; it keeps messages in memory only, so after the restart its topics are empty (and the
// group's offsets are gone): these tests assert reconnection and the flow of what is written after it.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startPipeline } from '../../core/runtime.js';
import { DEFAULT_RETRY } from '../../core/model.js';
import type { ConnectorSpec } from '../../core/spec.js';
import type { SourceContext } from '../../core/types.js';
import { endpointDef, newRecordingSink, parsedOptions, pipelineDef, pipelineEnv, recordingEndpoint, recordingEnv, waitFor } from '../../testing/harness.js';
import { sinkOptions, sourceOptions } from './index.js';
import { startTestBroker, uniqueName, type TestBroker } from './test-broker.js';

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
}, 30_000);
afterAll(async () => {
  await broker?.stop();
});

const parsed = (schema: z.ZodType, o: Record<string, unknown>) => parsedOptions(schema, { brokers: broker.brokers, ...o }) as Record<string, unknown>;

const json = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ value: JSON.stringify({ id: from + i }) }));

describe.skipIf(!!process.env.KAFKA_BROKERS)('kafka broker restart (emulator: killed and started again on the same port)', () => {
  it('the source reconnects and keeps consuming what is written after the broker came back', async () => {
    const topic = uniqueName('restart-src');
    await broker.createTopic(topic, 2);
    await broker.produce(topic, json(0, 100));
    const sinks = { main: newRecordingSink() };
    const { written } = sinks.main;
    const env = recordingEnv(sinks, { dataDir: '/tmp/sluice-kafka-restart' });
    const source = endpointDef('kafka', parsed(sourceOptions(), { topic, offset: 'group', offset_reset: 'earliest', group: uniqueName('g'), max_wait: '100ms', retries: 3, session_timeout: '10s', heartbeat_interval: '1s' }));
    const def = pipelineDef('restart', source, recordingEndpoint('main'), { retry: DEFAULT_RETRY });
    const h = startPipeline(def, env);
    try {
      await waitFor(() => written.length >= 100, 'the first 100', 30_000);
      await broker.kill();
      try {
        // Long enough for the consumer to notice (fetches fail) but it must not give up.
        await new Promise((r) => setTimeout(r, 1500));
        expect(h.status()).toBe('running');
      } finally {
        await broker.start();
      }
      // The emulator restarts empty; the topic file is still there, so the topic is declared again.
      await broker.createTopic(topic, 2);
      await broker.produce(topic, json(1000, 50));
      await waitFor(() => written.filter((r) => (r.value as { id: number }).id >= 1000).length >= 50, '50 records after the restart', 40_000);
      expect(h.status()).toBe('running');
    } finally {
      const r = await h.stop();
      expect(r.error?.message).toBeUndefined();
    }
    const after = written.map((r) => (r.value as { id: number }).id).filter((id) => id >= 1000);
    expect(new Set(after)).toEqual(new Set(Array.from({ length: 50 }, (_, i) => 1000 + i)));
  }, 60_000);

  it('the sink retries through the outage and delivers what was written during and after it', async () => {
    const topic = uniqueName('restart-sink');
    await broker.createTopic(topic, 1);
    let next = 0;
    let paused = false;
    let emitted = 0;
    const ticker: ConnectorSpec = {
      name: 'ticker',
      title: '',
      description: '',
      source: {
        options: z.object({}),
        create: () => ({
          async run(ctx: SourceContext) {
            while (!ctx.signal.aborted) {
              if (!paused) {
                const p = ctx.emit({ records: [{ value: { id: next++ } }], decoded: true });
                emitted++;
                if (p) await p;
              }
              await new Promise((r) => setTimeout(r, 20));
            }
          },
        }),
      },
    };
    const env = pipelineEnv({ dataDir: '/tmp/sluice-kafka-restart', extra: [ticker] });
    const sink = endpointDef('kafka', parsed(sinkOptions(), { topic, retries: 1, ack_timeout: '2s', request_timeout: '2s', connection_timeout: '1s' }));
    const def = pipelineDef('restart-sink', endpointDef('ticker', {}), sink, { retry: { max_attempts: 100, initial_backoff_ms: 100, max_backoff_ms: 500 } });
    const h = startPipeline(def, env);
    try {
      await waitFor(() => h.stats.records_out >= 10, 'first writes', 30_000);
      await broker.kill();
      let outage: number;
      try {
        const before = h.stats.sink_retries;
        await waitFor(() => h.stats.sink_retries > before, 'a failed write being retried', 20_000);
        outage = next;
        expect(h.status()).toBe('running');
      } finally {
        await broker.start();
      }
      await broker.createTopic(topic, 1);
      // Everything from the first id that failed during the outage onwards reaches the restarted broker.
      const target = next + 20;
      await waitFor(() => next >= target, 'more records', 30_000);
      paused = true;
      await waitFor(() => h.stats.records_out >= emitted, 'the sink to catch up', 30_000);
      const all = await broker.readTopic(topic, emitted - outage, 10_000);
      const ids = new Set(all.map((m) => JSON.parse(m.value).id as number));
      for (let i = outage; i < emitted; i++) expect(ids.has(i), `id ${i} after the outage`).toBe(true);
    } finally {
      const r = await h.stop();
      expect(r.error?.message).toBeUndefined();
    }
  }, 60_000);
});
