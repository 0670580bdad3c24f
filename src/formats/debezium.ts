// Debezium's JSON change events: `{before, after, source, op, ts_ms}`, optionally inside `{schema, payload}`.
//
// `debezium-json` gives the changed row (after for c/u/r, before for d) plus a few metadata columns.
// `debezium-json-upsert` gives upsert rows for c/u/r and, for d and tombstones, a delete marker that carries only the
// key columns, `__op: 'd'` and `__deleted: true`, so that key-aware sinks (SQL upserts, Redis, compacted topics) can
// delete the row.

import { z, bool, list, opt } from '../core/spec.js';
import { RecordError } from '../core/errors.js';
import type { Decoder, Encoder, SchemaSpec } from '../core/types.js';
import { nestingError, stringifyJson } from './json.js';
import type { PreparedFormat } from './registry.js';
import { describeValue, payloadText } from './util.js';

export const debeziumOptions = z.strictObject({
  include_metadata: bool({
    default: true,
    description:
      'Add the change metadata to each row: `__op` (c, u, d or r), `__table`, `__db`, `__source_ts_ms` (when the change happened in the database) and `__ts_ms` (when Debezium processed it). `__op` is always kept in upsert mode.',
    aliases: ['metadata'],
  }),
  key_fields: list(z.string().min(1), {
    description:
      'Upsert mode: the columns that identify a row, copied into delete markers. Default: the pipeline schema\'s primary key, else the fields of the record key (tombstones) or every column of `before`.',
    aliases: ['key_columns', 'primary_key'],
  }).optional(),
  convert_types: bool({
    default: true,
    description:
      'With the `schema` wrapper: turn Kafka Connect logical types into row types: Decimal (base64) -> exact decimal text, Timestamp/MicroTimestamp/NanoTimestamp/ZonedTimestamp -> timestamp, Date -> YYYY-MM-DD.',
  }),
});

export interface DebeziumOptions {
  include_metadata: boolean;
  key_fields?: string[];
  convert_types: boolean;
}

/** The metadata columns; anything starting with `__` is left out of encoded `after`/`before` images. */
export const OP = '__op';
export const DELETED = '__deleted';

/** A decoder that can also see the message key, so that a tombstone (empty value) becomes a delete marker. */
export interface KeyedDecoder extends Decoder {
  decodeWithKey(payload: string | Uint8Array | null | undefined, key: string | Uint8Array | null | undefined, out: unknown[], onError: (err: Error, raw: string | Uint8Array) => void): void;
}

type OnError = (err: Error, raw: string | Uint8Array) => void;
type Row = Record<string, unknown>;

export function debeziumFormat(o: DebeziumOptions, upsert: boolean, schema?: SchemaSpec): PreparedFormat {
  const keyFields = o.key_fields ?? schema?.primary_key;
  const name = upsert ? 'debezium-json-upsert' : 'debezium-json';
  return {
    name,
    decoder: () => new DebeziumDecoder(o, upsert, keyFields),
    encoder: () => new DebeziumEncoder(upsert, keyFields),
  };
}

class DebeziumDecoder implements KeyedDecoder {
  private readonly converters = new Map<string, ((row: Row) => void) | null>();
  constructor(
    private readonly o: DebeziumOptions,
    private readonly upsert: boolean,
    private readonly keyFields: string[] | undefined,
  ) {}

  decode(payload: string | Uint8Array, out: unknown[], onError: OnError): void {
    this.decodeWithKey(payload, undefined, out, onError);
  }

  decodeWithKey(payload: string | Uint8Array | null | undefined, key: string | Uint8Array | null | undefined, out: unknown[], onError: OnError): void {
    const text = payload == null ? '' : payloadText(payload);
    if (typeof text !== 'string') return onError(text, payload!);
    if (isTombstone(text)) return this.tombstone(key, out, onError);
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      return onError(new RecordError('DECODE', `invalid JSON in Debezium event: ${(e as Error).message}`), payload!);
    }
    const deep = nestingError(text, 0);
    if (deep) return onError(deep, payload!);
    if (doc === null) return this.tombstone(key, out, onError);
    if (typeof doc !== 'object' || Array.isArray(doc)) {
      return onError(new RecordError('DECODE', `expected a Debezium change event (a JSON object), got ${describeValue(doc)}`), payload!);
    }
    let ev = doc as Row;
    let schema: Row | undefined;
    if ('payload' in ev && !('op' in ev)) {
      schema = isObject(ev.schema) ? ev.schema : undefined;
      if (ev.payload === null) return this.tombstone(key, out, onError);
      if (!isObject(ev.payload)) return onError(new RecordError('DECODE', `Debezium 'payload' must be an object, got ${describeValue(ev.payload)}`), payload!);
      ev = ev.payload;
    }
    const op = ev.op;
    if (typeof op !== 'string') {
      return onError(new RecordError('DECODE', `not a Debezium change event: 'op' is ${op === undefined ? 'missing' : describeValue(op)} (expected c, u, d or r)`), payload!);
    }
    let image: unknown;
    switch (op) {
      case 'c':
      case 'u':
      case 'r':
        image = ev.after;
        break;
      case 'd':
        image = ev.before;
        break;
      case 't':
      case 'm':
        // Truncates and logical-decoding messages change no row.
        return;
      default:
        return onError(new RecordError('DECODE', `unknown Debezium op '${op}' (expected c, u, d, r, t or m)`), payload!);
    }
    if (!isObject(image)) {
      const which = op === 'd' ? 'before' : 'after';
      return onError(new RecordError('DECODE', `Debezium '${op}' event has no '${which}' row (got ${describeValue(image)})`), payload!);
    }
    // The event object is ours (fresh from JSON.parse): the image becomes the row without a copy.
    const row = image;
    if (schema && this.o.convert_types) {
      const conv = this.converterFor(schema, op === 'd' ? 'before' : 'after');
      if (conv) {
        try {
          conv(row);
        } catch (e) {
          return onError(e as Error, payload!);
        }
      }
    }
    if (this.upsert && op === 'd') {
      out.push(this.marker(row));
      return;
    }
    if (this.o.include_metadata) {
      row[OP] = op;
      const src = isObject(ev.source) ? ev.source : undefined;
      row.__table = src?.table ?? null;
      row.__db = src?.db ?? null;
      row.__source_ts_ms = src?.ts_ms ?? null;
      row.__ts_ms = ev.ts_ms ?? null;
    } else if (this.upsert) row[OP] = op;
    out.push(row);
  }

  /** A delete marker: the key columns of `before`, `__op: 'd'`, `__deleted: true`. */
  private marker(before: Row): Row {
    const m: Row = {};
    const keys = this.keyFields ?? Object.keys(before);
    for (const k of keys) m[k] = before[k] ?? null;
    m[OP] = 'd';
    m[DELETED] = true;
    return m;
  }

  private tombstone(key: string | Uint8Array | null | undefined, out: unknown[], onError: OnError): void {
    // Debezium follows each delete with a tombstone for log compaction; without the key it says nothing new.
    if (!this.upsert || key == null) return;
    const text = payloadText(key);
    if (typeof text !== 'string') return onError(text, key);
    let k: unknown;
    try {
      k = JSON.parse(text);
    } catch {
      k = undefined;
    }
    if (isObject(k) && 'payload' in k && 'schema' in k) k = k.payload;
    let fields: Row;
    if (isObject(k)) fields = k;
    else if (this.keyFields?.length === 1) fields = { [this.keyFields[0]!]: k === undefined ? text : k };
    else return onError(new RecordError('DECODE', `tombstone with a key that is not a JSON object (${describeValue(k ?? text)}); set key_fields to a single column to use it as is`), key);
    out.push(this.marker(fields));
  }

  /** Conversions for Kafka Connect logical types in one image's struct schema, built once per struct name. */
  private converterFor(schema: Row, which: 'before' | 'after'): ((row: Row) => void) | null {
    const fields = Array.isArray(schema.fields) ? (schema.fields as Row[]) : [];
    const struct = fields.find((f) => f.field === which);
    if (!struct || !Array.isArray(struct.fields)) return null;
    const cacheKey = `${String(struct.name ?? '')}\u0000${(struct.fields as unknown[]).length}`;
    let conv = this.converters.get(cacheKey);
    if (conv === undefined) {
      conv = buildConverter(struct.fields as Row[]);
      this.converters.set(cacheKey, conv);
    }
    return conv;
  }
}

function buildConverter(fields: Row[]): ((row: Row) => void) | null {
  const steps: Array<[string, (v: unknown, field: string) => unknown]> = [];
  for (const f of fields) {
    const name = typeof f.field === 'string' ? f.field : undefined;
    if (!name) continue;
    const fn = logicalConverter(f);
    if (fn) steps.push([name, fn]);
  }
  if (!steps.length) return null;
  return (row) => {
    for (let i = 0; i < steps.length; i++) {
      const [name, fn] = steps[i]!;
      const v = row[name];
      if (v !== null && v !== undefined) row[name] = fn(v, name);
    }
  };
}

const DAY = 86_400_000;

function logicalConverter(f: Row): ((v: unknown, field: string) => unknown) | undefined {
  switch (f.name) {
    case 'org.apache.kafka.connect.data.Decimal': {
      const params = isObject(f.parameters) ? f.parameters : {};
      const scale = Number(params.scale ?? 0);
      return (v, field) => (typeof v === 'string' ? decimalFromBase64(v, scale, field) : v);
    }
    case 'org.apache.kafka.connect.data.Timestamp':
    case 'io.debezium.time.Timestamp':
      return (v) => (typeof v === 'number' ? new Date(v) : v);
    case 'io.debezium.time.MicroTimestamp':
      return (v) => (typeof v === 'number' ? new Date(Math.floor(v / 1000)) : v);
    case 'io.debezium.time.NanoTimestamp':
      return (v) => (typeof v === 'number' ? new Date(Math.floor(v / 1e6)) : v);
    case 'io.debezium.time.ZonedTimestamp':
      return (v, field) => {
        if (typeof v !== 'string') return v;
        const t = Date.parse(v);
        if (Number.isNaN(t)) throw new RecordError('DECODE', `not an ISO-8601 timestamp: ${describeValue(v)}`, field);
        return new Date(t);
      };
    case 'org.apache.kafka.connect.data.Date':
    case 'io.debezium.time.Date':
      return (v) => (typeof v === 'number' ? new Date(v * DAY).toISOString().slice(0, 10) : v);
    default:
      return undefined;
  }
}

/** Kafka Connect's Decimal: the unscaled value as big-endian two's complement, base64 in JSON. */
function decimalFromBase64(s: string, scale: number, field: string): string {
  const b = Buffer.from(s, 'base64');
  if (b.length === 0 && s.length > 0) throw new RecordError('DECODE', `decimal is not base64: ${describeValue(s)}`, field);
  let n = 0n;
  for (let i = 0; i < b.length; i++) n = (n << 8n) | BigInt(b[i]!);
  if (b.length && b[0]! & 0x80) n -= 1n << BigInt(b.length * 8);
  const neg = n < 0n;
  let t = (neg ? -n : n).toString();
  if (scale > 0) {
    t = t.padStart(scale + 1, '0');
    t = `${t.slice(0, t.length - scale)}.${t.slice(t.length - scale)}`;
  }
  return neg ? `-${t}` : t;
}

function isTombstone(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 10 && c !== 13) return false;
  }
  return true;
}

function isObject(v: unknown): v is Row {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---- encoding ------------------------------------------------------------------------------------------------

class DebeziumEncoder implements Encoder {
  readonly extension = 'jsonl';
  constructor(
    private readonly upsert: boolean,
    private readonly keyFields: string[] | undefined,
  ) {}

  encode(value: unknown): string {
    return stringifyJson(this.envelope(value));
  }

  encodeStream(values: unknown[], _first: boolean): string {
    let s = '';
    for (let i = 0; i < values.length; i++) s += stringifyJson(this.envelope(values[i])) + '\n';
    return s;
  }

  private envelope(value: unknown): Row {
    if (!isObject(value)) throw new RecordError('SCHEMA', `a Debezium event needs a row (an object), got ${describeValue(value)}`);
    const opv = value[OP];
    const op = opv === undefined || opv === null ? 'c' : String(opv);
    if (op !== 'c' && op !== 'u' && op !== 'd' && op !== 'r') {
      throw new RecordError('SCHEMA', `must be one of c, u, d, r, got ${describeValue(opv)}`, OP);
    }
    const image: Row = {};
    let table: unknown;
    let db: unknown;
    let sourceTs: unknown;
    for (const k of Object.keys(value)) {
      if (k.startsWith('__')) {
        if (k === '__table') table = value[k];
        else if (k === '__db') db = value[k];
        else if (k === '__source_ts_ms') sourceTs = value[k];
        continue;
      }
      image[k] = value[k];
    }
    let before: Row | null = null;
    let after: Row | null = image;
    if (op === 'd') {
      before = image;
      after = null;
      if (this.upsert && this.keyFields) {
        before = {};
        for (const k of this.keyFields) before[k] = image[k] ?? null;
      }
    }
    const now = Date.now();
    const source: Row = { connector: 'sluice', ts_ms: typeof sourceTs === 'number' ? sourceTs : now };
    if (db !== undefined && db !== null) source.db = db;
    if (table !== undefined && table !== null) source.table = table;
    return { before, after, source, op, ts_ms: now };
  }
}
