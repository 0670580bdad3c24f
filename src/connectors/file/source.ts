// File source: frames files itself (lines, length-delimited frames, whole files), decodes with one decoder per file,
// and checkpoints the byte offset after the last record of every acknowledged batch.

import { stat, open, type FileHandle } from 'node:fs/promises';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { BadRecord, Counter, Decoder, SluiceRecord, Source, SourceContext } from '../../core/types.js';
import { LengthDelimitedSplitter, LineSplitter } from '../../formats/framing.js';
import { describePatterns, displayPath, resolvePaths, toPatterns } from './paths.js';
import { untilSettledOrAborted } from '../../core/abort.js';

export interface FileSourceOptions {
  path: string | string[];
  mode: 'read' | 'follow';
  poll_interval: number;
  start_at: 'beginning' | 'end';
  read_chunk_size: number;
  max_line_bytes: number;
  framing: 'lines' | 'length_delimited' | 'whole_file';
  include_path: boolean;
}

/** A batch's position, handed back to `commit`. */
export interface FileAck {
  path: string;
  ino: string;
  /** Byte offset just past the last record (or skipped line) covered by the batch. */
  offset: number;
  /** Line (or frame) number of the next record. */
  line: number;
  /** File size as far as it was known when the batch was read. */
  size: number;
  /** Read mode: the file was read to its end. */
  done?: boolean;
}

/**
 * State key (never an absolute path, so never a file's key): per file, how far this pipeline had emitted, persisted
 * with each commit and on close. Records re-read below it after a restart are counted as `redelivered`.
 */
const EMITTED_KEY = 'emitted';
type Emitted = Record<string, { ino: string; offset: number }>;

/** What `commit` stores per file, under the file's absolute path. */
export type FileCheckpoint = Omit<FileAck, 'path'>;

/** Records per emitted batch; a chunk's records go out in batches of at most this many. */
const BATCH_RECORDS = 1000;
/** Chunks read from one file per poll in follow mode before the other files get their turn. */
const FOLLOW_BUDGET = 64;

/** One framed piece of a file. `LineFrame` from framing.ts has exactly this shape. */
interface Piece {
  text: string | Buffer;
  start: number;
  end: number;
  line: number;
  lines: number;
  error?: SluiceError;
}

interface Framer {
  push(chunk: Buffer): Piece[];
  flush(): Piece[];
  readonly pending: boolean;
}

class LengthFramer implements Framer {
  private readonly s: LengthDelimitedSplitter;
  constructor(max: number, startOffset: number, startIndex: number) {
    this.s = new LengthDelimitedSplitter({ maxFrameBytes: max, startOffset, startIndex });
  }
  push(chunk: Buffer): Piece[] {
    return this.s.push(chunk).map((f) => ({ text: f.payload, start: f.start, end: f.end, line: f.index, lines: 1, error: f.error }));
  }
  flush(): Piece[] {
    return this.s.flush().map((f) => ({ text: f.payload, start: f.start, end: f.end, line: f.index, lines: 1, error: f.error }));
  }
  get pending() {
    return this.s.pending;
  }
}

/** Everything from the start position to the end of data is one payload. */
class WholeFramer implements Framer {
  private parts: Buffer[] = [];
  private bytes = 0;
  private tooBig = false;
  constructor(
    private readonly max: number,
    private start: number,
  ) {}
  push(chunk: Buffer): Piece[] {
    if (!this.tooBig && this.bytes + chunk.length > this.max) {
      this.tooBig = true;
      this.parts = [];
    }
    // Copied: the reader reuses its buffer for the next chunk.
    if (!this.tooBig) this.parts.push(Buffer.from(chunk));
    this.bytes += chunk.length;
    return [];
  }
  flush(): Piece[] {
    if (this.bytes === 0) return [];
    const f: Piece = { text: Buffer.concat(this.parts, this.tooBig ? 0 : this.bytes), start: this.start, end: this.start + this.bytes, line: 1, lines: 1 };
    if (this.tooBig) f.error = new SluiceError('DECODE', `file content of ${this.bytes} bytes exceeds max_line_bytes (${this.max}); skipped`);
    this.start += this.bytes;
    this.bytes = 0;
    this.parts = [];
    this.tooBig = false;
    return [f];
  }
  get pending() {
    return this.bytes > 0;
  }
}

/** An open file being read. */
interface Cursor {
  abs: string;
  display: string;
  fh: FileHandle;
  ino: string;
  /** Next read position. */
  position: number;
  size: number;
  framer: Framer;
  decoder: Decoder;
  /** CSV resumed mid-file: feed the header line to the decoder before the first record. */
  needsHeader: boolean;
  ackOffset: number;
  ackLine: number;
  /** The ack position moved since the last emitted batch. */
  dirty: boolean;
  records: SluiceRecord[];
  bad: BadRecord[];
  /** The piece being decoded, for the decoder's error callback. */
  current?: Piece;
  onError: (err: Error, raw: string | Uint8Array) => void;
}

/** A path followed in follow mode; its cursor changes on rotation. */
interface Tracker {
  abs: string;
  cur?: Cursor;
  startAtEnd: boolean;
  missingSince?: number;
  /** whole_file: size seen at the previous poll, to wait until a file stopped growing. */
  lastSize?: number;
}

export class FileSource implements Source {
  private ctx!: SourceContext;
  private readonly patterns: string[];
  private readonly csv: boolean;
  private readonly chunkSize: number;
  private readonly maxLine: number;
  private buf: Buffer = Buffer.alloc(0);
  private readonly handles = new Set<FileHandle>();
  private commitChain: Promise<void> = Promise.resolve();
  private bytesRead?: Counter;
  private redelivered?: Counter;
  private emitted: Emitted = {};

  constructor(
    private readonly o: FileSourceOptions,
    info: EndpointInfo,
  ) {
    this.patterns = toPatterns(o.path);
    const f = info.format.toLowerCase();
    this.csv = f === 'csv' || f === 'tsv';
    this.chunkSize = Math.max(1, Math.floor(o.read_chunk_size));
    this.maxLine = Math.max(1, Math.floor(o.max_line_bytes));
  }

  async run(ctx: SourceContext): Promise<void> {
    this.ctx = ctx;
    this.bytesRead = ctx.metrics.counter('file_bytes_read', 'Bytes read from files');
    this.redelivered = ctx.metrics.counter('redelivered', 'records re-read after a restart below where an earlier run had emitted: possible duplicates');
    this.emitted = (await ctx.state.get<Emitted>(EMITTED_KEY)) ?? {};
    // One read buffer for the whole run: frames never keep views into it (see framing.ts).
    this.buf = Buffer.allocUnsafe(this.chunkSize);
    try {
      if (this.o.mode === 'follow') await this.runFollow();
      else await this.runRead();
    } finally {
      await this.closeAll();
    }
  }

  commit(acks: unknown[]): Promise<void> | void {
    const latest = new Map<string, FileAck>();
    // Acks arrive in emit order, and a path's batches are emitted in read order (an old file's rest before its
    // replacement's start), so the last ack per path is the newest position even when offsets restart after rotation.
    for (const a of acks) if (isFileAck(a)) latest.set(a.path, a);
    if (latest.size === 0) return;
    const state = this.ctx.state;
    const p = this.commitChain.then(async () => {
      for (const [path, a] of latest) {
        const cp: FileCheckpoint = { ino: a.ino, offset: a.offset, line: a.line, size: a.size };
        if (a.done) cp.done = true;
        await state.set(path, cp);
      }
      await state.set(EMITTED_KEY, this.emitted);
    });
    this.commitChain = p.catch(() => {});
    return p;
  }

  async close(): Promise<void> {
    await this.closeAll();
    // A run that ends without a final commit (a failed sink) still leaves what it emitted for the next run to count.
    await this.commitChain;
    await this.ctx?.state.set(EMITTED_KEY, this.emitted).catch(() => {});
  }

  // ---- read mode ---------------------------------------------------------------------------------------------

  private async runRead(): Promise<void> {
    let files: string[];
    try {
      files = await resolvePaths(this.patterns, this.ctx.signal);
    } catch (e) {
      if (this.ctx.signal.aborted) return;
      throw e;
    }
    if (files.length === 0) {
      throw new SluiceError('CONFIG', `no file matches ${describePatterns(this.patterns)}`, {
        hint: `relative paths are resolved against ${process.cwd()}; use mode: follow to wait for files to appear`,
      });
    }
    this.ctx.log.debug({ files: files.length }, 'file source: path resolved');
    for (const abs of files) {
      if (this.ctx.signal.aborted) return;
      const cur = await this.openCursor(abs, false);
      if (!cur) {
        this.ctx.log.warn({ path: abs }, 'file disappeared before it could be read');
        continue;
      }
      try {
        await this.pump(cur, true, Infinity);
      } finally {
        await this.closeCursor(cur);
      }
    }
  }

  // ---- follow mode -------------------------------------------------------------------------------------------

  private async runFollow(): Promise<void> {
    const signal = this.ctx.signal;
    const trackers = new Map<string, Tracker>();
    let first = true;
    let waiting = false;
    while (!signal.aborted) {
      let files: string[];
      try {
        files = await resolvePaths(this.patterns, signal);
      } catch (e) {
        if (signal.aborted) return;
        throw e;
      }
      for (const abs of files) {
        if (!trackers.has(abs)) trackers.set(abs, { abs, startAtEnd: first && this.o.start_at === 'end' });
      }
      if (trackers.size === 0 && !waiting) {
        this.ctx.log.info(`no file matches ${describePatterns(this.patterns)} yet; waiting for one to appear`);
      }
      waiting = trackers.size === 0;
      first = false;
      let busy = false;
      for (const t of [...trackers.values()]) {
        if (signal.aborted) return;
        if (await this.followOne(t)) busy = true;
        if (!t.cur) trackers.delete(t.abs);
      }
      if (!busy) await sleep(this.o.poll_interval, signal);
    }
  }

  /** One poll of one path; true when it has more to read right away. */
  private async followOne(t: Tracker): Promise<boolean> {
    if (!t.cur) {
      t.cur = await this.openCursor(t.abs, t.startAtEnd);
      t.startAtEnd = false;
      if (!t.cur) return false;
    }
    const cur = t.cur;
    if (await this.pump(cur, false, FOLLOW_BUDGET)) return true;
    if (this.ctx.signal.aborted) return false;

    let st;
    try {
      st = await stat(t.abs, { bigint: true });
    } catch (e) {
      if (!isNotFound(e)) throw unreadable(cur.display, e);
    }
    if (!st) {
      // Renamed away or deleted: the descriptor still reads the old file, and a writer may still be appending to it.
      // Keep draining it for a while; a new file under the name ends that early (inode check below).
      t.missingSince ??= Date.now();
      if (Date.now() - t.missingSince >= Math.max(1000, 4 * this.o.poll_interval)) {
        await this.finish(cur);
        t.cur = undefined;
      }
      return false;
    }
    t.missingSince = undefined;

    if (st.ino.toString() !== cur.ino) {
      this.ctx.log.info({ path: cur.display }, 'file rotated; finishing the old file, then reading the new one from the start');
      // Whatever the writer added between our last read and the switch is still in the old file.
      await this.finish(cur);
      t.cur = undefined;
      return !this.ctx.signal.aborted;
    }
    const size = Number(st.size);
    if (size < cur.position) {
      this.ctx.log.info({ path: cur.display, size, position: cur.position }, 'file truncated; reading it again from the start');
      await this.handle(cur, cur.framer.flush());
      await this.emit(cur);
      this.restart(cur);
      return true;
    }
    if (this.o.framing === 'whole_file' && cur.framer.pending) {
      // A file still being written would be cut in the middle: emit only once it kept its size for one poll.
      if (t.lastSize === size && size === cur.position) {
        await this.handle(cur, cur.framer.flush());
        await this.emit(cur);
        t.lastSize = undefined;
      } else t.lastSize = size;
    }
    return false;
  }

  // ---- reading -----------------------------------------------------------------------------------------------

  /** Open a file at its resume position; undefined when it vanished first. */
  private async openCursor(abs: string, startAtEnd: boolean): Promise<Cursor | undefined> {
    const display = displayPath(abs);
    let fh: FileHandle;
    try {
      fh = await open(abs, 'r');
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw unreadable(display, e);
    }
    this.handles.add(fh);
    try {
      const st = await fh.stat({ bigint: true });
      const ino = st.ino.toString();
      const size = Number(st.size);
      // An exactly-once sink's stored position wins over our own checkpoint, which may be behind it or ahead of it.
      const resumed = this.ctx.resume?.[abs];
      const cp = isFileAck(resumed) ? resumed : await this.ctx.state.get<FileCheckpoint>(abs);
      // Past an exactly-once sink's position nothing is in the sink: reading it again duplicates nothing.
      if (isFileAck(resumed)) delete this.emitted[abs];
      let offset = 0;
      let line = 1;
      if (cp && cp.ino === ino && size >= cp.offset) {
        offset = cp.offset;
        line = cp.line;
      } else if (startAtEnd && !cp) {
        ({ offset, line } = await this.scanToEnd(fh, size));
      } else if (cp) {
        this.ctx.log.info({ path: display }, 'file was replaced or truncated since the last checkpoint; reading it from the start');
        delete this.emitted[abs];
      }
      const cur: Cursor = {
        abs,
        display,
        fh,
        ino,
        position: offset,
        size,
        framer: this.framer(offset, line),
        decoder: this.ctx.decoder(),
        needsHeader: this.csv && this.o.framing === 'lines' && offset > 0,
        ackOffset: offset,
        ackLine: line,
        dirty: false,
        records: [],
        bad: [],
        onError: () => {},
      };
      cur.onError = (err, raw) => {
        const p = cur.current!;
        cur.bad.push({ raw, error: err, meta: { _path: cur.abs, _offset: p.start, _line: p.line } });
      };
      if (offset > 0) this.ctx.log.debug({ path: display, offset, line }, 'file source: resuming');
      return cur;
    } catch (e) {
      this.handles.delete(fh);
      await fh.close().catch(() => {});
      throw isErrno(e) ? unreadable(display, e) : e;
    }
  }

  private framer(offset: number, line: number): Framer {
    switch (this.o.framing) {
      case 'length_delimited':
        return new LengthFramer(this.maxLine, offset, line);
      case 'whole_file':
        return new WholeFramer(this.maxLine, offset);
      default:
        return new LineSplitter({ maxLineBytes: this.maxLine, quoteAware: this.csv, startOffset: offset, startLine: line });
    }
  }

  /** Start over at offset 0 of the same file (it was truncated). */
  private restart(cur: Cursor): void {
    // Truncated: what comes now is new data at old offsets, not a re-read.
    delete this.emitted[cur.abs];
    cur.position = 0;
    cur.size = 0;
    cur.framer = this.framer(0, 1);
    cur.decoder = this.ctx.decoder();
    cur.needsHeader = false;
    cur.ackOffset = 0;
    cur.ackLine = 1;
    cur.dirty = true;
  }

  /**
   * Read, frame, decode and emit until the end of the file or `maxChunks` chunks; true when stopped by the budget.
   * With `final`, the end of the file ends its last record too (read mode, a rotated-away file).
   */
  private async pump(cur: Cursor, final: boolean, maxChunks: number): Promise<boolean> {
    const signal = this.ctx.signal;
    for (let i = 0; i < maxChunks; i++) {
      if (signal.aborted) return false;
      let n: number;
      try {
        n = (await cur.fh.read(this.buf, 0, this.buf.length, cur.position)).bytesRead;
      } catch (e) {
        throw unreadable(cur.display, e);
      }
      if (n === 0) {
        if (final) await this.handle(cur, cur.framer.flush());
        await this.emit(cur);
        return false;
      }
      if (cur.needsHeader) await this.primeHeader(cur);
      cur.position += n;
      if (cur.position > cur.size) cur.size = cur.position;
      this.bytesRead?.inc(n);
      await this.handle(cur, cur.framer.push(this.buf.subarray(0, n)));
      await this.emit(cur);
    }
    return true;
  }

  /**
   * Decode pieces into the pending batch, emitting whenever it is full. Bad records must reach the pipeline in file
   * order with the good ones (so `bad_data: fail` names the first bad line): pending good records are handed over
   * before a bad record is queued, which keeps every queued bad record ahead of every queued good one.
   */
  private async handle(cur: Cursor, pieces: Piece[]): Promise<void> {
    const include = this.o.include_path;
    for (const p of pieces) {
      if (this.ctx.signal.aborted) return;
      const meta = { _path: cur.abs, _offset: p.start, _line: p.line };
      if (p.error) {
        if (cur.records.length) await this.emit(cur);
        cur.bad.push({ raw: p.text, error: p.error, meta });
      } else {
        const rows: unknown[] = [];
        const badBefore = cur.bad.length;
        cur.current = p;
        try {
          cur.decoder.decode(p.text, rows, cur.onError);
        } catch (e) {
          rows.length = 0;
          cur.bad.push({ raw: p.text, error: asError(e), meta });
        }
        if (cur.bad.length > badBefore && cur.records.length) {
          const fresh = cur.bad.splice(badBefore);
          await this.emit(cur);
          cur.bad.push(...fresh);
        }
        for (let i = 0; i < rows.length; i++) {
          const value = rows[i];
          if (include && value !== null && typeof value === 'object' && !Array.isArray(value)) (value as Record<string, unknown>)._path = cur.abs;
          cur.records.push({ value, meta, raw: p.text });
          // Split inside one payload's rows (whole files, JSON arrays): this batch's ack stays before the payload.
          if (cur.records.length >= BATCH_RECORDS && i + 1 < rows.length) await this.emit(cur);
        }
      }
      cur.ackOffset = p.end;
      cur.ackLine = p.line + p.lines;
      cur.dirty = true;
      if (cur.records.length >= BATCH_RECORDS) await this.emit(cur);
    }
  }

  /**
   * Hand the pending records to the pipeline and wait while it pushes back. A batch may carry no records: lines that
   * were all bad or a CSV header still move the checkpoint, in order with the batches around them.
   */
  private async emit(cur: Cursor): Promise<void> {
    // Stopping: whatever was not handed over is read again on restart, its position was never acknowledged.
    if (this.ctx.signal.aborted) return;
    if (cur.bad.length) {
      const bad = cur.bad;
      cur.bad = [];
      this.ctx.bad(bad);
    }
    if (cur.records.length === 0 && !cur.dirty) return;
    const ack: FileAck = { path: cur.abs, ino: cur.ino, offset: cur.ackOffset, line: cur.ackLine, size: cur.size };
    if (this.o.mode === 'read' && !cur.framer.pending && cur.ackOffset >= cur.size) ack.done = true;
    const records = cur.records;
    cur.records = [];
    cur.dirty = false;
    const seen = this.emitted[cur.abs];
    if (seen?.ino === cur.ino && records.length && (records[0]!.meta!._offset as number) < seen.offset) {
      let again = 0;
      for (const r of records) if ((r.meta!._offset as number) < seen.offset) again++;
      this.redelivered!.inc(again);
    }
    if (!seen || seen.ino !== cur.ino || cur.ackOffset > seen.offset) this.emitted[cur.abs] = { ino: cur.ino, offset: cur.ackOffset };
    const wait = this.ctx.emit({ records, decoded: true, rowsAreRaw: !this.o.include_path, ack, position: ack, partition: cur.abs });
    if (wait) await untilSettledOrAborted(wait, this.ctx.signal);
  }

  /** End the file: its last unterminated record counts, then the descriptor is closed. */
  private async finish(cur: Cursor): Promise<void> {
    try {
      await this.pump(cur, true, Infinity);
    } finally {
      await this.closeCursor(cur);
    }
  }

  /** Resuming CSV mid-file: the decoder learns the column names from the first record, which is not emitted. */
  private async primeHeader(cur: Cursor): Promise<void> {
    cur.needsHeader = false;
    const splitter = new LineSplitter({ maxLineBytes: this.maxLine, quoteAware: true });
    const buf = Buffer.allocUnsafe(Math.min(this.chunkSize, 64 * 1024));
    for (let pos = 0; ; ) {
      let n: number;
      try {
        n = (await cur.fh.read(buf, 0, buf.length, pos)).bytesRead;
      } catch (e) {
        throw unreadable(cur.display, e);
      }
      pos += n;
      const [first] = n === 0 ? splitter.flush() : splitter.push(buf.subarray(0, n));
      if (first) {
        if (!first.error) {
          try {
            cur.decoder.decode(first.text, [], () => {});
          } catch {
            // The header's own problems were reported when the file was read from the start.
          }
        }
        return;
      }
      if (n === 0) return;
    }
  }

  /** start_at: end: the position after the last complete record, and the number of the next line. */
  private async scanToEnd(fh: FileHandle, size: number): Promise<{ offset: number; line: number }> {
    if (this.o.framing === 'whole_file') return { offset: size, line: 1 };
    const buf = Buffer.allocUnsafe(this.chunkSize);
    let offset = 0;
    let line = 1;
    // A splitter that keeps no payload walks frames without copying them.
    const frames = this.o.framing === 'length_delimited' ? new LengthDelimitedSplitter({ maxFrameBytes: 0 }) : undefined;
    for (let pos = 0; pos < size && !this.ctx.signal.aborted; ) {
      const n = (await fh.read(buf, 0, Math.min(buf.length, size - pos), pos)).bytesRead;
      if (n === 0) break;
      const chunk = buf.subarray(0, n);
      if (frames) {
        for (const f of frames.push(chunk)) {
          offset = f.end;
          line = f.index + 1;
        }
      } else {
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) {
          line++;
          offset = pos + i + 1;
        }
      }
      pos += n;
    }
    return { offset, line };
  }

  private async closeCursor(cur: Cursor): Promise<void> {
    if (this.handles.delete(cur.fh)) await cur.fh.close().catch(() => {});
  }

  private async closeAll(): Promise<void> {
    const all = [...this.handles];
    this.handles.clear();
    await Promise.all(all.map((fh) => fh.close().catch(() => {})));
  }
}

function isFileAck(a: unknown): a is FileAck {
  return !!a && typeof a === 'object' && typeof (a as FileAck).path === 'string' && typeof (a as FileAck).offset === 'number';
}

function isErrno(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && typeof (e as NodeJS.ErrnoException).syscall === 'string';
}

function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOENT';
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}


function unreadable(display: string, e: unknown): SluiceError {
  const code = (e as NodeJS.ErrnoException)?.code;
  return new SluiceError('CONNECT', `cannot read '${display}': ${errorMessage(e)}`, {
    cause: e,
    retriable: code !== 'EACCES' && code !== 'EPERM' && code !== 'EISDIR',
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

