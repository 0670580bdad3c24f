// Exactly-once file output (`commit_mode: exactly_once`). Records go to a hidden in-progress file beside the final
// name; after each batch's bytes are on disk, a small manifest in the pipeline's data directory records (atomically:
// written aside, then renamed) how many bytes of that file are committed and the source position they complete. The
// in-progress file is renamed to its final name when it rotates or the pipeline stops. After a crash the in-progress
// file is cut back to its committed length and the source resumes from the manifest's position, so every record ends
// up in the output exactly once. A final file is never written to again.

import { mkdir, open, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { SluiceRecord, SourcePosition } from '../../core/types.js';
import { displayPath } from './paths.js';

interface Manifest {
  v: 1;
  position?: SourcePosition;
  /** The file being written under its in-progress name and how many of its bytes are committed. */
  open?: { tmp: string; final: string; length: number; bucket: string; n: number; openedAt: number };
  /** A complete file on its way to its final name: finished on recovery if the rename did not happen. */
  renaming?: { tmp: string; final: string };
  /** Time bucket and number of the last file started, so numbering goes on after a restart. */
  bucket?: string;
  n?: number;
}

export interface CommitOptions {
  path: string;
  rotate_size?: number;
  rotate_interval?: number;
  fsync: boolean;
  /** The path with {date}/{hour} filled for `now`. */
  bucketAt(now: number): string;
  /** The n-th file of a bucket's series. */
  nth(bucket: string, n: number): string;
  /** Encodes records; `first` for the first piece of a file (a CSV header). */
  encode(records: SluiceRecord[], first: boolean): Uint8Array;
  /** Every batch is a complete file (Parquet). */
  wholeFile: boolean;
}

/** The hidden name a file has while it is written: `.name.inprogress` in the same directory. */
export const inProgressName = (final: string) => join(dirname(final), `.${basename(final)}.inprogress`);

export class CommittedFiles {
  private m: Manifest = { v: 1 };
  private fh?: FileHandle;

  constructor(
    private readonly o: CommitOptions,
    /** Where the manifest lives (the pipeline's data directory). */
    private readonly manifestPath: string,
    private readonly log: Logger,
  ) {}

  /** Recover from the manifest: finish an interrupted rename, cut the in-progress file back to its committed bytes. */
  async open(): Promise<void> {
    let text: string | undefined;
    try {
      text = await readFile(this.manifestPath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw this.err(`cannot read the commit manifest '${this.manifestPath}'`, e);
    }
    if (text !== undefined) {
      try {
        this.m = JSON.parse(text) as Manifest;
      } catch (e) {
        // Written aside and renamed, so never half-written: a broken one was edited by hand.
        throw new SluiceError('CONFIG', `file sink: the commit manifest '${this.manifestPath}' is not valid JSON (${errorMessage(e)}); restore it or delete it to start over`);
      }
    }
    await this.finishRename();
    const cur = this.m.open;
    if (cur) {
      if (await exists(cur.tmp)) {
        const fh = await open(cur.tmp, 'r+');
        // Whatever lies past the committed length was written but never committed: the source sends it again.
        await fh.truncate(cur.length);
        this.fh = fh;
        this.log.debug({ path: displayPath(cur.tmp), length: cur.length }, 'file sink: continuing the in-progress file');
      } else {
        this.log.warn({ path: displayPath(cur.tmp) }, 'file sink: the in-progress file is gone (deleted by hand?); its committed records are not in the output');
        this.m.open = undefined;
      }
    }
  }

  position(): SourcePosition | undefined {
    return this.m.position;
  }

  async write(records: SluiceRecord[], position: SourcePosition | undefined): Promise<void> {
    await this.finishRename();
    const now = Date.now();
    const bucket = this.o.bucketAt(now);
    if (this.o.wholeFile) return this.writeWhole(records, position, bucket, now);
    let cur = this.m.open;
    if (cur && this.due(cur, bucket, now)) {
      // Nothing of this batch is committed yet: a failure here fails the write and its retry starts over.
      await this.roll();
      cur = undefined;
    }
    if (!cur) cur = await this.start(bucket, now);
    const data = this.o.encode(records, cur.length === 0);
    const fh = this.fh!;
    try {
      // Positional: a retry after a failed write overwrites what the failed attempt left past the committed length.
      for (let done = 0; done < data.length; ) done += (await fh.write(data, done, data.length - done, cur.length + done)).bytesWritten;
      if (this.o.fsync) await fh.datasync();
    } catch (e) {
      throw this.err(`cannot write '${displayPath(cur.tmp)}'`, e);
    }
    const next = { ...cur, length: cur.length + data.length };
    // The commit point: bytes and position together.
    await this.save({ ...this.m, open: next, position: position ?? this.m.position });
    if (this.due(next, bucket, now)) {
      // The batch is committed: failing the write now would make the runtime write it again.
      await this.roll().catch((e: unknown) => this.log.warn({ err: errorMessage(e) }, 'file sink: rotating the complete file failed; retrying with the next batch'));
    }
  }

  /** Rename the in-progress file (complete now) to its final name, or drop it when nothing was committed to it. */
  async close(): Promise<void> {
    await this.finishRename();
    if (this.m.open) await this.roll();
    await this.fh?.close().catch(() => {});
    this.fh = undefined;
  }

  /** The in-progress file must become final before more goes in: a new hour or day, or a rotation limit reached. */
  private due(cur: NonNullable<Manifest['open']>, bucket: string, now: number): boolean {
    if (cur.bucket !== bucket) return true;
    if (cur.length === 0) return false;
    if (this.o.rotate_size !== undefined && cur.length >= this.o.rotate_size) return true;
    return this.o.rotate_interval !== undefined && now - cur.openedAt >= this.o.rotate_interval;
  }

  private async start(bucket: string, now: number): Promise<NonNullable<Manifest['open']>> {
    let n = this.m.bucket === bucket && this.m.n !== undefined ? this.m.n + 1 : 0;
    // A final file is never appended to or replaced: the series goes on with the first free number.
    while ((await exists(this.o.nth(bucket, n))) || this.m.renaming?.final === this.o.nth(bucket, n)) n++;
    const final = this.o.nth(bucket, n);
    const tmp = inProgressName(final);
    try {
      await mkdir(dirname(final), { recursive: true });
      // Anything already there is an uncommitted leftover of a crash.
      this.fh = await open(tmp, 'w');
      if (this.o.fsync) await syncDir(dirname(final));
    } catch (e) {
      throw this.err(`cannot create '${displayPath(tmp)}'`, e);
    }
    const cur = { tmp, final, length: 0, bucket, n, openedAt: now };
    this.m = { ...this.m, open: cur, bucket, n };
    return cur;
  }

  /** Make the in-progress file final; `position` commits with it (whole files). */
  private async roll(position?: SourcePosition): Promise<void> {
    const cur = this.m.open!;
    const fh = this.fh;
    if (cur.length === 0) {
      await this.save({ ...this.m, open: undefined });
      this.fh = undefined;
      await fh?.close().catch(() => {});
      await unlink(cur.tmp).catch(() => {});
      return;
    }
    try {
      // A failed write may have left bytes past the committed length.
      await fh?.truncate(cur.length);
      if (this.o.fsync) await fh?.datasync();
    } catch (e) {
      throw this.err(`cannot finish '${displayPath(cur.tmp)}'`, e);
    }
    // The manifest first: a crash before the rename is finished by the next start.
    await this.save({ ...this.m, open: undefined, renaming: { tmp: cur.tmp, final: cur.final }, position: position ?? this.m.position });
    this.fh = undefined;
    await fh?.close().catch(() => {});
    await this.finishRename();
  }

  /** Rename a complete file to its final name; a failure is retried by the next write, close or start. */
  private async finishRename(): Promise<void> {
    const r = this.m.renaming;
    if (!r) return;
    try {
      if (await exists(r.tmp)) {
        await rename(r.tmp, r.final);
        if (this.o.fsync) await syncDir(dirname(r.final));
      }
      this.m.renaming = undefined;
      this.log.debug({ path: displayPath(r.final) }, 'file sink: committed a complete file');
    } catch (e) {
      this.log.warn({ err: errorMessage(e), path: displayPath(r.final) }, 'file sink: renaming a complete file to its final name failed; retrying later');
    }
  }

  private async writeWhole(records: SluiceRecord[], position: SourcePosition | undefined, bucket: string, now: number): Promise<void> {
    const cur = await this.start(bucket, now);
    const data = this.o.encode(records, true);
    try {
      for (let done = 0; done < data.length; ) done += (await this.fh!.write(data, done, data.length - done, done)).bytesWritten;
      if (this.o.fsync) await this.fh!.datasync();
      this.m.open = { ...cur, length: data.length };
      await this.roll(position);
    } catch (e) {
      if (this.m.open) {
        // Not committed: the file goes, the retry writes it again.
        this.m.open = undefined;
        await this.fh?.close().catch(() => {});
        this.fh = undefined;
        await unlink(cur.tmp).catch(() => {});
      }
      throw e instanceof SluiceError ? e : this.err(`cannot write '${displayPath(cur.tmp)}'`, e);
    }
  }

  /** Write the manifest aside, sync it, rename it over the old one: readers see the old or the new, never a mix. */
  private async save(m: Manifest): Promise<void> {
    const tmp = `${this.manifestPath}.tmp`;
    try {
      await mkdir(dirname(this.manifestPath), { recursive: true });
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(JSON.stringify(m));
        if (this.o.fsync) await fh.datasync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.manifestPath);
      if (this.o.fsync) await syncDir(dirname(this.manifestPath));
    } catch (e) {
      throw this.err(`cannot write the commit manifest '${this.manifestPath}'`, e);
    }
    this.m = m;
  }

  private err(what: string, e: unknown): SluiceError {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    return new SluiceError('SINK', `file sink: ${what}: ${errorMessage(e)}`, { cause: e, retriable: !['EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'EROFS'].includes(code) });
  }
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

export async function syncDir(dir: string): Promise<void> {
  // Not every platform can open a directory for fsync (Windows); the file's own data is synced regardless.
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // best effort
  } finally {
    await fh?.close().catch(() => {});
  }
}
