// The scalar function library. Each entry states its arity, which argument kinds it accepts (for compile-time type
// errors) and its result type; `impl` receives non-null arguments unless `nulls` is set (NULL in, NULL out).

import { createHash } from 'node:crypto';
import {
  SqlValueError,
  compare,
  extractField,
  formatTimestamp,
  jsonGet,
  show,
  toMillis,
  toNum,
  toText,
  truncTimestamp,
  TRUNC_UNITS,
} from './values.js';

/** Static types the compiler tracks. `any` is unknown (an untyped column), `null` the NULL literal. */
export type SqlType = 'int' | 'float' | 'decimal' | 'string' | 'boolean' | 'timestamp' | 'date' | 'json' | 'bytes' | 'array' | 'interval' | 'null' | 'any';

/** Argument kinds: `num` (int/float/decimal), `text`, `time` (timestamp/date/text), `bool`, `json`, `any`. */
export type ArgKind = 'num' | 'text' | 'time' | 'bool' | 'any';

export interface FunctionDef {
  min: number;
  max: number;
  /** Kind of each argument; the last one repeats for variadic functions. */
  args: ArgKind[];
  ret: SqlType | ((args: SqlType[]) => SqlType);
  /** Called with every argument even when one is NULL (COALESCE, CONCAT). */
  nulls?: boolean;
  /** Gives a different value on each call (now(), random()): never folded into a constant. */
  volatile?: boolean;
  impl: (...a: any[]) => unknown;
  /** One line for the docs and for did-you-mean listings. */
  doc: string;
}

const NUMS = new Set<SqlType>(['int', 'float', 'decimal']);

export function accepts(kind: ArgKind, t: SqlType): boolean {
  if (t === 'any' || t === 'null' || t === 'json' || kind === 'any') return true;
  switch (kind) {
    case 'num':
      return NUMS.has(t) || t === 'string';
    case 'text':
      // Like PostgreSQL: no implicit text from numbers or booleans (write CAST(x AS TEXT) or concat).
      return t === 'string' || t === 'bytes' || t === 'timestamp' || t === 'date' || t === 'array';
    case 'time':
      return t === 'timestamp' || t === 'date' || t === 'string' || NUMS.has(t);
    case 'bool':
      return t === 'boolean' || t === 'string';
  }
}

/** The wider numeric type of the arguments (int + float = float). */
function numericRet(args: SqlType[]): SqlType {
  if (args.some((t) => t === 'float' || t === 'any' || t === 'json' || t === 'string')) return 'float';
  if (args.some((t) => t === 'decimal')) return 'decimal';
  return 'int';
}

function firstKnown(args: SqlType[]): SqlType {
  return args.find((t) => t !== 'null') ?? 'null';
}

const regexCache = new Map<string, RegExp>();
function regex(pattern: string, flags = ''): RegExp {
  const k = `${flags}/${pattern}`;
  let re = regexCache.get(k);
  if (!re) {
    try {
      re = new RegExp(pattern, flags);
    } catch (e) {
      throw new SqlValueError(`invalid regular expression ${show(pattern)}: ${(e as Error).message}`);
    }
    // A bounded cache: patterns built from row values must not grow memory without end.
    if (regexCache.size > 1000) regexCache.clear();
    regexCache.set(k, re);
  }
  return re;
}

function roundHalfAway(x: number, digits: number): number {
  const f = 10 ** digits;
  const r = Math.round(Math.abs(x) * f) / f;
  return x < 0 ? -r : r;
}

function sub(s: string, start: number, len?: number): string {
  // SQL positions are 1-based; a start before 1 eats into the length, as in PostgreSQL.
  const chars = [...s];
  let from = Math.trunc(start) - 1;
  let end = len === undefined ? chars.length : from + Math.trunc(len);
  if (len !== undefined && len < 0) throw new SqlValueError('negative substring length not allowed');
  if (from < 0) from = 0;
  if (end > chars.length) end = chars.length;
  return end <= from ? '' : chars.slice(from, end).join('');
}

function trimChars(s: string, chars: string, left: boolean, right: boolean): string {
  let a = 0;
  let b = s.length;
  if (left) while (a < b && chars.includes(s[a]!)) a++;
  if (right) while (b > a && chars.includes(s[b - 1]!)) b--;
  return s.slice(a, b);
}

function pgRegexFlags(flags: string | undefined): string {
  let f = '';
  for (const ch of flags ?? '') {
    if (ch === 'i') f += 'i';
    else if (ch === 'g') f += 'g';
    else if (ch === 'm' || ch === 'n') f += 'm';
    else if (ch === 's') f += 's';
    else if (ch !== 'c') throw new SqlValueError(`unknown regular expression flag '${ch}'`);
  }
  return f;
}

function toTimestamp(v: unknown): Date {
  // PostgreSQL's to_timestamp(double) takes epoch seconds; text goes through the ISO-8601 parser.
  const ms = typeof v === 'number' || typeof v === 'bigint' ? Number(v) * 1000 : toMillis(v);
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) throw new SqlValueError(`timestamp out of range: ${show(v)}`);
  return d;
}

export const FUNCTIONS: Record<string, FunctionDef> = {
  // ---- null handling
  coalesce: { min: 1, max: Infinity, args: ['any'], ret: firstKnown, nulls: true, impl: (...a) => { for (const x of a) if (x !== null && x !== undefined) return x; return null; }, doc: 'coalesce(a, b, ...): the first argument that is not NULL' },
  nullif: { min: 2, max: 2, args: ['any'], ret: (a) => a[0]!, nulls: true, impl: (a, b) => (a === null || a === undefined ? null : b !== null && b !== undefined && compare(a, b) === 0 ? null : a), doc: 'nullif(a, b): NULL when a = b, else a' },
  ifnull: { min: 2, max: 2, args: ['any'], ret: firstKnown, nulls: true, impl: (a, b) => (a === null || a === undefined ? b : a), doc: 'ifnull(a, b): a, or b when a is NULL' },
  greatest: { min: 1, max: Infinity, args: ['any'], ret: firstKnown, nulls: true, impl: (...a) => { let best: unknown = null; for (const x of a) if (x !== null && x !== undefined && (best === null || compare(x, best) > 0)) best = x; return best; }, doc: 'greatest(a, b, ...): the largest non-NULL argument' },
  least: { min: 1, max: Infinity, args: ['any'], ret: firstKnown, nulls: true, impl: (...a) => { let best: unknown = null; for (const x of a) if (x !== null && x !== undefined && (best === null || compare(x, best) < 0)) best = x; return best; }, doc: 'least(a, b, ...): the smallest non-NULL argument' },

  // ---- strings
  lower: { min: 1, max: 1, args: ['text'], ret: 'string', impl: (s) => toText(s).toLowerCase(), doc: "lower(s): lower case" },
  upper: { min: 1, max: 1, args: ['text'], ret: 'string', impl: (s) => toText(s).toUpperCase(), doc: 'upper(s): upper case' },
  length: { min: 1, max: 1, args: ['any'], ret: 'int', impl: (s) => (Array.isArray(s) ? s.length : [...toText(s)].length), doc: 'length(s) / char_length(s): number of characters (of elements, for an array)' },
  char_length: { min: 1, max: 1, args: ['any'], ret: 'int', impl: (s) => [...toText(s)].length, doc: 'char_length(s): number of characters' },
  character_length: { min: 1, max: 1, args: ['any'], ret: 'int', impl: (s) => [...toText(s)].length, doc: 'character_length(s): number of characters' },
  octet_length: { min: 1, max: 1, args: ['any'], ret: 'int', impl: (s) => (s instanceof Uint8Array ? s.length : Buffer.byteLength(toText(s))), doc: 'octet_length(s): number of UTF-8 bytes' },
  substr: { min: 2, max: 3, args: ['text', 'num', 'num'], ret: 'string', impl: (s, a, b) => sub(toText(s), toNum(a), b === undefined ? undefined : toNum(b)), doc: "substr(s, start [, length]): 1-based; also substring(s FROM start FOR length)" },
  substring: { min: 2, max: 3, args: ['text', 'num', 'num'], ret: 'string', impl: (s, a, b) => sub(toText(s), toNum(a), b === undefined ? undefined : toNum(b)), doc: 'substring(s, start [, length])' },
  trim: { min: 1, max: 2, args: ['text', 'text'], ret: 'string', impl: (s, c) => (c === undefined ? toText(s).trim() : trimChars(toText(s), toText(c), true, true)), doc: "trim(s [, chars]): also trim(BOTH|LEADING|TRAILING 'x' FROM s)" },
  btrim: { min: 1, max: 2, args: ['text', 'text'], ret: 'string', impl: (s, c) => (c === undefined ? toText(s).trim() : trimChars(toText(s), toText(c), true, true)), doc: 'btrim(s [, chars])' },
  ltrim: { min: 1, max: 2, args: ['text', 'text'], ret: 'string', impl: (s, c) => (c === undefined ? toText(s).trimStart() : trimChars(toText(s), toText(c), true, false)), doc: 'ltrim(s [, chars])' },
  rtrim: { min: 1, max: 2, args: ['text', 'text'], ret: 'string', impl: (s, c) => (c === undefined ? toText(s).trimEnd() : trimChars(toText(s), toText(c), false, true)), doc: 'rtrim(s [, chars])' },
  concat: { min: 1, max: Infinity, args: ['any'], ret: 'string', nulls: true, impl: (...a) => { let s = ''; for (const x of a) if (x !== null && x !== undefined) s += toText(x); return s; }, doc: 'concat(a, b, ...): text of the arguments, NULLs skipped (|| gives NULL on NULL)' },
  concat_ws: { min: 2, max: Infinity, args: ['text', 'any'], ret: 'string', nulls: true, impl: (sep, ...a) => (sep === null || sep === undefined ? null : a.filter((x) => x !== null && x !== undefined).map(toText).join(toText(sep))), doc: 'concat_ws(sep, a, b, ...): joined with sep, NULLs skipped' },
  replace: { min: 3, max: 3, args: ['text', 'text', 'text'], ret: 'string', impl: (s, a, b) => toText(s).split(toText(a)).join(toText(b)), doc: 'replace(s, from, to): every occurrence' },
  split_part: { min: 3, max: 3, args: ['text', 'text', 'num'], ret: 'string', impl: (s, d, n) => { const parts = toText(s).split(toText(d)); let i = Math.trunc(toNum(n)); if (i === 0) throw new SqlValueError('split_part field position must not be zero'); if (i < 0) i = parts.length + i + 1; return parts[i - 1] ?? ''; }, doc: "split_part(s, delimiter, n): the n-th piece (1-based; negative counts from the end)" },
  starts_with: { min: 2, max: 2, args: ['text', 'text'], ret: 'boolean', impl: (s, p) => toText(s).startsWith(toText(p)), doc: 'starts_with(s, prefix)' },
  ends_with: { min: 2, max: 2, args: ['text', 'text'], ret: 'boolean', impl: (s, p) => toText(s).endsWith(toText(p)), doc: 'ends_with(s, suffix)' },
  strpos: { min: 2, max: 2, args: ['text', 'text'], ret: 'int', impl: (s, p) => toText(s).indexOf(toText(p)) + 1, doc: 'strpos(s, sub) / position(sub IN s): 1-based position, 0 when absent' },
  left: { min: 2, max: 2, args: ['text', 'num'], ret: 'string', impl: (s, n) => { const c = [...toText(s)]; const k = Math.trunc(toNum(n)); return (k >= 0 ? c.slice(0, k) : c.slice(0, Math.max(0, c.length + k))).join(''); }, doc: 'left(s, n): first n characters' },
  right: { min: 2, max: 2, args: ['text', 'num'], ret: 'string', impl: (s, n) => { const c = [...toText(s)]; const k = Math.trunc(toNum(n)); return (k >= 0 ? c.slice(Math.max(0, c.length - k)) : c.slice(-k)).join(''); }, doc: 'right(s, n): last n characters' },
  lpad: { min: 2, max: 3, args: ['text', 'num', 'text'], ret: 'string', impl: (s, n, f) => { const t = toText(s); const k = Math.trunc(toNum(n)); return t.length >= k ? t.slice(0, k) : t.padStart(k, f === undefined ? ' ' : toText(f)); }, doc: 'lpad(s, n [, fill])' },
  rpad: { min: 2, max: 3, args: ['text', 'num', 'text'], ret: 'string', impl: (s, n, f) => { const t = toText(s); const k = Math.trunc(toNum(n)); return t.length >= k ? t.slice(0, k) : t.padEnd(k, f === undefined ? ' ' : toText(f)); }, doc: 'rpad(s, n [, fill])' },
  reverse: { min: 1, max: 1, args: ['text'], ret: 'string', impl: (s) => [...toText(s)].reverse().join(''), doc: 'reverse(s)' },
  initcap: { min: 1, max: 1, args: ['text'], ret: 'string', impl: (s) => toText(s).toLowerCase().replace(/(^|[^\p{L}\p{N}])(\p{L})/gu, (_m, a: string, b: string) => a + b.toUpperCase()), doc: 'initcap(s): first letter of each word upper case' },
  regexp_like: { min: 2, max: 3, args: ['text', 'text', 'text'], ret: 'boolean', impl: (s, p, f) => regex(toText(p), pgRegexFlags(f).replace('g', '')).test(toText(s)), doc: "regexp_like(s, pattern [, flags]): flags i (ignore case), m, s" },
  regexp_replace: { min: 3, max: 4, args: ['text', 'text', 'text', 'text'], ret: 'string', impl: (s, p, r, f) => toText(s).replace(regex(toText(p), pgRegexFlags(f)), toText(r).replace(/\\(\d)/g, '$$$1')), doc: "regexp_replace(s, pattern, replacement [, flags]): first match, every match with flag g; \\1 or $1 refer to groups" },
  regexp_extract: { min: 2, max: 3, args: ['text', 'text', 'num'], ret: 'string', impl: (s, p, g) => { const m = regex(toText(p)).exec(toText(s)); if (!m) return null; const x = m[g === undefined ? (m.length > 1 ? 1 : 0) : Math.trunc(toNum(g))]; return x === undefined ? null : x; }, doc: 'regexp_extract(s, pattern [, group]): the matched text (group 1 when there is one), NULL without a match' },
  md5: { min: 1, max: 1, args: ['text'], ret: 'string', impl: (s) => createHash('md5').update(s instanceof Uint8Array ? s : toText(s)).digest('hex'), doc: 'md5(s): hex digest' },
  sha256: { min: 1, max: 1, args: ['text'], ret: 'string', impl: (s) => createHash('sha256').update(s instanceof Uint8Array ? s : toText(s)).digest('hex'), doc: 'sha256(s): hex digest' },

  // ---- math
  abs: { min: 1, max: 1, args: ['num'], ret: (a) => numericRet(a), impl: (x) => Math.abs(toNum(x)), doc: 'abs(x)' },
  round: { min: 1, max: 2, args: ['num', 'num'], ret: (a) => (a.length > 1 ? 'float' : numericRet(a) === 'int' ? 'int' : 'float'), impl: (x, d) => roundHalfAway(toNum(x), d === undefined ? 0 : Math.trunc(toNum(d))), doc: 'round(x [, digits]): halves away from zero' },
  floor: { min: 1, max: 1, args: ['num'], ret: (a) => (a[0] === 'int' ? 'int' : 'float'), impl: (x) => Math.floor(toNum(x)), doc: 'floor(x)' },
  ceil: { min: 1, max: 1, args: ['num'], ret: (a) => (a[0] === 'int' ? 'int' : 'float'), impl: (x) => Math.ceil(toNum(x)), doc: 'ceil(x) / ceiling(x)' },
  ceiling: { min: 1, max: 1, args: ['num'], ret: (a) => (a[0] === 'int' ? 'int' : 'float'), impl: (x) => Math.ceil(toNum(x)), doc: 'ceiling(x)' },
  trunc: { min: 1, max: 2, args: ['num', 'num'], ret: 'float', impl: (x, d) => { const f = 10 ** (d === undefined ? 0 : Math.trunc(toNum(d))); return Math.trunc(toNum(x) * f) / f; }, doc: 'trunc(x [, digits]): towards zero' },
  power: { min: 2, max: 2, args: ['num', 'num'], ret: 'float', impl: (x, y) => toNum(x) ** toNum(y), doc: 'power(x, y) / pow(x, y)' },
  pow: { min: 2, max: 2, args: ['num', 'num'], ret: 'float', impl: (x, y) => toNum(x) ** toNum(y), doc: 'pow(x, y)' },
  sqrt: { min: 1, max: 1, args: ['num'], ret: 'float', impl: (x) => { const n = toNum(x); if (n < 0) throw new SqlValueError('cannot take square root of a negative number'); return Math.sqrt(n); }, doc: 'sqrt(x)' },
  exp: { min: 1, max: 1, args: ['num'], ret: 'float', impl: (x) => Math.exp(toNum(x)), doc: 'exp(x)' },
  ln: { min: 1, max: 1, args: ['num'], ret: 'float', impl: (x) => { const n = toNum(x); if (n <= 0) throw new SqlValueError('cannot take logarithm of zero or a negative number'); return Math.log(n); }, doc: 'ln(x)' },
  log10: { min: 1, max: 1, args: ['num'], ret: 'float', impl: (x) => { const n = toNum(x); if (n <= 0) throw new SqlValueError('cannot take logarithm of zero or a negative number'); return Math.log10(n); }, doc: 'log10(x)' },
  mod: { min: 2, max: 2, args: ['num', 'num'], ret: (a) => numericRet(a), impl: (x, y) => { const d = toNum(y); if (d === 0) throw new SqlValueError('division by zero'); return toNum(x) % d; }, doc: 'mod(x, y): same as x % y' },
  sign: { min: 1, max: 1, args: ['num'], ret: 'int', impl: (x) => Math.sign(toNum(x)), doc: 'sign(x): -1, 0 or 1' },
  random: { min: 0, max: 0, args: [], ret: 'float', volatile: true, impl: () => Math.random(), doc: 'random(): uniform in [0, 1)' },

  // ---- time (UTC)
  now: { min: 0, max: 0, args: [], ret: 'timestamp', volatile: true, impl: () => new Date(), doc: 'now() / CURRENT_TIMESTAMP: the time the record is processed' },
  current_date: { min: 0, max: 0, args: [], ret: 'date', volatile: true, impl: () => new Date().toISOString().slice(0, 10), doc: 'CURRENT_DATE: today (UTC)' },
  to_timestamp: { min: 1, max: 1, args: ['time'], ret: 'timestamp', impl: toTimestamp, doc: 'to_timestamp(epoch_seconds) or to_timestamp(iso_text)' },
  to_timestamp_millis: { min: 1, max: 1, args: ['num'], ret: 'timestamp', impl: (x) => new Date(toNum(x)), doc: 'to_timestamp_millis(epoch_ms)' },
  epoch_ms: { min: 1, max: 1, args: ['time'], ret: 'int', impl: (t) => toMillis(t), doc: 'epoch_ms(ts): milliseconds since the epoch' },
  date_trunc: {
    min: 2, max: 2, args: ['text', 'time'], ret: 'timestamp',
    impl: (u, t) => new Date(truncTimestamp(toText(u).toLowerCase(), toMillis(t))),
    doc: `date_trunc(unit, ts): ${TRUNC_UNITS.join(', ')}`,
  },
  date_part: { min: 2, max: 2, args: ['text', 'time'], ret: 'float', impl: (f, t) => extractField(toText(f).toLowerCase(), toMillis(t)), doc: "date_part('field', ts): same as extract(field FROM ts)" },
  to_char: { min: 2, max: 2, args: ['time', 'text'], ret: 'string', impl: (t, f) => formatTimestamp(toMillis(t), toText(f)), doc: "to_char(ts, 'YYYY-MM-DD HH24:MI:SS.MS'): also YY MM DD HH12 AM Mon Month Dy Day US, \"quoted\" text" },
  to_date: { min: 1, max: 1, args: ['time'], ret: 'date', impl: (t) => new Date(toMillis(t)).toISOString().slice(0, 10), doc: 'to_date(ts): the UTC calendar date' },

  // ---- json
  json_get: { min: 2, max: Infinity, args: ['any', 'any'], ret: 'json', impl: (v, ...keys) => { let cur = v; for (const k of keys) { cur = jsonGet(cur, k); if (cur === null) return null; } return cur; }, doc: "json_get(v, 'a', 'b', 0): the value at that path, NULL when missing (like v->'a'->'b'->0)" },
  json_get_str: { min: 2, max: Infinity, args: ['any', 'any'], ret: 'string', impl: (v, ...keys) => { let cur = v; for (const k of keys) { cur = jsonGet(cur, k); if (cur === null) return null; } return toText(cur); }, doc: "json_get_str(v, 'a', ...): the value at that path as text (like ->>)" },
  to_json: { min: 1, max: 1, args: ['any'], ret: 'string', impl: (v) => toText(typeof v === 'string' ? JSON.stringify(v) : v), doc: 'to_json(v): JSON text of a value' },
  parse_json: { min: 1, max: 1, args: ['text'], ret: 'json', impl: (s) => { try { return JSON.parse(toText(s)); } catch (e) { throw new SqlValueError(`invalid JSON ${show(s)}: ${(e as Error).message}`); } }, doc: 'parse_json(text): the value the JSON text holds' },
  cardinality: { min: 1, max: 1, args: ['any'], ret: 'int', impl: (a) => (Array.isArray(a) ? a.length : typeof a === 'object' && a ? Object.keys(a).length : null), doc: 'cardinality(array): number of elements (of keys, for an object)' },
};

export const FUNCTION_NAMES = Object.keys(FUNCTIONS);
