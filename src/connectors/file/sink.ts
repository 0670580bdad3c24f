// File sink: one file descriptor per open file, one write per batch, fdatasync before the batch is acknowledged.

import { constants } from 'node:fs';
import { access, mkdir, open, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { FileWriter, SinkContext, Sink, SluiceRecord } from '../../core/types.js';
import { displayPath } from './paths.js';
import { payloadTemplate, type PayloadTemplate } from '../../core/data-template.js';
import type { SourcePosition } from '../../core/types.js';
import { CommittedFiles, syncDir } from './commit.js';

export interface FileSinkOptions {
  path: string;
  rotate_size?: number;
  rotate_interval?: number;
  append: boolean;
  fsync: boolean;
  /** A data template per record (one line each) instead of the format's encoding. */
  template?: string;
  template_escape?: 'json' | 'none';
  /** `exactly_once`: in-progress files and a commit manifest holding the source position (see commit.ts). */
  commit_mode?: 'at_least_once' | 'exactly_once';
}

const PLACEHOLDER = /\{([^{}]*)\}/g;
/** Largest write buffer a sink keeps between batches (a default batch of 1000 JSON lines needs well under 1 MB). */
const WRITE_BUFFER_MAX = 16 * 1024 * 1024;
export const SINK_PLACEHOLDERS = ['date', 'hour', 'n'];

/** Placeholders in a sink path other than {date}, {hour} and {n}. */
export function unknownPlaceholders(path: string): string[] {
  return [...path.matchAll(PLACEHOLDER)].map((m) => m[1]!).filter((p) => !SINK_PLACEHOLDERS.includes(p));
}

/** {date} and {hour} filled in (UTC); {n} is left for `withSequence`. */
export function fillTime(template: string, now: number): string {
  const iso = new Date(now).toISOString();
  return template.replaceAll('{date}', iso.slice(0, 10)).replaceAll('{hour}', iso.slice(11, 13));
}

/** The n-th file of a series: `{n}` replaced, or `.n` before the extension (`out.jsonl` -> `out.2.jsonl`) for n >= 1. */
export function withSequence(path: string, n: number): string {
  if (path.includes('{n}')) return path.replaceAll('{n}', String(n));
  if (n === 0) return path;
  const base = basename(path);
  const ext = extname(base);
  return join(dirname(path), `${ext ? base.slice(0, -ext.length) : base}.${n}${ext}`);
}

export class FileSink implements Sink {
  private ctx!: SinkContext;
  private fh?: FileHandle;
  private current = '';
  /** The path with its time placeholders filled, for the file currently in use; a new hour or day changes it. */
  private bucket?: string;
  private n = 0;
  private size = 0;
  private openedAt = 0;
  private chain: Promise<void> = Promise.resolve();
  private readonly numbered: boolean;
  private wholeFiles = false;
  /** The whole-file format's file being written across batches (Parquet), complete only once `sealPiecewise` ran. */
  private piece?: PiecewiseFile;
  private readonly tpl?: PayloadTemplate;
  /** commit_mode exactly_once: every write goes through here instead. */
  private committed?: CommittedFiles;

  constructor(private readonly o: FileSinkOptions) {
    this.numbered = o.path.includes('{n}') || o.rotate_size !== undefined || o.rotate_interval !== undefined;
    this.tpl = payloadTemplate(o);
  }

  get exactlyOnce(): boolean {
    return this.o.commit_mode === 'exactly_once';
  }

  async position(): Promise<SourcePosition | undefined> {
    return this.committed?.position();
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    if (this.exactlyOnce) return this.openCommitted(ctx);
    // Formats whose output is only valid as a whole file (Parquet, with its footer) get one file per batch, written
    // beside its final name and renamed once complete, so a reader never sees a partial file.
    if (ctx.encoder.wholeFile) {
      if (this.tpl) throw new SluiceError('CONFIG', 'file sink: `template` writes text lines; it cannot be combined with a whole-file format such as parquet');
      this.wholeFiles = true;
      await mkdir(dirname(withSequence(fillTime(this.o.path, Date.now()), 0)), { recursive: true });
      if (ctx.encoder.fileWriter) await this.recoverPiecewise();
      return;
    }
    // Opened now rather than at the first write, so a path that cannot be written fails at startup.
    await this.openFile(Date.now());
  }

  write(records: SluiceRecord[], position?: SourcePosition): Promise<void> {
    // Batches are written strictly one after another even if the caller does not wait: one fd, one position.
    const p = this.chain.then(() => (this.committed ? this.committed.write(records, position) : this.writeBatch(records)));
    this.chain = p.catch(() => {});
    return p;
  }

  async close(): Promise<void> {
    await this.chain;
    await this.committed?.close();
    await this.closeFile();
    if (this.piece) await this.sealPiecewise();
  }

  /** Exactly-once: every batch is committed with the source position; Parquet then gets one file per batch. */
  private async openCommitted(ctx: SinkContext): Promise<void> {
    const wholeFile = !!ctx.encoder.wholeFile;
    if (wholeFile && this.tpl) throw new SluiceError('CONFIG', 'file sink: `template` writes text lines; it cannot be combined with a whole-file format such as parquet');
    const encode = (records: SluiceRecord[], first: boolean): Uint8Array => {
      let out: string | Uint8Array;
      if (this.tpl) {
        out = '';
        for (let i = 0; i < records.length; i++) out += this.tpl(records[i]!) + '\n';
      } else out = ctx.encoder.encodeStream(records.map((r) => r.value), first);
      return typeof out === 'string' ? Buffer.from(out, 'utf8') : out;
    };
    const o = { ...this.o, wholeFile, encode, bucketAt: (now: number) => fillTime(this.o.path, now), nth: withSequence };
    this.committed = new CommittedFiles(o, join(ctx.dataDir, `file-sink-${ctx.role}.commit.json`), ctx.log);
    await this.committed.open();
  }

  private async writeBatch(records: SluiceRecord[]): Promise<void> {
    if (records.length === 0) return;
    if (this.wholeFiles) return this.ctx.encoder.fileWriter ? this.writePiecewise(records) : this.writeWholeFile(records);
    const now = Date.now();
    if (this.fh && fillTime(this.o.path, now) !== this.bucket) await this.closeFile();
    if (this.fh && this.o.rotate_interval !== undefined && this.size > 0 && now - this.openedAt >= this.o.rotate_interval) {
      await this.closeFile();
      this.n++;
    }
    if (!this.fh) await this.openFile(now);
    let out: string | Uint8Array;
    if (this.tpl) {
      out = '';
      for (let i = 0; i < records.length; i++) out += this.tpl(records[i]!) + '\n';
    } else if (this.ctx.encoder.encodeRecords) {
      out = this.ctx.encoder.encodeRecords(records, this.size === 0);
    } else {
      const values = new Array<unknown>(records.length);
      for (let i = 0; i < records.length; i++) values[i] = records[i]!.value;
      out = this.ctx.encoder.encodeStream(values, this.size === 0);
    }
    const data = typeof out === 'string' ? this.utf8(out) : out;
    if (data.length > 0) await this.append(data);
    // Rotating right after the file passed its limit closes a finished file promptly.
    if (this.o.rotate_size !== undefined && this.size >= this.o.rotate_size) {
      await this.closeFile();
      this.n++;
    }
  }

  /**
   * The batch's text as UTF-8, in a buffer the sink keeps and reuses: batches are written one at a time, so one is
   * enough, and a fresh Buffer per batch (hundreds of KB, outside the JS heap) is freed only when the GC gets to its
   * handle. Text that could need more than WRITE_BUFFER_MAX bytes gets a buffer of its own.
   */
  private wbuf?: Buffer;
  private utf8(text: string): Buffer {
    const most = text.length * 3;
    if (most > WRITE_BUFFER_MAX) return Buffer.from(text, 'utf8');
    if (!this.wbuf || this.wbuf.length < most) this.wbuf = Buffer.allocUnsafeSlow(Math.max(64 * 1024, most));
    return this.wbuf.subarray(0, this.wbuf.write(text, 0, 'utf8'));
  }

  private async writeWholeFile(records: SluiceRecord[]): Promise<void> {
    const bucket = fillTime(this.o.path, Date.now());
    if (bucket !== this.bucket) {
      this.bucket = bucket;
      this.n = 0;
      // A complete file is never appended to: after a restart the series goes on with the first free number.
      if (this.o.append) while (await exists(withSequence(bucket, this.n))) this.n++;
    }
    const values = new Array<unknown>(records.length);
    for (let i = 0; i < records.length; i++) values[i] = records[i]!.value;
    const out = this.ctx.encoder.encodeStream(values, true);
    const data = typeof out === 'string' ? Buffer.from(out, 'utf8') : out;
    const path = withSequence(bucket, this.n);
    const tmp = `${path}.tmp`;
    const dir = dirname(path);
    let fh: FileHandle | undefined;
    try {
      await mkdir(dir, { recursive: true });
      fh = await open(tmp, 'w');
      let done = 0;
      while (done < data.length) done += (await fh.write(data, done, data.length - done, done)).bytesWritten;
      if (this.o.fsync) await fh.datasync();
      await fh.close();
      fh = undefined;
      await rename(tmp, path);
      if (this.o.fsync) await syncDir(dir);
    } catch (e) {
      await fh?.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw new SluiceError('SINK', `cannot write '${displayPath(path)}': ${errorMessage(e)}`, { cause: e, retriable: true });
    }
    this.current = path;
    this.n++;
    this.ctx.log.debug({ path, size: data.length, records: records.length }, 'file sink: wrote a complete file');
  }

  // ---- whole-file formats written across batches (Parquet) ----------------------------------------------------
  //
  // One file holds many batches: each batch's rows become row groups appended to `<path>.tmp`, and the footer is
  // written on rotation (rotate_size, rotate_interval, a new {date}/{hour}, rows that do not fit the file's columns,
  // close), when the file is renamed to its final name, so a reader never sees an incomplete file. A batch is
  // acknowledged once its row groups are on disk and a line describing them is in the journal `<path>.tmp.journal`;
  // after a crash, `recoverPiecewise` finishes the temporary file from that journal, so no acknowledged row is lost.

  private async writePiecewise(records: SluiceRecord[]): Promise<void> {
    const now = Date.now();
    const values = new Array<unknown>(records.length);
    for (let i = 0; i < records.length; i++) values[i] = records[i]!.value;
    let p = this.piece;
    if (p && (fillTime(this.o.path, now) !== this.bucket || (this.o.rotate_interval !== undefined && now - p.openedAt >= this.o.rotate_interval) || !p.writer.accepts(values))) {
      await this.sealPiecewise();
      p = undefined;
    }
    p ??= await this.startPiecewise(now);
    // Encoding throws before the writer changes (a value that does not fit): the batch fails and nothing is written.
    const data = p.writer.write(values);
    const line = p.writer.checkpoint();
    try {
      await writeAllAt(p.fh, data, p.size);
      if (this.o.fsync) await p.fh.datasync();
      p.size += data.length;
      const entry = Buffer.from(JSON.stringify({ end: p.size, rows: records.length }) + '\t' + line + '\n', 'utf8');
      await writeAllAt(p.journal, entry, p.journalSize);
      if (this.o.fsync) await p.journal.datasync();
      p.journalSize += entry.length;
    } catch (e) {
      // The writer already counts these row groups: finish what the journal holds as a file and start over.
      this.piece = undefined;
      await p.fh.close().catch(() => {});
      await p.journal.close().catch(() => {});
      await this.finishFromJournal(p.path).catch(() => {});
      this.n++;
      throw new SluiceError('SINK', `cannot write '${displayPath(p.tmp)}': ${errorMessage(e)}`, { cause: e, retriable: true });
    }
    p.rows += records.length;
    p.batches++;
    if ((this.o.rotate_size !== undefined && p.size >= this.o.rotate_size) || p.batches >= MAX_BATCHES_PER_FILE) await this.sealPiecewise();
  }

  private async startPiecewise(now: number): Promise<PiecewiseFile> {
    const bucket = fillTime(this.o.path, now);
    if (bucket !== this.bucket) {
      this.bucket = bucket;
      this.n = 0;
    }
    // A complete file is never appended to: the series goes on with the first number that is free.
    if (this.o.append) while ((await exists(withSequence(bucket, this.n))) || (await exists(`${withSequence(bucket, this.n)}.tmp`))) this.n++;
    const path = withSequence(bucket, this.n);
    const tmp = `${path}.tmp`;
    const dir = dirname(path);
    try {
      await mkdir(dir, { recursive: true });
      // Remembered first, so a crash from here on leaves a temporary file that the next start finishes.
      await this.ctx.state.set(PIECE_KEY, path);
      const fh = await open(tmp, 'w');
      const journal = await open(`${tmp}.journal`, 'w').catch(async (e) => {
        await fh.close();
        throw e;
      });
      if (this.o.fsync) await syncDir(dir);
      this.current = tmp;
      this.piece = { path, tmp, fh, journal, writer: this.ctx.encoder.fileWriter!(), size: 0, journalSize: 0, rows: 0, batches: 0, openedAt: now };
      return this.piece;
    } catch (e) {
      throw new SluiceError('SINK', `cannot open '${displayPath(tmp)}' for writing: ${errorMessage(e)}`, {
        cause: e,
        retriable: !['EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'EROFS'].includes((e as NodeJS.ErrnoException).code ?? ''),
      });
    }
  }

  /** Footer, sync, rename to the final name: the file is complete and visible. */
  private async sealPiecewise(): Promise<void> {
    const p = this.piece!;
    this.piece = undefined;
    if (p.rows === 0) {
      // Its only batch failed to encode: nothing to keep.
      await p.fh.close().catch(() => {});
      await p.journal.close().catch(() => {});
      await unlink(p.tmp).catch(() => {});
      await unlink(`${p.tmp}.journal`).catch(() => {});
      await this.ctx.state.delete(PIECE_KEY);
      return;
    }
    try {
      const footer = p.writer.finish();
      await writeAllAt(p.fh, footer, p.size);
      if (this.o.fsync) await p.fh.datasync();
      await p.fh.close();
      await p.journal.close();
      await rename(p.tmp, p.path);
      if (this.o.fsync) await syncDir(dirname(p.path));
      await unlink(`${p.tmp}.journal`).catch(() => {});
      await this.ctx.state.delete(PIECE_KEY);
    } catch (e) {
      await p.fh.close().catch(() => {});
      await p.journal.close().catch(() => {});
      // The journal still describes every acknowledged row group; finishing from it is what a restart would do.
      await this.finishFromJournal(p.path).catch(() => {});
      this.n++;
      throw new SluiceError('SINK', `cannot complete '${displayPath(p.path)}': ${errorMessage(e)}`, { cause: e, retriable: true });
    }
    this.current = p.path;
    this.n++;
    this.ctx.log.debug({ path: p.path, size: p.size, records: p.rows }, 'file sink: completed a file');
  }

  /** A temporary file left by a crash is finished from its journal (or removed when it holds no acknowledged rows). */
  private async recoverPiecewise(): Promise<void> {
    const path = await this.ctx.state.get<string>(PIECE_KEY);
    if (typeof path !== 'string') return;
    const rows = await this.finishFromJournal(path);
    await this.ctx.state.delete(PIECE_KEY);
    if (rows !== undefined) this.ctx.log.info({ path, records: rows }, 'file sink: completed the file a previous run left unfinished');
  }

  /** Cut `<path>.tmp` to what its journal acknowledges, add the footer and rename it; the number of rows, if any. */
  private async finishFromJournal(path: string): Promise<number | undefined> {
    const tmp = `${path}.tmp`;
    const journalPath = `${tmp}.journal`;
    if (!(await exists(tmp))) {
      // Renamed already (the crash came after completing it): only the journal is left over.
      await unlink(journalPath).catch(() => {});
      return undefined;
    }
    const text = await readFile(journalPath, 'utf8').catch(() => undefined);
    // Only whole lines count: a line cut by the crash belongs to a batch that was never acknowledged.
    const lines = (text ?? '').split('\n').slice(0, -1).filter((l) => l.includes('\t'));
    if (!lines.length) {
      await unlink(tmp).catch(() => {});
      await unlink(journalPath).catch(() => {});
      return undefined;
    }
    let end = 0;
    let rows = 0;
    const pieces: string[] = [];
    for (const l of lines) {
      const tab = l.indexOf('\t');
      const head = JSON.parse(l.slice(0, tab)) as { end: number; rows: number };
      end = head.end;
      rows += head.rows;
      pieces.push(l.slice(tab + 1));
    }
    const footer = this.ctx.encoder.finishFile!(pieces);
    const fh = await open(tmp, 'r+');
    try {
      await fh.truncate(end);
      await writeAllAt(fh, footer, end);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await syncDir(dirname(path));
    await unlink(journalPath).catch(() => {});
    return rows;
  }

  private async append(data: Uint8Array): Promise<void> {
    const fh = this.fh!;
    const before = this.size;
    let done = 0;
    try {
      // Positional writes: correct for a truncated file too, and in append mode the kernel appends anyway.
      while (done < data.length) {
        const { bytesWritten } = await fh.write(data, done, data.length - done, before + done);
        done += bytesWritten;
      }
      if (this.o.fsync) await fh.datasync();
    } catch (e) {
      // A half-written batch would be duplicated by the retry; cut it off (only we write this file).
      if (done > 0) await fh.truncate(before).catch(() => {});
      throw new SluiceError('SINK', `cannot write '${displayPath(this.current)}': ${errorMessage(e)}`, { cause: e, retriable: true });
    }
    this.size = before + data.length;
  }

  private async openFile(now: number): Promise<void> {
    const bucket = fillTime(this.o.path, now);
    if (bucket !== this.bucket) {
      this.bucket = bucket;
      this.n = this.o.append && this.numbered ? await lastExisting(bucket) : 0;
    }
    for (;;) {
      const path = withSequence(bucket, this.n);
      const dir = dirname(path);
      try {
        await mkdir(dir, { recursive: true });
        const existed = await stat(path).then(
          () => true,
          () => false,
        );
        const fh = await open(path, this.o.append ? 'a' : 'w');
        this.fh = fh;
        this.current = path;
        this.size = (await fh.stat()).size;
        this.openedAt = now;
        // A new file's directory entry must be durable too, or a crash can lose the acknowledged file as a whole.
        if (this.o.fsync && !existed) await syncDir(dir);
      } catch (e) {
        await this.closeFile();
        throw new SluiceError('SINK', `cannot open '${displayPath(path)}' for writing: ${errorMessage(e)}`, {
          cause: e,
          retriable: !['EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'EROFS'].includes((e as NodeJS.ErrnoException).code ?? ''),
        });
      }
      this.ctx.log.debug({ path: this.current, size: this.size }, 'file sink: opened');
      if (this.o.rotate_size === undefined || this.size < this.o.rotate_size) return;
      // Appending after a restart to a file that is already full: go on with the next one.
      await this.closeFile();
      this.n++;
    }
  }

  private async closeFile(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    if (!fh) return;
    try {
      if (this.o.fsync) await fh.datasync();
    } finally {
      await fh.close();
    }
  }
}

const PIECE_KEY = 'file_in_progress';
/**
 * The writer keeps a little metadata per row group (and the journal a line per batch) until the footer is written, so a
 * file without rotate_size or rotate_interval is still completed after this many batches, which bounds both.
 */
const MAX_BATCHES_PER_FILE = 10_000;

interface PiecewiseFile {
  path: string;
  tmp: string;
  fh: FileHandle;
  journal: FileHandle;
  writer: FileWriter;
  size: number;
  journalSize: number;
  rows: number;
  batches: number;
  openedAt: number;
}

async function writeAllAt(fh: FileHandle, data: Uint8Array, at: number): Promise<void> {
  let done = 0;
  while (done < data.length) done += (await fh.write(data, done, data.length - done, at + done)).bytesWritten;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/** Appending after a restart continues the newest file of the series. */
async function lastExisting(bucket: string): Promise<number> {
  let n = 0;
  while (
    await stat(withSequence(bucket, n + 1)).then(
      () => true,
      () => false,
    )
  )
    n++;
  return n;
}

/** Where the sink would write now, whether that directory can be created and written. */
export async function checkWritable(o: FileSinkOptions): Promise<{ path: string; dir: string; existing?: number }> {
  const path = withSequence(fillTime(o.path, Date.now()), 0);
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  await access(dir, constants.W_OK);
  const st = await stat(path).catch(() => undefined);
  return { path, dir, existing: st?.size };
}
