// Byte-stream framing: cut a stream of Buffer chunks into records with exact byte positions, so a source can
// checkpoint "everything before offset N is done" and resume there.
//
// Lines are returned as strings decoded straight from the chunk (`chunk.toString('utf8', start, end)`): every decoder
// we feed (JSON.parse, CSV, text) wants a string anyway, so a Buffer view would only be decoded again later, and a
// string owns its memory, so the caller can reuse its read buffer for the next chunk. The only bytes copied are a
// record's incomplete tail at the end of a chunk (usually much less than one line per chunk).

import { isUtf8 } from 'node:buffer';
import { SluiceError } from '../core/errors.js';

const NL = 10;
const CR = 13;
const DQUOTE = 34;
const PREVIEW_BYTES = 256;

export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

export interface QuoteOptions {
  /** Bytes after which a `"` opens a quoted field (besides the start of a record). Default `,;\t|`. */
  delimiters?: string;
}

export interface LineSplitterOptions {
  /** Longest accepted line, terminator excluded. Longer lines come back as an error frame and are skipped. */
  maxLineBytes?: number;
  /**
   * CSV mode: a newline inside a double-quoted field does not end the record (`""` is an escaped quote). A quote
   * only opens a field at the start of a record or right after a delimiter, so a stray quote inside an unquoted
   * field cannot swallow the following lines.
   */
  quoteAware?: boolean | QuoteOptions;
  /** Absolute byte offset of the first byte that will be pushed (when resuming mid-file). Default 0. */
  startOffset?: number;
  /** Line number of the first line that will be pushed. Default 1. */
  startLine?: number;
  /** Skip a UTF-8 byte order mark at the very start. Default: true when `startOffset` is 0. */
  stripBom?: boolean;
}

/** One record cut from the stream. */
export interface LineFrame {
  /**
   * The line without its `\n` and without a trailing `\r`; its bytes when they are not valid UTF-8. For an error
   * frame: the first bytes of the line.
   */
  text: string | Buffer;
  /** Absolute byte offset of the record's first byte. */
  start: number;
  /** Absolute byte offset just past the record's `\n` (or past its last byte, for the frame `flush()` returns). */
  end: number;
  /** 1-based number of the physical line the record starts on. */
  line: number;
  /** Physical lines the record spans (more than 1 only for quoted newlines in CSV mode). */
  lines: number;
  /** Set when the line was longer than `maxLineBytes`; its bytes were dropped. */
  error?: SluiceError;
}

export class LineSplitter {
  private readonly max: number;
  private readonly quoted: boolean;
  private readonly delims: Uint8Array;
  private bomPending: boolean;

  /** Absolute offset of the next byte to be pushed. */
  private offset: number;
  /** Line number of the record currently being assembled. */
  private lineNo: number;

  // The record that started in an earlier chunk: copied pieces (or, once too long, only a count and a preview).
  private recStart = 0;
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private skipping = false;
  private preview = '';
  /** Newlines inside quoted fields of the current record, seen so far. */
  private recLines = 0;

  // CSV quote state, carried across chunk boundaries.
  private inQuotes = false;
  /** Inside quotes, the previous chunk ended with `"`: the next byte decides between `""` and a closing quote. */
  private quotePending = false;
  private sawQuote = false;
  /** Last byte of the previous chunk, to tell whether a `"` at index 0 starts a field. */
  private prevByte = NL;
  // Search caches for the current chunk, so scanning stays linear when the next `"` lies many lines ahead.
  private nlAt = -1;
  private qAt = -1;

  constructor(opts: LineSplitterOptions = {}) {
    this.max = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.quoted = !!opts.quoteAware;
    const delimiters = (typeof opts.quoteAware === 'object' && opts.quoteAware.delimiters) || ',;\t|';
    this.delims = new Uint8Array(256);
    for (const b of Buffer.from(delimiters, 'latin1')) this.delims[b] = 1;
    this.delims[NL] = 1;
    this.offset = opts.startOffset ?? 0;
    this.lineNo = opts.startLine ?? 1;
    this.bomPending = opts.stripBom ?? this.offset === 0;
  }

  /** Offset of the first byte not yet returned in a frame: where a reader restarting from scratch would begin. */
  get position(): number {
    return this.pending ? this.recStart : this.offset;
  }

  /** Line number of the next frame. */
  get nextLine(): number {
    return this.lineNo;
  }

  /** Whether an incomplete record is buffered. */
  get pending(): boolean {
    return this.partsBytes > 0 || this.skipping;
  }

  /** Complete records in `chunk` (plus the buffered tail before it). The chunk may be reused once this returns. */
  push(chunk: Buffer): LineFrame[] {
    const out: LineFrame[] = [];
    if (this.bomPending && chunk.length > 0) {
      this.bomPending = false;
      if (chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) {
        this.offset += 3;
        chunk = chunk.subarray(3);
      }
    }
    const len = chunk.length;
    if (len === 0) return out;
    this.nlAt = -1;
    this.qAt = -1;
    const base = this.offset;
    let p = 0;
    if (this.pending) {
      const e = this.findEnd(chunk, 0);
      if (e === -1) {
        this.keep(chunk, 0, base);
        this.offset += len;
        this.prevByte = chunk[len - 1]!;
        return out;
      }
      out.push(this.finishCarried(chunk, e, base + e + 1));
      p = e + 1;
    }
    while (p < len) {
      const e = this.findEnd(chunk, p);
      if (e === -1) break;
      out.push(this.frame(chunk, p, e, base + p, base + e + 1));
      p = e + 1;
    }
    if (p < len) this.keep(chunk, p, base);
    this.offset += len;
    this.prevByte = chunk[len - 1]!;
    return out;
  }

  /** The final record when the stream ends without a newline (end of a finite file); resets the quote state. */
  flush(): LineFrame[] {
    const out: LineFrame[] = [];
    if (this.pending) {
      if (this.skipping) out.push(this.tooLong(this.recStart, this.offset, this.partsBytes));
      else {
        const joined = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partsBytes);
        out.push(this.frame(joined, 0, joined.length, this.recStart, this.offset));
      }
    }
    this.resetRecord();
    this.inQuotes = false;
    this.quotePending = false;
    this.prevByte = NL;
    return out;
  }

  /** Index of the `\n` that ends the record continuing at `p`, or -1 when the record goes past this chunk. */
  private findEnd(buf: Buffer, p: number): number {
    if (!this.quoted) return buf.indexOf(NL, p);
    const len = buf.length;
    if (this.quotePending) {
      if (p >= len) return -1;
      this.quotePending = false;
      if (buf[p] === DQUOTE) p++;
      else this.inQuotes = false;
    }
    for (;;) {
      if (this.inQuotes) {
        const c = buf.indexOf(DQUOTE, p);
        if (c === -1) return -1;
        if (c + 1 === len) {
          this.quotePending = true;
          return -1;
        }
        if (buf[c + 1] === DQUOTE) p = c + 2;
        else {
          this.inQuotes = false;
          p = c + 1;
        }
        continue;
      }
      if (this.nlAt < p) {
        const i = buf.indexOf(NL, p);
        this.nlAt = i === -1 ? len : i;
      }
      if (this.qAt < p) {
        const i = buf.indexOf(DQUOTE, p);
        this.qAt = i === -1 ? len : i;
      }
      if (this.qAt < this.nlAt) {
        const q = this.qAt;
        const prev = q > 0 ? buf[q - 1]! : this.prevByte;
        // `\n` is in the set: a record start is a field start (at stream start prevByte is `\n` too).
        if (this.delims[prev] === 1) {
          this.inQuotes = true;
          this.sawQuote = true;
        }
        p = q + 1;
        continue;
      }
      return this.nlAt === len ? -1 : this.nlAt;
    }
  }

  /** Buffer `chunk[p..]` as the (start of the) incomplete record. */
  private keep(chunk: Buffer, p: number, base: number): void {
    if (!this.pending) {
      this.recStart = base + p;
      this.recLines = 0;
    }
    const n = chunk.length - p;
    if (this.sawQuote) this.recLines += countNewlines(chunk, p, chunk.length);
    if (!this.skipping && this.partsBytes + n > this.max) {
      this.skipping = true;
      this.preview = previewOf([...this.parts, chunk.subarray(p)]);
      this.parts = [];
    }
    if (!this.skipping) this.parts.push(Buffer.from(chunk.subarray(p)));
    this.partsBytes += n;
  }

  /** The buffered record completed by `chunk[0..e)`. */
  private finishCarried(chunk: Buffer, e: number, end: number): LineFrame {
    const total = this.partsBytes + e;
    if (this.skipping || total > this.max) {
      if (!this.skipping) this.preview = previewOf([...this.parts, chunk.subarray(0, e)]);
      if (this.sawQuote) this.recLines += countNewlines(chunk, 0, e);
      return this.tooLong(this.recStart, end, total);
    }
    const joined = Buffer.concat(e > 0 ? [...this.parts, chunk.subarray(0, e)] : this.parts, total);
    return this.frame(joined, 0, joined.length, this.recStart, end);
  }

  /** A frame for `buf[s..e)` (`e` is the newline's index, or the end of data). */
  private frame(buf: Buffer, s: number, e: number, start: number, end: number): LineFrame {
    const carried = this.pending;
    if (!carried && e - s > this.max) {
      this.preview = buf.toString('utf8', s, Math.min(e, s + PREVIEW_BYTES));
      if (this.sawQuote) this.recLines = countNewlines(buf, s, e);
      return this.tooLong(start, end, e - s);
    }
    let te = e;
    if (te > s && buf[te - 1] === CR) te--;
    // A record assembled from pieces is whole here, so its quoted newlines are counted once over all of it
    // (keep()'s running count only serves records too long to keep).
    const lines = this.sawQuote ? 1 + countNewlines(buf, s, e) : 1;
    let text: string | Buffer = buf.toString('utf8', s, te);
    // toString turns invalid UTF-8 into U+FFFD without a word; such a line goes on as (copied) bytes instead, so the
    // decoder reports the bad byte rather than passing on silently altered text.
    if (text.includes('\ufffd') && !isUtf8(buf.subarray(s, te))) text = Buffer.from(buf.subarray(s, te));
    const f: LineFrame = { text, start, end, line: this.lineNo, lines };
    this.lineNo += lines;
    this.resetRecord();
    return f;
  }

  private tooLong(start: number, end: number, bytes: number): LineFrame {
    const lines = 1 + this.recLines;
    const f: LineFrame = {
      text: this.preview,
      start,
      end,
      line: this.lineNo,
      lines,
      error: new SluiceError('DECODE', `line of ${bytes} bytes exceeds max_line_bytes (${this.max}); skipped`),
    };
    this.lineNo += lines;
    this.resetRecord();
    return f;
  }

  private resetRecord(): void {
    this.parts = [];
    this.partsBytes = 0;
    this.skipping = false;
    this.preview = '';
    this.recLines = 0;
    this.sawQuote = false;
  }
}

/** The first bytes of a record split over pieces, without joining a possibly huge record. */
function previewOf(pieces: Buffer[]): string {
  const head: Buffer[] = [];
  let n = 0;
  for (const b of pieces) {
    if (n >= PREVIEW_BYTES) break;
    head.push(b.subarray(0, PREVIEW_BYTES - n));
    n += head[head.length - 1]!.length;
  }
  // A multi-byte character cut at the end decodes to U+FFFD, which is fine for a preview.
  return Buffer.concat(head).toString('utf8');
}

function countNewlines(buf: Buffer, s: number, e: number): number {
  let n = 0;
  for (let i = buf.indexOf(NL, s); i !== -1 && i < e; i = buf.indexOf(NL, i + 1)) n++;
  return n;
}

// ---- length-delimited ----------------------------------------------------------------------------------------

export interface LengthDelimitedOptions {
  /** Largest accepted payload; a longer frame comes back as an error frame and its payload is skipped. */
  maxFrameBytes?: number;
  startOffset?: number;
  /** Number of the first frame that will be pushed. Default 1. */
  startIndex?: number;
}

export interface LengthFrame {
  /** The payload (its own copy: the caller may reuse the chunk). Empty for an error frame. */
  payload: Buffer;
  /** Absolute offset of the frame's length prefix. */
  start: number;
  /** Absolute offset just past the payload. */
  end: number;
  /** 1-based frame number. */
  index: number;
  error?: SluiceError;
}

const EMPTY = Buffer.alloc(0);

/** Frames of a 4-byte big-endian length followed by that many payload bytes. */
export class LengthDelimitedSplitter {
  private readonly max: number;
  private offset: number;
  private index: number;
  private readonly hdr = Buffer.alloc(4);
  private hdrFill = 0;
  /** Payload length of the current frame, or -1 while reading a length prefix. */
  private need = -1;
  private got = 0;
  private frameStart = 0;
  private parts: Buffer[] = [];
  private skipping = false;

  constructor(opts: LengthDelimitedOptions = {}) {
    this.max = opts.maxFrameBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.offset = opts.startOffset ?? 0;
    this.index = opts.startIndex ?? 1;
  }

  get position(): number {
    return this.pending ? this.frameStart : this.offset;
  }

  get nextIndex(): number {
    return this.index;
  }

  get pending(): boolean {
    return this.hdrFill > 0 || this.need >= 0;
  }

  push(chunk: Buffer): LengthFrame[] {
    const out: LengthFrame[] = [];
    const len = chunk.length;
    const base = this.offset;
    let p = 0;
    while (p < len) {
      if (this.need < 0) {
        if (this.hdrFill === 0 && len - p >= 4) {
          this.frameStart = base + p;
          this.begin(chunk.readUInt32BE(p));
          p += 4;
        } else {
          if (this.hdrFill === 0) this.frameStart = base + p;
          const take = Math.min(4 - this.hdrFill, len - p);
          chunk.copy(this.hdr, this.hdrFill, p, p + take);
          this.hdrFill += take;
          p += take;
          if (this.hdrFill < 4) break;
          this.hdrFill = 0;
          this.begin(this.hdr.readUInt32BE(0));
        }
        if (this.need === 0) out.push(this.done(EMPTY, base + p));
        continue;
      }
      const take = Math.min(len - p, this.need - this.got);
      if (!this.skipping && this.got === 0 && take === this.need) {
        out.push(this.done(Buffer.from(chunk.subarray(p, p + take)), base + p + take));
        p += take;
        continue;
      }
      if (!this.skipping) this.parts.push(Buffer.from(chunk.subarray(p, p + take)));
      this.got += take;
      p += take;
      if (this.got === this.need) {
        out.push(this.done(this.skipping ? EMPTY : Buffer.concat(this.parts, this.need), base + p));
      }
    }
    this.offset += len;
    return out;
  }

  /** At the end of a finite stream: an error frame for a truncated trailing frame, if any. */
  flush(): LengthFrame[] {
    if (!this.pending) return [];
    const have = this.need < 0 ? this.hdrFill : 4 + this.got;
    const want = this.need < 0 ? 4 : 4 + this.need;
    const f: LengthFrame = {
      payload: this.skipping ? EMPTY : Buffer.concat(this.parts),
      start: this.frameStart,
      end: this.offset,
      index: this.index++,
      error: new SluiceError('DECODE', `truncated frame: ${have} of ${want} bytes before end of data`),
    };
    this.hdrFill = 0;
    this.reset();
    return [f];
  }

  private begin(n: number): void {
    this.need = n;
    this.got = 0;
    this.skipping = n > this.max;
  }

  private done(payload: Buffer, end: number): LengthFrame {
    const f: LengthFrame = { payload, start: this.frameStart, end, index: this.index++ };
    if (this.skipping) {
      f.error = new SluiceError('DECODE', `frame of ${this.need} bytes exceeds the limit of ${this.max} bytes; skipped`);
    }
    this.reset();
    return f;
  }

  private reset(): void {
    this.need = -1;
    this.got = 0;
    this.parts = [];
    this.skipping = false;
  }
}

/** Payloads as one buffer of length-prefixed frames. */
export function encodeLengthDelimited(payloads: Iterable<string | Uint8Array>): Buffer {
  const bufs: Uint8Array[] = [];
  let total = 0;
  for (const p of payloads) {
    const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    if (b.length > 0xffffffff) throw new SluiceError('INTERNAL', `payload of ${b.length} bytes is too large for a 4-byte length prefix`);
    bufs.push(b);
    total += 4 + b.length;
  }
  const out = Buffer.allocUnsafe(total);
  let p = 0;
  for (const b of bufs) {
    out.writeUInt32BE(b.length, p);
    out.set(b, p + 4);
    p += 4 + b.length;
  }
  return out;
}
