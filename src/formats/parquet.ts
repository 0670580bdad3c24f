// Parquet through hyparquet (read) and hyparquet-writer (write).
//
// A Parquet file is only readable as a whole (its footer holds the schema and where every column chunk is), so a
// payload is a whole file: the file source with `framing: whole_file`. Decoding must be synchronous (Decoder.decode),
// so instead of hyparquet's promise-based reader the column chunks are read straight from the in-memory file with
// hyparquet's synchronous column reader. Encoding turns a batch of rows into one complete file (`encodeStream`), or,
// for the file sink, into the next row groups of a file written across batches (`fileWriter`).
//
// Types: int64 -> number when it is a safe integer, BigInt beyond (no silent precision loss); timestamps -> Date;
// date -> 'YYYY-MM-DD'; decimal -> exact decimal text; strings; booleans; nested groups -> objects and arrays.

import { createRequire } from 'node:module';
import { gunzipSync, gzipSync } from 'node:zlib';
import { num, opt, z } from '../core/spec.js';
import { SluiceError, errorMessage } from '../core/errors.js';
import type { Decoder, Encoder, FieldSpec, FileWriter, Format, SchemaSpec } from '../core/types.js';
import { stringifyJson } from './json.js';
import { toBase64 } from './util.js';

export const parquetOptions = z.strictObject({
  compression: opt(z.enum(['uncompressed', 'snappy', 'gzip']).default('snappy'), {
    description:
      'Compression codec of the files a sink writes (`uncompressed`, `snappy` or `gzip`). Files being read may use any of these; the codec is read from the file.',
    aliases: ['codec', 'compression_codec'],
  }),
  row_group_size: num({
    default: 100_000,
    int: true,
    min: 1,
    description: 'Rows per row group in the files a sink writes. Smaller groups let readers skip more; larger ones compress better.',
    aliases: ['row_group_rows', 'rowGroupSize'],
  }),
});

export interface ParquetOptions {
  compression: 'uncompressed' | 'snappy' | 'gzip';
  row_group_size: number;
}

// ---- lazily loaded library ------------------------------------------------------------------------------------

// hyparquet is ESM without a top-level await, so Node's require(esm) loads it synchronously on first use: formats
// are created and decoders run synchronously, and the start-up path must not load it at all.
const require = createRequire(import.meta.url);

interface Lib {
  parquetMetadata(buf: ArrayBuffer): any;
  parquetSchema(meta: any): any;
  readColumn(reader: { view: DataView; offset: number }, select: any, decoder: any): { data: any[]; skipped: number };
  parquetHeader(reader: { view: DataView; offset: number }): any;
  assembleNested(sub: Map<string, any>, tree: any, parsers: any): void;
  getTreePath(tree: any, path: string[]): any[];
  flatten(chunks: any[]): any[];
  DEFAULT_PARSERS: Record<string, (v: any) => any>;
  ParquetWriter: new (options: any) => any;
  ByteWriter: new (initialSize?: number) => any;
}

let lib: Lib | undefined;
function load(): Lib {
  if (lib) return lib;
  const h = require('hyparquet');
  lib = {
    parquetMetadata: h.parquetMetadata,
    parquetSchema: h.parquetSchema,
    readColumn: require('hyparquet/src/column.js').readColumn,
    parquetHeader: require('hyparquet/src/column.js').parquetHeader,
    assembleNested: require('hyparquet/src/assemble.js').assembleNested,
    getTreePath: require('hyparquet/src/schema.js').getTreePath,
    flatten: require('hyparquet/src/utils.js').flatten,
    DEFAULT_PARSERS: require('hyparquet/src/convert.js').DEFAULT_PARSERS,
    ParquetWriter: require('hyparquet-writer').ParquetWriter,
    ByteWriter: require('hyparquet-writer').ByteWriter,
  };
  return lib;
}

// ---- decoding -------------------------------------------------------------------------------------------------

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const DAY = 86_400_000;

const decompressors = { GZIP: (input: Uint8Array) => new Uint8Array(gunzipSync(input)) };

function narrowInt(v: bigint): number | bigint {
  return v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : v;
}

/** Unscaled integer (a number, a BigInt or big-endian two's-complement bytes) as exact decimal text. */
function decimalText(raw: unknown, scale: number): string | null {
  if (raw === null || raw === undefined) return null;
  let v: bigint;
  if (raw instanceof Uint8Array) {
    v = 0n;
    for (const b of raw) v = (v << 8n) | BigInt(b);
    if (raw.length > 0 && raw[0]! & 0x80) v -= 1n << BigInt(raw.length * 8);
  } else v = BigInt(raw as number | bigint);
  const neg = v < 0n;
  let digits = (neg ? -v : v).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, '0');
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  return neg ? `-${digits}` : digits;
}

const isDecimal = (el: any) => el?.converted_type === 'DECIMAL' || el?.logical_type?.type === 'DECIMAL';
const isDate = (el: any) => el?.converted_type === 'DATE' || el?.logical_type?.type === 'DATE';

/** Post-conversion of one leaf column's values to Sluice row types. */
function fixLeaf(values: any[], el: any): any[] {
  if (isDecimal(el)) {
    const scale = el.scale ?? el.logical_type?.scale ?? 0;
    for (let i = 0; i < values.length; i++) values[i] = decimalText(values[i], scale);
  } else if (isDate(el)) {
    for (let i = 0; i < values.length; i++) {
      const d = values[i];
      if (d instanceof Date) values[i] = d.toISOString().slice(0, 10);
      else if (typeof d === 'number') values[i] = new Date(d * DAY).toISOString().slice(0, 10);
    }
  } else if (el?.type === 'INT64') {
    for (let i = 0; i < values.length; i++) if (typeof values[i] === 'bigint') values[i] = narrowInt(values[i]);
  }
  return values;
}

function fixNested(v: unknown): unknown {
  if (typeof v === 'bigint') return narrowInt(v);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = fixNested(v[i]);
    return v;
  }
  if (v !== null && typeof v === 'object' && !(v instanceof Date) && !(v instanceof Uint8Array)) {
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) o[k] = fixNested(o[k]);
  }
  return v;
}

/** Every row of a whole Parquet file, in file order. */
export function readParquet(payload: Uint8Array, out: unknown[]): void {
  try {
    readRows(payload, out);
  } catch (e) {
    if (e instanceof SluiceError) throw e;
    // A damaged footer can parse into metadata that points nowhere; hyparquet then fails with a bare TypeError.
    throw new SluiceError('DECODE', `corrupt Parquet file (${payload.byteLength} bytes): ${corruption(e)}`, { cause: e });
  }
}

/**
 * hyparquet trusts the run lengths inside RLE/bit-packed level data: one damaged byte can claim two billion repeats,
 * which it writes out one by one until the process runs out of memory. Before a column chunk is read, its page headers
 * are checked against the chunk, and every run in the (uncompressed) level sections of v2 pages, which Sluice and
 * most current writers produce, must fit its page. Levels inside compressed v1 pages are not checked.
 */
function checkChunk(L: Lib, view: DataView, chunkValues: number, schemaPath: any[]): void {
  let maxRep = 0;
  let maxDef = 0;
  // As hyparquet counts them (getMaxRepetitionLevel, getMaxDefinitionLevel).
  for (const node of schemaPath.slice(1)) {
    const rt = node.element?.repetition_type;
    if (rt === 'REPEATED') maxRep++;
    if (rt !== 'REQUIRED') maxDef++;
  }
  const reader = { view, offset: 0 };
  while (reader.offset < view.byteLength - 1) {
    const h = L.parquetHeader(reader);
    const size = h.compressed_page_size;
    if (!Number.isInteger(size) || size < 0) throw new Error('a page header without a valid page size');
    if (reader.offset + size > view.byteLength) throw new Error(`a page of ${size} bytes runs past the end of its column chunk`);
    const v2 = h.data_page_header_v2;
    const pageValues = v2?.num_values ?? h.data_page_header?.num_values ?? h.dictionary_page_header?.num_values ?? 0;
    if (!Number.isInteger(pageValues) || pageValues < 0 || (h.dictionary_page_header === undefined && pageValues > chunkValues)) {
      throw new Error(`a page claims ${pageValues} values in a column chunk of ${chunkValues}`);
    }
    if (v2) {
      const rep = v2.repetition_levels_byte_length ?? 0;
      const def = v2.definition_levels_byte_length ?? 0;
      if (!Number.isInteger(rep) || !Number.isInteger(def) || rep < 0 || def < 0 || rep + def > size) throw new Error('page level lengths do not fit the page');
      // hyparquet reads runs until the page's values are covered, past the declared section if need be: so does this.
      const pageEnd = reader.offset + size;
      if (maxRep) checkRuns(view, reader.offset, pageEnd, 32 - Math.clz32(maxRep), pageValues);
      if (maxDef) checkRuns(view, reader.offset + rep, pageEnd, 32 - Math.clz32(maxDef), pageValues);
    }
    reader.offset += size;
  }
}

/** The runs of an RLE/bit-packed hybrid section from `p` until `values` are covered (or `end`); none may claim far more. */
function checkRuns(view: DataView, p: number, end: number, width: number, values: number): void {
  let seen = 0;
  while (seen < values && p < end) {
    let header = 0;
    for (let shift = 0; ; shift += 7) {
      const b = view.getUint8(p++);
      header |= (b & 0x7f) << shift;
      if (!(b & 0x80) || shift > 28) break;
    }
    const bitPacked = header & 1;
    const count = bitPacked ? (header >>> 1) * 8 : header >>> 1;
    // Bit-packed runs come in groups of 8, so a run may overshoot by up to 7; far more is damage.
    if (count > values + 7) throw new Error(`a run of ${count} levels in a page of ${values} values`);
    p += bitPacked ? (header >>> 1) * width : (width + 7) >> 3;
    seen += count;
  }
}

/** hyparquet's own message, unless it is a bare TypeError from following a damaged footer (meaningless to a user). */
function corruption(e: unknown): string {
  return e instanceof TypeError ? 'its metadata points at data that is not there' : errorMessage(e);
}

function readRows(payload: Uint8Array, out: unknown[]): void {
  const L = load();
  // hyparquet works on an ArrayBuffer; a Buffer from a pool shares one with other data, so cut out exactly the file.
  const ab = payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.byteLength) as ArrayBuffer;
  let meta: any;
  try {
    meta = L.parquetMetadata(ab);
  } catch (e) {
    throw new SluiceError('DECODE', `not a Parquet file (${payload.byteLength} bytes): ${corruption(e)}`, { cause: e });
  }
  const tree = L.parquetSchema(meta);
  const parsers = L.DEFAULT_PARSERS;
  for (const rg of meta.row_groups) {
    const groupRows = Number(rg.num_rows);
    if (groupRows === 0) continue;
    const leaves = new Map<string, any[]>();
    for (const chunk of rg.columns) {
      const cm = chunk.meta_data;
      const path: string[] = cm.path_in_schema;
      const schemaPath = L.getTreePath(tree, path);
      const element = schemaPath[schemaPath.length - 1].element;
      // Decimals are read unconverted (hyparquet would go through a float) and turned into exact text here.
      const el = isDecimal(element) ? { ...element, converted_type: undefined, logical_type: undefined } : element;
      const start = Number(cm.dictionary_page_offset || cm.data_page_offset);
      const end = start + Number(cm.total_compressed_size);
      const decoder = {
        pathInSchema: path,
        element: el,
        schemaPath: isDecimal(element) ? [...schemaPath.slice(0, -1), { ...schemaPath[schemaPath.length - 1], element: el }] : schemaPath,
        ...cm,
        parsers,
        compressors: decompressors,
        // Byte arrays without a string annotation are binary; only annotated ones become text.
        utf8: false,
      };
      let data: any[];
      try {
        checkChunk(L, new DataView(ab, start, end - start), Number(cm.num_values), schemaPath);
        const r = L.readColumn({ view: new DataView(ab, start, end - start), offset: 0 }, { groupStart: 0, selectStart: 0, selectEnd: groupRows, groupRows }, decoder);
        data = L.flatten(r.data);
      } catch (e) {
        throw new SluiceError('DECODE', `Parquet column '${path.join('.')}' cannot be read: ${corruption(e)}`, { cause: e });
      }
      leaves.set(path.join('.'), fixLeaf(Array.isArray(data) ? data : Array.from(data), element));
    }
    const columns: Array<[string, any[], boolean]> = [];
    for (const child of tree.children) {
      const name: string = child.element.name;
      if (child.children.length) {
        const sub = new Map<string, any>();
        for (const [k, v] of leaves) if (k === name || k.startsWith(name + '.')) sub.set(k, v);
        L.assembleNested(sub, child, parsers);
        columns.push([name, sub.get(name) ?? [], true]);
      } else {
        columns.push([name, leaves.get(name) ?? [], false]);
      }
    }
    // The row count comes from the footer; a corrupt one could claim billions of rows the columns do not hold.
    const short = columns.find(([, values]) => values.length < groupRows);
    if (short || !columns.length) {
      throw new SluiceError('DECODE', `corrupt Parquet file: a row group declares ${groupRows} rows but ${short ? `column '${short[0]}' holds ${short[1].length} values` : 'has no columns'}`);
    }
    for (let r = 0; r < groupRows; r++) {
      const row: Record<string, unknown> = {};
      for (let c = 0; c < columns.length; c++) {
        const [name, values, nested] = columns[c]!;
        const v = values[r];
        row[name] = v === undefined ? null : nested ? fixNested(v) : v;
      }
      out.push(row);
    }
  }
}

/** The pipeline schema a Parquet file's own schema corresponds to (for `preview`, or to declare a schema from a file). */
export function parquetSchemaSpec(payload: Uint8Array): SchemaSpec {
  const L = load();
  const ab = payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.byteLength) as ArrayBuffer;
  const tree = L.parquetSchema(L.parquetMetadata(ab));
  return { fields: tree.children.map((c: any) => fieldOf(c)) };
}

function fieldOf(node: any): FieldSpec {
  const el = node.element;
  const f: FieldSpec = { name: el.name, type: leafType(el) };
  if (el.repetition_type === 'REQUIRED') f.nullable = false;
  if (f.type === 'decimal') {
    f.precision = el.precision ?? el.logical_type?.precision;
    f.scale = el.scale ?? el.logical_type?.scale ?? 0;
  }
  if (node.children.length) {
    const list = el.converted_type === 'LIST' || el.logical_type?.type === 'LIST';
    const map = el.converted_type === 'MAP' || el.logical_type?.type === 'MAP';
    if (list) {
      // LIST groups hold a repeated group (`list`) whose single child is the element.
      const inner = node.children[0]?.children?.[0] ?? node.children[0];
      const { name: _n, ...items } = fieldOf(inner);
      return { ...f, type: 'array', items };
    }
    if (map) return { ...f, type: 'object' };
    return { ...f, type: 'object', fields: node.children.map((c: any) => fieldOf(c)) };
  }
  return f;
}

function leafType(el: any): FieldSpec['type'] {
  const lt = el.logical_type?.type;
  const ct = el.converted_type;
  if (isDecimal(el)) return 'decimal';
  if (isDate(el)) return 'date';
  if (lt === 'TIMESTAMP' || ct === 'TIMESTAMP_MILLIS' || ct === 'TIMESTAMP_MICROS' || el.type === 'INT96') return 'timestamp';
  if (lt === 'JSON' || ct === 'JSON') return 'json';
  if (lt === 'STRING' || ct === 'UTF8' || lt === 'ENUM' || ct === 'ENUM' || lt === 'UUID') return 'string';
  switch (el.type) {
    case 'BOOLEAN':
      return 'boolean';
    case 'INT32':
      return 'int32';
    case 'INT64':
      return 'int64';
    case 'FLOAT':
      return 'float32';
    case 'DOUBLE':
      return 'float64';
    default:
      return 'bytes';
  }
}

class ParquetDecoder implements Decoder {
  decode(payload: string | Uint8Array, out: unknown[]): void {
    if (typeof payload === 'string') {
      throw new SluiceError('DECODE', 'Parquet needs the whole file as bytes; read it with the file source and framing: whole_file');
    }
    readParquet(payload, out);
  }
}

// ---- encoding -------------------------------------------------------------------------------------------------

interface Column {
  name: string;
  field?: FieldSpec;
  /** hyparquet-writer schema element for the column. */
  element: Record<string, unknown>;
  convert(v: unknown): unknown;
}

function toDate(v: unknown): Date | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v;
  if (typeof v === 'number' || typeof v === 'bigint') return new Date(Number(v));
  const d = new Date(String(v));
  if (Number.isNaN(d.getTime())) throw new Error(`expected a timestamp, got '${String(v)}'`);
  return d;
}

function toText(v: unknown): string | null {
  return typeof v === 'string' ? v : v === null || v === undefined ? null : String(v);
}

function toBigInt(v: unknown): bigint | null {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`expected an integer, got ${v}`);
    return BigInt(v);
  }
  return BigInt(String(v));
}

function toInt32(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`expected an integer, got '${String(v)}'`);
  return n;
}

function toNumber(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (v === null || v === undefined) return null;
  const n = Number(v);
  if (Number.isNaN(n) && typeof v !== 'number') throw new Error(`expected a number, got '${String(v)}'`);
  return n;
}

/** Exact decimal text (or a number) as the unscaled integer for `scale` fraction digits. */
function unscaled(v: unknown, scale: number): bigint | null {
  if (v === null || v === undefined) return null;
  const s = typeof v === 'string' ? v.trim() : typeof v === 'number' ? v.toFixed(scale) : String(v);
  const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(s);
  if (!m || (m[2] === '' && !m[3])) throw new Error(`expected a decimal, got '${s}'`);
  const frac = (m[3] ?? '').padEnd(scale, '0');
  if (frac.length > scale && /[^0]/.test(frac.slice(scale))) throw new Error(`decimal '${s}' has more than ${scale} fraction digits`);
  const digits = BigInt((m[2] || '0') + frac.slice(0, scale));
  return m[1] === '-' ? -digits : digits;
}

// hyparquet-writer serializes JSON columns itself; BigInts inside are turned into numbers or text first.
const asJson = (v: unknown) => (v === null || v === undefined ? null : JSON.parse(stringifyJson(v)));

function columnFor(f: FieldSpec): Column {
  const repetition_type = f.nullable === false ? 'REQUIRED' : 'OPTIONAL';
  const el = (e: Record<string, unknown>) => ({ name: f.name, repetition_type, ...e });
  switch (f.type) {
    case 'string':
      return { name: f.name, field: f, element: el({ type: 'BYTE_ARRAY', converted_type: 'UTF8' }), convert: toText };
    case 'int32':
      return { name: f.name, field: f, element: el({ type: 'INT32' }), convert: toInt32 };
    case 'int64':
      return { name: f.name, field: f, element: el({ type: 'INT64' }), convert: toBigInt };
    case 'float32':
      return { name: f.name, field: f, element: el({ type: 'FLOAT' }), convert: toNumber };
    case 'float64':
      return { name: f.name, field: f, element: el({ type: 'DOUBLE' }), convert: toNumber };
    case 'boolean':
      return { name: f.name, field: f, element: el({ type: 'BOOLEAN' }), convert: (v) => (typeof v === 'boolean' ? v : v === null || v === undefined ? null : Boolean(v)) };
    case 'timestamp':
      return {
        name: f.name,
        field: f,
        element: el({ type: 'INT64', logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MILLIS' } }),
        convert: toDate,
      };
    case 'date':
      return { name: f.name, field: f, element: el({ type: 'INT32', converted_type: 'DATE' }), convert: toDate };
    case 'decimal': {
      const precision = f.precision ?? 38;
      const scale = f.scale ?? 0;
      // INT64 holds up to 18 digits; wider decimals are stored as fixed-size bytes, as other writers do.
      const physical = precision <= 18 ? { type: 'INT64' } : { type: 'FIXED_LEN_BYTE_ARRAY', type_length: Math.ceil((precision * Math.log2(10) + 1) / 8) };
      return {
        name: f.name,
        field: f,
        element: el({ ...physical, converted_type: 'DECIMAL', precision, scale }),
        convert: (v) => unscaled(v, scale),
      };
    }
    case 'bytes':
      return {
        name: f.name,
        field: f,
        element: el({ type: 'BYTE_ARRAY' }),
        convert: (v) => (v === null || v === undefined ? null : v instanceof Uint8Array ? v : new TextEncoder().encode(String(v))),
      };
    default:
      // json, array and object: stored as JSON text with the JSON logical type, which readers such as DuckDB parse.
      return { name: f.name, field: f, element: el({ type: 'BYTE_ARRAY', converted_type: 'JSON' }), convert: asJson };
  }
}

/** Without a pipeline schema: each column's type is guessed from the first non-null value. */
function inferColumn(name: string, values: unknown[], key: string): Column {
  let sample: unknown;
  for (const row of values) {
    const v = (row as Record<string, unknown> | null)?.[key];
    if (v !== null && v !== undefined) {
      sample = v;
      break;
    }
  }
  const type: FieldSpec['type'] =
    typeof sample === 'bigint'
      ? 'int64'
      : typeof sample === 'number'
        ? Number.isInteger(sample) && values.every((r) => Number.isInteger((r as any)?.[key] ?? 0))
          ? 'int64'
          : 'float64'
        : typeof sample === 'boolean'
          ? 'boolean'
          : sample instanceof Date
            ? 'timestamp'
            : sample instanceof Uint8Array
              ? 'bytes'
              : sample !== null && typeof sample === 'object'
                ? 'json'
                : 'string';
  return columnFor({ name, type });
}

class ParquetEncoder implements Encoder {
  readonly extension = 'parquet';
  /** Tells the file sink that each `encodeStream` result is a complete file that must not be appended to. */
  readonly wholeFile = true;
  /** Built once: the compiled transposer is cached per columns array. */
  private declaredColumns?: Column[];
  constructor(
    private readonly o: ParquetOptions,
    private readonly schema?: SchemaSpec,
  ) {}

  async prepare(): Promise<void> {
    load();
  }

  encode(value: unknown): Uint8Array {
    return this.encodeStream([value]);
  }

  /** A complete Parquet file holding `values`. */
  encodeStream(values: unknown[], _first?: boolean): Uint8Array {
    const L = load();
    const columns = this.columnsFor(values);
    const groups = toRowGroups(columns, values, this.o.row_group_size);
    const schema = [{ name: 'root', num_children: columns.length }, ...columns.map((c) => c.element)];
    try {
      // What parquetWriteBuffer does, one row group per call: the groups are cut (and their text columns prepared) here.
      const bytes = new L.ByteWriter();
      const w = new L.ParquetWriter({ writer: bytes, schema, codec: this.o.compression.toUpperCase(), compressors: COMPRESSORS, createdBy: 'sluice' });
      for (const columnData of groups) w.write({ columnData, rowGroupSize: this.o.row_group_size });
      w.finish();
      return new Uint8Array(bytes.getBuffer());
    } catch (e) {
      if (e instanceof SluiceError) throw e;
      throw new SluiceError('SINK', `cannot write Parquet: ${errorMessage(e)}`, { cause: e });
    }
  }

  get declared(): boolean {
    return !!this.schema?.fields.length;
  }

  /** The pipeline schema's columns, or columns guessed from these rows. */
  columnsFor(values: unknown[]): Column[] {
    if (this.schema?.fields.length) return (this.declaredColumns ??= this.schema.fields.map(columnFor));
    const names = new Set<string>();
    for (const row of values) if (row && typeof row === 'object') for (const k of Object.keys(row)) names.add(k);
    return [...names].map((n) => inferColumn(n, values, n));
  }

  /** One file across many batches: each write adds row groups, `finish` adds the footer. */
  fileWriter(): FileWriter {
    return new ParquetFileWriter(this);
  }

  /** The footer for a file whose journal lines (`FileWriter.checkpoint`) describe every row group written. */
  finishFile(journal: string[]): Uint8Array {
    const L = load();
    let schema: unknown;
    let codec = 'SNAPPY';
    const rowGroups: unknown[] = [];
    for (const line of journal) {
      const j = JSON.parse(line, revive) as { schema?: unknown; codec?: string; groups: unknown[] };
      if (j.schema) schema = j.schema;
      if (j.codec) codec = j.codec;
      rowGroups.push(...j.groups);
    }
    if (!schema) throw new SluiceError('SINK', 'cannot finish the Parquet file: its journal has no schema');
    const bytes = new L.ByteWriter();
    const w = new L.ParquetWriter({ writer: bytes, schema, codec, compressors: COMPRESSORS, createdBy: 'sluice' });
    w.row_groups = rowGroups;
    w.num_rows = rowGroups.reduce((n: bigint, g) => n + BigInt((g as { num_rows: bigint }).num_rows), 0n);
    w.finish();
    // The writer starts with the 4-byte magic the file already has.
    return new Uint8Array(bytes.getBuffer()).subarray(4);
  }

  get options(): ParquetOptions {
    return this.o;
  }
}

const COMPRESSORS = { GZIP: (input: Uint8Array) => new Uint8Array(gzipSync(input)) as Uint8Array, SNAPPY: snappy };

// ---- snappy ---------------------------------------------------------------------------------------------------
//
// hyparquet-writer's snappy (src/snappy.js) writes every output byte through its ByteWriter (a DataView store, a
// capacity check and two counters per byte, the buffer regrown by doubling from 1 KB) and cuts a subarray per literal:
// about a tenth of the CPU of writing Parquet. This is the same compressor (one block, the same hash, hash table size,
// skipping and match extension, so it finds the same matches and writes the same bytes; a test compares the two)
// writing into a plain byte array.

const SNAPPY_MAX_TABLE_BITS = 14;
const SNAPPY_MAX_OFFSET = 0xffff;
const snappyTables: Array<Uint32Array | undefined> = [];
/** Output scratch, reused: the result is copied out of it. */
let snappyOut = new Uint8Array(0);

/** Snappy-compressed `input` (exported for its test against hyparquet-writer's own). */
export function snappy(input: Uint8Array): Uint8Array {
  const n = input.length;
  // The longest output: every byte a literal, plus literal headers (at most 5 bytes per 60+ bytes) and the length.
  const max = 32 + n + Math.ceil(n / 6);
  if (snappyOut.length < max) snappyOut = new Uint8Array(Math.max(max, snappyOut.length * 2));
  const out = snappyOut;
  let op = 0;
  for (let v = n; ; v >>>= 7) {
    if (v < 0x80) {
      out[op++] = v;
      break;
    }
    out[op++] = (v & 0x7f) | 0x80;
  }
  let bits = 1;
  while (1 << bits <= n && bits <= SNAPPY_MAX_TABLE_BITS) bits++;
  bits--;
  const shift = 32 - bits;
  const table = (snappyTables[bits] ??= new Uint32Array(1 << bits));
  table.fill(0);
  let nextEmit = 0;
  if (n >= 15) {
    const ipLimit = n - 15;
    let ip = 1;
    let nextHash = Math.imul(load32(input, ip), 0x1e35a7bd) >>> shift;
    outer: for (;;) {
      let skip = 32;
      let nextIp = ip;
      let candidate: number;
      do {
        ip = nextIp;
        const hash = nextHash;
        nextIp = ip + (skip >>> 5);
        skip++;
        if (ip > ipLimit) break outer;
        nextHash = Math.imul(load32(input, nextIp), 0x1e35a7bd) >>> shift;
        candidate = table[hash]!;
        table[hash] = ip;
      } while (ip - candidate > SNAPPY_MAX_OFFSET || !equal4(input, ip, candidate));
      op = snappyLiteral(out, op, input, nextEmit, ip - nextEmit);
      do {
        const base = ip;
        let matched = 4;
        while (ip + matched < n && input[ip + matched] === input[candidate + matched]) matched++;
        ip += matched;
        op = snappyCopy(out, op, base - candidate, matched);
        nextEmit = ip;
        if (ip >= ipLimit) break outer;
        table[Math.imul(load32(input, ip - 1), 0x1e35a7bd) >>> shift] = ip - 1;
        const cur = Math.imul(load32(input, ip), 0x1e35a7bd) >>> shift;
        candidate = table[cur]!;
        table[cur] = ip;
      } while (ip - candidate <= SNAPPY_MAX_OFFSET && equal4(input, ip, candidate));
      ip++;
      nextHash = Math.imul(load32(input, ip), 0x1e35a7bd) >>> shift;
    }
  }
  if (nextEmit < n) op = snappyLiteral(out, op, input, nextEmit, n - nextEmit);
  return out.slice(0, op);
}

/** Four bytes as the reference reads them: added, not or-ed (past the end that gives NaN, and hash 0, as there). */
function load32(a: Uint8Array, p: number): number {
  return a[p]! + (a[p + 1]! << 8) + (a[p + 2]! << 16) + (a[p + 3]! << 24);
}

function equal4(a: Uint8Array, p: number, q: number): boolean {
  return a[p] === a[q] && a[p + 1] === a[q + 1] && a[p + 2] === a[q + 2] && a[p + 3] === a[q + 3];
}

function snappyLiteral(out: Uint8Array, op: number, input: Uint8Array, from: number, len: number): number {
  if (len <= 60) out[op++] = (len - 1) << 2;
  else {
    const value = len - 1;
    const bytes = value < 0x100 ? 1 : value < 0x10000 ? 2 : value < 0x1000000 ? 3 : 4;
    out[op++] = (59 + bytes) << 2;
    for (let i = 0; i < bytes; i++) out[op++] = value >>> (i * 8);
  }
  if (len < 32) for (let i = 0; i < len; i++) out[op++] = input[from + i]!;
  else {
    out.set(input.subarray(from, from + len), op);
    op += len;
  }
  return op;
}

function snappyCopy(out: Uint8Array, op: number, offset: number, len: number): number {
  // 64-byte copies while at least 68 are left, one of 60 if more than 64 are left, then the rest (4..64).
  while (len >= 68) {
    op = snappyShortCopy(out, op, offset, 64);
    len -= 64;
  }
  if (len > 64) {
    op = snappyShortCopy(out, op, offset, 60);
    len -= 60;
  }
  return snappyShortCopy(out, op, offset, len);
}

function snappyShortCopy(out: Uint8Array, op: number, offset: number, len: number): number {
  if (len < 12 && offset < 2048) {
    out[op++] = 1 + ((len - 4) << 2) + ((offset >>> 8) << 5);
    out[op++] = offset & 0xff;
  } else {
    out[op++] = 2 + ((len - 1) << 2);
    out[op++] = offset & 0xff;
    out[op++] = offset >>> 8;
  }
  return op;
}

// Journal lines carry row-group metadata, whose statistics hold BigInts, Dates and bytes: tagged so they survive JSON.
function tag(this: Record<string, unknown>, key: string, v: unknown): unknown {
  const raw = this[key];
  if (typeof raw === 'bigint') return { $b: raw.toString() };
  if (raw instanceof Date) return { $d: raw.getTime() };
  if (raw instanceof Uint8Array) return { $u: toBase64(raw) };
  return v;
}

function revive(_key: string, v: unknown): unknown {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if (typeof o.$b === 'string') return BigInt(o.$b);
    if (typeof o.$d === 'number') return new Date(o.$d);
    if (typeof o.$u === 'string') return new Uint8Array(Buffer.from(o.$u, 'base64'));
  }
  return v;
}

/**
 * A Parquet file written across batches through hyparquet-writer's incremental ParquetWriter. Each `write` encodes the
 * rows as row groups of at most `row_group_size` rows and hands back their bytes (the sink appends them to a temporary
 * file), so memory holds one batch plus small per-row-group metadata, never the whole file. The columns are fixed by
 * the first batch (or the pipeline schema); rows that do not fit them start a new file (`accepts`).
 */
class ParquetFileWriter implements FileWriter {
  private columns?: Column[];
  private schema?: unknown[];
  private writer?: any;
  private bytes?: any;
  private reported = 0;
  private first = true;
  rows = 0;

  constructor(private readonly enc: ParquetEncoder) {}

  accepts(values: unknown[]): boolean {
    // With a pipeline schema every file has the same columns: a value that does not fit fails the write instead.
    if (!this.columns || this.enc.declared) return true;
    const known = new Set(this.columns.map((c) => c.name));
    for (const row of values) if (row && typeof row === 'object') for (const k of Object.keys(row)) if (!known.has(k)) return false;
    try {
      // Kept for the `write` that follows with the same rows, so they are converted once.
      this.checked = { values, groups: toRowGroups(this.columns, values, this.enc.options.row_group_size) };
      return true;
    } catch {
      return false;
    }
  }

  private checked?: { values: unknown[]; groups: ColumnSource[][] };

  write(values: unknown[]): Uint8Array {
    const L = load();
    const columns = (this.columns ??= this.enc.columnsFor(values));
    const checked = this.checked;
    this.checked = undefined;
    const groups = checked?.values === values ? checked.groups : toRowGroups(columns, values, this.enc.options.row_group_size);
    if (!this.writer) {
      this.schema = [{ name: 'root', num_children: columns.length }, ...columns.map((c) => c.element)];
      this.bytes = new L.ByteWriter();
      this.writer = new L.ParquetWriter({
        writer: this.bytes,
        schema: this.schema,
        codec: this.enc.options.compression.toUpperCase(),
        compressors: COMPRESSORS,
        createdBy: 'sluice',
      });
    }
    const before = this.writer.row_groups.length;
    try {
      for (const columnData of groups) this.writer.write({ columnData, rowGroupSize: this.enc.options.row_group_size });
    } catch (e) {
      throw new SluiceError('SINK', `cannot write Parquet: ${errorMessage(e)}`, { cause: e });
    }
    detachStatistics(this.writer.row_groups.slice(before));
    this.rows += values.length;
    return this.drain();
  }

  checkpoint(): string {
    const groups = this.writer ? this.writer.row_groups.slice(this.reported) : [];
    this.reported += groups.length;
    const head = this.first ? { schema: this.schema, codec: this.enc.options.compression.toUpperCase() } : {};
    this.first = false;
    return JSON.stringify({ ...head, groups }, tag);
  }

  finish(): Uint8Array {
    this.writer.finish();
    return this.drain();
  }

  /** The bytes written since the last call; the writer's buffer is reused (its offset keeps counting). */
  private drain(): Uint8Array {
    const b = this.bytes;
    const out = new Uint8Array(b.index);
    out.set(new Uint8Array(b.buffer, 0, b.index));
    b.index = 0;
    return out;
  }
}

/** One column of one row group as hyparquet-writer takes it; `encoding` only where the choice is made here. */
interface ColumnSource {
  name: string;
  data: unknown[];
  encoding?: 'PLAIN';
}

/**
 * The columns of `values`, one set per row group of at most `size` rows (the groups hyparquet-writer would cut from
 * the whole batch). Everything is converted before anything is written, so a value that does not fit fails the batch
 * with the writer unchanged.
 */
function toRowGroups(columns: Column[], values: unknown[], size: number): ColumnSource[][] {
  const groups: ColumnSource[][] = [];
  const transpose = transposerFor(columns);
  for (let from = 0; from < values.length; from += size) {
    const n = Math.min(values.length, from + size) - from;
    const data = new Array<unknown[]>(columns.length);
    for (let c = 0; c < columns.length; c++) data[c] = new Array<unknown>(n);
    try {
      transpose(values, from, data);
    } catch {
      // A null row, a value that does not convert or a null in a required column: the column-by-column loops redo
      // the group and throw the error they always threw (the first bad row of the first column that has one).
      for (let c = 0; c < columns.length; c++) fillColumn(columns[c]!, values, from, data[c]!);
    }
    const group = new Array<ColumnSource>(columns.length);
    for (let c = 0; c < columns.length; c++) {
      const col = columns[c]!;
      const d = data[c]!;
      group[c] = col.convert === toText && plainText(d) ? { name: col.name, data: d, encoding: 'PLAIN' } : { name: col.name, data: d };
    }
    groups.push(group);
  }
  return groups;
}

type Transposer = (values: unknown[], from: number, out: unknown[][]) => void;

const transposers = new WeakMap<Column[], Transposer>();

/**
 * One pass over the rows that fills every column, compiled for these columns: each row is visited once (not once per
 * column), every field is read at a call site of its own with the name as a constant (a shared `row[name]` site sees
 * every name and goes megamorphic), and each column calls its converter directly. Anything unusual throws, and the
 * caller falls back to `fillColumn`.
 */
function transposerFor(columns: Column[]): Transposer {
  let t = transposers.get(columns);
  if (t) return t;
  const lines: string[] = [];
  columns.forEach((col, c) => {
    const fn = col.convert === toText ? 'toText' : col.convert === toBigInt ? 'toBigInt' : `k${c}`;
    lines.push(`c${c}[i] = v = ${fn}(row[${JSON.stringify(col.name)}]);`);
    if (col.element.repetition_type === 'REQUIRED') lines.push('if (v === null) throw null;');
  });
  const head = columns.map((_, c) => `c${c} = out[${c}], k${c} = conv[${c}]`).join(', ');
  const body = `"use strict"; return function transpose(values, from, out) {
  const ${head};
  const n = c0.length;
  let v;
  for (let i = 0; i < n; i++) {
    const row = values[from + i];
    if (row === null || row === undefined) throw null;
    ${lines.join('\n    ')}
  }
};`;
  t = columns.length ? (new Function('conv', 'toText', 'toBigInt', body)(columns.map((c) => c.convert), toText, toBigInt) as Transposer) : () => {};
  transposers.set(columns, t);
  return t;
}

function columnError(name: string, i: number, e: unknown): SluiceError {
  return new SluiceError('SINK', `Parquet column '${name}', row ${i + 1} of the batch: ${errorMessage(e)}`, { cause: e });
}

const NULL_IN_REQUIRED = 'null in a non-nullable field';

/**
 * Converts column `col` of rows `from`.. of `values` into `data`. Strings and int64 (most columns of typical records)
 * get loops of their own that call their converter directly: one `convert` call site shared by every column type
 * turns megamorphic and costs an uninlined call per value.
 */
function fillColumn(col: Column, values: unknown[], from: number, data: unknown[]): void {
  const name = col.name;
  const required = col.element.repetition_type === 'REQUIRED';
  const n = data.length;
  const convert = col.convert;
  let i = 0;
  try {
    if (convert === toText) {
      for (; i < n; i++) {
        const row = values[from + i] as Record<string, unknown> | null;
        const v = toText(row == null ? undefined : row[name]);
        if (v === null && required) throw new Error(NULL_IN_REQUIRED);
        data[i] = v;
      }
    } else if (convert === toBigInt) {
      for (; i < n; i++) {
        const row = values[from + i] as Record<string, unknown> | null;
        const v = toBigInt(row == null ? undefined : row[name]);
        if (v === null && required) throw new Error(NULL_IN_REQUIRED);
        data[i] = v;
      }
    } else {
      for (; i < n; i++) {
        const row = values[from + i] as Record<string, unknown> | null;
        const v = convert(row == null ? undefined : row[name]);
        if (v === null && required) throw new Error(NULL_IN_REQUIRED);
        data[i] = v;
      }
    }
  } catch (e) {
    throw columnError(name, from + i, e);
  }
}

/**
 * A text column that hyparquet-writer would write PLAIN is handed over as UTF-8 already: views into one buffer per
 * column instead of strings. For strings the library calls TextEncoder.encode once per value, and each result is a
 * separate ArrayBuffer (native allocation, tracked by the GC): the largest single cost of writing such a column
 * (measured: ~0.5 s of CPU per 1M values, plus the collections). Returns whether `data` now holds bytes; the file is
 * the same either way, because
 * - only a column the library's dictionary sampling (`useDictionary` in hyparquet-writer's dictionary.js, copied
 *   below) rejects is converted, and it is then written with `encoding: 'PLAIN'`, which is what the library picks for
 *   it after rejecting; dictionary candidates stay strings (the library dedupes those by string before encoding);
 * - only pure ASCII is converted, where a string's length is its UTF-8 size (what the sampling and page sizing
 *   measure) and byte order is string order (the min/max statistics).
 */
function plainText(data: unknown[]): boolean {
  const n = data.length;
  if (n === 0) return false;
  // useDictionary's sampling: 1000 values spread over the chunk, weighted by their PLAIN size (4-byte length prefix).
  const sampleSize = Math.min(n, 1000);
  const seen = new Set<string>();
  let distinctSize = 0;
  let totalSize = 0;
  for (let i = 0; i < sampleSize; i++) {
    const v = data[sampleSize === 1 ? 0 : Math.floor((i * (n - 1)) / (sampleSize - 1))];
    if (typeof v !== 'string') continue;
    const size = v.length + 4;
    if (!seen.has(v)) {
      seen.add(v);
      distinctSize += size;
    }
    totalSize += size;
  }
  if (totalSize && distinctSize / totalSize <= 0.9) return false;
  // One native copy of the whole column: join turns nulls into nothing, so offsets only advance on strings.
  const text = data.join('');
  if (NON_ASCII.test(text)) return false;
  const bytes = Buffer.from(text, 'latin1');
  const buf = bytes.buffer;
  let off = bytes.byteOffset;
  let prev: string | undefined;
  let prevView: Uint8Array | undefined;
  for (let i = 0; i < n; i++) {
    const v = data[i];
    if (typeof v !== 'string') continue;
    // A run of one value shares one view (the library keys byte arrays by identity before hashing their bytes).
    if (v !== prev) {
      prev = v;
      prevView = new Uint8Array(buf, off, v.length);
    }
    off += v.length;
    data[i] = prevView;
  }
  return true;
}

const NON_ASCII = /[^\x00-\x7f]/;

/**
 * Statistics of text columns written as views (`plainText`) hold views into that column's buffer; the writer keeps
 * every row group's metadata until the file's footer, so they are copied out, or each would keep a whole column alive.
 */
function detachStatistics(groups: Array<{ columns: Array<{ meta_data?: { statistics?: Record<string, unknown> } }> }>): void {
  for (const g of groups) {
    for (const c of g.columns) {
      const st = c.meta_data?.statistics;
      if (!st) continue;
      for (const k of ['min_value', 'max_value']) {
        const v = st[k];
        if (v instanceof Uint8Array && v.byteLength !== v.buffer.byteLength) st[k] = v.slice();
      }
    }
  }
}

export function parquetFormat(o: ParquetOptions, schema?: SchemaSpec): Format {
  return {
    name: 'parquet',
    decoder: () => new ParquetDecoder(),
    encoder: () => new ParquetEncoder(o, schema),
  };
}
