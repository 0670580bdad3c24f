// JSON and newline-delimited JSON.

import { z, bool } from '../core/spec.js';
import { RecordError } from '../core/errors.js';
import type { Decoder, Encoder, Format, SluiceRecord } from '../core/types.js';
import { describeValue, isBlank, payloadText, toBase64, utf8Of } from './util.js';

export const jsonOptions = z.strictObject({
  wrap_scalars: bool({
    default: false,
    description: 'Decode a top-level JSON scalar (42, "x", true) as {value: <scalar>} instead of rejecting it.',
  }),
  unwrap_arrays: bool({
    default: true,
    description: 'Decode a top-level array as one row per element. When false an array is treated like a scalar.',
  }),
  pretty: bool({ default: false, description: 'Indent the output of single-message encoding (not NDJSON streams).' }),
});

export interface JsonOptions {
  wrap_scalars: boolean;
  unwrap_arrays: boolean;
  pretty: boolean;
}

export function jsonFormat(o: JsonOptions): Format {
  return {
    name: 'json',
    decoder: () => new JsonDecoder(o),
    encoder: () => new JsonEncoder(o),
  };
}

type OnError = (err: Error, raw: string | Uint8Array) => void;

export class JsonDecoder implements Decoder {
  private readonly wrapScalars: boolean;
  private readonly unwrapArrays: boolean;

  constructor(o: Pick<JsonOptions, 'wrap_scalars' | 'unwrap_arrays'>) {
    this.wrapScalars = o.wrap_scalars;
    this.unwrapArrays = o.unwrap_arrays;
  }

  decode(payload: string | Uint8Array, out: unknown[], onError: OnError): void {
    let text = payloadText(payload);
    if (typeof text !== 'string') {
      onError(text, payload);
      return;
    }
    // TextDecoder drops a BOM by itself; a string payload may still carry one.
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const nl = text.indexOf('\n');
    if (nl === -1) {
      if (isBlank(text, 0, text.length)) return;
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch (e) {
        onError(syntaxError(text, e, 0), payload);
        return;
      }
      const deep = nestingError(text, 0);
      if (deep) onError(deep, payload);
      else this.emit(v, out, onError, payload);
      return;
    }
    this.decodeLines(text, nl, payload, out, onError);
  }

  private decodeLines(text: string, firstNl: number, payload: string | Uint8Array, out: unknown[], onError: OnError): void {
    let start = 0;
    let end = firstNl;
    let lineNo = 0;
    let first = true;
    const n = text.length;
    while (start <= n) {
      if (end === -1) end = n;
      lineNo++;
      const stop = end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end;
      if (!isBlank(text, start, stop)) {
        const line = text.slice(start, stop);
        let v: unknown;
        let ok = true;
        try {
          v = JSON.parse(line);
        } catch (e) {
          ok = false;
          if (first && this.wholeDocument(text, end, payload, out, onError)) return;
          onError(syntaxError(line, e, lineNo), line);
        }
        first = false;
        const deep = ok ? nestingError(line, lineNo) : undefined;
        if (deep) onError(deep, line);
        else if (ok) this.emit(v, out, onError, line);
      }
      start = end + 1;
      end = start <= n ? text.indexOf('\n', start) : -1;
    }
  }

  /**
   * A first line that is not JSON on its own means either a bad NDJSON line or one pretty-printed document. Returns
   * true when the payload was handled as a document: it parsed, or it failed past the first line (so it was not NDJSON).
   */
  private wholeDocument(text: string, firstLineEnd: number, payload: string | Uint8Array, out: unknown[], onError: OnError): boolean {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      if (errorOffset(text, e) <= firstLineEnd) return false;
      onError(syntaxError(text, e, 0), payload);
      return true;
    }
    const deep = nestingError(text, 0);
    if (deep) onError(deep, payload);
    else this.emit(v, out, onError, payload);
    return true;
  }

  private emit(v: unknown, out: unknown[], onError: OnError, raw: string | Uint8Array): void {
    if (typeof v === 'object' && v !== null) {
      if (!Array.isArray(v)) {
        out.push(v);
        return;
      }
      if (this.unwrapArrays) {
        for (let i = 0; i < v.length; i++) {
          const el: unknown = v[i];
          if (typeof el === 'object' && el !== null && !Array.isArray(el)) out.push(el);
          else if (this.wrapScalars) out.push({ value: el });
          else onError(new RecordError('DECODE', `expected a JSON object, got ${describeValue(el)} at array index ${i}`), stringifyJson(el));
        }
        return;
      }
    }
    if (this.wrapScalars) out.push({ value: v });
    else onError(new RecordError('DECODE', `expected a JSON object, got ${describeValue(v)} (set wrap_scalars: true to accept scalars)`), raw);
  }
}

export class JsonEncoder implements Encoder {
  readonly extension = 'jsonl';
  private readonly indent: string | undefined;

  constructor(o: Pick<JsonOptions, 'pretty'>) {
    this.indent = o.pretty ? '  ' : undefined;
  }

  encode(value: unknown): string {
    return stringifyJson(value, this.indent);
  }

  encodeStream(values: unknown[], _first: boolean): string {
    // String concatenation builds a rope in V8; it is flattened once when written, so this is linear.
    let s = '';
    for (let i = 0; i < values.length; i++) {
      s += stringifyJson(values[i]);
      s += '\n';
    }
    return s;
  }
}

/**
 * Byte pass-through for JSON in and JSON out. The returned encoder's `encodeRecords` writes each record's original text
 * (`raw`) instead of encoding its row again, where that text is one JSON object on one line and `exact()` says that no
 * row was changed after it was decoded from its `raw` (the runtime decides: no schema, payload_path, metadata fields,
 * transform or routes, and rows it decoded itself). That saves a JSON.stringify per record and keeps the text as it was
 * received (the digits of large numbers, escapes, key order). Anything else is encoded as usual.
 */
export function jsonPassThrough(enc: Encoder, exact: () => boolean, pretty = false, keptFields?: readonly string[]): Encoder {
  const unquote = keptFields && keptUnquoter(keptFields);
  /** The record's received text to write for its row (`all`: every row is its text), or undefined to encode it. */
  const received = (r: SluiceRecord, all: boolean): string | undefined => {
    const raw = r.raw;
    if (!isOneLineRaw(raw) || (!all && (unquote === undefined || r.kept === undefined))) return undefined;
    const text = typeof raw === 'string' ? raw : utf8Of(raw);
    return all ? text : unquote!(text, r.kept!);
  };
  const out: Encoder = {
    encode: (value) => enc.encode(value),
    encodeStream: (values, first) => enc.encodeStream(values, first),
    extension: enc.extension,
    encodeRecords(records, first) {
      const all = exact();
      if (!all && !unquote) return enc.encodeStream(records.map((r) => r.value), first);
      let s = '';
      for (let i = 0; i < records.length; i++) {
        const r = records[i]!;
        s += received(r, all) ?? (enc.encode(r.value) as string);
        s += '\n';
      }
      return s;
    },
  };
  // A message is the raw payload as received (bytes stay bytes) on the same terms as a line; `pretty` asks for
  // indented messages, which the raw text is not.
  if (!pretty) {
    out.encodeRecord = (r) => {
      const raw = r.raw;
      if (exact() && isOneLineRaw(raw)) return raw;
      return received(r, false) ?? enc.encode(r.value);
    };
  }
  return out;
}

const ascending = (a: number, b: number) => a - b;

/**
 * The received text of a row whose schema changed nothing but numeric strings into numbers (`kept`: a bit per such
 * field, by its index in `fields`; see core/schema.ts FitTrace), with those strings unquoted: `"p":"43249.00938070"`
 * becomes `"p":43249.00938070`, the same JSON number the row holds. Undefined where that cannot be done for certain,
 * and the row is then encoded: when the text has a nested object (a key could then be a nested one's), or a field's
 * `"name":"` is not found exactly once right after `{` or `,` (other spacing, escapes in the name, a duplicate key),
 * or its string holds anything but digits, `.` and `-` (an escape).
 */
export function keptUnquoter(fields: readonly string[]): (raw: string, kept: number) => string | undefined {
  const patterns = fields.map((f) => `"${f}":"`);
  const quotes: number[] = [];
  return (raw, kept) => {
    if (kept === 0) return raw;
    if (raw.indexOf('{', 1) !== -1) return undefined;
    quotes.length = 0;
    for (let k = 0; kept !== 0; k++, kept >>>= 1) {
      if ((kept & 1) === 0) continue;
      const pattern = patterns[k]!;
      const at = raw.indexOf(pattern);
      if (at <= 0 || raw.indexOf(pattern, at + 1) !== -1) return undefined;
      const before = raw.charCodeAt(at - 1);
      if (before !== 123 && before !== 44) return undefined; // '{' or ','
      const open = at + pattern.length - 1;
      let close = open + 1;
      for (; close < raw.length; close++) {
        const c = raw.charCodeAt(close);
        if (c === 34) break;
        if ((c < 48 || c > 57) && c !== 46 && c !== 45) return undefined;
      }
      quotes.push(open, close);
    }
    // The fields' strings do not overlap, so their quotes in text order are still pairs: the pieces go left to right.
    if (quotes.length > 2) quotes.sort(ascending);
    let out = raw.slice(0, quotes[0]);
    for (let q = 0; q < quotes.length; q++) out += raw.slice(quotes[q]! + 1, q + 1 < quotes.length ? quotes[q + 1] : raw.length);
    return out;
  };
}

/**
 * NDJSON for rows that hold only what JSON.parse makes, plus BigInt and Date (the runtime decides: rows it decoded
 * itself from json, csv or text, with no schema field of type bytes, no metadata fields and no transform). Such rows
 * skip `stringifyJson`'s walk looking for bytes; a BigInt (int64 past 2^53) makes JSON.stringify throw, and that row
 * alone takes the full encoder. `plain()` is read per batch, as the runtime may turn it off mid-run.
 */
export function jsonPlainRows(enc: Encoder, plain: () => boolean, pretty = false): Encoder {
  return {
    encode: (value) => (!pretty && plain() ? stringifyPlain(value) : enc.encode(value)),
    encodeStream(values, first) {
      if (!plain()) return enc.encodeStream(values, first);
      let s = '';
      for (let i = 0; i < values.length; i++) {
        s += stringifyPlain(values[i]);
        s += '\n';
      }
      return s;
    },
    extension: enc.extension,
  };
}

function stringifyPlain(v: unknown): string {
  try {
    return JSON.stringify(v) ?? 'null';
  } catch {
    return stringifyJson(v);
  }
}

/** A received payload that is one JSON object on one line, as text or bytes. */
function isOneLineRaw(raw: string | Uint8Array | undefined): raw is string | Uint8Array {
  return raw !== undefined && (typeof raw === 'string' ? isOneLineObject(raw) : isOneLineObjectBytes(raw));
}

/** `{...}` with no line break anywhere (a JSON line as it stands; leading blanks or a BOM do not qualify). */
function isOneLineObject(t: string): boolean {
  return t.charCodeAt(0) === 123 && t.charCodeAt(t.length - 1) === 125 && t.indexOf('\n') === -1 && t.indexOf('\r') === -1;
}

function isOneLineObjectBytes(b: Uint8Array): boolean {
  return b[0] === 123 && b[b.length - 1] === 125 && b.indexOf(10) === -1 && b.indexOf(13) === -1;
}

// ---- encoding ------------------------------------------------------------------------------------------------

/**
 * JSON text for any row. BigInt becomes a bare JSON number (its exact digits), Uint8Array a base64 string, Date its
 * ISO string. Rows without BigInt or bytes — nearly all of them — go straight to the native JSON.stringify.
 */
export function stringifyJson(v: unknown, indent?: string): string {
  if (!needsCustom(v, 0)) return JSON.stringify(v, null, indent) ?? 'null';
  return write(v, indent, '') ?? 'null';
}

/** Whether the value holds something native JSON.stringify gets wrong (BigInt throws, bytes become {"0":..}). */
function needsCustom(v: unknown, depth: number): boolean {
  if (typeof v !== 'object' || v === null) return typeof v === 'bigint';
  // Past this depth assume a cycle; the native path then reports it as JSON.stringify does.
  if (depth > 100) return false;
  if (ArrayBuffer.isView(v)) return true;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      if (typeof x === 'object' && x !== null ? needsCustom(x, depth + 1) : typeof x === 'bigint') return true;
    }
    return false;
  }
  if (v instanceof Date) return false;
  const o = v as Record<string, unknown>;
  for (const k in o) {
    const x = o[k];
    if (typeof x === 'object' && x !== null ? needsCustom(x, depth + 1) : typeof x === 'bigint') return true;
  }
  return false;
}

/** Mirrors JSON.stringify (undefined and functions dropped from objects, null in arrays) plus the extra types. */
function write(v: unknown, indent: string | undefined, cur: string): string | undefined {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'bigint':
      return v.toString();
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object': {
      if (v === null) return 'null';
      if (ArrayBuffer.isView(v)) return `"${toBase64(v)}"`;
      const tj = (v as { toJSON?: unknown }).toJSON;
      if (typeof tj === 'function') return write(tj.call(v), indent, cur);
      const inner = indent === undefined ? '' : cur + indent;
      const sep = indent === undefined ? ',' : ',\n' + inner;
      const open = indent === undefined ? '' : '\n' + inner;
      const close = indent === undefined ? '' : '\n' + cur;
      if (Array.isArray(v)) {
        if (v.length === 0) return '[]';
        let s = '[' + open;
        for (let i = 0; i < v.length; i++) {
          if (i > 0) s += sep;
          s += write(v[i], indent, inner) ?? 'null';
        }
        return s + close + ']';
      }
      const o = v as Record<string, unknown>;
      let s = '';
      let any = false;
      for (const k in o) {
        if (!Object.prototype.hasOwnProperty.call(o, k)) continue;
        const x = write(o[k], indent, inner);
        if (x === undefined) continue;
        s += any ? sep : '{' + open;
        s += JSON.stringify(k) + (indent === undefined ? ':' : ': ') + x;
        any = true;
      }
      return any ? s + close + '}' : '{}';
    }
    default:
      return undefined;
  }
}

// ---- error positions -----------------------------------------------------------------------------------------

/**
 * Deepest nesting accepted (Jackson's default too). JSON.parse itself takes any depth, but every later step that walks
 * a row recursively (JSON.stringify in encoders and the dead-letter sink, structuredClone, schemas) overflows the stack
 * a few thousand levels down, which failed the sink write instead of rejecting one record.
 */
export const MAX_JSON_DEPTH = 1000;

/** A DECODE error when valid JSON text nests deeper than MAX_JSON_DEPTH; texts too short to do so are not scanned. */
export function nestingError(text: string, lineNo: number): RecordError | undefined {
  if (text.length <= 2 * MAX_JSON_DEPTH) return undefined;
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      // Skip the string; the text is valid JSON, so every quote inside it is escaped.
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 92) i++;
        else if (d === 34) break;
      }
    } else if (c === 123 || c === 91) {
      if (++depth > MAX_JSON_DEPTH) {
        const where = lineNo > 0 ? `on line ${lineNo} at position ${i}` : `at position ${i}`;
        return new RecordError('DECODE', `JSON nested more than ${MAX_JSON_DEPTH} levels deep ${where}`);
      }
    } else if (c === 125 || c === 93) depth--;
  }
  return undefined;
}

/** A DECODE error naming where the text stopped being JSON; `lineNo` > 0 for one line of NDJSON. */
function syntaxError(text: string, e: unknown, lineNo: number): RecordError {
  const pos = errorOffset(text, e);
  const raw = e instanceof Error ? e.message : String(e);
  // V8 appends either the position or a quoted excerpt; the position is given in our own words instead.
  const reason = raw
    .replace(/ in JSON at position \d+.*$/s, '')
    .replace(/,? ".*" is not valid JSON$/s, '')
    .replace(/ after JSON at position \d+.*$/s, ' after the JSON value');
  let where: string;
  if (lineNo > 0) where = `on line ${lineNo} at position ${pos}`;
  else if (text.includes('\n')) {
    const before = text.slice(0, pos);
    const line = before.split('\n').length;
    const col = pos - before.lastIndexOf('\n');
    where = `at position ${pos} (line ${line}, column ${col})`;
  } else where = `at position ${pos}`;
  return new RecordError('DECODE', `invalid JSON ${where}: ${reason}`);
}

/** The offset JSON.parse complained about: from its message when it gives one, else found by scanning. */
function errorOffset(text: string, e: unknown): number {
  const msg = e instanceof Error ? e.message : '';
  const m = /at position (\d+)/.exec(msg);
  if (m) return Number(m[1]);
  if (msg.startsWith('Unexpected end')) return text.length;
  const p = scanJsonError(text);
  return p < 0 ? text.length : p;
}

// Container kinds on the scanner's stack.
const ARR = 0;
const OBJ = 1;

/** Offset of the first character at which `s` stops being valid JSON, or -1. Only used once a parse failed. */
export function scanJsonError(s: string): number {
  const n = s.length;
  const stack: number[] = [];
  let i = 0;
  const ws = () => {
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
  };
  // Each returns the error offset, or -1 after consuming the token.
  const str = (): number => {
    if (s.charCodeAt(i) !== 34) return i;
    i++;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === 34) {
        i++;
        return -1;
      }
      if (c < 0x20) return i;
      if (c === 92) {
        const d = s[i + 1];
        if (d === 'u') {
          for (let k = 2; k < 6; k++) if (!/[0-9a-fA-F]/.test(s[i + k] ?? '')) return Math.min(i + k, n);
          i += 6;
        } else if (d !== undefined && '"\\/bfnrt'.includes(d)) i += 2;
        else return Math.min(i + 1, n);
      } else i++;
    }
    return n;
  };
  const digits = (): boolean => {
    const st = i;
    while (i < n && s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++;
    return i > st;
  };
  const num = (): number => {
    if (s[i] === '-') i++;
    if (s[i] === '0') i++;
    else if (!digits()) return i;
    if (s[i] === '.') {
      i++;
      if (!digits()) return i;
    }
    if (s[i] === 'e' || s[i] === 'E') {
      i++;
      if (s[i] === '+' || s[i] === '-') i++;
      if (!digits()) return i;
    }
    return -1;
  };
  const lit = (word: string): number => {
    for (let k = 0; k < word.length; k++) if (s[i + k] !== word[k]) return Math.min(i + k, n);
    i += word.length;
    return -1;
  };
  const key = (): number => {
    ws();
    const e = str();
    if (e >= 0) return e;
    ws();
    if (s[i] !== ':') return i;
    i++;
    return -1;
  };
  for (;;) {
    // A value is expected here.
    ws();
    const c = s[i];
    let err = -1;
    if (c === '{') {
      i++;
      ws();
      if (s[i] === '}') i++;
      else {
        err = key();
        if (err >= 0) return err;
        stack.push(OBJ);
        continue;
      }
    } else if (c === '[') {
      i++;
      ws();
      if (s[i] === ']') i++;
      else {
        stack.push(ARR);
        continue;
      }
    } else if (c === '"') err = str();
    else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) err = num();
    else if (c === 't') err = lit('true');
    else if (c === 'f') err = lit('false');
    else if (c === 'n') err = lit('null');
    else return i;
    if (err >= 0) return err;
    // After a value: close containers or move to the next element.
    for (;;) {
      ws();
      const top = stack[stack.length - 1];
      if (top === undefined) return i < n ? i : -1;
      const d = s[i];
      if (d === ',') {
        i++;
        if (top === OBJ) {
          err = key();
          if (err >= 0) return err;
        }
        break;
      }
      if ((top === ARR && d === ']') || (top === OBJ && d === '}')) {
        i++;
        stack.pop();
        continue;
      }
      return i;
    }
  }
}
