import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { encodeRecord } from './encode.js';
import { startPipeline, type RuntimeEnv } from './runtime.js';
import { memoryStateStore } from './state.js';
import { silentLog } from '../testing/harness.js';
import { DEFAULT_BATCH, DEFAULT_BUFFER, DEFAULT_RETRY, type EndpointDef, type PipelineDef } from './model.js';
import type { ConnectorSpec } from './spec.js';
import type { SinkContext, SluiceRecord, SourceBatch, SourceContext } from './types.js';
import { SluiceError } from './errors.js';

/** A source that emits the given batches (awaiting backpressure) and records what was committed. */
function scriptedSource(batches: SourceBatch[], log: { committed: unknown[]; emitReturnedPromise: number }) {
  return {
    async run(ctx: SourceContext) {
      for (const b of batches) {
        if (ctx.signal.aborted) return;
        const p = ctx.emit(b);
        if (p) {
          log.emitReturnedPromise++;
          await p;
        }
      }
    },
    commit(acks: unknown[]) {
      log.committed.push(...acks);
    },
  };
}

interface SinkLog {
  written: SluiceRecord[][];
  failuresLeft: number;
  delayMs: number;
  error?: Error;
}

function env(batches: SourceBatch[], src: { committed: unknown[]; emitReturnedPromise: number }, sink: SinkLog, dlq?: SinkLog, named: Record<string, SinkLog> = {}): RuntimeEnv {
  const connectors: Record<string, ConnectorSpec> = {
    scripted: { name: 'scripted', title: '', description: '', source: { options: z.object({}), create: () => scriptedSource(batches, src) } },
    rec: {
      name: 'rec',
      title: '',
      description: '',
      sink: {
        options: z.object({ which: z.string().optional() }),
        create: (o: { which?: string }) => {
          const log = o.which === 'dlq' ? dlq! : o.which ? named[o.which]! : sink;
          return {
            async open() {},
            async write(records: SluiceRecord[]) {
              if (log.delayMs) await new Promise((r) => setTimeout(r, log.delayMs));
              if (log.failuresLeft > 0) {
                log.failuresLeft--;
                throw log.error ?? new SluiceError('SINK', 'temporarily down', { retriable: true });
              }
              log.written.push(records.slice());
            },
          };
        },
      },
    },
  };
  return { log: silentLog, state: memoryStateStore(), dataDir: '/tmp/sluice-runtime-test', connector: (n) => connectors[n]! };
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

function def(over: Partial<PipelineDef> = {}): PipelineDef {
  return {
    name: 't',
    source: ep('scripted'),
    sink: ep('rec'),
    batch: { ...DEFAULT_BATCH, linger_ms: 0 },
    buffer: { ...DEFAULT_BUFFER },
    retry: { ...DEFAULT_RETRY, initial_backoff_ms: 1, max_backoff_ms: 2 },
    ...over,
  };
}

const rows = (from: number, n: number): SluiceRecord[] => Array.from({ length: n }, (_, i) => ({ value: { id: from + i } }));
const raw = (...payloads: string[]): SluiceRecord[] => payloads.map((p, i) => ({ value: p, meta: { _offset: i } }));
const ids = (w: SluiceRecord[][]) => w.flat().map((r) => (r.value as { id: number }).id);

describe('runtime', () => {
  it('delivers every record in order and commits each position once the sink accepted it', async () => {
    const batches = Array.from({ length: 10 }, (_, i) => ({ records: rows(i * 100, 100), decoded: true, ack: i }));
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 0 };
    const h = startPipeline(def({ batch: { max_records: 250, max_bytes: 1e9, linger_ms: 0 } }), env(batches, src, sink));
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(ids(sink.written)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(sink.written.every((b) => b.length <= 250)).toBe(true);
    expect(src.committed).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(r.stats.records_in).toBe(1000);
    expect(r.stats.records_out).toBe(1000);
  });

  it('decodes raw payloads with the source format and validates them against the schema', async () => {
    const batches = [{ records: raw('{"id":"1","name":"a"}', '[{"id":2},{"id":3}]'), ack: 'x' }];
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 0 };
    const schema = { fields: [{ name: 'id', type: 'int64' as const }, { name: 'name', type: 'string' as const }] };
    const h = startPipeline(def({ source: ep('scripted', { schema }) }), env(batches, src, sink));
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(sink.written.flat().map((x) => x.value)).toEqual([
      { id: 1, name: 'a' },
      { id: 2, name: null },
      { id: 3, name: null },
    ]);
  });

  it('pushes back on the source when the queue is full, so memory stays bounded', async () => {
    const batches = Array.from({ length: 50 }, (_, i) => ({ records: rows(i * 100, 100), decoded: true, ack: i }));
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 2 };
    let maxQueued = 0;
    const h = startPipeline(def({ buffer: { max_records: 300, max_bytes: 1e9 }, batch: { max_records: 100, max_bytes: 1e9, linger_ms: 0 } }), env(batches, src, sink));
    const t = setInterval(() => (maxQueued = Math.max(maxQueued, h.stats.queued)), 1);
    await h.done;
    clearInterval(t);
    expect(src.emitReturnedPromise).toBeGreaterThan(0);
    // One batch may overshoot the bound (it is accepted before the source is told to wait).
    expect(maxQueued).toBeLessThanOrEqual(400);
    expect(ids(sink.written)).toHaveLength(5000);
  });

  it('retries a failing sink and commits nothing until the write succeeds', async () => {
    const batches = [{ records: rows(0, 3), decoded: true, ack: 'a' }];
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 3, delayMs: 0 };
    const h = startPipeline(def(), env(batches, src, sink));
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(r.stats.sink_retries).toBe(3);
    expect(ids(sink.written)).toEqual([0, 1, 2]);
    expect(src.committed).toEqual(['a']);
  });

  it('fails after max_attempts and never commits the unwritten batch', async () => {
    const batches = [
      { records: rows(0, 2), decoded: true, ack: 'first' },
      { records: rows(2, 2), decoded: true, ack: 'second' },
    ];
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 100, delayMs: 0 };
    const h = startPipeline(def({ retry: { max_attempts: 3, initial_backoff_ms: 1, max_backoff_ms: 1 } }), env(batches, src, sink));
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/sink 'rec' write failed after 3 attempt\(s\): temporarily down/);
    expect(src.committed).toEqual([]);
  });

  it("bad_data 'fail' stops with the record's position and commits only what came before it", async () => {
    const batches = [
      { records: raw('{"id":1}'), ack: 1 },
      { records: raw('{"id":2}', '{oops'), ack: 2 },
      { records: raw('{"id":4}'), ack: 3 },
    ];
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 0 };
    const h = startPipeline(def(), env(batches, src, sink));
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/bad record at offset 1/);
    expect(src.committed).toEqual([1]);
    expect(ids(sink.written)).not.toContain(4);
  });

  it("bad_data 'drop' counts bad records and keeps going", async () => {
    const batches = [{ records: raw('{"id":1}', 'nope', '{"id":3}'), ack: 1 }];
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 0 };
    const h = startPipeline(def({ source: ep('scripted', { bad_data: 'drop' }) }), env(batches, src, sink));
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(ids(sink.written)).toEqual([1, 3]);
    expect(r.stats.dropped).toBe(1);
    expect(r.stats.errors).toBe(1);
    expect(src.committed).toEqual([1]);
  });

  it("bad_data 'dlq' sends the original bytes with the error and field to the dead-letter sink before committing", async () => {
    const batches = [{ records: raw('{"id":1}', '{"id":"x"}'), ack: 7 }];
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 0 };
    const dlq: SinkLog = { written: [], failuresLeft: 0, delayMs: 0 };
    const schema = { fields: [{ name: 'id', type: 'int64' as const }] };
    const h = startPipeline(
      def({ source: ep('scripted', { bad_data: 'dlq', schema }), dlq: ep('rec', { options: { which: 'dlq' } }) }),
      env(batches, src, sink, dlq),
    );
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(ids(sink.written)).toEqual([1]);
    const entry = dlq.written.flat()[0]!.value as Record<string, unknown>;
    expect(entry).toMatchObject({ raw: '{"id":"x"}', field: 'id', error_class: 'SCHEMA', pipeline: 't', metadata: { _offset: 1 } });
    expect(String(entry.error)).toMatch(/id/);
    expect(r.stats.dlq).toBe(1);
    expect(src.committed).toEqual([7]);
  });

  it('a graceful stop drains what was accepted and commits it', async () => {
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 5 };
    let emitted = 0;
    const e = env([], src, sink);
    const connectors: Record<string, ConnectorSpec> = {
      endless: {
        name: 'endless',
        title: '',
        description: '',
        source: {
          options: z.object({}),
          create: () => ({
            async run(ctx: SourceContext) {
              for (let i = 0; !ctx.signal.aborted; i++) {
                emitted += 10;
                const p = ctx.emit({ records: rows(i * 10, 10), decoded: true, ack: i });
                if (p) await p;
                await new Promise((r) => setImmediate(r));
              }
            },
            commit(acks: unknown[]) {
              src.committed.push(...acks);
            },
          }),
        },
      },
    };
    const h = startPipeline(def({ source: ep('endless') }), { ...e, connector: (n) => connectors[n] ?? e.connector(n) });
    while (h.stats.records_out < 200) await new Promise((r) => setTimeout(r, 5));
    const r = await h.stop();
    expect(r.status).toBe('stopped');
    expect(ids(sink.written)).toEqual(Array.from({ length: emitted }, (_, i) => i));
    expect(src.committed).toHaveLength(emitted / 10);
  });

  it('a partial batch waits batch.linger_ms once before it is written, not twice', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
      const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 0 };
      const e = env([], src, sink);
      let emitted!: () => void;
      const wasEmitted = new Promise<void>((r) => (emitted = r));
      const connectors: Record<string, ConnectorSpec> = {
        once: {
          name: 'once',
          title: '',
          description: '',
          source: {
            options: z.object({}),
            create: () => ({
              // One record, then nothing until the pipeline stops: only the linger timer can send it.
              async run(ctx: SourceContext) {
                void ctx.emit({ records: rows(0, 1), decoded: true, ack: 0 });
                emitted();
                await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
              },
            }),
          },
        },
      };
      const h = startPipeline(def({ source: ep('once'), batch: { ...DEFAULT_BATCH, linger_ms: 100 } }), { ...e, connector: (n) => connectors[n] ?? e.connector(n) });
      await wasEmitted;
      await vi.advanceTimersByTimeAsync(99);
      expect(sink.written).toHaveLength(0);
      await vi.advanceTimersByTimeAsync(2);
      expect(ids(sink.written)).toEqual([0]);
      const r = await h.stop();
      expect(r.status).toBe('stopped');
    } finally {
      vi.useRealTimers();
    }
  });

  it('records that arrive during a write linger counting from their arrival, not from the end of that write', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const e = env([], { committed: [], emitReturnedPromise: 0 }, { written: [], failuresLeft: 0, delayMs: 0 });
      const calls: Array<[number, number]> = [];
      let ctx!: SourceContext;
      let started!: () => void;
      const running = new Promise<void>((r) => (started = r));
      const connectors: Record<string, ConnectorSpec> = {
        manual: {
          name: 'manual',
          title: '',
          description: '',
          source: {
            options: z.object({}),
            create: () => ({
              async run(c: SourceContext) {
                ctx = c;
                started();
                await new Promise((r) => c.signal.addEventListener('abort', r, { once: true }));
              },
            }),
          },
        },
        slow: {
          name: 'slow',
          title: '',
          description: '',
          sink: {
            options: z.object({}),
            create: () => ({
              async open() {},
              // Each write takes 50 ms.
              async write(records: SluiceRecord[]) {
                calls.push([Date.now(), (records[0]!.value as { id: number }).id]);
                await new Promise((r) => setTimeout(r, 50));
              },
            }),
          },
        },
      };
      const h = startPipeline(def({ source: ep('manual'), sink: ep('slow'), batch: { ...DEFAULT_BATCH, linger_ms: 100 } }), { ...e, connector: (n) => connectors[n] ?? e.connector(n) });
      await running;
      const t0 = Date.now();
      void ctx.emit({ records: rows(0, 1), decoded: true });
      await vi.advanceTimersByTimeAsync(110);
      // The first write runs from t0+100 to t0+150; this record arrives in the middle of it.
      void ctx.emit({ records: rows(1, 1), decoded: true });
      await vi.advanceTimersByTimeAsync(99);
      expect(calls.map(([, id]) => id)).toEqual([0]);
      await vi.advanceTimersByTimeAsync(2);
      expect(calls).toEqual([
        [t0 + 100, 0],
        [t0 + 210, 1],
      ]);
      const stopped = h.stop();
      await vi.advanceTimersByTimeAsync(50);
      expect((await stopped).status).toBe('stopped');
    } finally {
      vi.useRealTimers();
    }
  });

  it('JSON in and out with nothing rewriting rows: the sink writes each payload as received (byte pass-through)', async () => {
    const payloads = ['{"n": 12345678901234567890}', '{"s":"\\u00e9"}', '[{"a":1},{"a":2}]'];
    const encoded = async (over: Partial<PipelineDef>, batch: SourceBatch, messages = false) => {
      const out: string[] = [];
      const e = env([batch], { committed: [], emitReturnedPromise: 0 }, { written: [], failuresLeft: 0, delayMs: 0 });
      const connectors: Record<string, ConnectorSpec> = {
        text: {
          name: 'text',
          title: '',
          description: '',
          sink: {
            options: z.object({}),
            create: () => {
              let ctx!: SinkContext;
              return {
                async open(c: SinkContext) {
                  ctx = c;
                },
                async write(records: SluiceRecord[]) {
                  const enc = ctx.encoder;
                  if (messages) for (const r of records) out.push(String(encodeRecord(enc, r)) + '|');
                  else out.push(String(enc.encodeRecords ? enc.encodeRecords(records, false) : enc.encodeStream(records.map((r) => r.value), false)));
                },
              };
            },
          },
        },
      };
      const r = await startPipeline(def({ sink: ep('text'), ...over }), { ...e, connector: (n) => connectors[n] ?? e.connector(n) }).done;
      expect(r.status).toBe('completed');
      return out.join('');
    };
    const raw = () => ({ records: payloads.map((p) => ({ value: p })) });
    expect(await encoded({}, raw())).toBe('{"n": 12345678901234567890}\n{"s":"\\u00e9"}\n{"a":1}\n{"a":2}\n');
    // A schema that only reads numeric strings as numbers: the received text with those strings unquoted (the same
    // JSON numbers, digits as received); a row it changed otherwise is encoded again.
    const prices = { fields: [{ name: 'p', type: 'float64' as const }, { name: 'q', type: 'float64' as const }] };
    const ticks = () => ({ records: ['{"p":"43249.00938070","q":"0.50"}', '{"p":"1e3","q":"2"}', '{"p":1.50}', '{"p":"2.5", "q":"1"}'].map((p) => ({ value: p })) });
    const withPrices = { source: ep('scripted', { schema: prices }) };
    expect(await encoded(withPrices, ticks())).toBe('{"p":43249.00938070,"q":0.50}\n{"p":1000,"q":2}\n{"p":1.5,"q":null}\n{"p":2.5,"q":1}\n');
    expect(await encoded(withPrices, ticks(), true)).toBe('{"p":43249.00938070,"q":0.50}|{"p":1000,"q":2}|{"p":1.5,"q":null}|{"p":2.5,"q":1}|');
    // A schema rewrites rows: encoded again.
    const schema = { fields: [{ name: 'n', type: 'string' as const }] };
    expect(await encoded({ source: ep('scripted', { schema }) }, raw())).toBe('{"n":"12345678901234567000"}\n{"s":"é","n":null}\n{"a":1,"n":null}\n{"a":2,"n":null}\n');
    // Rows a source decoded itself are trusted only when it says they are exactly its raw text.
    const own = (rowsAreRaw: boolean) => ({ records: [{ value: { n: 1 }, raw: '{"n": 1}' }], decoded: true, rowsAreRaw });
    expect(await encoded({}, own(false))).toBe('{"n":1}\n');
    expect(await encoded({}, own(true))).toBe('{"n": 1}\n');
    // Re-encoded rows keep bytes as base64 and int64 past 2^53 exact, whether or not the schema can hold bytes.
    const one = (p: string) => ({ records: [{ value: p }] });
    const typed = { fields: [{ name: 'b', type: 'bytes' as const }, { name: 'n', type: 'int64' as const }] };
    expect(await encoded({ source: ep('scripted', { schema: typed }) }, one('{"b":"aGk=","n":"9007199254740993"}'))).toBe('{"b":"aGk=","n":9007199254740993}\n');
    const noBytes = { fields: [{ name: 'n', type: 'int64' as const }] };
    expect(await encoded({ source: ep('scripted', { schema: noBytes }) }, one('{"n":"9007199254740993","s":"x"}'))).toBe('{"n":9007199254740993,"s":"x"}\n');
    // Rows a source decoded itself may hold bytes even with no schema.
    expect(await encoded({}, { records: [{ value: { b: Buffer.from('hi') } }], decoded: true })).toBe('{"b":"aGk="}\n');
    // Message sinks send the raw payload too, bytes as bytes; rows rewritten or not from one object are encoded.
    const bytes = () => ({ records: [{ value: Buffer.from('{"n": 1.50}') }, { value: Buffer.from('[{"a":1}]') }, { value: '{"b": 2}' }] });
    expect(await encoded({}, bytes(), true)).toBe('{"n": 1.50}|{"a":1}|{"b": 2}|');
    expect(await encoded({ source: ep('scripted', { schema }) }, bytes(), true)).toBe('{"n":"1.5"}|{"a":1,"n":null}|{"b":2,"n":null}|');
    expect(await encoded({ sink: ep('text', { format: { name: 'json', options: { pretty: true } } }) }, raw(), true)).toBe('{\n  "n": 12345678901234567000\n}|{\n  "s": "é"\n}|{\n  "a": 1\n}|{\n  "a": 2\n}|');
  });

  it('routes split one stream into named outputs, each unwrapping its payload and applying its own schema', async () => {
    const msgs = [
      '{"stream":"btcusdt@trade","data":{"p":"42.5","q":"1"}}',
      '{"stream":"btcusdt@depth","data":{"bids":[["1","2"]]}}',
      '{"stream":"btcusdt@trade","data":{"p":"oops","q":"1"}}',
      '{"stream":"other","data":{}}',
      '{"stream":"ethusdt@trade","data":{"p":"1","q":"2"}}',
    ];
    const batches = [{ records: raw(...msgs), ack: 'all' }];
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 0 };
    const named: Record<string, SinkLog> = { trades: { written: [], failuresLeft: 0, delayMs: 0 }, depth: { written: [], failuresLeft: 0, delayMs: 0 } };
    const schema = { fields: [{ name: 'p', type: 'float64' as const }, { name: 'q', type: 'float64' as const }] };
    const h = startPipeline(
      def({
        source: ep('scripted', { bad_data: 'drop' }),
        sink: undefined,
        routes: [
          { name: 'trades', when: { field: 'stream', matches: '@trade$' }, payload_path: 'data', schema, sink: ep('rec', { options: { which: 'trades' } }) },
          { name: 'depth', when: { field: 'stream', equals: 'btcusdt@depth' }, payload_path: 'data', sink: ep('rec', { options: { which: 'depth' } }) },
        ],
      }),
      env(batches, src, sink, undefined, named),
    );
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(named.trades!.written.flat().map((x) => x.value)).toEqual([
      { p: 42.5, q: 1 },
      { p: 1, q: 2 },
    ]);
    expect(named.depth!.written.flat().map((x) => x.value)).toEqual([{ bids: [['1', '2']] }]);
    expect(r.stats.dropped).toBe(1);
    expect(r.stats.unrouted).toBe(1);
    expect(src.committed).toEqual(['all']);
  });

  it('a source payload_path unwraps every record, and a missing path is bad data', async () => {
    const batches = [{ records: raw('{"data":{"id":1}}', '{"other":2}'), ack: 1 }];
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 0 };
    const h = startPipeline(def({ source: ep('scripted', { bad_data: 'fail', payload_path: 'data' }) }), env(batches, src, sink));
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/payload_path 'data' not found/);
  });

  it('an async transform (lookup joins) keeps batch order and commits only after the sink', async () => {
    const batches = Array.from({ length: 20 }, (_, i) => ({ records: rows(i * 10, 10), decoded: true, ack: i }));
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 0 };
    let call = 0;
    const transform = async (recs: SluiceRecord[]) => {
      // Earlier batches take longer, so a transform that did not serialise batches would reorder them.
      await new Promise((r) => setTimeout(r, Math.max(0, 10 - call++)));
      return recs.filter((r) => (r.value as { id: number }).id % 2 === 0);
    };
    const h = startPipeline(def(), env(batches, src, sink), { transform });
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(ids(sink.written)).toEqual(Array.from({ length: 100 }, (_, i) => i * 2));
    expect(src.committed).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('hands the record key to formats that need it: a keyed Debezium tombstone becomes a delete marker', async () => {
    const create = JSON.stringify({ op: 'c', before: null, after: { id: 1, name: 'a' }, source: { table: 't' } });
    const batches = [{ records: [{ value: create, key: '{"id":1}' }, { value: Buffer.alloc(0), key: '{"id":1}' }], ack: 1 }];
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 0, delayMs: 0 };
    const h = startPipeline(def({ source: ep('scripted', { format: { name: 'debezium-json-upsert', options: {} } }) }), env(batches, src, sink));
    const r = await h.done;
    expect(r.status).toBe('completed');
    const values = sink.written.flat().map((x) => x.value as Record<string, unknown>);
    expect(values[0]).toMatchObject({ id: 1, name: 'a', __op: 'c' });
    expect(values[1]).toMatchObject({ id: 1, __op: 'd', __deleted: true });
  });

  it('does not retry a sink error marked retriable: false', async () => {
    const batches = [{ records: rows(0, 2), decoded: true, ack: 'a' }];
    const src = { committed: [] as unknown[], emitReturnedPromise: 0 };
    const sink: SinkLog = { written: [], failuresLeft: 5, delayMs: 0, error: new SluiceError('SINK', 'HTTP 400 Bad Request', { retriable: false }) };
    const h = startPipeline(def(), env(batches, src, sink));
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.stats.sink_retries).toBe(0);
    expect(r.error?.message).toMatch(/after 1 attempt\(s\): HTTP 400/);
    expect(src.committed).toEqual([]);
  });
});
