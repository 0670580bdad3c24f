import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { crc32, openDurableBuffer, type DurableBuffer, type DurableBufferOptions } from './durable-buffer.js';
import { SluiceError } from './errors.js';
import { MetricSet } from './metrics.js';
import { mapScope } from './state.js';
import type { BadRecord, SluiceRecord, SourceBatch, SourceContext, StateScope } from './types.js';

// fdatasync is wrapped so a test can hold a sync round open and count rounds: that is how "visible only after the
// fsync" is observed without relying on timing.
const fsGate = vi.hoisted(() => ({ hold: false, held: [] as Array<() => void>, calls: 0 }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const fdatasync = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    fsGate.calls++;
    const run = () => fs.fdatasync(fd, cb);
    if (fsGate.hold) fsGate.held.push(run);
    else run();
  };
  return { ...fs, default: { ...fs, fdatasync }, fdatasync };
});

function releaseFsync(keepHolding = false) {
  fsGate.hold = keepHolding;
  for (const run of fsGate.held.splice(0)) run();
}

// ---- a fake runtime side --------------------------------------------------------------------------------------

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

interface Fake {
  ctx: SourceContext;
  ac: AbortController;
  batches: SourceBatch[];
  bad: BadRecord[];
  logs: LogLine[];
  metrics: MetricSet;
  records(): SluiceRecord[];
  values(): unknown[];
  /** From now on emit returns a promise that stays pending until release(). */
  block(): void;
  release(): void;
  acks(): unknown[];
}

function fakeReal(dataDir: string, state: StateScope): Fake {
  const ac = new AbortController();
  const logs: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
  const metrics = new MetricSet();
  let blocking = false;
  let gate: { promise: Promise<void>; resolve: () => void } | undefined;
  const f: Fake = {
    ac,
    batches: [],
    bad: [],
    logs,
    metrics,
    ctx: {
      pipeline: 't',
      role: 'source',
      log,
      state,
      metrics,
      signal: ac.signal,
      dataDir,
      emit(b) {
        f.batches.push(b);
        if (!blocking) return undefined;
        if (!gate) {
          let resolve!: () => void;
          const promise = new Promise<void>((r) => (resolve = r));
          gate = { promise, resolve };
        }
        return gate.promise;
      },
      bad(records) {
        f.bad.push(...records);
      },
      decoder() {
        return { decode: (p, out) => void out.push({ decoded: String(p) }) };
      },
    },
    records: () => f.batches.flatMap((b) => b.records),
    values: () => f.records().map((r) => (typeof r.value === 'string' ? r.value : r.value)),
    block() {
      blocking = true;
    },
    release() {
      blocking = false;
      const g = gate;
      gate = undefined;
      g?.resolve();
    },
    acks: () => f.batches.map((b) => b.ack),
  };
  return f;
}

const msg = (i: number, pad = 100) => `msg-${i}-${'x'.repeat(pad)}`;
const seqOf = (ack: unknown) => (ack as { seq: number }).seq;
const turn = () => new Promise<void>((r) => setImmediate(r));
const until = (cond: () => boolean, timeout = 10_000) =>
  vi.waitFor(
    () => {
      if (!cond()) throw new Error('not yet');
    },
    { timeout, interval: 2 },
  );

let root: string;
let opened: DurableBuffer[];
let stateMap: Map<string, unknown>;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'sluice-dbuf-'));
  opened = [];
  stateMap = new Map();
  fsGate.hold = false;
  fsGate.held = [];
  fsGate.calls = 0;
});

afterEach(async () => {
  releaseFsync();
  for (const b of opened) await b.close();
  rmSync(root, { recursive: true, force: true });
});

const bufDir = () => join(root, 'buffer', 'ws');

async function open(over: Partial<DurableBufferOptions> = {}, fake = fakeReal(root, mapScope(stateMap))) {
  const buf = await openDurableBuffer(fake.ctx, { dir: bufDir(), maxBytes: 64 * 1024 * 1024, fsync: 'never', onFull: 'block', ...over });
  opened.push(buf);
  return { buf, fake };
}

async function reopen(buf: DurableBuffer, over: Partial<DurableBufferOptions> = {}) {
  await buf.close();
  return open(over);
}

function segmentFiles(): string[] {
  return existsSync(bufDir()) ? readdirSync(bufDir()).filter((n) => n.endsWith('.seg')).sort() : [];
}

const diskBytes = () => segmentFiles().reduce((n, f) => n + statSync(join(bufDir(), f)).size, 0);

function emitValues(buf: DurableBuffer, from: number, to: number, perBatch = 1, pad = 100) {
  for (let i = from; i <= to; i += perBatch) {
    const records: SluiceRecord[] = [];
    for (let j = i; j < Math.min(i + perBatch, to + 1); j++) records.push({ value: msg(j, pad) });
    buf.ctx.emit({ records });
  }
}

/** One emit per turn of the event loop, so the replay loop hands over many small batches. */
async function emitSlowly(buf: DurableBuffer, from: number, to: number, perBatch = 1, pad = 100) {
  for (let i = from; i <= to; i += perBatch) {
    emitValues(buf, i, Math.min(i + perBatch - 1, to), perBatch, pad);
    await turn();
  }
}

const range = (from: number, to: number, pad = 100) => Array.from({ length: to - from + 1 }, (_, k) => msg(from + k, pad));

// ---- tests ----------------------------------------------------------------------------------------------------

describe('crc32', () => {
  it('matches the standard check value and handles every alignment', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
    const b = Buffer.from('The quick brown fox jumps over the lazy dog');
    expect(crc32(b)).toBe(0x414fa339);
    expect(crc32(Buffer.concat([Buffer.from('xyz'), b]), 3)).toBe(0x414fa339);
  });
});

describe('durable buffer', () => {
  it('hands every record to the pipeline once, in order, in batches of at most 1000 with increasing seq acks', async () => {
    const { buf, fake } = await open();
    let n = 0;
    const sizes = [1, 7, 300, 1, 1200, 45, 999, 2];
    for (let round = 0; round < 4; round++) {
      for (const size of sizes) {
        emitValues(buf, n + 1, n + size, size);
        n += size;
      }
      await turn();
    }
    await until(() => fake.records().length === n);
    await new Promise((r) => setTimeout(r, 20));
    expect(fake.values()).toEqual(range(1, n));
    let prev = 0;
    let total = 0;
    for (const b of fake.batches) {
      expect(b.records.length).toBeGreaterThan(0);
      expect(b.records.length).toBeLessThanOrEqual(1000);
      expect(b.decoded).toBe(false);
      total += b.records.length;
      expect(seqOf(b.ack)).toBe(total);
      expect(seqOf(b.ack)).toBeGreaterThan(prev);
      prev = seqOf(b.ack);
    }
    expect(buf.stats()).toMatchObject({ appended: n, entries: n, acknowledged: 0, dropped: 0 });
    await buf.commit(fake.acks());
    expect(buf.stats()).toMatchObject({ entries: 0, acknowledged: n });
  });

  it('round-trips every record field, keeps the decoded flag and splits batches where it changes', async () => {
    const full: SluiceRecord = {
      value: new Uint8Array([0, 1, 2, 255]),
      key: new Uint8Array([9, 8]),
      headers: { 'content-type': 'text/plain', bin: new Uint8Array([7]), ünï: 'cödé ✓' },
      timestamp: 1717171717171.5,
      meta: { _channel: 'trades', n: 3, nested: { a: [1, null] } },
      raw: new Uint8Array([42]),
    };
    const emitAll = (buf: DurableBuffer) => {
      buf.ctx.emit({ records: [{ value: 'plain text ✓' }, full, { value: '', key: 'k1', raw: 'r' }] });
      buf.ctx.emit({ records: [{ value: { id: 1, name: 'a', tags: ['x'] }, meta: { m: true } }, { value: { id: 2 } }], decoded: true });
      buf.ctx.emit({ records: [{ value: 'after', timestamp: 0 }] });
    };
    const check = (fake: Fake) => {
      expect(fake.batches.map((b) => [b.decoded, b.records.length])).toEqual([
        [false, 3],
        [true, 2],
        [false, 1],
      ]);
      const r = fake.records();
      expect(r[0]).toEqual({ value: 'plain text ✓' });
      expect(Buffer.isBuffer(r[1]!.value)).toBe(true);
      expect(r[1]).toEqual({
        value: Buffer.from([0, 1, 2, 255]),
        key: Buffer.from([9, 8]),
        headers: { 'content-type': 'text/plain', bin: Buffer.from([7]), ünï: 'cödé ✓' },
        timestamp: 1717171717171.5,
        meta: { _channel: 'trades', n: 3, nested: { a: [1, null] } },
        raw: Buffer.from([42]),
      });
      expect(r[2]).toEqual({ value: '', key: 'k1', raw: 'r' });
      expect(r[3]).toEqual({ value: { id: 1, name: 'a', tags: ['x'] }, meta: { m: true } });
      expect(r[4]).toEqual({ value: { id: 2 } });
      expect(r[5]).toEqual({ value: 'after', timestamp: 0 });
    };
    // Once from the tail cache, once read back from the files after a restart.
    const { buf, fake } = await open();
    emitAll(buf);
    await until(() => fake.records().length === 6);
    check(fake);
    const again = await reopen(buf);
    await until(() => again.fake.records().length === 6);
    check(again.fake);
  });

  it('keeps shared and distinct meta apart: a meta object reused across records, and one changed between emits', async () => {
    const { buf, fake } = await open();
    const shared: Record<string, unknown> = { _received_at: 1, _connection_id: 0 };
    buf.ctx.emit({ records: [{ value: 'a', meta: shared }, { value: 'b', meta: shared }, { value: 'c', meta: { _received_at: 2 } }, { value: 'd', meta: shared }] });
    // A source may reuse one object and change it before the next emit: the new content must be written.
    shared._received_at = 3;
    buf.ctx.emit({ records: [{ value: 'e', meta: shared }] });
    await until(() => fake.records().length === 5);
    expect(fake.records().map((r) => [r.value, r.meta])).toEqual([
      ['a', { _received_at: 1, _connection_id: 0 }],
      ['b', { _received_at: 1, _connection_id: 0 }],
      ['c', { _received_at: 2 }],
      ['d', { _received_at: 1, _connection_id: 0 }],
      ['e', { _received_at: 3, _connection_id: 0 }],
    ]);
  });

  it('reads ahead of the sink only up to a bound, which doubles when the sink drains all of it', async () => {
    // No patience timeout here: only the sink's reports may grow the bound, however slow the machine.
    const { buf, fake } = await open({ readAheadRecords: 1000, readAheadPatienceMs: 600_000 });
    emitValues(buf, 1, 6000, 50);
    await until(() => fake.records().length === 1000);
    await turn();
    await turn();
    // 5000 entries are visible, but the pipeline holds only one batch until the sink reports it written.
    expect(fake.records().length).toBe(1000);
    // The sink took everything it had: the bound was what kept it waiting, so it doubles to 2000.
    void buf.commit(fake.acks());
    await until(() => fake.records().length === 3000);
    await turn();
    await turn();
    expect(fake.records().length).toBe(3000);
    // Half of it written: one more batch, no growth (the sink's batches are smaller than the bound).
    void buf.commit([fake.batches[1]!.ack]);
    await until(() => fake.records().length === 4000);
    await turn();
    await turn();
    expect(fake.records().length).toBe(4000);
    await buf.commit(fake.acks());
    await until(() => fake.records().length === 6000);
    expect(fake.values()).toEqual(range(1, 6000));
  });

  it('does not let the read-ahead bound stall a pipeline that reports no writes (preview)', async () => {
    const { buf, fake } = await open({ readAheadRecords: 200, readAheadPatienceMs: 20 });
    emitValues(buf, 1, 1500, 100);
    await until(() => fake.records().length === 1500);
    expect(fake.values()).toEqual(range(1, 1500));
  });

  it('rejects a raw value that is not a payload without writing any of the batch', async () => {
    const { buf, fake } = await open();
    expect(() => buf.ctx.emit({ records: [{ value: 'ok' }, { value: { not: 'raw' } }] })).toThrow(SluiceError);
    buf.ctx.emit({ records: [{ value: 'next' }] });
    await until(() => fake.records().length === 1);
    expect(fake.values()).toEqual(['next']);
    expect(seqOf(fake.batches[0]!.ack)).toBe(1);
  });

  it('during a sink outage grows the log on disk, not in memory, and delivers everything once the sink is back', async () => {
    const cacheBytes = 256 * 1024;
    const { buf, fake } = await open({ cacheBytes, segmentBytes: 64 * 1024 });
    fake.block();
    const n = 30_000;
    for (let i = 1; i <= n; i += 50) {
      emitValues(buf, i, Math.min(i + 49, n), 50, 150);
      if (i % 1000 === 1) await turn();
    }
    await turn();
    // The sink took one batch and is stuck on it; everything else waits on disk.
    expect(fake.batches.length).toBe(1);
    const st = buf.stats();
    expect(st.entries).toBe(n);
    expect(st.bytes).toBeGreaterThan(n * 150);
    expect(st.bytes).toBe(diskBytes());
    expect(segmentFiles().length).toBeGreaterThan(50);
    // The reader is far behind: it reads from the files, so no tail cache is held for it meanwhile.
    expect((buf as unknown as { cachedBytes: number }).cachedBytes).toBe(0);

    // Everything arrives, in order, while the sink acknowledges as it goes.
    fake.release();
    let acked = 0;
    await until(() => {
      const acks = fake.acks();
      if (acks.length > acked) {
        void buf.commit(acks.slice(acked));
        acked = acks.length;
      }
      return fake.records().length === n;
    });
    expect(fake.values()).toEqual(range(1, n, 150));
    await buf.commit(fake.acks());
    expect(buf.stats()).toMatchObject({ entries: 0, acknowledged: n, dropped: 0 });
    expect(segmentFiles().length).toBeLessThanOrEqual(1);
    expect(buf.stats().bytes).toBe(diskBytes());
    expect(buf.stats().bytes).toBeLessThanOrEqual(64 * 1024 + 200);
  });

  it('counts entries handed over again after a restart as redelivered, and only those', async () => {
    const first = await open();
    emitValues(first.buf, 1, 50, 10);
    await until(() => first.fake.records().length === 50);
    // The sink acknowledged the first 20; 21..50 were handed over but not acknowledged when the process stopped.
    await first.buf.commit([{ seq: 20 }]);
    emitValues(first.buf, 51, 60, 10);
    first.fake.ac.abort(); // stop handing over: 51..60 may still reach the pipeline or stay on disk
    await first.buf.done;
    const handed = first.fake.records().length;
    await first.buf.close();

    const second = await open();
    await until(() => second.fake.records().length === 40);
    expect(second.fake.values()).toEqual(range(21, 60));
    expect(second.buf.stats()).toMatchObject({ redelivered: handed - 20, skipped: 0 });
    expect(second.fake.metrics.snapshot().redelivered).toBe(handed - 20);
    // New entries were never handed over before.
    emitValues(second.buf, 61, 70, 10);
    await until(() => second.fake.records().length === 50);
    expect(second.buf.stats().redelivered).toBe(handed - 20);
    await second.buf.commit(second.fake.acks());
    await second.buf.close();

    const third = await open();
    emitValues(third.buf, 71, 75, 5);
    await until(() => third.fake.records().length === 5);
    expect(third.buf.stats().redelivered).toBe(0);
  });

  it("batches carry the log's position; an exactly-once sink's stored position skips what the sink holds", async () => {
    const first = await open();
    emitValues(first.buf, 1, 100, 10);
    await until(() => first.fake.records().length === 100);
    for (const b of first.fake.batches) expect(b.position).toEqual({ durable_buffer: 'ws', seq: seqOf(b.ack) });
    // The sink wrote up to seq 70 (stored with its records) but the runtime committed only up to 30 to the source.
    await first.buf.commit([{ seq: 30 }]);
    await first.buf.close();

    const fake = fakeReal(root, mapScope(stateMap));
    fake.ctx.resume = { '': { durable_buffer: 'ws', seq: 70 } };
    const second = await open({}, fake);
    await until(() => fake.records().length === 30);
    expect(fake.values()).toEqual(range(71, 100));
    // Past the sink's position nothing is in the sink: handing those over again duplicates nothing.
    expect(second.buf.stats()).toMatchObject({ skipped: 40, redelivered: 0, entries: 30 });
    expect(stateMap.get('durable_buffer.ws.acked')).toBe(70);
    emitValues(second.buf, 101, 110, 10);
    await until(() => fake.records().length === 40);
    expect(seqOf(fake.batches[fake.batches.length - 1]!.ack)).toBe(110);
    await second.buf.close();

    // Positions of another log or another source are not ours: the buffer resumes from its own acknowledged seq.
    for (const foreign of [{ durable_buffer: 'other', seq: 105 }, { path: '/x', offset: 105 }, 105]) {
      const f = fakeReal(root, mapScope(stateMap));
      f.ctx.resume = { '': foreign };
      const { buf } = await open({}, f);
      await until(() => f.records().length === 40);
      expect(f.values()).toEqual(range(71, 110));
      expect(buf.stats().skipped).toBe(0);
      await buf.close();
    }
  });

  it('commit persists the acknowledged seq and deletes fully acknowledged segments only', async () => {
    const { buf, fake } = await open({ segmentBytes: 4096 });
    await emitSlowly(buf, 1, 300, 10);
    await until(() => fake.records().length === 300);
    expect(fake.batches.length).toBeGreaterThan(10);
    const before = segmentFiles();
    expect(before.length).toBeGreaterThan(8);
    const half = fake.acks().slice(0, Math.floor(fake.batches.length / 2));
    await buf.commit(half);
    const acked = seqOf(half[half.length - 1]);
    expect(stateMap.get('durable_buffer.ws.acked')).toBe(acked);
    const after = segmentFiles();
    expect(after.length).toBeLessThan(before.length);
    // The oldest remaining segment still holds an unacknowledged entry; the deleted ones held none.
    const bases = before.map((f) => Number(f.slice(0, 16)));
    const firstKept = Number(after[0]!.slice(0, 16));
    const next = bases[bases.indexOf(firstKept) + 1] ?? Infinity;
    expect(next - 1).toBeGreaterThan(acked);
    expect(firstKept).toBeLessThanOrEqual(acked + 1);
    expect(buf.stats().entries).toBe(300 - acked);
    // Acks arriving twice or out of date change nothing.
    await buf.commit(half);
    expect(stateMap.get('durable_buffer.ws.acked')).toBe(acked);
    await buf.commit(fake.acks());
    expect(segmentFiles().length).toBe(1);
    expect(buf.stats().entries).toBe(0);
  });

  it('after a restart replays exactly the unacknowledged entries, and seq numbers keep increasing', async () => {
    const first = await open({ segmentBytes: 4096 });
    await emitSlowly(first.buf, 1, 100, 5);
    await until(() => first.fake.records().length === 100);
    expect(first.fake.batches.length).toBeGreaterThan(5);
    const k = Math.floor(first.fake.batches.length / 3);
    await first.buf.commit(first.fake.acks().slice(0, k));
    const acked = seqOf(first.fake.batches[k - 1]!.ack);

    const second = await reopen(first.buf, { segmentBytes: 4096 });
    await until(() => second.fake.records().length === 100 - acked);
    await new Promise((r) => setTimeout(r, 20));
    expect(second.fake.values()).toEqual(range(acked + 1, 100));
    expect(second.buf.stats()).toMatchObject({ entries: 100 - acked, appended: 0 });
    emitValues(second.buf, 101, 105, 5);
    await until(() => second.fake.records().length === 105 - acked);
    expect(seqOf(second.fake.batches[second.fake.batches.length - 1]!.ack)).toBe(105);

    // Everything acknowledged: the files go, the sequence does not start over.
    await second.buf.commit(second.fake.acks());
    const third = await reopen(second.buf, { segmentBytes: 4096 });
    expect(segmentFiles()).toEqual([]);
    expect(third.buf.stats().entries).toBe(0);
    emitValues(third.buf, 106, 106);
    await until(() => third.fake.records().length === 1);
    expect(seqOf(third.fake.batches[0]!.ack)).toBe(106);
    expect(third.fake.values()).toEqual([msg(106)]);
  });

  describe('a torn tail', () => {
    async function writeAndClose(n: number) {
      const { buf } = await open({ segmentBytes: 4096 });
      emitValues(buf, 1, n, 3);
      await buf.close();
      const files = segmentFiles();
      return join(bufDir(), files[files.length - 1]!);
    }

    it('cut short by a few bytes is truncated; the entries before it survive and appends go on after it', async () => {
      const last = await writeAndClose(100);
      truncateSync(last, statSync(last).size - 3);
      const { buf, fake } = await open({ segmentBytes: 4096 });
      await until(() => fake.records().length === 99);
      await new Promise((r) => setTimeout(r, 20));
      expect(fake.values()).toEqual(range(1, 99));
      const warn = fake.logs.find((l) => l.msg.includes('torn tail'));
      expect(warn).toMatchObject({ level: 40, problem: 'incomplete entry', last_seq: 99 });
      // The lost entry's seq is reused: it never reached the pipeline, so nothing downstream saw it.
      emitValues(buf, 100, 102);
      await until(() => fake.records().length === 102);
      expect(fake.values()).toEqual(range(1, 102));
      const again = await reopen(buf, { segmentBytes: 4096 });
      await until(() => again.fake.records().length === 102);
      expect(again.fake.values()).toEqual(range(1, 102));
      expect(again.fake.logs.some((l) => l.msg.includes('torn tail'))).toBe(false);
    });

    it('followed by garbage is truncated at the garbage', async () => {
      const last = await writeAndClose(50);
      appendFileSync(last, Buffer.from([0x20, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
      const { fake } = await open({ segmentBytes: 4096 });
      await until(() => fake.records().length === 50);
      expect(fake.values()).toEqual(range(1, 50));
      expect(fake.logs.find((l) => l.msg.includes('torn tail'))).toMatchObject({ removed_bytes: 13 });
    });

    it('with a flipped bit in the last entry loses that entry only', async () => {
      const last = await writeAndClose(30);
      const b = readFileSync(last);
      b[b.length - 5]! ^= 0x10;
      writeFileSync(last, b);
      const { fake } = await open({ segmentBytes: 4096 });
      await until(() => fake.records().length === 29);
      await new Promise((r) => setTimeout(r, 20));
      expect(fake.values()).toEqual(range(1, 29));
      expect(fake.logs.find((l) => l.msg.includes('torn tail'))).toMatchObject({ problem: 'checksum mismatch' });
    });

    it('as a segment file created but never written is repaired', async () => {
      const last = await writeAndClose(40);
      const base = Number(last.slice(-20, -4));
      expect(base).toBeGreaterThan(1);
      // kill -9 between creating the next segment and writing its header
      writeFileSync(join(bufDir(), `${String(41).padStart(16, '0')}.seg`), '');
      const { buf, fake } = await open({ segmentBytes: 4096 });
      await until(() => fake.records().length === 40);
      emitValues(buf, 41, 45);
      await until(() => fake.records().length === 45);
      expect(fake.values()).toEqual(range(1, 45));
      const again = await reopen(buf, { segmentBytes: 4096 });
      await until(() => again.fake.records().length === 45);
      expect(again.fake.values()).toEqual(range(1, 45));
    });
  });

  it('skips the rest of a corrupt older segment, logs it and counts what was lost', async () => {
    const { buf } = await open({ segmentBytes: 4096 });
    emitValues(buf, 1, 200, 1);
    await buf.close();
    const files = segmentFiles();
    expect(files.length).toBeGreaterThan(3);
    const second = join(bufDir(), files[1]!);
    const base2 = Number(files[1]!.slice(0, 16));
    const base3 = Number(files[2]!.slice(0, 16));
    const b = readFileSync(second);
    b[Math.floor(b.length / 2)]! ^= 0xff;
    writeFileSync(second, b);
    const { fake, buf: again } = await open({ segmentBytes: 4096 });
    await until(() => fake.records().length > 0 && seqOf(fake.batches[fake.batches.length - 1]!.ack) === 200);
    const got = fake.values();
    const lost = again.stats().dropped;
    expect(lost).toBeGreaterThan(0);
    expect(got.length + lost).toBe(200);
    // Entries before the damage and every later segment are intact.
    expect(got.slice(0, base2 - 1)).toEqual(range(1, base2 - 1));
    expect(got.slice(got.length - (200 - base3 + 1))).toEqual(range(base3, 200));
    expect(fake.logs.find((l) => l.msg.includes('corrupt segment'))).toMatchObject({ level: 50, lost });
  });

  describe('kill -9', () => {
    const here = dirname(fileURLToPath(import.meta.url));
    const dist = join(here, '../../dist/core');

    it.each(['never', 'always'] as const)('with fsync %s loses no entry the child reported as appended', async (fsync) => {
      if (!existsSync(join(dist, 'durable-buffer.js'))) throw new Error('dist/ is missing: run `npm run build` (npm test does) first');
      const script = join(root, 'child.mjs');
      writeFileSync(
        script,
        `import { openDurableBuffer } from ${JSON.stringify(pathToFileURL(join(dist, 'durable-buffer.js')).href)};
import { mapScope } from ${JSON.stringify(pathToFileURL(join(dist, 'state.js')).href)};
const [dir, fsync] = process.argv.slice(2);
const log = { info() {}, warn() {}, error() {}, debug() {} };
const metrics = { counter: () => ({ inc() {} }), gauge: () => ({ set() {} }) };
// The sink is down: nothing is acknowledged, so the log keeps everything.
const real = { pipeline: 'k', role: 'source', log, metrics, state: mapScope(new Map()), signal: new AbortController().signal,
  dataDir: dir, emit: () => new Promise(() => {}), bad() {}, decoder() { throw new Error('no'); } };
const buf = await openDurableBuffer(real, { dir, maxBytes: 1 << 30, segmentBytes: 64 * 1024, fsync, onFull: 'block' });
let i = 0;
const tick = () => {
  for (let k = 0; k < 20; k++) {
    const records = [];
    for (let n = 1 + (i % 5); n > 0; n--) { i++; records.push({ value: 'msg-' + i + '-' + 'x'.repeat(i % 300), key: 'k' + i }); }
    buf.ctx.emit({ records });
    process.stdout.write(buf.stats().appended + '\\n');
  }
  setImmediate(tick);
};
tick();
`,
      );
      const child = spawn(process.execPath, [script, bufDir(), fsync], { stdio: ['ignore', 'pipe', 'inherit'] });
      let reported = 0;
      let pending = '';
      const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, sig) => r(sig)));
      child.stdout.on('data', (d: Buffer) => {
        pending += d.toString();
        const lines = pending.split('\n');
        pending = lines.pop()!;
        for (const l of lines) reported = Number(l);
        if (reported >= 20_000 && !child.killed) child.kill('SIGKILL');
      });
      expect(await exited).toBe('SIGKILL');
      expect(reported).toBeGreaterThanOrEqual(20_000);

      const { buf, fake } = await open({ segmentBytes: 64 * 1024, fsync });
      const expected = buf.stats().entries;
      expect(expected).toBeGreaterThanOrEqual(reported);
      await until(() => fake.records().length === expected, 20_000);
      await new Promise((r) => setTimeout(r, 20));
      const recs = fake.records();
      expect(recs.length).toBe(expected);
      for (let i = 0; i < recs.length; i++) {
        const n = i + 1;
        if (recs[i]!.value !== `msg-${n}-${'x'.repeat(n % 300)}` || recs[i]!.key !== `k${n}`) {
          throw new Error(`entry ${n} is wrong: ${JSON.stringify(recs[i])}`);
        }
      }
      expect(fake.logs.filter((l) => l.level >= 50)).toEqual([]);
    });
  });

  describe('when full', () => {
    const small = { maxBytes: 64 * 1024, segmentBytes: 8 * 1024 };

    it('block: emit returns a promise that resolves once acknowledgements free space', async () => {
      const { buf, fake } = await open({ ...small, onFull: 'block' });
      let i = 0;
      let p: Promise<void> | undefined;
      while (!p && i < 10_000) {
        i++;
        p = buf.ctx.emit({ records: [{ value: msg(i, 200) }] });
        await turn();
      }
      expect(p).toBeInstanceOf(Promise);
      expect(buf.stats().bytes).toBeGreaterThanOrEqual(small.maxBytes);
      let resolved = false;
      void p!.then(() => (resolved = true));
      // Further emits while full are still written (never lost) and get the same wait.
      expect(buf.ctx.emit({ records: [{ value: msg(++i, 200) }] })).toBe(p);
      await until(() => fake.records().length === i);
      await turn();
      expect(resolved).toBe(false);
      await buf.commit(fake.acks().slice(0, 1));
      await turn();
      expect(resolved).toBe(false);
      await buf.commit(fake.acks());
      await turn();
      expect(resolved).toBe(true);
      expect(buf.stats().bytes).toBeLessThan(small.maxBytes);
      expect(buf.stats().dropped).toBe(0);
      expect(buf.ctx.emit({ records: [{ value: 'more' }] })).toBeUndefined();
    });

    it('drop_newest: discards what arrives while full, counts it, and keeps the oldest', async () => {
      const { buf, fake } = await open({ ...small, onFull: 'drop_newest' });
      fake.block();
      const n = 1000;
      for (let i = 1; i <= n; i++) {
        expect(buf.ctx.emit({ records: [{ value: msg(i, 200) }] })).toBeUndefined();
        if (i % 100 === 0) await turn();
      }
      const st = buf.stats();
      expect(st.dropped).toBeGreaterThan(0);
      expect(st.appended + st.dropped).toBe(n);
      expect(st.bytes).toBeLessThanOrEqual(small.maxBytes);
      expect(diskBytes()).toBe(st.bytes);
      expect(fake.metrics.snapshot()).toMatchObject({ buffer_dropped: st.dropped, buffer_appended: st.appended });
      fake.release();
      await until(() => fake.records().length === st.appended);
      expect(fake.values()).toEqual(range(1, st.appended, 200));
    });

    it('drop_oldest: deletes the oldest unacknowledged entries, counts them, and keeps the newest', async () => {
      const { buf, fake } = await open({ ...small, onFull: 'drop_oldest' });
      fake.block();
      const n = 1000;
      for (let i = 1; i <= n; i++) {
        expect(buf.ctx.emit({ records: [{ value: msg(i, 200) }] })).toBeUndefined();
        if (i % 100 === 0) await turn();
      }
      const st = buf.stats();
      expect(st.appended).toBe(n);
      expect(st.dropped).toBeGreaterThan(0);
      expect(st.bytes).toBeLessThanOrEqual(small.maxBytes);
      expect(diskBytes()).toBe(st.bytes);
      fake.release();
      await until(() => fake.records().length + st.dropped === n && seqOf(fake.batches[fake.batches.length - 1]!.ack) === n);
      const got = fake.values() as string[];
      // What was already handed over still arrives; the dropped ones never do; the newest all do.
      const nums = got.map((v) => Number(v.split('-')[1]));
      for (let k = 1; k < nums.length; k++) expect(nums[k]).toBeGreaterThan(nums[k - 1]!);
      expect(nums[nums.length - 1]).toBe(n);
      const tailLen = nums.length - fake.batches[0]!.records.length;
      expect(nums.slice(nums.length - tailLen)).toEqual(Array.from({ length: tailLen }, (_, k) => n - tailLen + 1 + k));
      expect(fake.metrics.snapshot().buffer_dropped).toBe(st.dropped);
    });

    it('drop policies cut a single batch larger than the whole log', async () => {
      for (const onFull of ['drop_newest', 'drop_oldest'] as const) {
        const { buf, fake } = await open({ ...small, onFull });
        buf.ctx.emit({ records: range(1, 600, 200).map((value) => ({ value })) });
        const st = buf.stats();
        expect(st.bytes).toBeLessThanOrEqual(small.maxBytes);
        expect(st.appended + st.dropped).toBe(600);
        await until(() => fake.records().length === st.appended);
        const v = fake.values();
        expect(v[0]).toBe(onFull === 'drop_newest' ? msg(1, 200) : msg(600 - st.appended + 1, 200));
        await buf.close();
        rmSync(bufDir(), { recursive: true });
      }
    });
  });

  describe('fsync', () => {
    it('always: entries reach the pipeline only after the fdatasync that covers them; one sync per round of appends', async () => {
      const { buf, fake } = await open({ fsync: 'always' });
      fsGate.hold = true;
      buf.ctx.emit({ records: [{ value: msg(1) }] });
      expect(fsGate.calls).toBe(1);
      // While that round is in flight, more appends queue up for the next one.
      for (let i = 2; i <= 50; i++) {
        buf.ctx.emit({ records: [{ value: msg(i) }] });
        if (i % 10 === 0) await turn();
      }
      await new Promise((r) => setTimeout(r, 30));
      expect(fake.records().length).toBe(0);
      expect(fsGate.calls).toBe(1);

      releaseFsync(true); // the first round completes; the second is held
      await until(() => fake.records().length === 1);
      await new Promise((r) => setTimeout(r, 30));
      expect(fake.values()).toEqual([msg(1)]);
      expect(fsGate.calls).toBe(2);

      releaseFsync();
      await until(() => fake.records().length === 50);
      expect(fake.values()).toEqual(range(1, 50));
      expect(fsGate.calls).toBe(2);
      expect((buf as unknown as { syncRounds: number }).syncRounds).toBe(2);
    });

    it('interval: entries are handed over at once and synced in the background', async () => {
      const { buf, fake } = await open({ fsync: 'interval', fsyncIntervalMs: 5 });
      fsGate.hold = true;
      emitValues(buf, 1, 20);
      await until(() => fake.records().length === 20);
      await until(() => fsGate.calls >= 1);
      releaseFsync();
      await until(() => (buf as unknown as { syncRounds: number }).syncRounds >= 1);
    });

    it('never: no fdatasync at all', async () => {
      const { buf, fake } = await open({ fsync: 'never', segmentBytes: 4096 });
      emitValues(buf, 1, 200);
      await until(() => fake.records().length === 200);
      await buf.close();
      expect(fsGate.calls).toBe(0);
    });
  });

  it('stops promptly when the real signal aborts, even with the sink stuck, and keeps unacknowledged entries', async () => {
    const { buf, fake } = await open({ maxBytes: 64 * 1024, segmentBytes: 8 * 1024 });
    fake.block();
    let p: Promise<void> | undefined;
    let i = 0;
    while (!p) p = buf.ctx.emit({ records: [{ value: msg(++i, 200) }] });
    await until(() => fake.batches.length === 1);
    expect(buf.ctx.signal.aborted).toBe(false);
    fake.ac.abort();
    expect(buf.ctx.signal.aborted).toBe(true);
    await expect(Promise.race([buf.done.then(() => 'done'), new Promise((r) => setTimeout(() => r('timeout'), 2000))])).resolves.toBe('done');
    await expect(Promise.race([p.then(() => 'free'), new Promise((r) => setTimeout(() => r('stuck'), 2000))])).resolves.toBe('free');
    const handed = fake.records().length;
    // What the source still emits while stopping is kept as well.
    expect(buf.ctx.emit({ records: [{ value: msg(++i, 200) }] })).toBeUndefined();
    await turn();
    expect(fake.records().length).toBe(handed);
    const again = await reopen(buf, { maxBytes: 64 * 1024, segmentBytes: 8 * 1024 });
    await until(() => again.fake.records().length === i);
    expect(again.fake.values()).toEqual(range(1, i, 200));
  });

  it('resolves done at once for an already aborted signal, and after close', async () => {
    const fake = fakeReal(root, mapScope(stateMap));
    fake.ac.abort();
    const { buf } = await open({}, fake);
    await buf.done;
    expect(buf.ctx.signal.aborted).toBe(true);
    const other = await open({ dir: join(root, 'buffer', 'other') });
    await other.buf.close();
    await other.buf.done;
  });

  it('passes bad(), decoder() and the context fields through; reports metrics', async () => {
    const { buf, fake } = await open();
    const bad: BadRecord = { raw: 'oops', error: new Error('bad') };
    buf.ctx.bad([bad]);
    expect(fake.bad).toEqual([bad]);
    const out: unknown[] = [];
    buf.ctx.decoder().decode('x', out, () => {});
    expect(out).toEqual([{ decoded: 'x' }]);
    expect(buf.ctx.state).toBe(fake.ctx.state);
    expect(buf.ctx.log).toBe(fake.ctx.log);
    expect(buf.ctx.metrics).toBe(fake.ctx.metrics);
    expect(buf.ctx.dataDir).toBe(root);
    emitValues(buf, 1, 10, 5);
    await until(() => fake.records().length === 10);
    expect(fake.metrics.snapshot()).toEqual({
      buffer_appended: 10,
      buffer_dropped: 0,
      buffer_bytes: buf.stats().bytes,
      buffer_entries: 10,
      redelivered: 0,
    });
    await buf.commit(fake.acks());
    expect(fake.metrics.snapshot().buffer_entries).toBe(0);
  });

  it('refuses a second open of the same log in one process, and bad options', async () => {
    await open();
    await expect(open()).rejects.toThrow(/already open/);
    await expect(open({ dir: join(root, 'x'), maxBytes: 0 })).rejects.toThrow(/maxBytes/);
    await expect(open({ dir: join(root, 'y'), onFull: 'wait' as never })).rejects.toThrow(/onFull/);
  });

  it('discards (and counts) records emitted after close instead of throwing into the source', async () => {
    const { buf, fake } = await open();
    await buf.close();
    expect(buf.ctx.emit({ records: [{ value: 'late' }] })).toBeUndefined();
    expect(buf.stats().dropped).toBe(1);
    expect(fake.logs.some((l) => l.level === 50 && l.msg.includes('after the durable buffer was closed'))).toBe(true);
  });
});
