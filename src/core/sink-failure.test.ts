// Sink failures: `retry.on_exhausted` (fail | dlq | pause), per-record rejections (RejectedRecordsError), the
// dead-letter entries they produce, commits only after the dead-letter sink wrote, and the record accounting.

import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startPipeline, type PipelineHandle, type RuntimeEnv } from './runtime.js';
import { memoryStateStore } from './state.js';
import { silentLog } from '../testing/harness.js';
import { DEFAULT_BATCH, DEFAULT_BUFFER, type EndpointDef, type PipelineDef, type RetryPolicy } from './model.js';
import type { ConnectorSpec } from './spec.js';
import type { SluiceRecord, SourceBatch, SourceContext } from './types.js';
import { RejectedRecordsError, SluiceError } from './errors.js';
import { compileDocument } from '../config/compile.js';

/** A fake sink whose behaviour a test changes while the pipeline runs. */
interface FakeSink {
  written: SluiceRecord[][];
  /** Every write call, with its time, including failed ones. */
  attempts: number[];
  /** Fail this many more writes with `error` (Infinity: until changed). */
  failuresLeft: number;
  error: Error;
  /** Ids (row field `id`) this sink refuses per record with a RejectedRecordsError. */
  reject?: Set<number>;
  /** While set, writes wait for it. */
  gate?: Promise<void>;
  /** Called on each failed attempt (tests await the n-th one instead of sleeping). */
  onAttempt?: (n: number) => void;
}

const fake = (over: Partial<FakeSink> = {}): FakeSink => ({
  written: [],
  attempts: [],
  failuresLeft: 0,
  error: new SluiceError('CONNECT', 'connection refused'),
  ...over,
});

interface SourceLog {
  committed: unknown[];
  emitted: number;
}

function testEnv(batches: SourceBatch[], src: SourceLog, sinks: Record<string, FakeSink>): RuntimeEnv {
  const connectors: Record<string, ConnectorSpec> = {
    scripted: {
      name: 'scripted',
      title: '',
      description: '',
      source: {
        options: z.object({}),
        create: () => ({
          async run(ctx: SourceContext) {
            for (const b of batches) {
              if (ctx.signal.aborted) return;
              src.emitted += b.records.length;
              const p = ctx.emit(b);
              if (p) await p;
            }
          },
          commit(acks: unknown[]) {
            src.committed.push(...acks);
          },
        }),
      },
    },
    fake: {
      name: 'fake',
      title: '',
      description: '',
      sink: {
        options: z.object({ which: z.string() }),
        create: (o: { which: string }) => {
          const s = sinks[o.which]!;
          return {
            async open() {},
            async write(records: SluiceRecord[]) {
              s.attempts.push(Date.now());
              if (s.gate) await s.gate;
              if (s.failuresLeft > 0) {
                s.failuresLeft--;
                s.onAttempt?.(s.attempts.length);
                throw s.error;
              }
              const bad = records.flatMap((r, index) => (s.reject?.has((r.value as { id: number }).id) ? [{ index, error: new SluiceError('SCHEMA', `id ${(r.value as { id: number }).id} violates a constraint`) }] : []));
              s.written.push(records.filter((_, i) => !bad.some((b) => b.index === i)));
              if (bad.length) throw new RejectedRecordsError(bad);
            },
          };
        },
      },
    },
  };
  return { log: silentLog, state: memoryStateStore(), dataDir: '/tmp/sluice-sink-failure-test', connector: (n) => connectors[n]! };
}

const ep = (connector: string, over: Partial<EndpointDef> = {}): EndpointDef => ({
  connector,
  options: {},
  config: {},
  format: { name: 'json', options: {} },
  bad_data: 'fail',
  metadata_fields: {},
  ...over,
});
const fakeEp = (which: string) => ep('fake', { options: { which } });

function def(over: Partial<PipelineDef> = {}, retry: Partial<RetryPolicy> = {}): PipelineDef {
  return {
    name: 'sf',
    source: ep('scripted'),
    sink: fakeEp('main'),
    batch: { ...DEFAULT_BATCH, linger_ms: 0 },
    buffer: { ...DEFAULT_BUFFER },
    retry: { max_attempts: 3, initial_backoff_ms: 1, max_backoff_ms: 2, ...retry },
    ...over,
  };
}

/** Raw JSON payloads `{"id": n}` with an offset, one source batch per `size` records, ack = batch number. */
function payloadBatches(total: number, size: number): SourceBatch[] {
  return Array.from({ length: Math.ceil(total / size) }, (_, b) => ({
    records: Array.from({ length: Math.min(size, total - b * size) }, (_, i) => ({ value: JSON.stringify({ id: b * size + i }), meta: { _offset: b * size + i } })),
    ack: b,
  }));
}
const ids = (w: SluiceRecord[][]) => w.flat().map((r) => (r.value as { id: number }).id);
const entries = (s: FakeSink) => s.written.flat().map((r) => r.value as Record<string, unknown>);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** Every record that entered is accounted for exactly once. */
function expectAccounted(h: PipelineHandle) {
  const s = h.stats;
  expect(s.records_in).toBe(s.records_out + s.dlq + s.dropped + s.filtered + s.unrouted);
}

function nthAttempt(s: FakeSink, n: number): Promise<void> {
  return new Promise((resolve) => {
    s.onAttempt = (k) => {
      if (k >= n) resolve();
    };
  });
}

describe('sink failures', () => {
  it("on_exhausted 'dlq': a batch that ran out of attempts goes to the dead-letter sink with its bytes, error and attempt count", async () => {
    const main = fake({ failuresLeft: Infinity });
    const dead = fake();
    const src: SourceLog = { committed: [], emitted: 0 };
    const h = startPipeline(def({ dlq: fakeEp('dead') }, { max_attempts: 2, on_exhausted: 'dlq' }), testEnv(payloadBatches(3, 3), src, { main, dead }));
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(main.attempts).toHaveLength(2);
    const e = entries(dead);
    expect(e.map((x) => x.raw)).toEqual(['{"id":0}', '{"id":1}', '{"id":2}']);
    expect(e[0]).toMatchObject({ error_class: 'CONNECT', stage: 'sink', output: 'sink', raw_kind: 'payload', raw_encoding: 'utf8', attempts: 2, pipeline: 'sf', source: 'scripted', metadata: { _offset: 0 } });
    expect(String(e[0]!.error)).toMatch(/sink 'fake' write failed after 2 attempt\(s\): connection refused/);
    expect(src.committed).toEqual([0]);
    expect(r.stats).toMatchObject({ records_in: 3, records_out: 0, dlq: 3, sink_retries: 1 });
    expectAccounted(h);
  });

  it('commits a dead-lettered batch only once the dead-letter sink wrote it', async () => {
    const main = fake({ failuresLeft: Infinity, error: new SluiceError('SINK', 'HTTP 400', { retriable: false }) });
    let open!: () => void;
    const dead = fake({ gate: new Promise<void>((r) => (open = r)) });
    const src: SourceLog = { committed: [], emitted: 0 };
    const h = startPipeline(def({ dlq: fakeEp('dead') }, { max_attempts: 5 }), testEnv(payloadBatches(2, 1), src, { main, dead }));
    while (dead.attempts.length === 0) await new Promise((r) => setImmediate(r));
    expect(src.committed).toEqual([]);
    // A permanent error is not retried: one attempt per batch, and the default with a `dlq:` sink is on_exhausted 'dlq'.
    expect(main.attempts).toHaveLength(1);
    open();
    dead.gate = undefined;
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(src.committed).toEqual([0, 1]);
    expect(entries(dead).map((x) => x.attempts)).toEqual([1, 1]);
    expect(entries(dead)[0]!.error).toMatch(/permanent, not retried/);
    expect(r.stats.sink_retries).toBe(0);
    expectAccounted(h);
  });

  it("on_exhausted 'fail' (the default without a dlq:) stops the pipeline and commits nothing of the batch", async () => {
    const main = fake({ failuresLeft: Infinity });
    const src: SourceLog = { committed: [], emitted: 0 };
    const h = startPipeline(def({}, { max_attempts: 2 }), testEnv(payloadBatches(4, 2), src, { main }));
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/write failed after 2 attempt\(s\)/);
    expect(src.committed).toEqual([]);
  });

  it('records a sink rejects go to the dead-letter sink, the rest are acknowledged, and every source batch commits in order', async () => {
    // Source batches of 7, sink batches of 5: rejected records sit in entries that are split over writes.
    const main = fake({ reject: new Set([3, 6, 7, 19]) });
    const dead = fake();
    const src: SourceLog = { committed: [], emitted: 0 };
    const h = startPipeline(
      def({ source: ep('scripted', { bad_data: 'dlq' }), dlq: fakeEp('dead'), batch: { max_records: 5, max_bytes: 1e9, linger_ms: 0 } }),
      testEnv(payloadBatches(21, 7), src, { main, dead }),
    );
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(ids(main.written)).toEqual(range(0, 21).filter((i) => ![3, 6, 7, 19].includes(i)));
    const e = entries(dead);
    expect(e.map((x) => x.raw)).toEqual(['{"id":3}', '{"id":6}', '{"id":7}', '{"id":19}']);
    expect(e[0]).toMatchObject({ error_class: 'SCHEMA', stage: 'sink', output: 'sink', attempts: 1, metadata: { _offset: 3 } });
    expect(e[0]!.error).toMatch(/id 3 violates a constraint/);
    expect(src.committed).toEqual([0, 1, 2]);
    expect(r.stats).toMatchObject({ records_in: 21, records_out: 17, dlq: 4, sink_rejected: 4, sink_retries: 0 });
    expectAccounted(h);
  });

  it("rejected records follow bad_data: 'drop' counts them, 'fail' stops without committing their batch", async () => {
    const main = fake({ reject: new Set([1]) });
    const src: SourceLog = { committed: [], emitted: 0 };
    const h = startPipeline(def({ source: ep('scripted', { bad_data: 'drop' }) }), testEnv(payloadBatches(4, 2), src, { main }));
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(r.stats).toMatchObject({ records_out: 3, dropped: 1, sink_rejected: 1 });
    expect(src.committed).toEqual([0, 1]);
    expectAccounted(h);

    const main2 = fake({ reject: new Set([2]) });
    const src2: SourceLog = { committed: [], emitted: 0 };
    const h2 = startPipeline(def({ batch: { max_records: 2, max_bytes: 1e9, linger_ms: 0 } }), testEnv(payloadBatches(6, 2), src2, { main: main2 }));
    const r2 = await h2.done;
    expect(r2.status).toBe('failed');
    expect(r2.error?.message).toMatch(/rejected 1 record\(s\); the first, at offset 2: id 2 violates a constraint/);
    expect(src2.committed).toEqual([0]);
  });

  it('a row without source bytes (a decoded source) is dead-lettered as JSON with raw_kind row', async () => {
    const main = fake({ reject: new Set([2]) });
    const dead = fake();
    const src: SourceLog = { committed: [], emitted: 0 };
    const batches = [{ records: [{ value: { id: 1 } }, { value: { id: 2, name: 'x' } }], decoded: true, ack: 'a' }];
    const h = startPipeline(def({ source: ep('scripted', { bad_data: 'dlq' }), dlq: fakeEp('dead') }), testEnv(batches, src, { main, dead }));
    expect((await h.done).status).toBe('completed');
    expect(entries(dead)[0]).toMatchObject({ raw: '{"id":2,"name":"x"}', raw_kind: 'row', stage: 'sink' });
    expect(src.committed).toEqual(['a']);
  });

  it("on_exhausted 'pause': stops pulling, shows why, retries slowly without spinning, and resumes with no loss", async () => {
    const main = fake({ failuresLeft: Infinity });
    const src: SourceLog = { committed: [], emitted: 0 };
    const batches = payloadBatches(2000, 50);
    const h = startPipeline(
      def({ buffer: { max_records: 200, max_bytes: 1e9 }, batch: { max_records: 50, max_bytes: 1e9, linger_ms: 0 } }, { max_attempts: 3, max_backoff_ms: 100, on_exhausted: 'pause' }),
      testEnv(batches, src, { main }),
    );
    // Attempts 1-3 are the normal retries; the 4th failure comes after one paused wait.
    await nthAttempt(main, 4);
    expect(h.status()).toBe('paused');
    expect(h.pausedReason()).toMatch(/sink 'fake': connection refused/);
    const pausedAt = Date.now();
    const attemptsAt = main.attempts.length;
    await nthAttempt(main, attemptsAt + 3);
    const elapsed = Date.now() - pausedAt;
    // No spinning: a paused output tries once per max_backoff (here 100 ms).
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(main.attempts.length - attemptsAt).toBe(3);
    // Backpressure: the source was stopped at the queue bound (one batch of overshoot at most).
    expect(src.emitted).toBeLessThanOrEqual(250);
    expect(src.committed).toEqual([]);
    main.failuresLeft = 0;
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(ids(main.written)).toEqual(range(0, 2000));
    expect(src.committed).toEqual(range(0, 40));
    expect(h.pausedReason()).toBeUndefined();
    expect(r.stats.paused_ms).toBeGreaterThanOrEqual(250);
    expectAccounted(h);
  });

  it('a route can have its own retry policy: one output dead-letters while the other keeps writing', async () => {
    const a = fake({ failuresLeft: Infinity });
    const b = fake();
    const dead = fake();
    const src: SourceLog = { committed: [], emitted: 0 };
    const h = startPipeline(
      def({
        sink: undefined,
        dlq: fakeEp('dead'),
        routes: [
          { name: 'even', when: { field: 'kind', equals: 'even' }, sink: fakeEp('a'), retry: { max_attempts: 1, initial_backoff_ms: 1, max_backoff_ms: 1, on_exhausted: 'dlq' } },
          { name: 'odd', when: { field: 'kind', equals: 'odd' }, sink: fakeEp('b') },
        ],
      }),
      testEnv([{ records: range(0, 6).map((i) => ({ value: JSON.stringify({ id: i, kind: i % 2 ? 'odd' : 'even' }) })), ack: 'x' }], src, { a, b, dead }),
    );
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(a.attempts).toHaveLength(1);
    expect(ids(b.written)).toEqual([1, 3, 5]);
    expect(entries(dead).map((e) => [e.output, e.raw])).toEqual([
      ['even', '{"id":0,"kind":"even"}'],
      ['even', '{"id":2,"kind":"even"}'],
      ['even', '{"id":4,"kind":"even"}'],
    ]);
    expect(src.committed).toEqual(['x']);
    expectAccounted(h);
  });

  it('a dead-letter sink that fails stops the pipeline instead of looping', async () => {
    const main = fake({ reject: new Set([0]) });
    const dead = fake({ failuresLeft: Infinity });
    const src: SourceLog = { committed: [], emitted: 0 };
    const h = startPipeline(def({ source: ep('scripted', { bad_data: 'dlq' }), dlq: fakeEp('dead') }, { max_attempts: 2 }), testEnv(payloadBatches(2, 2), src, { main, dead }));
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/dead-letter sink 'fake' write failed after 2 attempt/);
    expect(src.committed).toEqual([]);
  });

  it('accounts for every record: in = out + dlq + dropped + filtered + unrouted', async () => {
    const main = fake({ reject: new Set([4, 41]), failuresLeft: 2 });
    const other = fake();
    const dead = fake();
    const src: SourceLog = { committed: [], emitted: 0 };
    const batches: SourceBatch[] = payloadBatches(60, 6).map((b, i) => (i === 3 ? { ...b, records: [...b.records, { value: '{broken', meta: { _offset: 'x' } }] } : b));
    const h = startPipeline(
      def({
        source: ep('scripted', { bad_data: 'dlq' }),
        sink: undefined,
        dlq: fakeEp('dead'),
        batch: { max_records: 4, max_bytes: 1e9, linger_ms: 0 },
        routes: [
          { name: 'low', when: { field: 'id', in: range(0, 45) }, sink: fakeEp('main') },
          { name: 'high', when: { field: 'id', matches: '^5' }, sink: fakeEp('other') },
        ],
      }),
      testEnv(batches, src, { main, other, dead }),
      // The transform filters out multiples of 10.
      { transform: (recs) => recs.filter((r) => (r.value as { id: number }).id % 10 !== 0) },
    );
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(r.stats).toMatchObject({ records_in: 61, filtered: 6, unrouted: 5, dlq: 3, sink_rejected: 2, sink_retries: 2 });
    expect(r.stats.records_out).toBe(61 - 6 - 5 - 3);
    expectAccounted(h);
    expect(src.committed).toEqual(range(0, 10));
  });
});

describe('retry config', () => {
  const compile = (retry: unknown, withDlq: boolean) =>
    compileDocument({
      name: 'p',
      source: { connector: 'generator', config: { count: 1 } },
      sink: { connector: 'blackhole' },
      ...(withDlq ? { dlq: { connector: 'blackhole' } } : {}),
      retry,
    });

  it("defaults to 'dlq' with a dead-letter sink and 'fail' without one; on_failure is an alias", () => {
    expect(compile(undefined, true).value!.pipelines[0]!.retry.on_exhausted).toBe('dlq');
    expect(compile(undefined, false).value!.pipelines[0]!.retry.on_exhausted).toBe('fail');
    expect(compile({ on_failure: 'pause', max_backoff: '30s' }, false).value!.pipelines[0]!.retry).toMatchObject({ on_exhausted: 'pause', max_backoff_ms: 30_000 });
  });

  it("refuses 'dlq' without a dlq: sink and names unknown policies", () => {
    expect(compile({ on_exhausted: 'dlq' }, false).issues.map((i) => i.message)).toEqual(["on_exhausted is 'dlq' but the pipeline has no `dlq:` sink"]);
    const bad = compile({ on_exhausted: 'retry' }, false).issues;
    expect(bad).toHaveLength(1);
    expect(bad[0]!.path).toEqual(['retry', 'on_exhausted']);
  });

  it("a route's retry block overrides the pipeline's field by field", () => {
    const r = compileDocument({
      name: 'p',
      source: { connector: 'generator', config: { count: 1 } },
      retry: { max_attempts: 7, on_exhausted: 'pause' },
      routes: [{ name: 'a', sink: { connector: 'blackhole' }, retry: { max_attempts: 2 } }],
    });
    expect(r.issues).toEqual([]);
    expect(r.value!.pipelines[0]!.routes![0]!.retry).toMatchObject({ max_attempts: 2, on_exhausted: 'pause' });
  });
});
