import { describe, expect, it } from 'vitest';
import { topicMatcher } from './bus.js';
import { startPipeline } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import { silentLog } from '../../testing/harness.js';
import { loadConfigText } from '../../config/load.js';
import { findConnector } from '../index.js';
import type { SluiceRecord } from '../../core/types.js';

describe('memory topics', () => {
  it('matches + and # wildcards level by level', () => {
    expect(topicMatcher('a/+/c')('a/b/c')).toBe(true);
    expect(topicMatcher('a/+/c')('a/b/d')).toBe(false);
    expect(topicMatcher('a/+')('a/b/c')).toBe(false);
    expect(topicMatcher('a/#')('a/b/c')).toBe(true);
    expect(topicMatcher('a/#')('a')).toBe(true); // MQTT: '#' also matches the parent level
    expect(topicMatcher('a/#')('ab')).toBe(false);
    expect(topicMatcher('#')('x/y')).toBe(true);
    expect(topicMatcher('a/b')('a/b')).toBe(true);
    expect(topicMatcher('a/b')('a/bc')).toBe(false);
  });

  it('chains two pipelines: every record reaches the subscriber, which ends when the publisher finished', async () => {
    const received: SluiceRecord[] = [];
    const doc = loadConfigText(
      `
pipelines:
  - name: consume
    source: { connector: memory, config: { topic: 'sensors/+', end_with_publishers: true } }
    sink: { connector: blackhole }
  - name: produce
    source: { connector: generator, config: { template: sequence, interval: 0, count: 5000 } }
    sink: { connector: memory, config: { topic: sensors/a } }
`,
      'chain.yaml',
    );
    const env = { log: silentLog, state: memoryStateStore(), dataDir: '/tmp/sluice-memory-test', connector: (n: string) => findConnector(n)! };
    const consume = startPipeline(doc.pipelines[0]!, env, { transform: (r) => (received.push(...r), r) });
    // The subscriber must be listening before the producer starts.
    while (consume.status() !== 'running') await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setImmediate(r));
    const produce = startPipeline(doc.pipelines[1]!, env);
    expect((await produce.done).status).toBe('completed');
    expect((await consume.done).status).toBe('completed');
    expect(received.map((r) => (r.value as { id: number }).id)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(received[0]!.meta?._topic).toBe('sensors/a');
  });
});
