// InfluxDB line protocol: `measurement,tag=v field=1i,other="s" 1700000000000`, one line per record.
//
// Escaping follows the InfluxDB reference: measurement names escape commas and spaces; tag keys, tag values and
// field keys escape commas, equals signs and spaces; string field values escape double quotes and backslashes.
// Outside string values a backslash is literal (InfluxDB only unescapes `\,`, `\ ` and `\=` there), so a name
// whose backslash would be read as an escape (one at the end, or before a comma, space or equals sign) cannot be
// written faithfully and is rejected, as are line breaks, which only string field values can carry.

import { stringifyJson } from '../../formats/json.js';
import type { FieldSpec } from '../../core/types.js';

export type Precision = 'ns' | 'us' | 'ms' | 's';

export interface LineMapping {
  measurement?: string;
  measurement_field?: string;
  /** Sorted by key: InfluxDB recommends it, and it makes series keys stable. */
  tags: string[];
  /** Undefined: every field that is not a tag, the measurement field or the timestamp field. */
  fields?: string[];
  timestamp_field?: string;
  precision: Precision;
  /** Fields written as integers (`i` suffix) even when their value is a JS number: int32/int64 in the pipeline schema. */
  integerFields: Set<string>;
}

/** Why a record cannot become a line; the sink reports it with the record's position. */
export class LineError extends Error {}

const MEASUREMENT = /[, ]/g;
const KEY = /[, =]/g;
const STRING = /["\\]/g;
const NEEDS_MEASUREMENT = /[, \\\n\r]/;
const NEEDS_KEY = /[, =\\\n\r]/;

function unrepresentable(s: string, what: string, special: RegExp): never | void {
  if (/[\n\r]/.test(s)) throw new LineError(`${what} '${s}' contains a line break, which line protocol cannot carry`);
  if (special.test(s)) throw new LineError(`${what} '${s}' has a backslash at its end or before a comma, space or equals sign, which InfluxDB would read as an escape`);
}

function escapeMeasurement(s: string): string {
  if (!NEEDS_MEASUREMENT.test(s)) return s;
  unrepresentable(s, 'measurement', /\\$|\\[, ]/);
  return s.replace(MEASUREMENT, '\\$&');
}

function escapeKey(s: string, what: string): string {
  if (!NEEDS_KEY.test(s)) return s;
  unrepresentable(s, what, /\\$|\\[, =]/);
  return s.replace(KEY, '\\$&');
}

const escapeString = (s: string) => s.replace(STRING, '\\$&');

const MS_FACTOR: Record<Precision, bigint> = { ns: 1_000_000n, us: 1_000n, ms: 1n, s: 0n };

/** A time value as an integer in `precision` units. Numbers and BigInts are taken as already in that unit. */
export function timestampText(v: unknown, precision: Precision, field: string): string | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new LineError(`timestamp field '${field}' is ${v}`);
    return Math.trunc(v).toString();
  }
  let ms: number;
  if (v instanceof Date) ms = v.getTime();
  else if (typeof v === 'string') {
    if (/^-?\d+$/.test(v.trim())) return v.trim();
    ms = Date.parse(v);
  } else throw new LineError(`timestamp field '${field}' must be a time, a number or a date string, got ${typeof v}`);
  if (Number.isNaN(ms)) throw new LineError(`timestamp field '${field}' is not a valid time: '${String(v)}'`);
  return msToPrecision(ms, precision);
}

export function msToPrecision(ms: number, precision: Precision): string {
  if (precision === 's') return Math.floor(ms / 1000).toString();
  if (precision === 'ms') return Math.trunc(ms).toString();
  return (BigInt(Math.trunc(ms)) * MS_FACTOR[precision]).toString();
}

function fieldValue(name: string, v: unknown, integer: boolean): string | undefined {
  switch (typeof v) {
    case 'number':
      if (!Number.isFinite(v)) return undefined; // NaN and Infinity have no line-protocol spelling; the field is left out
      if (integer) {
        if (!Number.isInteger(v)) throw new LineError(`field '${name}' is declared as an integer but is ${v}`);
        return `${v}i`;
      }
      return `${v}`;
    case 'bigint':
      return `${v}i`;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'string':
      return `"${escapeString(v)}"`;
    case 'undefined':
      return undefined;
    default:
      if (v === null) return undefined;
      if (v instanceof Date) return `"${v.toISOString()}"`;
      // Objects, arrays and bytes are written as their JSON text, a string field.
      return `"${escapeString(stringifyJson(v))}"`;
  }
}

/** Writes rows as lines; one instance per sink, holding the pre-escaped names that do not change. */
export class LineEncoder {
  private readonly fixedMeasurement?: string;
  private readonly tagKeys: Array<[string, string]>;
  private readonly fieldKeys?: Array<[string, string]>;
  private readonly skip: Set<string>;
  private readonly keyCache = new Map<string, string>();

  constructor(private readonly m: LineMapping) {
    if (m.measurement !== undefined) this.fixedMeasurement = escapeMeasurement(m.measurement);
    this.tagKeys = [...m.tags].sort().map((t) => [t, escapeKey(t, 'tag key')]);
    this.fieldKeys = m.fields?.map((f) => [f, escapeKey(f, 'field key')]);
    this.skip = new Set([...m.tags, ...(m.measurement_field ? [m.measurement_field] : []), ...(m.timestamp_field ? [m.timestamp_field] : [])]);
  }

  /** One line (without the newline). `eventTime` (ms) is used when there is no timestamp field. */
  line(row: unknown, eventTime: number | undefined): string {
    if (row === null || typeof row !== 'object' || Array.isArray(row)) throw new LineError(`a record must be an object with fields, got ${row === null ? 'null' : Array.isArray(row) ? 'an array' : typeof row}`);
    const r = row as Record<string, unknown>;
    let out: string;
    if (this.fixedMeasurement !== undefined) out = this.fixedMeasurement;
    else {
      const f = this.m.measurement_field!;
      const v = r[f];
      if (v === null || v === undefined || v === '') throw new LineError(`measurement field '${f}' is missing or empty`);
      out = escapeMeasurement(String(v));
    }
    for (const [name, key] of this.tagKeys) {
      const v = r[name];
      // InfluxDB rejects empty tag values; a tag without a value is simply not part of the series key.
      if (v === null || v === undefined || v === '') continue;
      out += `,${key}=${escapeKey(typeof v === 'string' ? v : v instanceof Date ? v.toISOString() : typeof v === 'object' ? stringifyJson(v) : String(v), 'tag value')}`;
    }
    let sep = ' ';
    let n = 0;
    if (this.fieldKeys) {
      for (const [name, key] of this.fieldKeys) {
        const v = fieldValue(name, r[name], this.m.integerFields.has(name));
        if (v === undefined) continue;
        out += `${sep}${key}=${v}`;
        sep = ',';
        n++;
      }
    } else {
      for (const name in r) {
        if (this.skip.has(name)) continue;
        const v = fieldValue(name, r[name], this.m.integerFields.has(name));
        if (v === undefined) continue;
        let key = this.keyCache.get(name);
        if (key === undefined) {
          key = escapeKey(name, 'field key');
          if (this.keyCache.size < 10_000) this.keyCache.set(name, key);
        }
        out += `${sep}${key}=${v}`;
        sep = ',';
        n++;
      }
    }
    if (n === 0) throw new LineError('the record has no field values (every field is null, a tag or excluded); InfluxDB needs at least one field');
    const ts = this.m.timestamp_field
      ? timestampText(r[this.m.timestamp_field], this.m.precision, this.m.timestamp_field)
      : eventTime === undefined
        ? undefined
        : msToPrecision(eventTime, this.m.precision);
    if (ts !== undefined) out += ` ${ts}`;
    return out;
  }
}

/** int32/int64 fields of the pipeline schema: written with the `i` suffix. */
export function integerFieldsOf(fields: FieldSpec[] | undefined): Set<string> {
  return new Set((fields ?? []).filter((f) => f.type === 'int32' || f.type === 'int64').map((f) => f.name));
}
