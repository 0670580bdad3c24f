// The runtime side of exactly-once sinks: each write carries the source position it completes (per partition, the ack
// of the last whole source batch in it), a source batch is never split over two writes, and a restarted pipeline hands
// the sink's stored position to the source as `resume`.

import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { z } from 'zod';
import { startPipeline } from './runtime.js';
import { memoryStateStore } from './state.js';
import type { ConnectorSpec } from './spec.js';
import type { SluiceRecord, SourceContext, SourcePosition } from './types.js';
import { endpointDef, pipelineDef, pipelineEnv } from '../testing/harness.js';

interface Ack {
  p: string;
  next: number;
}

/** Two partitions of `n` records each, in batches of 3 alternating between them; resumes from `ctx.resume`. */
function partsSource(n: number, seen: { resume?: SourcePosition }): ConnectorSpec {
  return {
    name: 'parts',
    title: 'parts',
    description: 'test source',
    source: {
      options: z.object({}),
      create: () => ({
        async run(ctx: SourceContext) {
          seen.resume = ctx.resume;
          const next: Record<string, number> = { a: 0, b: 0 };
          for (const [p, v] of Object.entries(ctx.resume ?? {})) next[p] = (v as Ack).next;
          while (next.a! < n || next.b! < n) {
            for (const p of ['a', 'b']) {
              const from = next[p]!;
              if (from >= n) continue;
              const to = Math.min(n, from + 3);
              const records: SluiceRecord[] = [];
              for (let i = from; i < to; i++) records.push({ value: { p, i } });
              next[p] = to;
              const ack: Ack = { p, next: to };
              const w = ctx.emit({ records, decoded: true, ack, position: ack, partition: p });
              if (w) await w;
            }
          }
        },
      }),
    },
  };
}

interface EoSink {
  stored?: SourcePosition;
  writes: Array<{ records: Array<{ p: string; i: number }>; position?: SourcePosition }>;
  failAfter?: number;
}

function eoSinkSpec(state: EoSink): ConnectorSpec {
  return {
    name: 'eo',
    title: 'eo',
    description: 'test exactly-once sink',
    sink: {
      options: z.object({}),
      exactlyOnce: () => true,
      create: () => ({
        exactlyOnce: true,
        async open() {},
        async position() {
          return state.stored;
        },
        async write(records: SluiceRecord[], position?: SourcePosition) {
          if (state.failAfter !== undefined && state.writes.length >= state.failAfter) throw new Error('sink is gone');
          state.writes.push({ records: records.map((r) => r.value as { p: string; i: number }), position });
          state.stored = position;
        },
      }),
    },
  };
}

describe('exactly-once sinks in the runtime', () => {
  it('every write carries the position it completes; source batches are never split; a restart resumes from the stored position', async () => {
    const sink: EoSink = { writes: [] };
    const seen: { resume?: SourcePosition } = {};
    const state = memoryStateStore();
    const env = pipelineEnv({ dataDir: '/tmp/sluice-eo-runtime', state, extra: [partsSource(30, seen), eoSinkSpec(sink)] });
    // max_records 2 is smaller than a source batch (3): each write still holds whole source batches.
    const def = pipelineDef('eo', endpointDef('parts', {}), endpointDef('eo', {}), { batch: { max_records: 2, linger_ms: 0 }, retry: { max_attempts: 1 } });
    sink.failAfter = 7;
    const first = await startPipeline(def, env).done;
    expect(first.status).toBe('failed');
    expect(seen.resume).toBeUndefined();
    expect(sink.writes).toHaveLength(7);
    const last: Record<string, number> = {};
    for (const w of sink.writes) {
      expect(w.records.length % 3).toBe(0);
      for (const r of w.records) last[r.p] = r.i + 1;
      // The position names, per partition, exactly what has been written so far.
      expect(w.position).toEqual(Object.fromEntries(Object.entries(last).map(([p, next]) => [p, { p, next }])));
    }
    const stored = sink.stored!;

    // Next run: the sink's position wins over whatever the source committed itself.
    sink.failAfter = undefined;
    const second = await startPipeline(def, env).done;
    expect(second.status).toBe('completed');
    expect(seen.resume).toEqual(stored);
    const all = sink.writes.flatMap((w) => w.records.map((r) => `${r.p}${r.i}`));
    expect(all).toHaveLength(60);
    expect(new Set(all).size).toBe(60);
    expect(sink.stored).toEqual({ a: { p: 'a', next: 30 }, b: { p: 'b', next: 30 } });
  });

  it('a source without positions stores none and is warned about once (it stays at-least-once)', async () => {
    const sink: EoSink = { writes: [] };
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) });
    const noPos: ConnectorSpec = {
      name: 'nopos',
      title: 'nopos',
      description: 'test source',
      source: {
        options: z.object({}),
        create: () => ({
          async run(ctx: SourceContext) {
            for (let i = 0; i < 4; i++) await ctx.emit({ records: [{ value: { p: 'x', i } }], decoded: true, ack: i });
          },
        }),
      },
    };
    const env = { ...pipelineEnv({ dataDir: '/tmp/sluice-eo-runtime', extra: [noPos, eoSinkSpec(sink)] }), log };
    const def = pipelineDef('eo-nopos', endpointDef('nopos', {}), endpointDef('eo', {}), { batch: { max_records: 1, linger_ms: 0 } });
    expect((await startPipeline(def, env).done).status).toBe('completed');
    expect(sink.writes.map((w) => w.position)).toEqual([{}, {}, {}, {}]);
    expect(lines.filter((l) => l.includes('gives no positions to resume from'))).toHaveLength(1);
  });

  it('refuses to run an exactly-once sink beside a dead-letter sink (when built without the config compiler)', async () => {
    const sink: EoSink = { writes: [] };
    const env = pipelineEnv({ dataDir: '/tmp/sluice-eo-runtime', extra: [partsSource(3, {}), eoSinkSpec(sink)] });
    const def = pipelineDef('eo-dlq', endpointDef('parts', {}), endpointDef('eo', {}), { dlq: endpointDef('blackhole', {}) });
    const r = await startPipeline(def, env).done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/exactly-once, which cannot be combined with routes or a dlq sink/);
    expect(sink.writes).toEqual([]);
  });
});
