// Runtime value semantics shared by operators and functions: SQL NULL is null (undefined reads as null), numbers may
// arrive as bigint (int64 beyond 2^53) or numeric strings (untyped JSON), timestamps as Date, ISO text or epoch ms.

import { RecordError } from '../core/errors.js';
import { parseIsoTimestamp } from '../core/schema.js';
import { utf8Of } from '../formats/util.js';

/** A value that cannot be used the way the expression needs; the record fails (TRY_CAST gives NULL instead). */
export class SqlValueError extends RecordError {
  constructor(message: string) {
    super('SCHEMA', message);
    this.name = 'SqlValueError';
  }
}

export function show(v: unknown): string {
  if (typeof v === 'string') return `'${v.length > 40 ? `${v.slice(0, 40)}...` : v}'`;
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'object' && v !== null) {
    try {
      const s = JSON.stringify(v);
      return s.length > 60 ? `${s.slice(0, 60)}...` : s;
    } catch {
      return String(v);
    }
  }
  return String(v);
}

const NUMERIC = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

/** A number from a non-null value, or a record error. */
export function toNum(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string' && NUMERIC.test(v)) return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (v instanceof Date) return v.getTime();
  throw new SqlValueError(`expected a number, got ${show(v)}`);
}

/** Epoch milliseconds from a non-null timestamp-like value (Date, ISO text, epoch ms number). */
export function toMillis(v: unknown): number {
  if (v instanceof Date) return v.getTime();
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string') {
    const t = parseIsoTimestamp(v);
    if (t !== undefined) return t;
    if (NUMERIC.test(v)) return Number(v);
  }
  throw new SqlValueError(`expected a timestamp, got ${show(v)}`);
}

/** Text of a non-null value: timestamps as ISO-8601, objects as JSON, bytes as UTF-8. */
export function toText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return utf8Of(v);
  if (typeof v === 'object' && v !== null) return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
  return String(v);
}

export function toBool(v: unknown): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (s === 'true' || s === 't' || s === 'yes' || s === 'y' || s === '1' || s === 'on') return true;
    if (s === 'false' || s === 'f' || s === 'no' || s === 'n' || s === '0' || s === 'off') return false;
  }
  throw new SqlValueError(`expected a boolean, got ${show(v)}`);
}

/**
 * Order of two non-null values: numbers numerically (numeric text too), timestamps by time (ISO text against a
 * Date), text by code points, booleans false < true. Values of unrelated kinds compare as text.
 */
export function compare(a: unknown, b: unknown): number {
  const ta = typeof a;
  const tb = typeof b;
  if (ta === 'number' && tb === 'number') return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
  if (ta === 'string' && tb === 'string') return a === b ? 0 : (a as string) < (b as string) ? -1 : 1;
  if (a instanceof Date || b instanceof Date) {
    const x = toMillis(a);
    const y = toMillis(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if ((ta === 'number' || ta === 'bigint') && (tb === 'number' || tb === 'bigint')) {
    if (ta === 'bigint' && tb === 'bigint') return (a as bigint) < (b as bigint) ? -1 : (a as bigint) > (b as bigint) ? 1 : 0;
    const x = Number(a);
    const y = Number(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if ((ta === 'number' || ta === 'bigint') && tb === 'string' && NUMERIC.test(b as string)) return compare(Number(a), Number(b));
  if (ta === 'string' && (tb === 'number' || tb === 'bigint') && NUMERIC.test(a as string)) return compare(Number(a), Number(b));
  if (ta === 'boolean' && tb === 'boolean') return a === b ? 0 : a ? 1 : -1;
  const x = toText(a);
  const y = toText(b);
  return x === y ? 0 : x < y ? -1 : 1;
}

export function sqlEquals(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  return compare(a, b) === 0;
}

/** `->`: a field of an object or an element of an array; JSON text is parsed first. Missing gives null. */
export function jsonGet(v: unknown, key: unknown): unknown {
  if (v === null || v === undefined || key === null || key === undefined) return null;
  if (typeof v === 'string') {
    const t = v.trimStart();
    if (t[0] !== '{' && t[0] !== '[') return null;
    try {
      v = JSON.parse(v);
    } catch {
      return null;
    }
  }
  if (Array.isArray(v)) {
    if (typeof key !== 'number' && !(typeof key === 'string' && /^-?\d+$/.test(key))) return null;
    let i = Number(key);
    if (i < 0) i += v.length;
    const x = v[i];
    return x === undefined ? null : x;
  }
  if (typeof v === 'object' && !(v instanceof Date) && !ArrayBuffer.isView(v)) {
    const k = String(key);
    if (!Object.prototype.hasOwnProperty.call(v, k)) return null;
    const x = (v as Record<string, unknown>)[k];
    return x === undefined ? null : x;
  }
  return null;
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** to_char patterns: YYYY YY MM DD HH24 HH12 HH MI SS MS US AM PM Mon Month Dy Day, in UTC. */
export function formatTimestamp(ms: number, fmt: string): string {
  const d = new Date(ms);
  const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
  const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
  const h = d.getUTCHours();
  return fmt.replace(/YYYY|YY|MM|DD|HH24|HH12|HH|MI|SS|MS|US|AM|PM|Month|Mon|Day|Dy|"[^"]*"/g, (t) => {
    switch (t) {
      case 'YYYY': return pad(d.getUTCFullYear(), 4);
      case 'YY': return pad(d.getUTCFullYear() % 100);
      case 'MM': return pad(d.getUTCMonth() + 1);
      case 'DD': return pad(d.getUTCDate());
      case 'HH24': return pad(h);
      case 'HH12':
      case 'HH': return pad(h % 12 === 0 ? 12 : h % 12);
      case 'MI': return pad(d.getUTCMinutes());
      case 'SS': return pad(d.getUTCSeconds());
      case 'MS': return pad(d.getUTCMilliseconds(), 3);
      case 'US': return pad(d.getUTCMilliseconds() * 1000, 6);
      case 'AM':
      case 'PM': return h < 12 ? 'AM' : 'PM';
      case 'Month': return MONTHS[d.getUTCMonth()]!;
      case 'Mon': return MONTHS[d.getUTCMonth()]!.slice(0, 3);
      case 'Day': return DAYS[d.getUTCDay()]!;
      case 'Dy': return DAYS[d.getUTCDay()]!.slice(0, 3);
      default: return t.slice(1, -1);
    }
  });
}

export const TRUNC_UNITS = ['millisecond', 'second', 'minute', 'hour', 'day', 'week', 'month', 'quarter', 'year'] as const;

export function truncTimestamp(unit: string, ms: number): number {
  const d = new Date(ms);
  switch (unit) {
    case 'millisecond': return ms;
    case 'second': return Math.floor(ms / 1000) * 1000;
    case 'minute': return Math.floor(ms / 60_000) * 60_000;
    case 'hour': return Math.floor(ms / 3_600_000) * 3_600_000;
    case 'day': return Math.floor(ms / 86_400_000) * 86_400_000;
    case 'week': {
      // ISO weeks start on Monday.
      const day = Math.floor(ms / 86_400_000) * 86_400_000;
      const dow = (new Date(day).getUTCDay() + 6) % 7;
      return day - dow * 86_400_000;
    }
    case 'month': return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    case 'quarter': return Date.UTC(d.getUTCFullYear(), Math.floor(d.getUTCMonth() / 3) * 3, 1);
    case 'year': return Date.UTC(d.getUTCFullYear(), 0, 1);
    default: throw new SqlValueError(`unknown date_trunc unit '${unit}' (use ${TRUNC_UNITS.join(', ')})`);
  }
}

export const EXTRACT_FIELDS = ['epoch', 'year', 'quarter', 'month', 'week', 'day', 'dow', 'isodow', 'doy', 'hour', 'minute', 'second', 'millisecond', 'milliseconds', 'microseconds'] as const;

export function extractField(field: string, ms: number): number {
  const d = new Date(ms);
  switch (field) {
    case 'epoch': return ms / 1000;
    case 'year': return d.getUTCFullYear();
    case 'quarter': return Math.floor(d.getUTCMonth() / 3) + 1;
    case 'month': return d.getUTCMonth() + 1;
    case 'week': {
      // ISO 8601 week number: the week with the year's first Thursday is week 1.
      const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
      const dow = (t.getUTCDay() + 6) % 7;
      t.setUTCDate(t.getUTCDate() - dow + 3);
      const firstThursday = new Date(Date.UTC(t.getUTCFullYear(), 0, 4));
      return 1 + Math.round((t.getTime() - firstThursday.getTime()) / 604_800_000 - ((firstThursday.getUTCDay() + 6) % 7 - 3) / 7);
    }
    case 'day': return d.getUTCDate();
    case 'dow': return d.getUTCDay();
    case 'isodow': return d.getUTCDay() === 0 ? 7 : d.getUTCDay();
    case 'doy': return Math.floor((Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) - Date.UTC(d.getUTCFullYear(), 0, 1)) / 86_400_000) + 1;
    case 'hour': return d.getUTCHours();
    case 'minute': return d.getUTCMinutes();
    case 'second': return d.getUTCSeconds() + d.getUTCMilliseconds() / 1000;
    case 'millisecond':
    case 'milliseconds': return d.getUTCSeconds() * 1000 + d.getUTCMilliseconds();
    case 'microseconds': return (d.getUTCSeconds() * 1000 + d.getUTCMilliseconds()) * 1000;
    default: throw new SqlValueError(`unknown field '${field}' (use ${EXTRACT_FIELDS.join(', ')})`);
  }
}

/** LIKE pattern to a regular expression: % any run, _ one character, `esc` quotes the next character. */
export function likeRegExp(pattern: string, ci: boolean, esc?: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (esc !== undefined && ch === esc && i + 1 < pattern.length) {
      re += pattern[++i]!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    } else if (ch === '%') re += '[\\s\\S]*';
    else if (ch === '_') re += '[\\s\\S]';
    else re += ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`${re}$`, ci ? 'iu' : 'u');
}
