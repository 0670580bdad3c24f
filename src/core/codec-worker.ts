// The codec thread (see codec-thread.ts): decodes a batch of source payloads with the pipeline's format, fits each row
// to the schema and encodes it as a JSON line, exactly as the runtime does inline. It shares nothing with the main
// thread but the messages below, so the functions it calls are the same ones the inline path calls.

import { parentPort, workerData } from 'node:worker_threads';
import { createFormat, loadFormats, type FormatSpec } from '../formats/index.js';
import { stringifyJson } from '../formats/json.js';
import { RecordError, SluiceError } from './errors.js';
import { compileSchema } from './schema.js';
import type { SchemaSpec } from './types.js';

export interface CodecInit {
  format: FormatSpec;
  schema: SchemaSpec;
  allow: string[];
  /** Rows hold only JSON.parse values, BigInt and Date (no bytes field): JSON.stringify, as runtime `jsonPlainRows`. */
  plain: boolean;
}

/** A batch: payload i is bytes [ends[i-1], ends[i]) of `bytes` (ends[-1] = 0); `text` marks payloads that were strings. */
export interface CodecRequest {
  bytes: ArrayBuffer;
  ends: Uint32Array;
  text: Uint8Array;
}

/** What one payload became: `rows` encoded rows, or an error. */
export interface CodecError {
  /** Index of the payload in the request. */
  payload: number;
  /** Row within the payload (a payload can hold several) for schema errors; -1 for decode errors. */
  row: number;
  /**
   * What the dead-letter entry keeps, where it is not the whole payload: the part of the payload a decode error names
   * (one line of several), or the row as JSON for a schema error in a payload of several rows (the inline path's
   * `r.raw ?? stringifyJson(r.value)`).
   */
  raw?: string | Uint8Array;
  name: string;
  code?: string;
  message: string;
  field?: string;
}

export interface CodecReply {
  /** Every encoded row as UTF-8, in order, each one followed by `\n`. */
  lines: Uint8Array;
  /** Rows each payload produced (0 for a payload that failed to decode or had no row). */
  rows: Uint32Array;
  /** End offset in `lines` of each row (before its `\n`). */
  lineEnds: Uint32Array;
  /** Rows that were decoded but failed the schema, and payloads that failed to decode. */
  errors: CodecError[];
}

const port = parentPort!;
const init = workerData as CodecInit;
await loadFormats([init.format.name]);
const decoder = createFormat(init.format, init.schema).decoder();
const fit = compileSchema(init.schema, { allow: init.allow });
const encode = init.plain ? stringifyPlain : (v: unknown) => stringifyJson(v);

function stringifyPlain(v: unknown): string {
  try {
    return JSON.stringify(v) ?? 'null';
  } catch {
    return stringifyJson(v); // BigInt
  }
}

const describe = (e: unknown, payload: number, row: number, raw?: string | Uint8Array): CodecError => {
  const o: CodecError =
    e instanceof RecordError
      ? { payload, row, name: 'RecordError', code: e.code, message: e.message, field: e.field }
      : e instanceof SluiceError
        ? { payload, row, name: 'SluiceError', code: e.code, message: e.message }
        : { payload, row, name: 'Error', message: e instanceof Error ? e.message : String(e) };
  if (raw !== undefined) o.raw = raw;
  return o;
};

port.on('message', (req: CodecRequest) => {
  const all = Buffer.from(req.bytes);
  const n = req.ends.length;
  const rowsPer = new Uint32Array(n);
  let lineEnds: Uint32Array = new Uint32Array(n);
  let lineCount = 0;
  const errors: CodecError[] = [];
  const rows: unknown[] = [];
  let lines = '';
  let start = 0;
  let payload: string | Uint8Array = '';
  let i = 0;
  const onError = (err: Error, raw: string | Uint8Array) => void errors.push(describe(err, i, -1, raw === payload ? undefined : raw));
  for (; i < n; i++) {
    const end = req.ends[i]!;
    payload = req.text[i] ? all.toString('utf8', start, end) : all.subarray(start, end);
    start = end;
    // As runtime.ts `process`: a decoder that reports a bad part keeps the payload's good rows; one that throws loses
    // them all.
    try {
      decoder.decode(payload, rows, onError);
    } catch (e) {
      rows.length = 0;
      errors.push(describe(e, i, -1));
      continue;
    }
    let good = 0;
    const several = rows.length > 1;
    for (let k = 0; k < rows.length; k++) {
      let line: string;
      const row = rows[k];
      try {
        line = encode(fit(row));
      } catch (e) {
        errors.push(describe(e, i, k, several ? stringifyJson(row) : undefined));
        continue;
      }
      lines += line;
      if (lineCount === lineEnds.length) lineEnds = grow(lineEnds);
      lineEnds[lineCount++] = lines.length;
      lines += '\n';
      good++;
    }
    rowsPer[i] = good;
    rows.length = 0;
  }
  // Bytes, not a string: a string is copied twice on its way between threads, a buffer is handed over.
  const bytes = Buffer.from(lines, 'utf8');
  let ends: Uint32Array = lineEnds.subarray(0, lineCount);
  // Offsets were counted in characters: the same as bytes when every character is ASCII, else counted again.
  if (bytes.length !== lines.length) ends = byteEnds(lines, ends);
  const out = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  const reply: CodecReply = { lines: out, rows: rowsPer, lineEnds: ends, errors };
  // A small result may sit in Node's shared buffer pool, which must not be handed over; it is copied instead.
  const transfer = [rowsPer.buffer as ArrayBuffer, ends.buffer as ArrayBuffer];
  if (bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length) transfer.push(bytes.buffer as ArrayBuffer);
  port.postMessage(reply, transfer);
});

function grow(a: Uint32Array): Uint32Array {
  const b = new Uint32Array(a.length * 2 + 16);
  b.set(a);
  return b;
}

/** Character end offsets of the lines in `s` turned into UTF-8 byte offsets. */
function byteEnds(s: string, ends: Uint32Array): Uint32Array {
  const out = new Uint32Array(ends.length);
  let from = 0;
  let bytes = 0;
  for (let k = 0; k < ends.length; k++) {
    bytes += Buffer.byteLength(s.slice(from, ends[k]));
    out[k] = bytes;
    from = ends[k]!;
  }
  return out;
}
