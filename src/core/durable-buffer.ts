// Durable buffer for push sources that cannot replay (WebSocket, webhooks, SSE, NATS core, MQTT QoS 0, Redis
// pub/sub). Every received record is appended to an on-disk log before it enters the pipeline and is deleted only once
// the sink acknowledged it, so a sink outage or a kill -9 loses nothing that was received. See docs/durable-buffer.md.
//
// Log layout: a directory of segment files named after the sequence number of their first entry. Each segment has a
// 16-byte header (magic, version, base sequence) followed by entries:
//
//   u32 body length | u32 CRC32(body) | body = u32 seq lo | u32 seq hi | u16 flags | fields (see encodeRecord)
//
// Appends use synchronous positional writes, one per emit call, so order is exact and the bytes are in the OS page
// cache before emit returns. A replay loop hands entries to the real context in batches, from a bounded in-memory
// tail cache when it can and from the segment files otherwise. The highest acknowledged sequence number lives in the
// source's state scope; segments entirely at or below it are deleted. Each batch also carries its last sequence number
// as its `position`, so an exactly-once sink stores it and the next start skips what the sink already has.

import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { open as openFile, unlink as unlinkFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { Counter, Gauge, SluiceRecord, SourceBatch, SourceContext } from './types.js';
import { SluiceError, errorMessage } from './errors.js';
import { stringifyJson } from '../formats/json.js';

export interface DurableBufferOptions {
  /** Directory of the log (created). Use join(ctx.dataDir, 'buffer', name). */
  dir: string;
  /** Bound on the log's size on disk. */
  maxBytes: number;
  /** Segment file size; whole segments are deleted once fully acknowledged. */
  segmentBytes?: number;
  /**
   * never: write() only (survives kill -9, not power loss); interval: fdatasync every fsyncIntervalMs; always:
   * group-commit fdatasync before entries are handed to the pipeline.
   */
  fsync: 'never' | 'interval' | 'always';
  fsyncIntervalMs?: number;
  /**
   * When the log is full: block (the wrapped emit returns a pending promise, so the push source pauses its socket and
   * TCP pushes back), drop_oldest (delete the oldest unacknowledged entries, counted), drop_newest (discard incoming,
   * counted).
   */
  onFull: 'block' | 'drop_oldest' | 'drop_newest';
  /** Bound on the in-memory tail cache that spares the replay loop from reading recent entries back (default 8 MiB). */
  cacheBytes?: number;
  /**
   * Records handed to the pipeline and not yet written by the sink, at first (default 2000, two batches); it doubles
   * whenever the sink drained all of them while the replay waited, or no write was reported for a while.
   */
  readAheadRecords?: number;
  /** How long the replay waits on the read-ahead bound with no write reported before it grows the bound (250 ms). */
  readAheadPatienceMs?: number;
}

export interface DurableBuffer {
  /** Give this to the push source instead of the real context: its emit() appends the batch's records to the log. */
  readonly ctx: SourceContext;
  /** Forward the runtime's Source.commit(acks) here; acks are the tokens this buffer put on the batches it emitted. */
  commit(acks: unknown[]): Promise<void>;
  /** Stop replaying and close files; entries not acknowledged stay on disk for the next start. */
  close(): Promise<void>;
  /** Resolves when the replay loop ends (after close, or when the inner ctx.signal aborted and everything written was handed over). */
  readonly done: Promise<void>;
  stats(): { entries: number; bytes: number; dropped: number; appended: number; acknowledged: number; redelivered: number; skipped: number };
}

// ---- format ---------------------------------------------------------------------------------------------------

const SEG_MAGIC = 0x42444c53; // "SLDB" read as little-endian u32
const SEG_VERSION = 1;
const SEG_HEADER = 16;
const ENTRY_HEADER = 8;
/** seq (8) + flags (2) + value length (4): the smallest possible body. */
const MIN_BODY = 14;
const SEG_SUFFIX = '.seg';
const SEG_NAME = /^(\d{16})\.seg$/;
const TWO_32 = 2 ** 32;

const F_VALUE_BYTES = 1 << 0;
const F_DECODED = 1 << 1;
const F_KEY = 1 << 2;
const F_KEY_BYTES = 1 << 3;
const F_HEADERS = 1 << 4;
const F_TIMESTAMP = 1 << 5;
const F_META = 1 << 6;
const F_RAW = 1 << 7;
const F_RAW_BYTES = 1 << 8;

const MAX_BATCH_RECORDS = 1000;
const MAX_BATCH_BYTES = 1 << 20;
const READ_CHUNK = 1 << 20;
const DEFAULT_SEGMENT = 16 * 1024 * 1024;
const MIN_SEGMENT = 4096;
const DEFAULT_CACHE = 8 * 1024 * 1024;
/** The tail cache starts only when the reader is at most this many entries behind the append. */
const CACHE_START_GAP = 2 * MAX_BATCH_RECORDS;
/**
 * The log is the backlog, so the pipeline's own buffer need not fill up with decoded records: ahead of a slow sink they
 * live long enough to be promoted to V8's old space, which grew the heap by tens of MB while the source appended.
 */
const DEFAULT_READ_AHEAD = 2 * MAX_BATCH_RECORDS;
/** Past this the pipeline's buffer bound alone applies. */
const MAX_READ_AHEAD = 1 << 20;
/** Blocked on the read-ahead bound this long without a write reported: the sink's batches are slow or large; grow. */
const READ_AHEAD_PATIENCE_MS = 250;
/** The scratch buffer for encoding is kept between emits only up to this size. */
const SCRATCH_KEEP = 4 * 1024 * 1024;

// Slicing-by-4: four table lookups per 32-bit word instead of one per byte, roughly 3x the speed of the classic loop
// on the append hot path, for 4 KiB of tables.
const CRC_TABLES = (() => {
  const t = new Int32Array(4 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 4; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as zlib and gzip) of buf[start, end). */
export function crc32(buf: Uint8Array, start = 0, end = buf.length): number {
  const t = CRC_TABLES;
  let c = -1;
  let i = start;
  for (const stop = end - 3; i < stop; i += 4) {
    c ^= buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24);
    c = t[768 + (c & 0xff)]! ^ t[512 + ((c >>> 8) & 0xff)]! ^ t[256 + ((c >>> 16) & 0xff)]! ^ t[c >>> 24]!;
  }
  for (; i < end; i++) c = t[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** A growable encoding buffer reused across emits, so the hot path allocates one copy per batch at most. */
class Scratch {
  buf = Buffer.allocUnsafe(64 * 1024);
  pos = 0;
  /**
   * The meta object encoded last in this emit and its JSON. Push sources share one meta object between the records
   * of a read (the WebSocket source per connection and millisecond), so most records skip the stringify. Reset per
   * emit: a source may reuse and change the object between emits.
   */
  metaOf: object | undefined = undefined;
  metaJson = '';

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const b = Buffer.allocUnsafe(size);
    this.buf.copy(b, 0, 0, this.pos);
    this.buf = b;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v, this.pos);
    this.pos += 4;
  }

  str(s: string): void {
    // 3 bytes per UTF-16 unit is the UTF-8 worst case, so the write below is never cut short.
    this.ensure(4 + s.length * 3);
    const n = this.buf.write(s, this.pos + 4, 'utf8');
    this.buf.writeUInt32LE(n, this.pos);
    this.pos += 4 + n;
  }

  bytes(b: Uint8Array): void {
    this.ensure(4 + b.length);
    this.buf.writeUInt32LE(b.length, this.pos);
    this.buf.set(b, this.pos + 4);
    this.pos += 4 + b.length;
  }
}

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return v.constructor?.name ?? 'object';
  return typeof v;
}

/** Appends one entry with its header and a zero seq; the seq and CRC are filled in once the batch's fate is known. */
function encodeRecord(s: Scratch, r: SluiceRecord, decoded: boolean): void {
  const start = s.pos;
  s.ensure(ENTRY_HEADER + 10);
  s.buf.fill(0, start, start + ENTRY_HEADER + 10);
  s.pos += ENTRY_HEADER + 10;
  let flags = 0;
  const v = r.value;
  if (decoded) {
    flags |= F_DECODED;
    s.str(stringifyJson(v));
  } else if (typeof v === 'string') {
    s.str(v);
  } else if (v instanceof Uint8Array) {
    flags |= F_VALUE_BYTES;
    s.bytes(v);
  } else {
    throw new SluiceError(
      'INTERNAL',
      `durable buffer: a raw record value must be a string or Uint8Array, got ${describeType(v)} (set 'decoded' on batches of rows)`,
    );
  }
  const k = r.key;
  if (k != null) {
    if (typeof k === 'string') {
      flags |= F_KEY;
      s.str(k);
    } else {
      flags |= F_KEY | F_KEY_BYTES;
      s.bytes(k);
    }
  }
  const h = r.headers;
  if (h) {
    flags |= F_HEADERS;
    const countAt = s.pos;
    s.u32(0);
    let count = 0;
    for (const name in h) {
      const hv = h[name];
      if (hv === undefined) continue;
      s.str(name);
      s.ensure(1);
      if (hv instanceof Uint8Array) {
        s.buf[s.pos++] = 1;
        s.bytes(hv);
      } else {
        s.buf[s.pos++] = 0;
        s.str(String(hv));
      }
      count++;
    }
    s.buf.writeUInt32LE(count, countAt);
  }
  if (typeof r.timestamp === 'number') {
    flags |= F_TIMESTAMP;
    s.ensure(8);
    s.buf.writeDoubleLE(r.timestamp, s.pos);
    s.pos += 8;
  }
  const meta = r.meta;
  if (meta) {
    flags |= F_META;
    if (meta !== s.metaOf) {
      s.metaJson = stringifyJson(meta);
      s.metaOf = meta;
    }
    s.str(s.metaJson);
  }
  const raw = r.raw;
  if (raw !== undefined) {
    if (typeof raw === 'string') {
      flags |= F_RAW;
      s.str(raw);
    } else {
      flags |= F_RAW | F_RAW_BYTES;
      s.bytes(raw);
    }
  }
  s.buf.writeUInt16LE(flags, start + ENTRY_HEADER + 8);
  s.buf.writeUInt32LE(s.pos - start - ENTRY_HEADER, start);
}

/** Writes seq and CRC into an encoded entry at `at`. */
function sealEntry(buf: Buffer, at: number, seq: number): void {
  const len = buf.readUInt32LE(at);
  buf.writeUInt32LE(seq % TWO_32, at + ENTRY_HEADER);
  buf.writeUInt32LE(Math.floor(seq / TWO_32), at + ENTRY_HEADER + 4);
  buf.writeUInt32LE(crc32(buf, at + ENTRY_HEADER, at + ENTRY_HEADER + len), at + 4);
}

function entrySeq(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at + ENTRY_HEADER) + buf.readUInt32LE(at + ENTRY_HEADER + 4) * TWO_32;
}

function entryFlags(buf: Buffer, at: number): number {
  return buf.readUInt16LE(at + ENTRY_HEADER + 8);
}

/** Checks length bounds, CRC and seq of the entry at `at` (the caller made sure `len` bytes of body are present). */
function checkEntry(buf: Buffer, at: number, len: number, seq: number): string | undefined {
  if (crc32(buf, at + ENTRY_HEADER, at + ENTRY_HEADER + len) !== buf.readUInt32LE(at + 4)) return 'checksum mismatch';
  const got = entrySeq(buf, at);
  if (got !== seq) return `sequence ${got} where ${seq} was expected`;
  return undefined;
}

/**
 * The meta text decoded last and its object. Records with the same meta text in one batch share the object, as they
 * shared it when the source emitted them; JSON.parse per record was the largest cost of reading back.
 */
interface MetaMemo {
  text: string;
  obj: Record<string, unknown> | undefined;
}

/** Decodes the entry at `at`. Byte fields are copied, so the record never pins a cache chunk or the read buffer. */
function decodeRecord(buf: Buffer, at: number, memo: MetaMemo): SluiceRecord {
  const end = at + ENTRY_HEADER + buf.readUInt32LE(at);
  const flags = buf.readUInt16LE(at + ENTRY_HEADER + 8);
  let p = at + ENTRY_HEADER + 10;
  const field = (bytes: boolean): string | Buffer => {
    const n = buf.readUInt32LE(p);
    const a = p + 4;
    p = a + n;
    if (p > end) throw new RangeError('entry field runs past its end');
    if (!bytes) return buf.toString('utf8', a, p);
    const out = Buffer.allocUnsafe(n);
    buf.copy(out, 0, a, p);
    return out;
  };
  const rec: SluiceRecord = { value: undefined };
  if (flags & F_DECODED) rec.value = JSON.parse(field(false) as string);
  else rec.value = field((flags & F_VALUE_BYTES) !== 0);
  if (flags & F_KEY) rec.key = field((flags & F_KEY_BYTES) !== 0);
  if (flags & F_HEADERS) {
    let count = buf.readUInt32LE(p);
    p += 4;
    const headers: Record<string, string | Uint8Array> = {};
    while (count-- > 0) {
      const name = field(false) as string;
      const kind = buf[p++];
      headers[name] = field(kind === 1);
    }
    rec.headers = headers;
  }
  if (flags & F_TIMESTAMP) {
    rec.timestamp = buf.readDoubleLE(p);
    p += 8;
  }
  if (flags & F_META) {
    const text = field(false) as string;
    if (memo.obj === undefined || text !== memo.text) {
      memo.obj = JSON.parse(text) as Record<string, unknown>;
      memo.text = text;
    }
    rec.meta = memo.obj;
  }
  if (flags & F_RAW) rec.raw = field((flags & F_RAW_BYTES) !== 0);
  return rec;
}

function segmentHeader(base: number): Buffer {
  const b = Buffer.alloc(SEG_HEADER);
  b.writeUInt32LE(SEG_MAGIC, 0);
  b.writeUInt16LE(SEG_VERSION, 4);
  b.writeUInt32LE(base % TWO_32, 8);
  b.writeUInt32LE(Math.floor(base / TWO_32), 12);
  return b;
}

function headerProblem(b: Buffer, base: number): string | undefined {
  if (b.readUInt32LE(0) !== SEG_MAGIC) return 'not a durable buffer segment (bad magic)';
  if (b.readUInt16LE(4) !== SEG_VERSION) return `unsupported segment version ${b.readUInt16LE(4)}`;
  const got = b.readUInt32LE(8) + b.readUInt32LE(12) * TWO_32;
  if (got !== base) return `header names base ${got}, file name ${base}`;
  return undefined;
}

const segmentName = (base: number) => `${String(base).padStart(16, '0')}${SEG_SUFFIX}`;

function readFully(fd: number, buf: Buffer, off: number, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    const n = readSync(fd, buf, off + got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

function writeFully(fd: number, buf: Buffer, off: number, len: number, pos: number): void {
  let done = 0;
  while (done < len) done += writeSync(fd, buf, off + done, len - done, pos + done);
}

const datasync = (fd: number) => new Promise<void>((res, rej) => fdatasync(fd, (e) => (e ? rej(e) : res())));

async function syncDir(dir: string): Promise<void> {
  // Some platforms cannot open a directory (Windows); the segment's own data is synced regardless.
  let fh;
  try {
    fh = await openFile(dir, 'r');
    await fh.sync();
  } catch {
    // best effort
  } finally {
    await fh?.close().catch(() => {});
  }
}

/**
 * Walks a segment and returns where its valid entries end. Used on open for the last segment, the only one a kill -9
 * can leave torn; older segments are verified as the replay loop reads them.
 */
function scanSegment(fd: number, base: number, size: number): { end: number; last: number; problem?: string } {
  if (size < SEG_HEADER) return { end: 0, last: base - 1, problem: 'segment header is incomplete' };
  let buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(size, SEG_HEADER)));
  if (readFully(fd, buf, 0, SEG_HEADER, 0) < SEG_HEADER) return { end: 0, last: base - 1, problem: 'short read of segment header' };
  const hp = headerProblem(buf, base);
  if (hp) return { end: 0, last: base - 1, problem: hp };
  let off = SEG_HEADER;
  let seq = base;
  let bufStart = 0;
  let bufLen = 0;
  const fill = (from: number, len: number): boolean => {
    if (from >= bufStart && from + len <= bufStart + bufLen) return true;
    if (len > buf.length) buf = Buffer.allocUnsafe(len);
    const want = Math.min(buf.length, size - from);
    bufStart = from;
    bufLen = readFully(fd, buf, 0, want, from);
    return bufLen >= len;
  };
  let problem: string | undefined;
  while (off < size) {
    if (off + ENTRY_HEADER > size) {
      problem = 'incomplete entry header';
      break;
    }
    if (!fill(off, ENTRY_HEADER)) {
      problem = 'short read';
      break;
    }
    const len = buf.readUInt32LE(off - bufStart);
    if (len < MIN_BODY) {
      problem = `invalid entry length ${len}`;
      break;
    }
    if (off + ENTRY_HEADER + len > size) {
      problem = 'incomplete entry';
      break;
    }
    if (!fill(off, ENTRY_HEADER + len)) {
      problem = 'short read';
      break;
    }
    problem = checkEntry(buf, off - bufStart, len, seq);
    if (problem) break;
    off += ENTRY_HEADER + len;
    seq++;
  }
  return { end: off, last: seq - 1, problem };
}

// ---- the buffer -----------------------------------------------------------------------------------------------

interface Segment {
  base: number;
  path: string;
  /** Bytes written, header included. */
  size: number;
  /** Seq of the last entry; base - 1 while empty. */
  last: number;
  /** Write descriptor: open for the active segment, and for sealed ones until their data is synced. */
  fd?: number;
  /** Bytes known to be on stable storage. */
  synced: number;
  /** An fdatasync on fd is in flight, so fd must not be closed (it could be reused by another file). */
  busy: boolean;
}

/** Entries of one emit call, kept as written so the replay loop need not read them back. */
interface Chunk {
  seg: Segment;
  /** File offset of buf[0]. */
  off: number;
  buf: Buffer;
  last: number;
  /** Offset in buf and seq of the next entry not yet handed over. */
  pos: number;
  next: number;
}

/** In-process guard: two buffers appending to one log would interleave sequence numbers. */
const openDirs = new Set<string>();

interface Ack {
  seq: number;
}

/** `SourceBatch.position` of the buffer's batches: the log (by directory name) and the batch's last sequence number. */
interface BufferPosition {
  durable_buffer: string;
  seq: number;
}

/**
 * Highest sequence number ever handed to the pipeline, kept in this file of the log's directory (8 bytes, written in
 * place after each handover, never synced: it survives kill -9, not power loss). A restart counts the entries it hands
 * over again at or below it as `redelivered`.
 */
const HANDED_FILE = 'handed';

class DurableLog implements DurableBuffer {
  readonly ctx: SourceContext;
  readonly done: Promise<void>;

  private readonly dir: string;
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  private readonly cacheMax: number;
  private readonly stateKey: string;
  private readonly inner = new AbortController();

  private segs: Segment[] = [];
  private active?: Segment;
  private diskBytes = 0;
  private acked: number;
  /** Seq the next appended entry gets. */
  private nextAppend: number;
  /** Highest seq the replay loop may hand over (lags nextAppend - 1 only with fsync: always). */
  private visible: number;
  /** Next seq to hand to the pipeline. */
  private nextSeq: number;

  private readonly scratch = new Scratch();
  private readonly starts: number[] = [];

  private cache: Chunk[] = [];
  private cacheHead = 0;
  /** Visible to tests: bytes held by the tail cache. */
  cachedBytes = 0;

  // Replay reader position on disk: the entry at rOff in rSeg has seq rSeq.
  private rSeg?: Segment;
  private rOff = SEG_HEADER;
  private rSeq = 0;
  private rFd?: number;
  private rBuf = Buffer.allocUnsafe(0);
  private rBufSeg?: Segment;
  private rBufStart = 0;
  private rBufLen = 0;

  /** Handed-over batches not acknowledged yet (last seq, record count), for the `acknowledged` count. */
  private inflightLast: number[] = [];
  private inflightCount: number[] = [];
  private inflightHead = 0;
  /** Index into inflightLast of the first batch not yet reported written (commit() runs before its doCommit). */
  private writtenHead = 0;
  /** Records handed over and not reported written: decoded records the pipeline holds in memory. */
  private ahead = 0;
  /** Bound on `ahead`; grows when it is what keeps the sink waiting (see loop()). */
  private readAhead: number;
  private readonly patienceMs: number;
  private aheadBlocked = false;
  private aheadTimer?: NodeJS.Timeout;

  private appended = 0;
  private acknowledged = 0;
  private dropped = 0;
  private redelivered = 0;
  private readonly skipped: number;
  /** Entries at or below this seq were handed to the pipeline by an earlier run (see HANDED_FILE). */
  private readonly handedBefore: number;
  /** Highest seq ever handed over, as last written to the handed file. */
  private handedMark: number;
  private handedFd?: number;
  private readonly handedBuf = Buffer.alloc(8);
  private readonly name: string;

  private stopped = false;
  private filesClosed = false;
  private fatal?: SluiceError;
  private closing?: Promise<void>;
  private wake?: () => void;
  private wakeScheduled = false;
  private stopResolve!: () => void;
  private readonly stopPromise = new Promise<void>((r) => (this.stopResolve = r));
  private blocker?: { promise: Promise<void>; resolve: () => void };
  private loopDone!: Promise<void>;
  private commitChain: Promise<void> = Promise.resolve();
  /** Unlinks of acknowledged segments in flight; close() waits for them so a reopen never lists a file being deleted. */
  private readonly deleting = new Set<Promise<unknown>>();
  private warnedClosed = false;

  private syncing?: Promise<void>;
  private syncAgain = false;
  private dirDirty = false;
  private closeAfterRound: number[] = [];
  private timer?: NodeJS.Timeout;
  /** Visible to tests: completed fsync rounds (group commit makes this far smaller than the number of emits). */
  syncRounds = 0;

  private readonly mAppended: Counter;
  private readonly mDropped: Counter;
  private readonly mRedelivered: Counter;
  private readonly gBytes: Gauge;
  private readonly gEntries: Gauge;
  private readonly onAbort = () => this.stop();

  constructor(
    private readonly real: SourceContext,
    private readonly opts: DurableBufferOptions,
    init: {
      dir: string;
      segmentBytes: number;
      stateKey: string;
      acked: number;
      segs: Segment[];
      nextAppend: number;
      handedFd: number;
      handedBefore: number;
      skipped: number;
    },
  ) {
    this.dir = init.dir;
    this.name = basename(init.dir);
    this.handedFd = init.handedFd;
    this.handedBefore = init.handedBefore;
    this.handedMark = init.handedBefore;
    this.skipped = init.skipped;
    this.maxBytes = opts.maxBytes;
    this.segmentBytes = init.segmentBytes;
    this.cacheMax = opts.cacheBytes ?? DEFAULT_CACHE;
    this.readAhead = opts.readAheadRecords ?? DEFAULT_READ_AHEAD;
    this.patienceMs = opts.readAheadPatienceMs ?? READ_AHEAD_PATIENCE_MS;
    this.stateKey = init.stateKey;
    this.acked = init.acked;
    this.segs = init.segs;
    const last = this.segs[this.segs.length - 1];
    this.active = last?.fd !== undefined ? last : undefined;
    for (const s of this.segs) this.diskBytes += s.size;
    this.nextAppend = init.nextAppend;
    this.visible = this.nextAppend - 1;
    this.nextSeq = Math.max(this.acked + 1, this.segs[0]?.base ?? this.nextAppend);

    const m = real.metrics;
    this.mAppended = m.counter('buffer_appended', 'Records appended to the durable buffer');
    this.mDropped = m.counter('buffer_dropped', 'Records the durable buffer discarded because it was full');
    this.mRedelivered = m.counter('redelivered', 'records handed to the pipeline again after a restart (possible duplicates)');
    this.gBytes = m.gauge('buffer_bytes', 'Size of the durable buffer on disk');
    this.gEntries = m.gauge('buffer_entries', 'Unacknowledged records in the durable buffer');
    this.updateGauges();

    const wrapped: SourceContext = {
      pipeline: real.pipeline,
      role: real.role,
      log: real.log,
      state: real.state,
      metrics: real.metrics,
      dataDir: real.dataDir,
      signal: this.inner.signal,
      emit: (batch) => this.emit(batch),
      bad: (records) => real.bad(records),
      decoder: () => real.decoder(),
    };
    this.ctx = wrapped;

    if (real.signal.aborted) this.stop();
    else real.signal.addEventListener('abort', this.onAbort, { once: true });
    if (opts.fsync === 'interval') {
      this.timer = setInterval(() => {
        if (!this.syncing && this.dirty()) this.syncing = this.runSync();
      }, opts.fsyncIntervalMs ?? 100);
      this.timer.unref();
    }
    this.loopDone = this.loop();
    this.done = this.loopDone.then(() => {
      if (this.fatal) throw this.fatal;
    });
    // A connector awaits `done` only after its socket loop ends; until then a rejection must not count as unhandled.
    this.done.catch(() => {});
  }

  stats() {
    return {
      entries: this.entries(),
      bytes: this.diskBytes,
      dropped: this.dropped,
      appended: this.appended,
      acknowledged: this.acknowledged,
      redelivered: this.redelivered,
      skipped: this.skipped,
    };
  }

  private entries(): number {
    const first = this.segs[0];
    if (!first) return 0;
    return Math.max(0, this.nextAppend - Math.max(this.acked + 1, first.base));
  }

  private updateGauges(): void {
    this.gBytes.set(this.diskBytes);
    this.gEntries.set(this.entries());
  }

  // ---- append ---------------------------------------------------------------------------------------------------

  private emit(batch: SourceBatch): Promise<void> | undefined {
    const recs = batch.records;
    const n = recs.length;
    if (n === 0) return undefined;
    if (this.filesClosed || this.fatal) {
      this.drop(n);
      if (!this.warnedClosed) {
        this.warnedClosed = true;
        this.real.log.error(
          { dir: this.dir, records: n, error: this.fatal?.message },
          this.fatal ? 'durable buffer failed; received records are discarded' : 'emit after the durable buffer was closed; records are discarded',
        );
      }
      return undefined;
    }
    const s = this.scratch;
    if (s.buf.length > SCRATCH_KEEP) s.buf = Buffer.allocUnsafe(64 * 1024);
    s.pos = 0;
    s.metaOf = undefined;
    const starts = this.starts;
    starts.length = 0;
    const decoded = batch.decoded === true;
    // Encoding can throw (a value of the wrong type); it happens before anything is written, so the batch is all or nothing.
    for (let i = 0; i < n; i++) {
      starts.push(s.pos);
      encodeRecord(s, recs[i]!, decoded);
    }
    starts.push(s.pos);

    let a = 0;
    let b = n;
    const policy = this.opts.onFull;
    if (policy !== 'block' && this.diskBytes + s.pos + SEG_HEADER > this.maxBytes) {
      if (policy === 'drop_oldest') {
        this.makeRoom(s.pos + SEG_HEADER);
        while (a < b && this.diskBytes + (starts[b]! - starts[a]!) + SEG_HEADER > this.maxBytes) a++;
      } else {
        while (a < b && this.diskBytes + (starts[b]! - starts[a]!) + SEG_HEADER > this.maxBytes) b--;
      }
      if (b - a < n) this.drop(n - (b - a));
      if (a === b) {
        this.updateGauges();
        return undefined;
      }
    }
    try {
      this.write(a, b);
    } catch (e) {
      this.fail(e, 'appending to the durable buffer failed');
      this.drop(b - a);
      return undefined;
    }
    if (policy === 'block' && this.diskBytes >= this.maxBytes && !this.stopped) {
      if (!this.blocker) {
        let resolve!: () => void;
        const promise = new Promise<void>((r) => (resolve = r));
        this.blocker = { promise, resolve };
      }
      return this.blocker.promise;
    }
    return undefined;
  }

  /** Writes encoded entries [a, b) of the scratch buffer as one positional write. */
  private write(a: number, b: number): void {
    const buf = this.scratch.buf;
    const from = this.starts[a]!;
    const len = this.starts[b]! - from;
    let seg = this.active;
    if (seg && seg.size > SEG_HEADER && seg.size + len > this.segmentBytes) {
      this.seal(seg);
      seg = undefined;
    }
    seg ??= this.createSegment(this.nextAppend);
    const first = this.nextAppend;
    for (let i = a; i < b; i++) sealEntry(buf, this.starts[i]!, first + (i - a));
    const off = seg.size;
    try {
      writeFully(seg.fd!, buf, from, len, off);
    } catch (e) {
      // A partly written batch would leave a torn entry in the middle of the log once later appends succeed.
      try {
        ftruncateSync(seg.fd!, off);
      } catch {
        // the failure below is reported either way
      }
      throw e;
    }
    const count = b - a;
    seg.size += len;
    seg.last = first + count - 1;
    this.diskBytes += len;
    this.nextAppend += count;
    this.appended += count;
    this.mAppended.inc(count);

    const tail = this.cacheHead < this.cache.length ? this.cache[this.cache.length - 1] : undefined;
    // The cache is for a reader that keeps up: it starts only when the reader is at most a couple of batches behind
    // (with fsync: always, appends wait for their sync), and continues while the chunks stay contiguous. A reader more
    // than cacheMax behind reads from disk (the page cache) anyway, so a cache it would reach only much later is
    // dropped instead of held in memory meanwhile.
    if (tail ? tail.last + 1 === first && this.cachedBytes + len <= this.cacheMax : first - this.nextSeq <= CACHE_START_GAP && len <= this.cacheMax) {
      const copy = Buffer.allocUnsafe(len);
      buf.copy(copy, 0, from, from + len);
      this.cache.push({ seg, off, buf: copy, last: seg.last, pos: 0, next: first });
      this.cachedBytes += len;
    } else if (tail) this.dropCache();
    if (this.opts.fsync === 'always') this.requestSync();
    else {
      this.visible = this.nextAppend - 1;
      this.poke();
    }
    this.updateGauges();
  }

  private createSegment(base: number): Segment {
    const path = join(this.dir, segmentName(base));
    const fd = openSync(path, 'w+');
    const seg: Segment = { base, path, size: 0, last: base - 1, fd, synced: 0, busy: false };
    try {
      writeFully(fd, segmentHeader(base), 0, SEG_HEADER, 0);
    } catch (e) {
      closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        // reported below
      }
      throw e;
    }
    seg.size = SEG_HEADER;
    this.diskBytes += SEG_HEADER;
    this.segs.push(seg);
    this.active = seg;
    this.dirDirty = true;
    return seg;
  }

  private seal(seg: Segment): void {
    if (this.active === seg) this.active = undefined;
    // Unsynced data keeps its descriptor until the next sync round has flushed it.
    if (this.opts.fsync === 'never' || seg.synced >= seg.size) this.closeSegFd(seg);
    if (seg.last <= this.acked) this.removeSegment(seg, false);
  }

  private closeSegFd(seg: Segment): void {
    if (seg.fd === undefined) return;
    if (seg.busy) this.closeAfterRound.push(seg.fd);
    else closeSync(seg.fd);
    seg.fd = undefined;
  }

  /** drop_oldest: delete whole segments, oldest first, until `need` more bytes fit. */
  private makeRoom(need: number): void {
    while (this.diskBytes + need > this.maxBytes) {
      const oldest = this.segs[0];
      if (!oldest || (oldest === this.active && oldest.size <= SEG_HEADER)) return;
      this.removeSegment(oldest, true);
    }
  }

  /**
   * Deletes a segment file. `dropping`: its unacknowledged entries are discarded (drop_oldest), not acknowledged.
   * `later`: the path is pushed there for the caller to unlink off the event loop instead (freeing a file's page cache
   * takes milliseconds, which would delay the sink); the segment is forgotten at once either way.
   */
  private removeSegment(seg: Segment, dropping: boolean, later?: string[]): void {
    const i = this.segs.indexOf(seg);
    if (i >= 0) this.segs.splice(i, 1);
    this.diskBytes -= seg.size;
    this.closeSegFd(seg);
    if (this.active === seg) this.active = undefined;
    if (later) later.push(seg.path);
    else {
      try {
        unlinkSync(seg.path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    while (this.cacheHead < this.cache.length && this.cache[this.cacheHead]!.seg === seg) {
      this.cachedBytes -= this.cache[this.cacheHead]!.buf.length;
      this.cache[this.cacheHead++] = undefined as never;
    }
    this.compactCache();
    if (this.rSeg === seg) this.leaveSegment();
    if (dropping && seg.last >= this.nextSeq) {
      const first = Math.max(this.nextSeq, seg.base);
      const lost = seg.last - first + 1;
      this.drop(lost);
      this.nextSeq = seg.last + 1;
      this.real.log.warn({ dir: this.dir, dropped: lost, first, last: seg.last }, 'durable buffer full: dropped the oldest entries');
    }
  }

  private drop(n: number): void {
    this.dropped += n;
    this.mDropped.inc(n);
  }

  private dropCache(): void {
    this.cache = [];
    this.cacheHead = 0;
    this.cachedBytes = 0;
  }

  private compactCache(): void {
    if (this.cacheHead === this.cache.length) {
      this.cache.length = 0;
      this.cacheHead = 0;
    } else if (this.cacheHead > 1024 && this.cacheHead * 2 > this.cache.length) {
      this.cache = this.cache.slice(this.cacheHead);
      this.cacheHead = 0;
    }
  }

  // ---- fsync ----------------------------------------------------------------------------------------------------

  private dirty(): boolean {
    if (this.dirDirty) return true;
    for (const s of this.segs) if (s.fd !== undefined && s.synced < s.size) return true;
    return false;
  }

  private requestSync(): void {
    if (this.syncing) this.syncAgain = true;
    else this.syncing = this.runSync();
  }

  /** Group commit: one fdatasync per segment with new data covers every append made before the round started. */
  private async runSync(): Promise<void> {
    try {
      do {
        this.syncAgain = false;
        const target = this.nextAppend - 1;
        const work = this.segs.filter((s) => s.fd !== undefined && s.synced < s.size);
        const sizes = work.map((s) => s.size);
        const dir = this.dirDirty;
        this.dirDirty = false;
        for (const s of work) s.busy = true;
        try {
          await Promise.all([...work.map((s) => datasync(s.fd!)), dir ? syncDir(this.dir) : undefined]);
        } finally {
          for (const s of work) s.busy = false;
          for (const fd of this.closeAfterRound.splice(0)) closeSync(fd);
        }
        this.syncRounds++;
        work.forEach((s, i) => (s.synced = Math.max(s.synced, sizes[i]!)));
        for (const s of work) if (s !== this.active && s.synced >= s.size) this.closeSegFd(s);
        if (target > this.visible) {
          this.visible = target;
          this.poke();
        }
      } while (this.syncAgain && !this.filesClosed);
    } catch (e) {
      this.fail(e, 'fdatasync of the durable buffer failed');
    } finally {
      this.syncing = undefined;
    }
  }

  // ---- replay ---------------------------------------------------------------------------------------------------

  private poke(): void {
    // Waking on setImmediate rather than at once lets every append of the current I/O phase join one batch.
    if (!this.wake || this.wakeScheduled) return;
    this.wakeScheduled = true;
    setImmediate(() => {
      this.wakeScheduled = false;
      const w = this.wake;
      this.wake = undefined;
      w?.();
    });
  }

  private async loop(): Promise<void> {
    let since = Date.now();
    try {
      while (!this.stopped) {
        if (this.nextSeq > this.visible) {
          await new Promise<void>((r) => (this.wake = r));
          continue;
        }
        if (this.ahead >= this.readAhead) {
          this.aheadBlocked = true;
          if (!this.aheadTimer) {
            this.aheadTimer = setTimeout(this.aheadTimeout, this.patienceMs);
            this.aheadTimer.unref();
          }
          await new Promise<void>((r) => (this.wake = r));
          continue;
        }
        const batch = this.readBatch();
        if (!batch) continue;
        const n = batch.records.length;
        const last = (batch.ack as Ack).seq;
        this.inflightLast.push(last);
        this.inflightCount.push(n);
        this.ahead += n;
        if (this.batchFirst <= this.handedBefore) {
          const again = Math.min(n, this.handedBefore - this.batchFirst + 1);
          this.redelivered += again;
          this.mRedelivered.inc(again);
        }
        const p = this.real.emit(batch);
        // Written after emit in the same tick: the sink cannot have the batch before the mark is in the page cache.
        if (last > this.handedMark) this.markHanded(last);
        if (p) {
          await Promise.race([p, this.stopPromise]);
          since = Date.now();
        } else if (Date.now() - since >= 20) {
          // A pipeline that never pushes back must not starve the socket the source reads from.
          await new Promise<void>((r) => setImmediate(r));
          since = Date.now();
        }
      }
    } catch (e) {
      this.fail(e, 'durable buffer replay failed');
    } finally {
      this.closeReadFd();
    }
  }

  private markHanded(seq: number): void {
    this.handedMark = seq;
    if (this.handedFd === undefined) return;
    const b = this.handedBuf;
    b.writeUInt32LE(seq % TWO_32, 0);
    b.writeUInt32LE(Math.floor(seq / TWO_32), 4);
    try {
      writeFully(this.handedFd, b, 0, 8, 0);
    } catch (e) {
      // Only the redelivered count depends on it: warn once and stop writing rather than fail the pipeline.
      this.real.log.warn({ dir: this.dir, err: errorMessage(e) }, 'durable buffer: cannot record the handed-over position; redeliveries after a restart may be undercounted');
      closeSync(this.handedFd);
      this.handedFd = undefined;
    }
  }

  /** Seq of the first record of the batch readBatch returned last. */
  private batchFirst = 0;

  /** Up to MAX_BATCH_RECORDS visible entries with the same `decoded` flag, from the cache or from disk. */
  private readBatch(): SourceBatch | undefined {
    const records: SluiceRecord[] = [];
    // Per batch, so no meta object is shared with records that may already be in the sink.
    const memo: MetaMemo = { text: '', obj: undefined };
    let decoded: boolean | undefined;
    let bytes = 0;
    let last = 0;
    while (records.length < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES && this.nextSeq <= this.visible) {
      const c = this.cacheHead < this.cache.length ? this.cache[this.cacheHead]! : undefined;
      let src: Buffer;
      let at: number;
      if (c && c.next <= this.nextSeq) {
        src = c.buf;
        at = c.pos;
        const len = ENTRY_HEADER + src.readUInt32LE(at);
        const seq = c.next;
        if (seq === this.nextSeq) {
          const d = (entryFlags(src, at) & F_DECODED) !== 0;
          if (decoded !== undefined && d !== decoded) break;
          decoded = d;
          if (!records.length) this.batchFirst = seq;
          records.push(decodeRecord(src, at, memo));
          bytes += len;
          last = seq;
          this.nextSeq++;
        }
        c.pos += len;
        c.next++;
        this.moveReader(c.seg, c.off + c.pos, c.next);
        if (c.next > c.last) {
          this.cachedBytes -= c.buf.length;
          this.cache[this.cacheHead++] = undefined as never;
          this.compactCache();
        }
        continue;
      }
      at = this.diskEntry();
      if (at < 0) continue;
      src = this.rBuf;
      const len = ENTRY_HEADER + src.readUInt32LE(at);
      const seq = this.rSeq;
      if (seq === this.nextSeq) {
        const d = (entryFlags(src, at) & F_DECODED) !== 0;
        if (decoded !== undefined && d !== decoded) break;
        decoded = d;
        if (!records.length) this.batchFirst = seq;
        records.push(decodeRecord(src, at, memo));
        bytes += len;
        last = seq;
        this.nextSeq++;
      }
      this.rOff += len;
      this.rSeq++;
    }
    if (!records.length) return undefined;
    return {
      records,
      ack: { seq: last } satisfies Ack,
      position: { durable_buffer: this.name, seq: last } satisfies BufferPosition,
      decoded: decoded === true,
    };
  }

  private moveReader(seg: Segment, off: number, seq: number): void {
    if (this.rSeg !== seg) {
      this.closeReadFd();
      this.rSeg = seg;
    }
    this.rOff = off;
    this.rSeq = seq;
  }

  private leaveSegment(): void {
    this.closeReadFd();
    this.rSeg = undefined;
  }

  private closeReadFd(): void {
    if (this.rFd !== undefined) closeSync(this.rFd);
    this.rFd = undefined;
    this.rBufSeg = undefined;
    this.rBufLen = 0;
  }

  private enterSegment(seg: Segment): void {
    this.closeReadFd();
    this.rSeg = seg;
    this.rOff = SEG_HEADER;
    this.rSeq = seg.base;
    if (this.rBuf.length > 4 * READ_CHUNK || this.rBuf.length === 0) this.rBuf = Buffer.allocUnsafe(READ_CHUNK);
    this.rFd = openSync(seg.path, 'r');
    if (!this.fill(0, SEG_HEADER)) return this.corrupt(seg, 'segment header is incomplete');
    const hp = headerProblem(this.rBuf, seg.base);
    if (hp) return this.corrupt(seg, hp);
    if (seg.base > this.nextSeq) {
      this.real.log.warn({ dir: this.dir, missing_from: this.nextSeq, missing_to: seg.base - 1 }, 'durable buffer: entries missing between segments');
      this.nextSeq = seg.base;
    }
  }

  /** Makes rBuf hold file bytes [off, off + len) of the reader's segment. */
  private fill(off: number, len: number): boolean {
    if (this.rBufSeg === this.rSeg && off >= this.rBufStart && off + len <= this.rBufStart + this.rBufLen) return true;
    if (len > this.rBuf.length) this.rBuf = Buffer.allocUnsafe(len);
    const want = Math.max(len, Math.min(this.rBuf.length, this.rSeg!.size - off));
    this.rBufSeg = this.rSeg;
    this.rBufStart = off;
    this.rBufLen = readFully(this.rFd!, this.rBuf, 0, want, off);
    return this.rBufLen >= len;
  }

  /**
   * Positions rBuf on the entry at the reader's position and returns its offset in rBuf, or -1 when the reader
   * moved on instead (to the next segment, or past a corrupt one). Throws when the log is inconsistent.
   */
  private diskEntry(): number {
    let seg = this.rSeg;
    if (!seg) {
      seg = this.segs.find((s) => s.last >= this.nextSeq);
      if (!seg) throw new SluiceError('INTERNAL', `durable buffer: no segment holds entry ${this.nextSeq}`);
      this.enterSegment(seg);
      return -1;
    }
    if (this.rFd === undefined) {
      // Positioned by the cache; open the file at the same place.
      this.rFd = openSync(seg.path, 'r');
      if (this.rBuf.length === 0) this.rBuf = Buffer.allocUnsafe(READ_CHUNK);
    }
    if (this.rOff >= seg.size) {
      const next = this.segs[this.segs.indexOf(seg) + 1];
      if (!next) throw new SluiceError('INTERNAL', `durable buffer: entry ${this.nextSeq} is past the end of the log`);
      this.enterSegment(next);
      return -1;
    }
    if (this.rOff + ENTRY_HEADER > seg.size || !this.fill(this.rOff, ENTRY_HEADER)) {
      this.corrupt(seg, 'incomplete entry header');
      return -1;
    }
    const len = this.rBuf.readUInt32LE(this.rOff - this.rBufStart);
    if (len < MIN_BODY || this.rOff + ENTRY_HEADER + len > seg.size) {
      this.corrupt(seg, `invalid entry length ${len}`);
      return -1;
    }
    if (!this.fill(this.rOff, ENTRY_HEADER + len)) {
      this.corrupt(seg, 'short read');
      return -1;
    }
    const at = this.rOff - this.rBufStart;
    const problem = checkEntry(this.rBuf, at, len, this.rSeq);
    if (problem) {
      this.corrupt(seg, problem);
      return -1;
    }
    return at;
  }

  /** A damaged older segment: what follows the damage in it is lost; the replay goes on with the next segment. */
  private corrupt(seg: Segment, problem: string): void {
    if (seg === this.active) {
      throw new SluiceError('INTERNAL', `durable buffer segment ${seg.path} is corrupt at offset ${this.rOff}: ${problem}`);
    }
    const from = Math.max(this.rSeq, this.nextSeq);
    const lost = Math.max(0, seg.last - from + 1);
    this.real.log.error({ segment: seg.path, offset: this.rOff, problem, lost }, 'durable buffer: corrupt segment; skipping the rest of it');
    this.drop(lost);
    this.nextSeq = Math.max(this.nextSeq, seg.last + 1);
    const next = this.segs[this.segs.indexOf(seg) + 1];
    if (next) this.enterSegment(next);
    else this.leaveSegment();
  }

  // ---- acknowledgement ------------------------------------------------------------------------------------------

  commit(acks: unknown[]): Promise<void> {
    let max = -1;
    for (const a of acks) {
      const seq = (a as Ack | null)?.seq;
      if (typeof seq === 'number' && seq > max) max = seq;
    }
    this.noteWritten(max);
    if (max <= this.acked) return this.commitChain;
    const p = this.commitChain.then(() => this.doCommit(max));
    this.commitChain = p.catch(() => {});
    return p;
  }

  /** The sink wrote everything up to `seq`: those records left the pipeline's memory, so more may be read ahead. */
  private noteWritten(seq: number): void {
    const before = this.ahead;
    while (this.writtenHead < this.inflightLast.length && this.inflightLast[this.writtenHead]! <= seq) {
      this.ahead -= this.inflightCount[this.writtenHead]!;
      this.writtenHead++;
    }
    if (this.ahead === before || !this.aheadBlocked) return;
    // The sink took all we had read ahead while the replay waited on the bound: its batches are at least that large
    // (or it is that fast), so the bound was what kept it waiting.
    if (this.ahead === 0) this.growReadAhead();
    this.aheadBlocked = false;
    this.clearAheadTimer();
    this.poke();
  }

  private readonly aheadTimeout = () => {
    this.aheadTimer = undefined;
    if (!this.aheadBlocked || this.stopped) return;
    // No write reported for a while: a sink with slow or lingering batches, or a pipeline that does not commit
    // (preview). Reading ahead further costs memory only, so never let the bound be what stalls the pipeline.
    this.growReadAhead();
    this.aheadBlocked = false;
    this.poke();
  };

  private growReadAhead(): void {
    this.readAhead = Math.min(this.readAhead * 2, MAX_READ_AHEAD);
  }

  private clearAheadTimer(): void {
    if (this.aheadTimer) clearTimeout(this.aheadTimer);
    this.aheadTimer = undefined;
  }

  private async doCommit(seq: number): Promise<void> {
    if (seq <= this.acked) return;
    // Persisted before any file is deleted: a crash in between leaves segments that the next open deletes.
    await this.real.state.set(this.stateKey, seq);
    this.acked = seq;
    while (this.inflightHead < this.inflightLast.length && this.inflightLast[this.inflightHead]! <= seq) {
      this.acknowledged += this.inflightCount[this.inflightHead]!;
      this.inflightHead++;
    }
    if (this.inflightHead > 1024 && this.inflightHead * 2 > this.inflightLast.length) {
      this.inflightLast.splice(0, this.inflightHead);
      this.inflightCount.splice(0, this.inflightHead);
      this.writtenHead -= this.inflightHead;
      this.inflightHead = 0;
    }
    if (this.filesClosed) return;
    const doomed: string[] = [];
    try {
      while (this.segs.length && this.segs[0] !== this.active && this.segs[0]!.last <= seq) this.removeSegment(this.segs[0]!, false, doomed);
      const a = this.active;
      // The active segment goes too once it is due for rolling anyway, or when a blocked source waits for space.
      if (a && this.segs[0] === a && a.last <= seq && a.size > SEG_HEADER && (a.size >= this.segmentBytes || this.diskBytes >= this.maxBytes)) {
        this.removeSegment(a, false, doomed);
      }
    } catch (e) {
      this.real.log.warn({ dir: this.dir, err: errorMessage(e) }, 'durable buffer: deleting an acknowledged segment failed');
    }
    this.updateGauges();
    if (doomed.length) {
      // Awaited, so a commit resolves with the files gone. A file left behind (an error here, or a crash first) holds
      // only acknowledged entries, which the next open deletes.
      const deleting = Promise.allSettled(doomed.map((path) => unlinkFile(path)));
      this.deleting.add(deleting);
      const results = await deleting;
      this.deleting.delete(deleting);
      for (const r of results) {
        if (r.status === 'rejected' && (r.reason as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.real.log.warn({ dir: this.dir, err: errorMessage(r.reason) }, 'durable buffer: deleting an acknowledged segment failed; the next start deletes it');
        }
      }
    }
    if (this.blocker && this.diskBytes < this.maxBytes) this.unblock();
  }

  private unblock(): void {
    const b = this.blocker;
    this.blocker = undefined;
    b?.resolve();
  }

  // ---- lifecycle ------------------------------------------------------------------------------------------------

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.clearAheadTimer();
    this.stopResolve();
    const w = this.wake;
    this.wake = undefined;
    w?.();
    this.unblock();
    if (!this.inner.signal.aborted) this.inner.abort(this.real.signal.aborted ? this.real.signal.reason : undefined);
  }

  /** An I/O error the buffer cannot work around: stop the source (wrapped signal) and reject `done` with the cause. */
  private fail(e: unknown, what: string): void {
    if (this.fatal) return;
    this.fatal = e instanceof SluiceError ? e : new SluiceError('INTERNAL', `${what} (${this.dir}): ${errorMessage(e)}`, { cause: e });
    this.real.log.error({ dir: this.dir, err: this.fatal.message }, 'durable buffer failed');
    this.stop();
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stop();
      await this.loopDone;
      if (this.timer) clearInterval(this.timer);
      await this.syncing;
      if (this.opts.fsync !== 'never' && !this.fatal && this.dirty()) await this.runSync();
      await Promise.all(this.deleting);
      this.filesClosed = true;
      for (const s of this.segs) this.closeSegFd(s);
      for (const fd of this.closeAfterRound.splice(0)) closeSync(fd);
      this.closeReadFd();
      if (this.handedFd !== undefined) closeSync(this.handedFd);
      this.handedFd = undefined;
      this.cache = [];
      this.cacheHead = 0;
      this.cachedBytes = 0;
      this.real.signal.removeEventListener('abort', this.onAbort);
      openDirs.delete(this.dir);
    })();
    return this.closing;
  }
}

function checkOptions(o: DurableBufferOptions): void {
  const bad = (what: string) => {
    throw new SluiceError('CONFIG', `durable buffer: ${what}`);
  };
  if (!o.dir) bad('dir is required');
  if (!(Number.isFinite(o.maxBytes) && o.maxBytes > 0)) bad(`maxBytes must be a positive number, got ${String(o.maxBytes)}`);
  if (o.segmentBytes !== undefined && !(Number.isFinite(o.segmentBytes) && o.segmentBytes > 0)) bad(`segmentBytes must be a positive number`);
  if (!['never', 'interval', 'always'].includes(o.fsync)) bad(`fsync must be never, interval or always, got '${String(o.fsync)}'`);
  if (o.fsyncIntervalMs !== undefined && !(Number.isFinite(o.fsyncIntervalMs) && o.fsyncIntervalMs > 0)) bad('fsyncIntervalMs must be positive');
  if (!['block', 'drop_oldest', 'drop_newest'].includes(o.onFull)) bad(`onFull must be block, drop_oldest or drop_newest, got '${String(o.onFull)}'`);
  if (o.cacheBytes !== undefined && !(Number.isFinite(o.cacheBytes) && o.cacheBytes >= 0)) bad('cacheBytes must be a non-negative number');
  if (o.readAheadRecords !== undefined && !(Number.isSafeInteger(o.readAheadRecords) && o.readAheadRecords > 0)) bad('readAheadRecords must be a positive integer');
  if (o.readAheadPatienceMs !== undefined && !(Number.isFinite(o.readAheadPatienceMs) && o.readAheadPatienceMs > 0)) bad('readAheadPatienceMs must be a positive number');
}

/** The sequence number in an exactly-once sink's stored position when it is this log's; other positions are ignored. */
function resumeSeq(resume: SourceContext['resume'], name: string): number | undefined {
  const p = resume?.[''] as Partial<BufferPosition> | undefined;
  if (!p || typeof p !== 'object' || p.durable_buffer !== name) return undefined;
  return typeof p.seq === 'number' && Number.isSafeInteger(p.seq) && p.seq >= 0 ? p.seq : undefined;
}

/**
 * Opens (or creates) the log in `opts.dir`, repairs a torn tail, deletes acknowledged segments and starts the replay
 * loop, which first hands over what a previous run left unacknowledged.
 */
export async function openDurableBuffer(real: SourceContext, opts: DurableBufferOptions): Promise<DurableBuffer> {
  checkOptions(opts);
  const dir = resolve(opts.dir);
  // With fewer than four segments in the bound, a full log could consist of the active segment alone, which neither
  // acknowledgement nor drop_oldest can free in useful steps.
  const segmentBytes = Math.max(MIN_SEGMENT, Math.min(opts.segmentBytes ?? DEFAULT_SEGMENT, Math.floor(opts.maxBytes / 4)));
  const stateKey = `durable_buffer.${basename(dir)}.acked`;
  if (openDirs.has(dir)) throw new SluiceError('INTERNAL', `durable buffer ${dir} is already open in this process`);
  openDirs.add(dir);
  const log = real.log;
  const fds: number[] = [];
  try {
    mkdirSync(dir, { recursive: true });
    const stored = await real.state.get<unknown>(stateKey);
    let acked = 0;
    if (typeof stored === 'number' && Number.isSafeInteger(stored) && stored >= 0) acked = stored;
    else if (stored !== undefined) log.warn({ dir, stored }, 'durable buffer: ignoring an invalid acknowledged position');

    const segs: Segment[] = [];
    for (const name of readdirSync(dir)) {
      const m = SEG_NAME.exec(name);
      if (!m) continue;
      const path = join(dir, name);
      segs.push({ base: Number(m[1]), path, size: statSync(path).size, last: 0, synced: 0, busy: false });
    }
    segs.sort((a, b) => a.base - b.base);
    for (let i = 0; i < segs.length - 1; i++) {
      segs[i]!.last = segs[i + 1]!.base - 1;
      segs[i]!.synced = segs[i]!.size;
    }
    const tail = segs[segs.length - 1];
    if (tail) {
      const fd = openSync(tail.path, 'r+');
      fds.push(fd);
      const size = fstatSync(fd).size;
      const scan = scanSegment(fd, tail.base, size);
      if (scan.end === 0) {
        // Torn at creation (or not ours): start it over so appends have a valid header to follow.
        ftruncateSync(fd, 0);
        writeFully(fd, segmentHeader(tail.base), 0, SEG_HEADER, 0);
        scan.end = SEG_HEADER;
      } else if (scan.end < size) {
        ftruncateSync(fd, scan.end);
      }
      if (scan.problem && size > 0) {
        log.warn(
          { segment: tail.path, offset: scan.end, removed_bytes: size - scan.end, problem: scan.problem, last_seq: scan.last },
          'durable buffer: truncated a torn tail (an interrupted write)',
        );
      }
      tail.size = scan.end;
      tail.last = scan.last;
      tail.fd = fd;
      // Entries recovered from the page cache are about to be handed over; with fsync on they must be on disk first.
      if (opts.fsync !== 'never') {
        fdatasyncSync(fd);
        await syncDir(dir);
      }
      tail.synced = tail.size;
    }
    const lastSeq = tail ? tail.last : 0;
    // An exactly-once sink stored the position of the last batch it wrote, in the same atomic step as the records;
    // the runtime's own commit to us comes after it, so that position may be ahead of `acked`: skip up to it.
    const resumed = resumeSeq(real.resume, basename(dir));
    let skipped = 0;
    if (resumed !== undefined && resumed > acked) {
      skipped = Math.max(0, Math.min(resumed, lastSeq) - Math.max(acked, (segs[0]?.base ?? 1) - 1));
      log.info({ dir, acked, sink_position: resumed, skipped }, 'durable buffer: skipping entries the exactly-once sink already holds');
      acked = resumed;
      await real.state.set(stateKey, acked);
    }
    const nextAppend = Math.max(lastSeq, acked) + 1;
    // Fully acknowledged segments are what a crash between persisting the position and deleting files leaves behind.
    const live: Segment[] = [];
    for (const s of segs) {
      if (s.last <= acked) {
        if (s.fd !== undefined) {
          closeSync(s.fd);
          fds.length = 0;
          s.fd = undefined;
        }
        unlinkSync(s.path);
      } else live.push(s);
    }
    const handedPath = join(dir, HANDED_FILE);
    let handedFd: number;
    try {
      handedFd = openSync(handedPath, 'r+');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      handedFd = openSync(handedPath, 'w+');
    }
    fds.push(handedFd);
    const hb = Buffer.alloc(8);
    let handedBefore = readFully(handedFd, hb, 0, 8, 0) === 8 ? hb.readUInt32LE(0) + hb.readUInt32LE(4) * TWO_32 : 0;
    // Past an exactly-once sink's position nothing is in the sink (it stores records and position atomically), so
    // handing those entries over again duplicates nothing.
    if (resumed !== undefined) handedBefore = Math.min(handedBefore, resumed);
    const buf = new DurableLog(real, opts, { dir, segmentBytes, stateKey, acked, segs: live, nextAppend, handedFd, handedBefore, skipped });
    const st = buf.stats();
    log.info({ dir, pending: st.entries, bytes: st.bytes, acked, next_seq: nextAppend, handed_before: handedBefore }, 'durable buffer opened');
    return buf;
  } catch (e) {
    for (const fd of fds) closeSync(fd);
    openDirs.delete(dir);
    if (e instanceof SluiceError) throw e;
    throw new SluiceError('INTERNAL', `cannot open durable buffer ${dir}: ${errorMessage(e)}`, { cause: e });
  }
}
