import { appendFile, chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RecordError, SluiceError } from '../../core/errors.js';
import { parseOptions } from '../../core/spec.js';
import { mapScope } from '../../core/state.js';
import type { BadRecord, Decoder, Encoder, SluiceRecord, Source, SourceBatch, StateScope } from '../../core/types.js';
import { encodeLengthDelimited } from '../../formats/framing.js';
import { createFormat } from '../../formats/index.js';
import { collectSource, sinkContext, testContext, waitFor as pollUntil, writeAll } from '../../testing/harness.js';
import { spec, type FileAck, type FileCheckpoint } from './index.js';
import { withSequence } from './sink.js';

// ---- tiny format fakes (the real formats live in src/formats and are tested there) ---------------------------

const text = (p: string | Uint8Array) => (typeof p === 'string' ? p : Buffer.from(p).toString('utf8'));

function jsonDecoder(): Decoder {
  return {
    decode(payload, out, onError) {
      const s = text(payload);
      if (s.trim() === '') return;
      try {
        const v = JSON.parse(s);
        if (Array.isArray(v)) out.push(...v);
        else out.push(v);
      } catch (e) {
        onError(new RecordError('DECODE', `invalid JSON: ${(e as Error).message}`), payload);
      }
    },
  };
}

/** One CSV record (may contain quoted newlines and "" escapes). */
function csvFields(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let f = '';
    if (s[i] === '"') {
      i++;
      for (;;) {
        const q = s.indexOf('"', i);
        if (q === -1) throw new Error('unterminated quote');
        f += s.slice(i, q);
        if (s[q + 1] === '"') {
          f += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
    } else {
      const c = s.indexOf(',', i);
      f = s.slice(i, c === -1 ? s.length : c);
      i = c === -1 ? s.length : c;
    }
    out.push(f);
    if (s[i] !== ',') return out;
    i++;
  }
}

function csvDecoder(): Decoder {
  let header: string[] | undefined;
  return {
    decode(payload, out, onError) {
      const fields = csvFields(text(payload));
      if (!header) {
        header = fields;
        return;
      }
      if (fields.length !== header.length) {
        onError(new RecordError('DECODE', `row has ${fields.length} fields, header has ${header.length}`), payload);
        return;
      }
      out.push(Object.fromEntries(header.map((h, i) => [h, fields[i]])));
    },
  };
}

const jsonEncoder: Encoder = {
  encode: (v) => JSON.stringify(v),
  encodeStream: (vs) => vs.map((v) => JSON.stringify(v) + '\n').join(''),
  extension: 'jsonl',
};

function csvEncoder(cols: string[]): Encoder {
  return {
    encode: (v) => cols.map((c) => String((v as Record<string, unknown>)[c])).join(','),
    encodeStream: (vs, first) =>
      (first ? cols.join(',') + '\n' : '') + vs.map((v) => cols.map((c) => String((v as Record<string, unknown>)[c])).join(',') + '\n').join(''),
    extension: 'csv',
  };
}

// ---- helpers ----------------------------------------------------------------------------------------------

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-file-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function source(options: Record<string, unknown>, format = 'json'): Source {
  const r = parseOptions(spec.source!.options, options);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return spec.source!.create(r.value, { format });
}

function sinkOf(options: Record<string, unknown>) {
  const r = parseOptions(spec.sink!.options, options);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return spec.sink!.create(r.value, { format: 'json' });
}

const waitFor = (cond: () => boolean, what: string, timeoutMs = 5000) => pollUntil(cond, what, timeoutMs, 5);

interface Running {
  records: SluiceRecord[];
  batches: SourceBatch[];
  bad: BadRecord[];
  stop(): Promise<void>;
  done: Promise<void>;
}

/** Runs a source in the background with live views of what it emitted. */
function start(
  src: Source,
  o: {
    decoder?: () => Decoder;
    state?: StateScope;
    commit?: boolean;
    emit?: (b: SourceBatch) => Promise<void> | undefined;
    log?: string[];
  } = {},
): Running {
  const ac = new AbortController();
  const r: Running = { records: [], batches: [], bad: [], stop: async () => {}, done: Promise.resolve() };
  const ctx = {
    ...testContext('source', { signal: ac.signal, state: o.state ?? mapScope(new Map()), ...(o.log ? { log: captureLog(o.log) } : {}) }),
    emit(b: SourceBatch) {
      r.batches.push(b);
      r.records.push(...b.records);
      if (o.emit) return o.emit(b);
      if (o.commit !== false && b.ack !== undefined) return Promise.resolve(src.commit?.([b.ack]));
      return undefined;
    },
    bad(b: BadRecord[]) {
      r.bad.push(...b);
    },
    decoder: o.decoder ?? jsonDecoder,
  };
  r.done = src.run(ctx).finally(() => src.close?.());
  r.stop = async () => {
    ac.abort();
    await r.done;
  };
  return r;
}

/** A logger that records messages, to wait for a source's internal steps. */
function captureLog(into: string[]): Logger {
  const log = (a: unknown, b?: unknown) => {
    into.push(typeof a === 'string' ? a : String(b));
  };
  const l = { debug: log, info: log, warn: log, error: log, trace: log, fatal: log, child: () => l };
  return l as unknown as Logger;
}

const values = (rs: SluiceRecord[]) => rs.map((r) => r.value);
const lines = (from: number, to: number, tag = 'n') => Array.from({ length: to - from + 1 }, (_, i) => JSON.stringify({ [tag]: from + i }) + '\n').join('');
const seq = (from: number, to: number, tag = 'n') => Array.from({ length: to - from + 1 }, (_, i) => ({ [tag]: from + i }));

// ---- source: read mode ------------------------------------------------------------------------------------

describe('file source, read mode', () => {
  it('reads every file matching a glob, in path order, with exact metadata, then finishes', async () => {
    await mkdir(join(dir, 'logs'));
    await writeFile(join(dir, 'logs', 'b.jsonl'), lines(3, 4));
    await writeFile(join(dir, 'logs', 'a.jsonl'), lines(1, 2));
    await writeFile(join(dir, 'logs', 'c.jsonl'), '{"n":5}\r\n{"n":6}'); // CRLF and no final newline
    await writeFile(join(dir, 'logs', 'skip.txt'), 'not matched\n');
    const out = await collectSource(source({ path: join(dir, 'logs', '*.jsonl'), read_chunk_size: 16 }), { decoder: jsonDecoder });
    expect(values(out.records)).toEqual(seq(1, 6));
    const a = join(dir, 'logs', 'a.jsonl');
    expect(out.records[0]).toEqual({ value: { n: 1 }, meta: { _path: a, _offset: 0, _line: 1 }, raw: '{"n":1}' });
    expect(out.records[1]!.meta).toEqual({ _path: a, _offset: 8, _line: 2 });
    expect(out.records[5]!.meta).toEqual({ _path: join(dir, 'logs', 'c.jsonl'), _offset: 9, _line: 2 });
    expect(out.batches.every((b) => b.decoded === true && b.partition === (b.ack as FileAck).path)).toBe(true);
    expect(out.bad).toEqual([]);
  });

  it('accepts a list of paths and the documented aliases', async () => {
    await writeFile(join(dir, 'x.jsonl'), lines(1, 1));
    await writeFile(join(dir, 'y.jsonl'), lines(2, 2));
    const out = await collectSource(source({ paths: [join(dir, 'y.jsonl'), join(dir, 'x.jsonl')] }), { decoder: jsonDecoder });
    expect(values(out.records)).toEqual([{ n: 2 }, { n: 1 }]);
    const out2 = await collectSource(source({ filename: join(dir, 'x.jsonl'), include_path: true }), { decoder: jsonDecoder });
    expect(values(out2.records)).toEqual([{ n: 1, _path: join(dir, 'x.jsonl') }]);
  });

  it('fails clearly when nothing matches', async () => {
    const p = join(dir, 'logs', '*.jsonl');
    await expect(collectSource(source({ path: p }), { decoder: jsonDecoder })).rejects.toThrow(SluiceError);
    await expect(collectSource(source({ path: p }), { decoder: jsonDecoder })).rejects.toThrow(`no file matches '${p}'`);
  });

  it('resumes after a commit from the exact offset: no duplicates, no gaps; a finished file is not read again', async () => {
    const f = join(dir, 'data.jsonl');
    await writeFile(f, lines(1, 20));
    const state = mapScope(new Map());
    const src1 = source({ path: f, read_chunk_size: 40 });
    // Acknowledge only the first two batches, as if the process died before the rest reached the sink.
    let n = 0;
    const run1 = start(src1, { state, emit: (b) => (n++ < 2 ? Promise.resolve(src1.commit!([b.ack])) : undefined) });
    await run1.done;
    expect(values(run1.records)).toEqual(seq(1, 20));
    const firstTwo = run1.batches.slice(0, 2).flatMap((b) => b.records).length;
    expect(firstTwo).toBeGreaterThan(0);
    const cp = (await state.get<FileCheckpoint>(f))!;
    expect(cp.offset).toBe(Buffer.byteLength(lines(1, firstTwo)));
    expect(cp.line).toBe(firstTwo + 1);

    const run2 = start(source({ path: f, read_chunk_size: 40 }), { state });
    await run2.done;
    expect(values(run2.records)).toEqual(seq(firstTwo + 1, 20));
    expect(run2.records[0]!.meta).toMatchObject({ _line: firstTwo + 1, _offset: cp.offset });
    expect((await state.get<FileCheckpoint>(f))!).toMatchObject({ offset: Buffer.byteLength(lines(1, 20)), done: true });

    const run3 = start(source({ path: f }), { state });
    await run3.done;
    expect(run3.records).toEqual([]);

    await appendFile(f, lines(21, 22));
    const run4 = start(source({ path: f }), { state });
    await run4.done;
    expect(values(run4.records)).toEqual(seq(21, 22));
    expect(run4.records[0]!.meta).toMatchObject({ _line: 21 });
  });

  it('reads everything again after a crash without commit, and from 0 when the file was replaced', async () => {
    const f = join(dir, 'data.jsonl');
    await writeFile(f, lines(1, 5));
    const state = mapScope(new Map());
    const run1 = start(source({ path: f }), { state, commit: false });
    await run1.done;
    const run2 = start(source({ path: f }), { state });
    await run2.done;
    expect(values(run2.records)).toEqual(seq(1, 5));
    // Same name, different file (new inode): the old checkpoint does not apply.
    await rm(f);
    await writeFile(f, lines(100, 101));
    const run3 = start(source({ path: f }), { state });
    await run3.done;
    expect(values(run3.records)).toEqual(seq(100, 101));
  });

  it('CSV: one header per file, quoted newlines, and the header is re-read when resuming mid-file', async () => {
    await writeFile(join(dir, 'a.csv'), 'id,name\n1,"Ann\nLee"\n2,Bob\n3,Cy\n');
    await writeFile(join(dir, 'b.csv'), 'id,qty\n7,70\n8,80\n');
    const state = mapScope(new Map());
    const pattern = join(dir, '*.csv');
    const src1 = source({ path: pattern, read_chunk_size: 12 }, 'csv');
    let first = true;
    const run1 = start(src1, {
      state,
      decoder: csvDecoder,
      emit: (b) => {
        if (!first || b.records.length === 0) return undefined;
        first = false;
        return Promise.resolve(src1.commit!([b.ack]));
      },
    });
    await run1.done;
    expect(values(run1.records)).toEqual([
      { id: '1', name: 'Ann\nLee' },
      { id: '2', name: 'Bob' },
      { id: '3', name: 'Cy' },
      { id: '7', qty: '70' },
      { id: '8', qty: '80' },
    ]);
    expect(run1.records.map((r) => r.meta!._line)).toEqual([2, 4, 5, 2, 3]);
    const committed = run1.batches.find((b) => b.records.length > 0)!.records.length;
    expect(committed).toBeGreaterThan(0);
    expect(committed).toBeLessThan(3);

    const run2 = start(source({ path: pattern, read_chunk_size: 12 }, 'csv'), { state, decoder: csvDecoder });
    await run2.done;
    expect(values(run2.records)).toEqual(values(run1.records).slice(committed));
    expect(run2.bad).toEqual([]);
  });

  it('reports undecodable lines through bad() with file:line, and moves past them', async () => {
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      await writeFile('orders.csv', 'id,a,b,c\n1,2,3,4\n5,6,7\n8,9,10,11\n');
      await writeFile('bad.jsonl', '{"n":1}\n{oops\n{"n":3}\n');
      const state = mapScope(new Map());
      const csv = start(source({ path: 'orders.csv' }, 'csv'), { state, decoder: csvDecoder });
      await csv.done;
      expect(values(csv.records)).toEqual([
        { id: '1', a: '2', b: '3', c: '4' },
        { id: '8', a: '9', b: '10', c: '11' },
      ]);
      expect(csv.bad).toHaveLength(1);
      expect(csv.bad[0]!.error.message).toBe('row has 3 fields, header has 4');
      expect(csv.bad[0]!.error).toBeInstanceOf(RecordError);
      expect(csv.bad[0]!.raw).toBe('5,6,7');
      expect(csv.bad[0]!.meta).toEqual({ _path: join(dir, 'orders.csv'), _offset: 17, _line: 3 });

      const json = start(source({ path: 'bad.jsonl' }), { state });
      await json.done;
      expect(values(json.records)).toEqual([{ n: 1 }, { n: 3 }]);
      expect(json.bad[0]!.error.message).toMatch(/invalid JSON/);
      expect(json.bad[0]!.meta).toMatchObject({ _line: 2 });
      expect((await state.get<FileCheckpoint>(join(dir, 'bad.jsonl')))!.offset).toBe(22);
    } finally {
      process.chdir(cwd);
    }
  });

  // Permission bits do not stop root, so this only runs as an ordinary user.
  it.skipIf(process.getuid?.() === 0)('an unreadable file is an error naming the path', async () => {
    const f = join(dir, 'secret.jsonl');
    await writeFile(f, lines(1, 1));
    await chmod(f, 0);
    await expect(collectSource(source({ path: f }), { decoder: jsonDecoder })).rejects.toThrow(/cannot read '.*secret\.jsonl'/);
  });

  it('reports an over-long line as bad data and continues', async () => {
    const f = join(dir, 'long.jsonl');
    await writeFile(f, `{"n":1}\n{"s":"${'x'.repeat(500)}"}\n{"n":2}\n`);
    const out = await collectSource(source({ path: f, max_line_bytes: 100, read_chunk_size: 64 }), { decoder: jsonDecoder });
    expect(values(out.records)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(out.bad).toHaveLength(1);
    expect(out.bad[0]!.error.message).toMatch(/line of 508 bytes exceeds max_line_bytes \(100\)/);
    expect(out.bad[0]!.meta).toMatchObject({ _line: 2, _path: f });
  });

  it('a batch that holds only bad lines or a header still carries the checkpoint', async () => {
    const f = join(dir, 'h.csv');
    await writeFile(f, 'id,name\n');
    const state = mapScope(new Map());
    const run = start(source({ path: f }, 'csv'), { state, decoder: csvDecoder });
    await run.done;
    expect(run.records).toEqual([]);
    expect(run.batches).toHaveLength(1);
    expect((await state.get<FileCheckpoint>(f))!).toMatchObject({ offset: 8, line: 2, done: true });
  });

  it('stops reading while the pipeline pushes back', async () => {
    const f = join(dir, 'big.jsonl');
    await writeFile(f, lines(1, 3000));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let reads = 0;
    const src = source({ path: f, read_chunk_size: 1024 });
    const run = start(src, { emit: () => (reads++ === 0 ? gate : undefined) });
    await waitFor(() => run.batches.length === 1, 'the first batch');
    // Give the source ample opportunity to (wrongly) keep reading.
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 20));
    expect(run.batches).toHaveLength(1);
    release();
    await run.done;
    expect(values(run.records)).toEqual(seq(1, 3000));
  });

  it('stops promptly on abort even while waiting on backpressure', async () => {
    const f = join(dir, 'big.jsonl');
    await writeFile(f, lines(1, 100));
    const run = start(source({ path: f, read_chunk_size: 64 }), { emit: () => new Promise<void>(() => {}) });
    await waitFor(() => run.batches.length === 1, 'the first batch');
    await run.stop();
    expect(run.batches).toHaveLength(1);
  });

  it('length_delimited framing', async () => {
    const f = join(dir, 'frames.bin');
    await writeFile(f, encodeLengthDelimited(['{"n":1}', '{"n":2}', '{"n":3}']));
    const out = await collectSource(source({ path: f, framing: 'length_delimited', read_chunk_size: 5 }), { decoder: jsonDecoder });
    expect(values(out.records)).toEqual(seq(1, 3));
    expect(out.records.map((r) => [r.meta!._offset, r.meta!._line])).toEqual([
      [0, 1],
      [11, 2],
      [22, 3],
    ]);
  });

  it('whole_file framing: one payload per file, split into batches with the ack only on the last', async () => {
    const f = join(dir, 'arr.json');
    await writeFile(f, JSON.stringify(seq(1, 2500)));
    const state = mapScope(new Map());
    const run = start(source({ path: f, framing: 'whole_file', read_chunk_size: 4096 }), { state });
    await run.done;
    expect(values(run.records)).toEqual(seq(1, 2500));
    expect(run.batches.map((b) => (b.ack as FileAck).offset)).toEqual([0, 0, (await readFile(f)).length]);
  });

  it('test() reports how many files the path resolved to', async () => {
    await writeFile(join(dir, 'a.jsonl'), 'x\n');
    await writeFile(join(dir, 'b.jsonl'), '');
    const steps: string[] = [];
    await spec.test!({ path: join(dir, '*.jsonl') }, 'source', (s) => steps.push(s.message), new AbortController().signal);
    expect(steps[0]).toBe('path resolved to 2 files');
    expect(steps.slice(1).every((s) => s.startsWith('opened '))).toBe(true);
    await expect(spec.test!({ path: join(dir, 'none/*.x') }, 'source', () => {}, new AbortController().signal)).rejects.toThrow(/no file matches/);
  });
});

// ---- source: follow mode ----------------------------------------------------------------------------------

describe('file source, follow mode', () => {
  it('picks up appended lines and new files; an unterminated line waits for its newline', async () => {
    await writeFile(join(dir, 'a.log'), lines(1, 2));
    const run = start(source({ path: join(dir, '*.log'), mode: 'follow', poll_interval: 10 }));
    try {
      await waitFor(() => run.records.length === 2, 'initial lines');
      await appendFile(join(dir, 'a.log'), lines(3, 4) + '{"n":5}');
      await waitFor(() => run.records.length === 4, 'appended lines');
      await writeFile(join(dir, 'b.log'), lines(1, 2, 'b'));
      await waitFor(() => run.records.length === 6, 'the new file');
      await appendFile(join(dir, 'a.log'), '\n');
      await waitFor(() => run.records.length === 7, 'the completed line');
    } finally {
      await run.stop();
    }
    const a = run.records.filter((r) => r.meta!._path === join(dir, 'a.log'));
    const b = run.records.filter((r) => r.meta!._path === join(dir, 'b.log'));
    expect(values(a)).toEqual(seq(1, 5));
    expect(values(b)).toEqual(seq(1, 2, 'b'));
  });

  it('waits for a file to appear', async () => {
    const run = start(source({ path: join(dir, 'later', '*.log'), mode: 'follow', poll_interval: 10 }));
    try {
      await mkdir(join(dir, 'later'));
      await writeFile(join(dir, 'later', 'x.log'), lines(1, 1));
      await waitFor(() => run.records.length === 1, 'the late file');
    } finally {
      await run.stop();
    }
  });

  it('survives rotation: the old file is read to its end, the new one from the start', async () => {
    const f = join(dir, 'app.log');
    await writeFile(f, lines(1, 3));
    const run = start(source({ path: f, mode: 'follow', poll_interval: 10 }));
    try {
      await waitFor(() => run.records.length === 3, 'initial lines');
      // logrotate without copytruncate: the writer still appends to the renamed file before reopening.
      await appendFile(f, lines(4, 5));
      await rename(f, join(dir, 'app.log.1'));
      await appendFile(join(dir, 'app.log.1'), lines(6, 6));
      await writeFile(f, lines(7, 8));
      await waitFor(() => run.records.length === 8, 'all lines');
      await appendFile(f, lines(9, 9));
      await waitFor(() => run.records.length === 9, 'lines in the new file');
    } finally {
      await run.stop();
    }
    expect(values(run.records)).toEqual(seq(1, 9));
    expect(run.records.map((r) => r.meta!._line)).toEqual([1, 2, 3, 4, 5, 6, 1, 2, 3]);
  });

  it('handles truncation (copytruncate) by reading again from the start', async () => {
    const f = join(dir, 'app.log');
    await writeFile(f, lines(1, 3));
    const run = start(source({ path: f, mode: 'follow', poll_interval: 10 }));
    try {
      await waitFor(() => run.records.length === 3, 'initial lines');
      await truncate(f, 0);
      await appendFile(f, lines(4, 4));
      await waitFor(() => run.records.length === 4, 'the line after truncation');
    } finally {
      await run.stop();
    }
    expect(values(run.records)).toEqual(seq(1, 4));
    expect(run.records[3]!.meta).toMatchObject({ _offset: 0, _line: 1 });
  });

  it('start_at: end skips existing content but keeps line numbers right; a restart resumes from the checkpoint', async () => {
    const f = join(dir, 'app.log');
    await writeFile(f, lines(1, 3) + '{"n":');
    const state = mapScope(new Map());
    const log: string[] = [];
    const run = start(source({ path: f, mode: 'follow', poll_interval: 10, start_at: 'end' }), { state, log });
    try {
      await waitFor(() => log.includes('file source: resuming'), 'the file to be opened at its end');
      await appendFile(f, '4}\n' + lines(5, 5));
      await waitFor(() => run.records.length === 2, 'appended lines');
    } finally {
      await run.stop();
    }
    expect(values(run.records)).toEqual(seq(4, 5));
    expect(run.records.map((r) => r.meta!._line)).toEqual([4, 5]);

    await appendFile(f, lines(6, 6));
    const again = start(source({ path: f, mode: 'follow', poll_interval: 10, start_at: 'end' }), { state });
    try {
      await waitFor(() => again.records.length === 1, 'the line written while stopped');
    } finally {
      await again.stop();
    }
    expect(values(again.records)).toEqual([{ n: 6 }]);
  });

  it('CSV in follow mode keeps the header across appends', async () => {
    const f = join(dir, 'o.csv');
    await writeFile(f, 'id,v\n1,a\n');
    const run = start(source({ path: f, mode: 'follow', poll_interval: 10 }, 'csv'), { decoder: csvDecoder });
    try {
      await waitFor(() => run.records.length === 1, 'the first row');
      await appendFile(f, '2,"b\nc"\n');
      await waitFor(() => run.records.length === 2, 'the appended row');
    } finally {
      await run.stop();
    }
    expect(values(run.records)).toEqual([
      { id: '1', v: 'a' },
      { id: '2', v: 'b\nc' },
    ]);
  });

  it('stops promptly when aborted between polls', async () => {
    await writeFile(join(dir, 'a.log'), lines(1, 1));
    const run = start(source({ path: join(dir, 'a.log'), mode: 'follow', poll_interval: 60_000 }));
    await waitFor(() => run.records.length === 1, 'the line');
    const t0 = Date.now();
    await run.stop();
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});

// ---- sink -------------------------------------------------------------------------------------------------

describe('file sink', () => {
  const recs = (from: number, to: number) => seq(from, to).map((value) => ({ value }));

  it('appends JSON lines, creating parent directories, and appends to an existing file on the next run', async () => {
    const f = join(dir, 'out', 'deep', 'x.jsonl');
    await writeAll(sinkOf({ path: f }), sinkContext(jsonEncoder), [recs(1, 2), recs(3, 3)]);
    expect(await readFile(f, 'utf8')).toBe(lines(1, 3));
    await writeAll(sinkOf({ file: f }), sinkContext(jsonEncoder), [recs(4, 4)]);
    expect(await readFile(f, 'utf8')).toBe(lines(1, 4));
  });

  it('writes the CSV header once per file, also when appending to an existing file', async () => {
    const f = join(dir, 'x.csv');
    const enc = csvEncoder(['n']);
    await writeAll(sinkOf({ path: f }), sinkContext(enc), [recs(1, 2), recs(3, 3)]);
    await writeAll(sinkOf({ path: f }), sinkContext(enc), [recs(4, 4)]);
    expect(await readFile(f, 'utf8')).toBe('n\n1\n2\n3\n4\n');
  });

  it('template (dataTemplate) writes one rendered line per record instead of the format encoding', async () => {
    const f = join(dir, 'tpl.txt');
    const sink = sinkOf({ path: f, dataTemplate: '{{ n }}:{{ upper s }}', template_escape: 'none' });
    await writeAll(sink, sinkContext(jsonEncoder), [[{ value: { n: 1, s: 'a"b' } }], [{ value: { n: 2 } }]]);
    expect(await readFile(f, 'utf8')).toBe('1:A"B\n2:\n');
  });

  it('append: false truncates', async () => {
    const f = join(dir, 'x.jsonl');
    await writeFile(f, 'old\n');
    await writeAll(sinkOf({ path: f, append: false }), sinkContext(jsonEncoder), [recs(1, 1)]);
    expect(await readFile(f, 'utf8')).toBe(lines(1, 1));
  });

  it('rotates by size into several files holding all records in order', async () => {
    const f = join(dir, 'out.jsonl');
    const batches = Array.from({ length: 30 }, (_, i) => recs(i * 2 + 1, i * 2 + 2));
    await writeAll(sinkOf({ path: f, rotate_size: 100 }), sinkContext(jsonEncoder), batches);
    const files = (await readdir(dir)).sort((a, b) => rank(a) - rank(b));
    expect(files.length).toBeGreaterThan(3);
    expect(files[0]).toBe('out.jsonl');
    expect(files[1]).toBe('out.1.jsonl');
    let all = '';
    for (const name of files) {
      const content = await readFile(join(dir, name), 'utf8');
      expect(content.length).toBeLessThan(100 + 2 * 9);
      all += content;
    }
    expect(all).toBe(lines(1, 60));
  });

  it('rotation with {n}: every CSV file gets its header; a restart appends to the newest file', async () => {
    const enc = csvEncoder(['n']);
    const tpl = join(dir, 'part-{n}.csv');
    await writeAll(sinkOf({ path: tpl, rotate_size: 8 }), sinkContext(enc), [recs(1, 3), recs(4, 6), recs(7, 7)]);
    expect(await readFile(join(dir, 'part-0.csv'), 'utf8')).toBe('n\n1\n2\n3\n');
    expect(await readFile(join(dir, 'part-1.csv'), 'utf8')).toBe('n\n4\n5\n6\n');
    expect(await readFile(join(dir, 'part-2.csv'), 'utf8')).toBe('n\n7\n');
    await writeAll(sinkOf({ path: tpl, rotate_size: 8 }), sinkContext(enc), [recs(8, 8)]);
    expect(await readFile(join(dir, 'part-2.csv'), 'utf8')).toBe('n\n7\n8\n');
  });

  it('fills {date} and {hour}; the write resolves once the bytes are on disk (fsync)', async () => {
    const sink = sinkOf({ path: join(dir, '{date}', 'h{hour}.jsonl'), fsync: true });
    const before = new Date().toISOString();
    await sink.open(sinkContext(jsonEncoder));
    await sink.write(recs(1, 1));
    const after = new Date().toISOString();
    // Read while the file is still open: the acknowledged batch is already complete in the file.
    const [day] = await readdir(dir);
    expect([before.slice(0, 10), after.slice(0, 10)]).toContain(day);
    const [name] = await readdir(join(dir, day!));
    expect([`h${before.slice(11, 13)}.jsonl`, `h${after.slice(11, 13)}.jsonl`]).toContain(name);
    expect(await readFile(join(dir, day!, name!), 'utf8')).toBe(lines(1, 1));
    await sink.close!();
  });

  it('rejects unknown placeholders and reports a writable directory in test()', async () => {
    const r = parseOptions(spec.sink!.options, { path: 'out/{day}.jsonl' });
    expect(r.ok).toBe(false);
    const steps: string[] = [];
    await spec.test!({ path: join(dir, 'new', 'x.jsonl') }, 'sink', (s) => steps.push(s.message), new AbortController().signal);
    expect(steps[0]).toMatch(/^directory .*new is writable$/);
  });

  it('names rotated files without {n} as name.N.ext', () => {
    expect(withSequence('/a/out.jsonl', 0)).toBe('/a/out.jsonl');
    expect(withSequence('/a/out.jsonl', 2)).toBe('/a/out.2.jsonl');
    expect(withSequence('/a/out', 1)).toBe('/a/out.1');
    expect(withSequence('/a/out-{n}.csv', 3)).toBe('/a/out-3.csv');
  });
});

function rank(name: string): number {
  const m = /\.(\d+)\.jsonl$/.exec(name);
  return m ? Number(m[1]) : 0;
}

// ---- with the real formats --------------------------------------------------------------------------------

describe('file connector with the real csv and json formats', () => {
  it('CSV round trip: sink writes one header per rotated file, the source reads them back and resumes mid-file', async () => {
    const csv = createFormat({ name: 'csv', options: {} });
    const rows = Array.from({ length: 50 }, (_, i) => ({ id: String(i + 1), note: i % 7 === 0 ? `line\n"${i}", quoted` : `n${i + 1}` }));
    const batches = Array.from({ length: 10 }, (_, b) => rows.slice(b * 5, b * 5 + 5).map((value) => ({ value })));
    await writeAll(sinkOf({ path: join(dir, 'out', 'part-{n}.csv'), rotate_size: 300 }), sinkContext(csv.encoder()), batches);
    const files = await readdir(join(dir, 'out'));
    expect(files.length).toBeGreaterThan(1);

    const state = mapScope(new Map());
    const pattern = join(dir, 'out', 'part-*.csv');
    // Sorted by path, part-10 would come before part-2; compare as a set of rows, and order within each file.
    const src1 = source({ path: pattern, read_chunk_size: 64 }, 'csv');
    let commits = 0;
    const run1 = start(src1, { state, decoder: () => csv.decoder(), emit: (b) => (commits++ < 3 ? Promise.resolve(src1.commit!([b.ack])) : undefined) });
    await run1.done;
    expect(run1.bad).toEqual([]);
    const byId = (rs: unknown[]) => [...rs].sort((a, b) => Number((a as { id: string }).id) - Number((b as { id: string }).id));
    expect(byId(values(run1.records))).toEqual(rows);

    const committed = run1.batches.slice(0, 3).reduce((n, b) => n + b.records.length, 0);
    const run2 = start(source({ path: pattern, read_chunk_size: 64 }, 'csv'), { state, decoder: () => csv.decoder() });
    await run2.done;
    expect(run2.bad).toEqual([]);
    expect(values(run2.records)).toEqual(values(run1.records).slice(committed));
  });

  it('JSON lines: a bad line names file and line', async () => {
    const json = createFormat({ name: 'json', options: {} });
    const f = join(dir, 'events.jsonl');
    await writeFile(f, '{"a":1}\n{"a":\n{"a":3}\n');
    const out = await collectSource(source({ path: f }), { decoder: () => json.decoder() });
    expect(values(out.records)).toEqual([{ a: 1 }, { a: 3 }]);
    expect(out.bad).toHaveLength(1);
        expect(out.bad[0]!.meta).toMatchObject({ _line: 2, _path: f });
  });
});
