// The codec thread must be invisible except for speed: the same lines, the same bad records with the same errors and
// dead-letter entries, the same rows when a sink reads them, the same acknowledgements. Each test runs the pipeline
// with it and without it (SLUICE_CODEC_THREAD=off) and compares. The worker runs the build in dist/ (codec-thread.ts
// says why), so these tests need `npm run build` first, as the server tests do.

import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { OffloadedRecord } from './codec-thread.js';
import { DEFAULT_BATCH, DEFAULT_BUFFER, DEFAULT_RETRY, type EndpointDef, type PipelineDef } from './model.js';
import { startPipeline, type RuntimeEnv } from './runtime.js';
import type { ConnectorSpec } from './spec.js';
import { memoryStateStore } from './state.js';
import type { SchemaSpec, SinkContext, SluiceRecord, SourceBatch, SourceContext } from './types.js';
import { silentLog } from '../testing/harness.js';

interface Run {
  /** What the sink's encoder made of each write, as text. */
  text: string;
  /** The rows as the sink read them (`value`), or undefined when the sink did not read them. */
  rows: unknown[];
  dlq: Record<string, unknown>[];
  committed: unknown[];
  offloaded: number;
  status: string;
  error?: string;
}

function connectors(batches: SourceBatch[], run: Run, readRows: boolean, slowMs = 0): Record<string, ConnectorSpec> {
  return {
    scripted: {
      name: 'scripted',
      title: '',
      description: '',
      source: {
        options: z.object({}),
        create: () => ({
          async run(ctx: SourceContext) {
            for (const b of batches) {
              const p = ctx.emit({ ...b, records: b.records.map((r) => ({ ...r })) });
              if (p) await p;
            }
          },
          commit: (acks: unknown[]) => void run.committed.push(...acks),
        }),
      },
    },
    lines: {
      name: 'lines',
      title: '',
      description: '',
      sink: {
        options: z.object({}),
        encodesOnly: () => true,
        create: () => {
          let ctx: SinkContext;
          return {
            async open(c: SinkContext) {
              ctx = c;
            },
            async write(records: SluiceRecord[]) {
              if (slowMs) await new Promise((r) => setTimeout(r, slowMs));
              for (const r of records) if (r instanceof OffloadedRecord) run.offloaded++;
              if (readRows) for (const r of records) run.rows.push(r.value);
              // As the file sink: encodeRecords where the encoder has it.
              const first = run.text === '';
              const out = ctx.encoder.encodeRecords ? ctx.encoder.encodeRecords(records, first) : ctx.encoder.encodeStream(records.map((r) => r.value), first);
              run.text += typeof out === 'string' ? out : Buffer.from(out).toString('utf8');
            },
          };
        },
      },
    },
    dlq: {
      name: 'dlq',
      title: '',
      description: '',
      sink: {
        options: z.object({}),
        create: () => ({
          async open() {},
          async write(records: SluiceRecord[]) {
            for (const r of records) {
              const { failed_at: _, ...v } = r.value as Record<string, unknown>;
              run.dlq.push(v);
            }
          },
        }),
      },
    },
  };
}

const ep = (connector: string, over: Partial<EndpointDef> = {}): EndpointDef => ({
  connector,
  options: {},
  config: {},
  format: { name: 'json', options: {} },
  bad_data: 'dlq',
  metadata_fields: {},
  ...over,
});

const SCHEMA: SchemaSpec = {
  fields: [
    { name: 'id', type: 'int64', nullable: false },
    { name: 'p', type: 'float64' },
    { name: 'name', type: 'string' },
    { name: 'at', type: 'timestamp' },
  ],
};

async function pipeline(codec: 'on' | 'off', batches: SourceBatch[], o: { readRows?: boolean; bad?: 'dlq' | 'drop' | 'fail'; slowMs?: number; batch?: number } = {}): Promise<Run> {
  process.env.SLUICE_CODEC_THREAD = codec;
  const run: Run = { text: '', rows: [], dlq: [], committed: [], offloaded: 0, status: '' };
  const conns = connectors(batches, run, o.readRows ?? false, o.slowMs);
  const env: RuntimeEnv = { log: silentLog, state: memoryStateStore(), dataDir: '/tmp/sluice-codec-test', connector: (n) => conns[n]! };
  const def: PipelineDef = {
    name: 'codec',
    source: ep('scripted', { schema: SCHEMA, bad_data: o.bad ?? 'dlq' }),
    sink: ep('lines'),
    dlq: ep('dlq'),
    batch: { ...DEFAULT_BATCH, max_records: o.batch ?? DEFAULT_BATCH.max_records, linger_ms: 0 },
    buffer: { ...DEFAULT_BUFFER },
    retry: { ...DEFAULT_RETRY, initial_backoff_ms: 1, max_backoff_ms: 2 },
  };
  const r = await startPipeline(def, env).done;
  run.status = r.status;
  run.error = r.error?.message;
  return run;
}

afterEach(() => {
  delete process.env.SLUICE_CODEC_THREAD;
});

const payloads = (from: number, n: number, asBytes: boolean) =>
  Array.from({ length: n }, (_, i) => {
    const text = JSON.stringify({ id: String(from + i), p: `${from + i}.50`, name: `n${i}`, at: '2026-12-06T07:00:00Z' });
    return { value: asBytes ? Buffer.from(text) : text, meta: { _offset: from + i } };
  });

describe('codec thread', () => {
  it('writes the same lines and commits the same positions as the inline path, batch after batch', async () => {
    const batches = Array.from({ length: 20 }, (_, i) => ({ records: payloads(i * 50, 50, i % 2 === 0), ack: i }));
    const off = await pipeline('off', batches, { batch: 120 });
    const on = await pipeline('on', batches, { batch: 120 });
    expect(on.offloaded).toBe(1000);
    expect(off.offloaded).toBe(0);
    expect(on.status).toBe('completed');
    expect(on.text).toBe(off.text);
    expect(on.text.split('\n')[0]).toBe('{"id":0,"p":0.5,"name":"n0","at":"2026-12-06T07:00:00.000Z"}');
    expect(on.committed).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(on.committed).toEqual(off.committed);
  });

  it('gives bad records the same dead-letter entries, in the same order, and keeps the good rows of a payload', async () => {
    const bad = [
      { value: '{"id":"1","p":"1.5","name":"ok","at":null}', meta: { _offset: 0 } },
      { value: '{"id":"x","p":"2"}', meta: { _offset: 1 } }, // schema: id not an integer
      { value: '{"id":3,', meta: { _offset: 2 } }, // invalid JSON
      { value: '{"id":4,"name":"ünïcødé ✓"}\n{"id":5,"p":"no"}\n{"id":6}', meta: { _offset: 3 } }, // three rows, one bad
      { value: Buffer.from([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0xff, 0x7d]), meta: { _offset: 4 } }, // not UTF-8
      { value: '{"id":"9007199254740993","name":"big"}', meta: { _offset: 5 } },
    ];
    const off = await pipeline('off', [{ records: bad, ack: 'a' }]);
    const on = await pipeline('on', [{ records: bad, ack: 'a' }]);
    expect(on.offloaded).toBeGreaterThan(0);
    expect(on.text).toBe(off.text);
    expect(on.text).toContain('"ünïcødé ✓"');
    expect(on.text).toContain('"id":9007199254740993');
    expect(on.dlq).toEqual(off.dlq);
    expect(on.dlq.map((d) => d.field)).toEqual([null, null, 'id', 'p']);
    expect(on.committed).toEqual(['a']);
  });

  it('fails the pipeline on a bad record with bad_data: fail, with the message of the inline path', async () => {
    const batches = [{ records: payloads(0, 3, false), ack: 1 }, { records: [{ value: '{"id":"x"}', meta: { _offset: 7 } }], ack: 2 }];
    const off = await pipeline('off', batches, { bad: 'fail' });
    const on = await pipeline('on', batches, { bad: 'fail' });
    expect(on.status).toBe('failed');
    expect(on.error).toBe(off.error);
    expect(on.error).toMatch(/field 'id'/);
    expect(on.committed).toEqual([1]);
  });

  it('builds the same rows on the main thread when a sink reads them', async () => {
    const batches = [{ records: [...payloads(0, 3, true), { value: '{"id":"9007199254740993","p":null}', meta: {} }], ack: 1 }];
    const off = await pipeline('off', batches, { readRows: true });
    const on = await pipeline('on', batches, { readRows: true });
    expect(on.offloaded).toBe(4);
    expect(on.rows).toEqual(off.rows);
    expect((on.rows[0] as { at: unknown }).at).toBeInstanceOf(Date);
    expect((on.rows[3] as { id: unknown }).id).toBe(9007199254740993n);
  });

  it('holds the source back while the sink is slow, and loses nothing on the way', async () => {
    const batches = Array.from({ length: 30 }, (_, i) => ({ records: payloads(i * 100, 100, true), ack: i }));
    const on = await pipeline('on', batches, { slowMs: 5, batch: 500 });
    expect(on.status).toBe('completed');
    expect(on.text.split('\n').filter(Boolean)).toHaveLength(3000);
    expect(on.committed).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });
});
