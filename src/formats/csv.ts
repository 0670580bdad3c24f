// CSV through csv-parse / csv-stringify. Values stay strings here; the schema stage types them.

import { isUtf8 } from 'node:buffer';
import { createRequire } from 'node:module';
import type { Parser as CsvParser } from 'csv-parse';
import type { parse as csvParseSync, Options as ParseOptions } from 'csv-parse/sync';
import type { stringify as csvStringify, Options as StringifyOptions } from 'csv-stringify/sync';
import { z, bool, list, opt } from '../core/spec.js';
import { RecordError } from '../core/errors.js';
import type { Decoder, Encoder, Format, SchemaSpec } from '../core/types.js';
import { stringifyJson } from './json.js';
import { asBuffer, invalidUtf8Offset, toBase64 } from './util.js';

export const csvOptions = z.strictObject({
  delimiter: opt(z.string().min(1).default(','), { description: 'Field separator.', aliases: ['separator', 'sep'] }),
  header: bool({
    default: true,
    description:
      'The first row of each stream is a header: decoding takes column names from it (or skips it when `columns` is set) and encoding writes one.',
    aliases: ['header_row', 'has_header'],
  }),
  columns: list(z.string().min(1), {
    description: 'Column names, in order. Overrides the header row and the schema.',
  }).optional(),
  quote: opt(z.string().length(1).default('"'), { description: 'Quote character.' }),
  escape: opt(z.string().length(1).default('"'), { description: 'Escapes a quote inside a quoted field.' }),
  skip_empty_lines: bool({ default: true, description: 'Ignore empty lines instead of decoding them as rows.' }),
  trim: bool({ default: false, description: 'Remove spaces and tabs around unquoted and quoted fields.' }),
  null_value: opt(z.string().optional(), {
    description: 'A field equal to this text decodes as null (e.g. "NULL" or "\\N"); null encodes as an empty field either way.',
    aliases: ['null_string'],
  }),
});

export interface CsvOptions {
  delimiter: string;
  header: boolean;
  columns?: string[];
  quote: string;
  escape: string;
  skip_empty_lines: boolean;
  trim: boolean;
  null_value?: string;
}

export function csvFormat(o: CsvOptions, schema?: SchemaSpec): Format {
  return {
    name: 'csv',
    decoder: () => new CsvDecoder(o, schema),
    encoder: () => new CsvEncoder(o, schema),
  };
}

type OnError = (err: Error, raw: string | Uint8Array) => void;

/** The part of csv-parse's parser object that parses a buffer (not in its typings). */
interface CsvApi {
  parse(buf: Buffer, end: boolean, push: (rec: string[]) => void, close: () => void): Error | undefined;
}

const noop = () => {};

// csv-parse and csv-stringify load when the first CSV decoder or encoder is created, not with the format table, so a
// pipeline without CSV does not pay for them at start-up (their ES module builds are 18 modules, ~10 ms; issue 9).
// require() picks their CommonJS builds, one file each, the same code.
const require = createRequire(import.meta.url);
let Parser: typeof CsvParser;
let parseSync: typeof csvParseSync;
let stringify: typeof csvStringify;

let parseLoaded = false;

function loadCsvParse(): void {
  if (parseLoaded) return;
  Parser = (require('csv-parse') as { Parser: typeof CsvParser }).Parser;
  parseSync = (require('csv-parse/sync') as { parse: typeof csvParseSync }).parse;
  parseLoaded = true;
}

function loadCsvStringify(): void {
  stringify ??= (require('csv-stringify/sync') as { stringify: typeof csvStringify }).stringify;
}

class CsvDecoder implements Decoder {
  private readonly parseOpts: ParseOptions;
  private readonly nullValue: string | undefined;
  /** Set when csv-parse's reading can be matched in JS (see `decodePlain`). */
  private readonly plain: PlainSplit | undefined;
  private api: CsvApi | undefined;
  private readonly recs: string[][] = [];
  private readonly push = (rec: string[]) => {
    this.recs.push(rec);
  };
  /** The next record is a header row. */
  private pendingHeader: boolean;
  private columns: string[] | undefined;
  private columnsFrom: string;
  private build: ((rec: string[]) => Record<string, unknown>) | undefined;
  /** `columns` compiled into a one-pass line splitter, for `decodePlain`. */
  private splitLine: LineParser | undefined;
  /** A payload has been decoded: a BOM is no longer stripped. */
  private started = false;
  /** Scratch for `readRecord`: rows copy the values out, so one array serves every record. */
  private readonly fields: string[] = [];

  constructor(o: CsvOptions, schema?: SchemaSpec) {
    loadCsvParse();
    this.parseOpts = {
      delimiter: o.delimiter,
      quote: o.quote,
      escape: o.escape,
      skip_empty_lines: o.skip_empty_lines,
      trim: o.trim,
      // A known set of line endings: auto-detection costs a Buffer allocation per character until the first one.
      record_delimiter: ['\r\n', '\n', '\r'],
      relax_column_count: true,
      // The decoder strips the BOM itself: csv-parse would strip one at the start of whichever payload it sees first,
      // which need not be the stream's first once quote-free payloads bypass it.
      bom: false,
    };
    this.nullValue = o.null_value;
    this.plain = plainSplit(o);
    this.api = newApi(this.parseOpts);
    this.pendingHeader = o.header;
    this.columnsFrom = 'header';
    if (o.columns) {
      this.setColumns(o.columns, 'columns');
    } else if (!o.header && schema) {
      this.setColumns(
        schema.fields.filter((f) => f.metadata === undefined).map((f) => f.name),
        'schema',
      );
    }
  }

  decode(payload: string | Uint8Array, out: unknown[], onError: OnError): void {
    let buf: Buffer | undefined;
    let text: string;
    if (typeof payload === 'string') text = payload;
    else {
      buf = asBuffer(payload);
      if (!isUtf8(buf)) {
        onError(new RecordError('DECODE', `invalid UTF-8 at byte ${invalidUtf8Offset(buf)}`), payload);
        return;
      }
      text = buf.toString('utf8');
    }
    if (!this.started) {
      // A BOM is a marker only at the start of the stream; later on it is text.
      this.started = true;
      if (text.charCodeAt(0) === BOM) {
        text = text.slice(1);
        buf = undefined;
      }
    }
    if (this.plain !== undefined && this.decodePlain(text, this.plain, out)) return;
    buf ??= Buffer.from(text, 'utf8');
    const recs = this.recs;
    recs.length = 0;
    if (this.parseFast(buf)) {
      const mark = out.length;
      const pendingHeader = this.pendingHeader;
      const columns = this.columns;
      const columnsFrom = this.columnsFrom;
      let ok = true;
      for (let i = 0; i < recs.length; i++) {
        const rec = recs[i]!;
        if (this.pendingHeader) {
          this.takeHeader(rec);
          continue;
        }
        if (this.columns === undefined) this.setColumns(positionalNames(rec.length), 'the first row');
        if (rec.length !== this.columns!.length) {
          ok = false;
          break;
        }
        out.push(this.build!(rec));
      }
      recs.length = 0;
      if (ok) return;
      // Undo this payload and redo it with raw line text, which only the slow path collects.
      out.length = mark;
      this.restore(pendingHeader, columns, columnsFrom);
    }
    this.decodeSlow(buf, payload, out, onError);
  }

  /**
   * Decode a payload in JS when its text is one csv-parse reads without surprises: no CR. Quote-free text
   * has no quoting or escaping, so its records are its lines and its fields the text between delimiters, exactly as
   * csv-parse reads them; text with quotes goes through `readRecord` (RFC 4180 quoting, `""` for a quote). This
   * skips the string -> Buffer -> csv-parse -> string round trip and its per-field buffers.
   * False (with nothing appended and no state changed) hands the payload to csv-parse: CRs, quoting that is
   * not plain RFC 4180, or a row whose field count is wrong (the slow path reports those with their raw line).
   */
  private decodePlain(text: string, plain: PlainSplit, out: unknown[]): boolean {
    if (text.indexOf('\r') !== -1) return false;
    const quoted = text.indexOf(plain.quote) !== -1;
    if (quoted && !plain.quoting) return false;
    // The file source hands over one line at a time: the common case, with no line loop and nothing to undo.
    if (!quoted && this.columns !== undefined && !this.pendingHeader && text.indexOf('\n') === -1) {
      // csv-parse ends an empty input with no record, even with skip_empty_lines off.
      return text.length === 0 || this.plainRow(text, out);
    }
    return this.plainRows(text, plain, quoted, out);
  }

  /** One quote-free line whose columns are known: one pass over it, one object out. */
  private plainRow(line: string, out: unknown[]): boolean {
    if (this.splitLine !== undefined) {
      const row = this.splitLine(line);
      if (row === undefined) return false;
      out.push(row);
      return true;
    }
    const rec = line.split(this.plain!.delimiter);
    if (rec.length !== this.columns!.length) return false;
    out.push(this.build!(rec));
    return true;
  }

  /** Several records, or one that may be the header: all or nothing, so a bad row leaves no trace for the slow path. */
  private plainRows(text: string, plain: PlainSplit, quoted: boolean, out: unknown[]): boolean {
    const mark = out.length;
    const pendingHeader = this.pendingHeader;
    const columns = this.columns;
    const columnsFrom = this.columnsFrom;
    const fields = this.fields;
    for (let p = 0; p < text.length; ) {
      // Quoted text is read into `fields`; a quote-free line stays a string for the compiled line parser.
      let line: string | undefined;
      if (text.charCodeAt(p) === NL) {
        p++;
        if (plain.skipEmpty) continue;
        fields.length = 0;
        fields.push('');
      } else if (quoted) {
        p = readRecord(text, p, plain, fields);
        if (p < 0) return this.undo(out, mark, pendingHeader, columns, columnsFrom);
      } else {
        let end = text.indexOf('\n', p);
        if (end === -1) end = text.length;
        line = text.slice(p, end);
        p = end + 1;
      }
      if (this.pendingHeader) {
        this.takeHeader(line === undefined ? fields : line.split(plain.delimiter));
        continue;
      }
      if (this.columns === undefined) {
        this.setColumns(positionalNames(line === undefined ? fields.length : line.split(plain.delimiter).length), 'the first row');
      }
      if (line !== undefined) {
        if (!this.plainRow(line, out)) return this.undo(out, mark, pendingHeader, columns, columnsFrom);
      } else {
        if (fields.length !== this.columns!.length) return this.undo(out, mark, pendingHeader, columns, columnsFrom);
        out.push(this.build!(fields));
      }
    }
    return true;
  }

  private undo(out: unknown[], mark: number, pendingHeader: boolean, columns: string[] | undefined, columnsFrom: string): false {
    out.length = mark;
    this.restore(pendingHeader, columns, columnsFrom);
    return false;
  }

  /** Back to the state before a payload. Columns are only ever set once, so the undo is from "none yet". */
  private restore(pendingHeader: boolean, columns: string[] | undefined, columnsFrom: string): void {
    this.pendingHeader = pendingHeader;
    if (columns === undefined) this.columns = this.build = this.splitLine = undefined;
    this.columnsFrom = columnsFrom;
  }

  /** Parse into `recs`; false when the payload needs the slow path (a malformed record). */
  private parseFast(buf: Buffer): boolean {
    if (this.api) {
      const err = this.api.parse(buf, true, this.push, noop);
      if (err === undefined) return true;
      // The parser keeps its half-read record after an error; start over clean.
      this.api = newApi(this.parseOpts);
      return false;
    }
    try {
      for (const r of parseSync(buf, this.parseOpts) as string[][]) this.recs.push(r);
      return true;
    } catch {
      return false;
    }
  }

  private decodeSlow(buf: Buffer, payload: string | Uint8Array, out: unknown[], onError: OnError): void {
    let items: Array<{ record: string[]; raw: string }>;
    try {
      items = parseSync(buf, {
        ...this.parseOpts,
        raw: true,
        skip_records_with_error: true,
        on_skip: (err, raw) => {
          onError(new RecordError('DECODE', `invalid CSV: ${err?.message ?? 'unreadable record'}`), trimLineEnd(raw ?? ''));
        },
      }) as unknown as Array<{ record: string[]; raw: string }>;
    } catch (e) {
      onError(new RecordError('DECODE', `invalid CSV: ${e instanceof Error ? e.message : String(e)}`), payload);
      return;
    }
    for (const { record, raw } of items) {
      if (this.pendingHeader) {
        this.takeHeader(record);
        continue;
      }
      if (this.columns === undefined) this.setColumns(positionalNames(record.length), 'the first row');
      const want = this.columns!.length;
      if (record.length !== want) {
        const has = this.columnsFrom === 'header' ? `header has ${want}` : `${this.columnsFrom} has ${want}`;
        onError(new RecordError('DECODE', `row has ${record.length} field${record.length === 1 ? '' : 's'}, ${has}`), trimLineEnd(raw));
        continue;
      }
      out.push(this.build!(record));
    }
  }

  private takeHeader(rec: string[]): void {
    this.pendingHeader = false;
    // With `columns` configured the file's header row is skipped, not used.
    if (this.columns !== undefined) return;
    this.setColumns(
      rec.map((name, i) => name || `column${i + 1}`),
      'header',
    );
  }

  private setColumns(cols: string[], from: string): void {
    this.columns = cols;
    this.columnsFrom = from === 'columns' ? '`columns`' : from;
    this.build = compileRowBuilder(cols, this.nullValue);
    this.splitLine = this.plain && cols.length <= MAX_COMPILED_COLUMNS ? compileLineParser(cols, this.plain.delimiter, this.nullValue) : undefined;
  }
}

const BOM = 0xfeff;
const NL = 10;

/** What `decodePlain` needs; absent when the options make plain splitting differ from csv-parse. */
interface PlainSplit {
  delimiter: string;
  quote: string;
  quoteCode: number;
  /** Quoted fields can be read by `readRecord`: the escape is the quote itself (`""`), as in RFC 4180. */
  quoting: boolean;
  skipEmpty: boolean;
}

function plainSplit(o: CsvOptions): PlainSplit | undefined {
  // trim strips spaces around fields (csv-parse's rules): rare, so it keeps csv-parse. A delimiter containing the
  // quote or a line break would make "no quote, no CR" a wrong test for "no quoting".
  if (o.trim || o.delimiter.includes(o.quote) || /[\r\n]/.test(o.delimiter)) return undefined;
  return {
    delimiter: o.delimiter,
    quote: o.quote,
    quoteCode: o.quote.charCodeAt(0),
    quoting: o.escape === o.quote,
    skipEmpty: o.skip_empty_lines,
  };
}

/**
 * Read the record starting at `p` (not at a line end) into `fields`: the position after its newline (or the end of
 * the text), or -1 where csv-parse would report an error or reads differently (an unclosed quote, a quote inside an
 * unquoted field, text between a closing quote and the next delimiter). The caller has ruled out CRs.
 */
function readRecord(text: string, p: number, plain: PlainSplit, fields: string[]): number {
  const { delimiter, quote, quoteCode } = plain;
  const len = text.length;
  fields.length = 0;
  // Next newline and next quote at or after p, found once and moved on only when p passes them.
  let nl = -1;
  let nq = -1;
  for (;;) {
    if (text.charCodeAt(p) === quoteCode) {
      let value = '';
      let from = p + 1;
      for (;;) {
        const k = text.indexOf(quote, from);
        if (k === -1) return -1;
        if (text.charCodeAt(k + 1) === quoteCode) {
          value += text.slice(from, k + 1);
          from = k + 2;
          continue;
        }
        value += text.slice(from, k);
        p = k + 1;
        break;
      }
      fields.push(value);
      if (p === len) return len;
      if (text.charCodeAt(p) === NL) return p + 1;
      if (!text.startsWith(delimiter, p)) return -1;
      p += delimiter.length;
      continue;
    }
    if (nl < p) {
      nl = text.indexOf('\n', p);
      if (nl === -1) nl = len;
    }
    if (nq < p) {
      nq = text.indexOf(quote, p);
      if (nq === -1) nq = len;
    }
    const d = text.indexOf(delimiter, p);
    const stop = d !== -1 && d < nl ? d : nl;
    if (nq < stop) return -1;
    fields.push(text.slice(p, stop));
    if (stop === nl) return nl === len ? len : nl + 1;
    p = stop + delimiter.length;
  }
}

/** Above this many columns the generated line parser gets too big to optimise well; split() is used instead. */
const MAX_COMPILED_COLUMNS = 200;

type LineParser = (line: string) => Record<string, unknown> | undefined;

/**
 * A function reading one quote-free line straight into a row object: an indexOf and a slice per field, no array of
 * fields in between, and undefined when the line has more or fewer fields than `cols`.
 */
function compileLineParser(cols: string[], delimiter: string, nullValue: string | undefined): LineParser {
  const last = cols.length - 1;
  let body = 'var p = 0, e = 0;\n';
  for (let i = 0; i < last; i++) {
    body += `e = s.indexOf(d, p); if (e === -1) return undefined; var v${i} = s.slice(p, e); p = e + dl;\n`;
  }
  body += `if (s.indexOf(d, p) !== -1) return undefined; var v${last} = p === 0 ? s : s.slice(p);\n`;
  body += `return ${rowLiteral(cols, nullValue, (i) => `v${i}`)};`;
  return new Function('d', 'dl', 'nv', `"use strict"; return function csvLine(s) { ${body} };`)(delimiter, delimiter.length, nullValue);
}

/**
 * The source of an object literal with the keys `cols`, the i-th value being the expression `value(i)` (with
 * `null_value` read as null, compared against the generated function's `nv`). Keys are emitted as JSON string literals,
 * which are valid JS string literals; one literal gives every row one hidden class and no per-field keyed stores.
 */
function rowLiteral(cols: string[], nullValue: string | undefined, value: (i: number) => string): string {
  const props = cols.map((c, i) => {
    // A literal `"__proto__": x` sets the prototype; the computed form defines an own property.
    const key = c === '__proto__' ? `[${JSON.stringify(c)}]` : JSON.stringify(c);
    const v = value(i);
    return `${key}: ${nullValue === undefined ? v : `(${v} === nv ? null : ${v})`}`;
  });
  return `{ ${props.join(', ')} }`;
}

function newApi(opts: ParseOptions): CsvApi | undefined {
  // csv-parse's stream Parser holds its reusable core as `api`. Reusing it skips option normalisation and state
  // setup, which cost several times the parse of a one-line payload. If a release drops it we use the sync API.
  const api = (new Parser(opts) as unknown as { api?: CsvApi }).api;
  return api && typeof api.parse === 'function' ? api : undefined;
}

function positionalNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `column${i + 1}`);
}

function trimLineEnd(s: string): string {
  let e = s.length;
  while (e > 0 && (s.charCodeAt(e - 1) === 10 || s.charCodeAt(e - 1) === 13)) e--;
  return e === s.length ? s : s.slice(0, e);
}

/** A function turning a record's fields into a row object (see rowLiteral). */
function compileRowBuilder(cols: string[], nullValue: string | undefined): (rec: string[]) => Record<string, unknown> {
  return new Function('nv', `"use strict"; return function csvRow(r) { return ${rowLiteral(cols, nullValue, (i) => `r[${i}]`)}; };`)(nullValue);
}

// ---- encoding ------------------------------------------------------------------------------------------------

class CsvEncoder implements Encoder {
  readonly extension = 'csv';
  private columns: string[] | undefined;
  private readonly header: boolean;
  private readonly lineOpts: StringifyOptions;
  private readonly streamOpts: StringifyOptions;

  constructor(o: CsvOptions, schema?: SchemaSpec) {
    loadCsvStringify();
    this.columns = o.columns ?? schema?.fields.map((f) => f.name);
    this.header = o.header;
    this.lineOpts = { delimiter: o.delimiter, quote: o.quote, escape: o.escape, record_delimiter: '\n', eof: false };
    this.streamOpts = { ...this.lineOpts, eof: true };
  }

  encode(value: unknown): string {
    return stringify([this.cells(value, this.columnsFor(value))], this.lineOpts);
  }

  encodeStream(values: unknown[], first: boolean): string {
    const cols = values.length ? this.columnsFor(values[0]) : this.columns;
    const recs: string[][] = [];
    if (first && this.header && cols) recs.push(cols);
    for (let i = 0; i < values.length; i++) recs.push(this.cells(values[i], cols!));
    return recs.length ? stringify(recs, this.streamOpts) : '';
  }

  /** Fixed by the first row this encoder sees when neither `columns` nor a schema named them. */
  private columnsFor(row: unknown): string[] {
    if (this.columns === undefined) {
      this.columns = isRow(row) ? Object.keys(row) : ['value'];
    }
    return this.columns;
  }

  private cells(row: unknown, cols: string[]): string[] {
    const out = new Array<string>(cols.length);
    if (!isRow(row)) {
      out.fill('');
      out[0] = cell(row);
      return out;
    }
    for (let i = 0; i < cols.length; i++) out[i] = cell(row[cols[i]!]);
    return out;
  }
}

function isRow(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v) && !(v instanceof Date);
}

/** Every cell becomes text here, so csv-stringify only quotes (its own casts would write booleans as 1/''). */
function cell(v: unknown): string {
  switch (typeof v) {
    case 'string':
      return v;
    case 'number':
    case 'bigint':
      return String(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'undefined':
      return '';
    case 'object':
      if (v === null) return '';
      if (v instanceof Date) return Number.isNaN(v.getTime()) ? '' : v.toISOString();
      if (ArrayBuffer.isView(v)) return toBase64(v);
      return stringifyJson(v);
    default:
      return String(v);
  }
}
