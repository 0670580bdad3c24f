// Compiles expression trees into plain closures over one evaluation context, once per query. Column references are
// resolved and types checked here, so a bad query fails at load time with a position, not on the first record.

import { ConfigError } from '../core/errors.js';
import { parseTypeName } from '../core/schema.js';
import { suggest } from '../core/units.js';
import type { FieldSpec, SluiceRecord } from '../core/types.js';
import type { Expr, TypeRef } from './ast.js';
import type { Token } from './lexer.js';
import { FUNCTIONS, FUNCTION_NAMES, accepts, type ArgKind, type SqlType } from './functions.js';
import {
  SqlValueError,
  compare,
  extractField,
  EXTRACT_FIELDS,
  jsonGet,
  likeRegExp,
  show,
  sqlEquals,
  toBool,
  toMillis,
  toNum,
  toText,
  truncTimestamp,
  TRUNC_UNITS,
} from './values.js';

export type Row = Record<string, unknown>;

/** What an expression sees: the record's row, the record itself (metadata), and the rows joined so far. */
export interface Ctx {
  v: Row;
  r: SluiceRecord;
  j: Array<Row | undefined>;
}

export type Fn = (c: Ctx) => unknown;

export type ItemSpec = Omit<FieldSpec, 'name'>;

export interface Compiled {
  fn: Fn;
  type: SqlType;
  /** The field type to report in an output schema, when known precisely (a column, a CAST). */
  spec?: ItemSpec;
  /** A constant: `fn` ignores the context. */
  isConst?: boolean;
  /** Default output column name (`price` for `price * 2`? no: only for columns, JSON keys, casts and calls). */
  name?: string;
}

export interface TableScope {
  name: string;
  alias?: string;
  /** -1: the source row; otherwise the join's index into `Ctx.j`. */
  index: number;
  /** Declared columns; undefined when the table has no schema (any name is accepted). */
  columns?: Map<string, ItemSpec>;
  /** Source only: record metadata readable as columns (`_timestamp`, `_offset`, ...). */
  metadata?: Set<string>;
}

const UNIVERSAL_META = ['_timestamp', '_key', '_headers'];
const NUMERIC = new Set<SqlType>(['int', 'float', 'decimal']);
const BOOLISH = new Set<SqlType>(['boolean', 'any', 'null', 'json']);

export function typeOfSpec(s: ItemSpec): SqlType {
  switch (s.type) {
    case 'int32':
    case 'int64':
      return 'int';
    case 'float32':
    case 'float64':
      return 'float';
    case 'decimal':
      return 'decimal';
    case 'string':
    case 'boolean':
    case 'timestamp':
    case 'date':
    case 'bytes':
    case 'array':
    case 'json':
      return s.type === 'boolean' ? 'boolean' : s.type;
    case 'object':
      return 'json';
    default:
      return 'any';
  }
}

export function specOfType(t: SqlType): ItemSpec {
  switch (t) {
    case 'int':
    case 'interval':
      return { type: 'int64' };
    case 'float':
      return { type: 'float64' };
    case 'decimal':
      return { type: 'decimal' };
    case 'string':
      return { type: 'string' };
    case 'boolean':
      return { type: 'boolean' };
    case 'timestamp':
      return { type: 'timestamp' };
    case 'date':
      return { type: 'date' };
    case 'bytes':
      return { type: 'bytes' };
    case 'array':
      return { type: 'array', items: { type: 'json' } };
    default:
      return { type: 'json' };
  }
}

function isNull(x: unknown): x is null | undefined {
  return x === null || x === undefined;
}

/** Type groups for comparisons: values in different groups cannot be compared. */
function group(t: SqlType): string {
  if (NUMERIC.has(t)) return 'num';
  if (t === 'timestamp' || t === 'date') return 'time';
  return t;
}

function comparable(a: SqlType, b: SqlType): boolean {
  const loose = ['any', 'null', 'json'];
  if (loose.includes(a) || loose.includes(b)) return true;
  const ga = group(a);
  const gb = group(b);
  if (ga === gb) return true;
  // Text reads as a number or a timestamp when compared with one, as an untyped literal does in PostgreSQL.
  return (ga === 'string' && (gb === 'num' || gb === 'time')) || (gb === 'string' && (ga === 'num' || ga === 'time'));
}

export class ExprCompiler {
  /** Join indexes the compiled expressions read (for pushing filters before lookups). */
  readonly uses = new Set<number>();

  constructor(
    private readonly file: string,
    private readonly tables: TableScope[],
  ) {}

  fail(t: Token, message: string): never {
    throw new ConfigError([{ path: [], message, loc: { file: this.file, line: t.line, col: t.col } }]);
  }

  compile(e: Expr): Compiled {
    const c = this.compileInner(e);
    return c;
  }

  /** A condition: boolean, or a type that may hold one. */
  condition(e: Expr, what: string): Fn {
    const c = this.compile(e);
    if (!BOOLISH.has(c.type)) this.fail(e.tok, `${what} needs a boolean condition, got ${c.type}`);
    return this.boolFn(c);
  }

  private boolFn(c: Compiled): Fn {
    if (c.type === 'boolean' || c.type === 'null') return c.fn;
    const f = c.fn;
    return (x) => {
      const v = f(x);
      return isNull(v) ? null : typeof v === 'boolean' ? v : toBool(v);
    };
  }

  /** Evaluate a constant expression now; a failure is a compile error at the expression. */
  private fold(fn: Fn, tok: Token, type: SqlType, spec?: ItemSpec, name?: string): Compiled {
    let v: unknown;
    try {
      v = fn(undefined as unknown as Ctx);
    } catch (err) {
      if (err instanceof SqlValueError) this.fail(tok, err.message);
      throw err;
    }
    return { fn: () => v, type, spec, isConst: true, name };
  }

  private compileInner(e: Expr): Compiled {
    switch (e.k) {
      case 'lit': {
        const v = e.v;
        const type: SqlType =
          v === null ? 'null' : typeof v === 'boolean' ? 'boolean' : typeof v === 'number' ? (Number.isInteger(v) && !/[.eE]/.test(e.tok.text) ? 'int' : 'float') : 'string';
        return { fn: () => v, type, isConst: true };
      }
      case 'interval':
        return { fn: () => e.ms, type: 'interval', isConst: true };
      case 'col':
        return this.column(e);
      case 'unary':
        return this.unary(e);
      case 'bin':
        return this.binary(e);
      case 'isnull': {
        const a = this.compile(e.e);
        const f = a.fn;
        const not = e.not;
        const fn: Fn = (c) => isNull(f(c)) !== not;
        return a.isConst ? this.fold(fn, e.tok, 'boolean') : { fn, type: 'boolean' };
      }
      case 'isbool': {
        const a = this.compile(e.e);
        if (!BOOLISH.has(a.type)) this.fail(e.tok, `IS ${e.v ? 'TRUE' : 'FALSE'} needs a boolean, got ${a.type}`);
        const f = this.boolFn(a);
        const want = e.v;
        const not = e.not;
        return { fn: (c) => (f(c) === want) !== not, type: 'boolean' };
      }
      case 'distinct': {
        const l = this.compile(e.l);
        const r = this.compile(e.r);
        if (!comparable(l.type, r.type)) this.fail(e.tok, `cannot compare ${l.type} with ${r.type}`);
        const lf = l.fn;
        const rf = r.fn;
        const not = e.not;
        return {
          fn: (c) => {
            const a = lf(c);
            const b = rf(c);
            const distinct = isNull(a) ? !isNull(b) : isNull(b) ? true : !sqlEquals(a, b);
            return distinct !== not;
          },
          type: 'boolean',
        };
      }
      case 'in':
        return this.inList(e);
      case 'between': {
        const x = this.compile(e.e);
        const lo = this.compile(e.lo);
        const hi = this.compile(e.hi);
        for (const o of [lo, hi]) if (!comparable(x.type, o.type)) this.fail(e.tok, `cannot compare ${x.type} with ${o.type}`);
        const [xf, lf, hf] = [x.fn, lo.fn, hi.fn];
        const not = e.not;
        return {
          fn: (c) => {
            const v = xf(c);
            if (isNull(v)) return null;
            const a = lf(c);
            const b = hf(c);
            const ge = isNull(a) ? null : compare(v, a) >= 0;
            const le = isNull(b) ? null : compare(v, b) <= 0;
            const r = ge === false || le === false ? false : ge === null || le === null ? null : true;
            return r === null ? null : r !== not;
          },
          type: 'boolean',
        };
      }
      case 'like':
        return this.like(e);
      case 'case':
        return this.caseExpr(e);
      case 'cast':
        return this.cast(e.e, e.type, e.try, e.tok);
      case 'call':
        return this.call(e);
      case 'extract': {
        if (!(EXTRACT_FIELDS as readonly string[]).includes(e.field)) {
          const hint = suggest(e.field, EXTRACT_FIELDS);
          this.fail(e.tok, `unknown field '${e.field}' for EXTRACT${hint ? `; did you mean '${hint}'?` : ''} (use ${EXTRACT_FIELDS.join(', ')})`);
        }
        const a = this.compile(e.e);
        if (!accepts('time', a.type) && a.type !== 'interval') this.fail(e.e.tok, `EXTRACT needs a timestamp, got ${a.type}`);
        const f = a.fn;
        const field = e.field;
        const interval = a.type === 'interval';
        const fn: Fn = (c) => {
          const v = f(c);
          if (isNull(v)) return null;
          if (interval) return field === 'epoch' ? toNum(v) / 1000 : null;
          return extractField(field, toMillis(v));
        };
        const type: SqlType = field === 'epoch' || field === 'second' ? 'float' : 'int';
        return a.isConst ? this.fold(fn, e.tok, type) : { fn, type, name: field };
      }
      case 'json': {
        const base = this.compile(e.e);
        if (!['json', 'any', 'null', 'string', 'array'].includes(base.type)) {
          this.fail(e.tok, `${e.tok.text === '[' ? '[...]' : e.tok.text} needs a json value, got ${base.type}`);
        }
        const key = this.compile(e.key);
        const bf = base.fn;
        const kf = key.fn;
        const text = e.text;
        const name = key.isConst && typeof key.fn(undefined as never) === 'string' ? String(key.fn(undefined as never)) : base.name;
        const fn: Fn = text
          ? (c) => {
              const x = jsonGet(bf(c), kf(c));
              return isNull(x) ? null : toText(x);
            }
          : (c) => jsonGet(bf(c), kf(c));
        return { fn, type: text ? 'string' : 'json', name };
      }
    }
  }

  // ---- columns ----------------------------------------------------------------------------------------------

  private findTable(name: string): TableScope | undefined {
    return (
      this.tables.find((t) => t.alias === name || (t.alias === undefined && t.name === name)) ??
      this.tables.find((t) => t.alias?.toLowerCase() === name.toLowerCase() || t.name.toLowerCase() === name.toLowerCase())
    );
  }

  private lookupColumn(t: TableScope, name: string): [string, ItemSpec] | undefined {
    if (!t.columns) return undefined;
    const exact = t.columns.get(name);
    if (exact) return [name, exact];
    const lower = name.toLowerCase();
    const matches = [...t.columns].filter(([k]) => k.toLowerCase() === lower);
    return matches.length === 1 ? matches[0] : undefined;
  }

  private column(e: Extract<Expr, { k: 'col' }>): Compiled {
    const parts = [e.name, ...(e.path ?? [])];
    if (parts.length > 1) {
      const t = this.findTable(parts[0]!);
      if (t) return this.columnOf(t, parts[1]!, e.tok, parts.slice(2));
    }
    const holders = this.tables.filter((t) => this.lookupColumn(t, e.name));
    if (holders.length > 1) this.fail(e.tok, `column '${e.name}' is ambiguous: it is in ${holders.map((t) => t.alias ?? t.name).join(' and ')}; qualify it as ${holders[0]!.alias ?? holders[0]!.name}.${e.name}`);
    if (holders.length === 1) return this.columnOf(holders[0]!, e.name, e.tok, parts.slice(1));
    const source = this.tables[0]!;
    if (source.metadata?.has(e.name)) return this.withPath(this.metaColumn(e.name), parts.slice(1), e.tok);
    if (!source.columns) return this.columnOf(source, e.name, e.tok, parts.slice(1));
    const known = [...this.tables.flatMap((t) => [...(t.columns?.keys() ?? [])]), ...(source.metadata ?? [])];
    const hint = suggest(e.name, known);
    return this.fail(e.tok, `unknown column '${e.name}'${hint ? `; did you mean '${hint}'?` : ''}`);
  }

  private columnOf(t: TableScope, name: string, tok: Token, rest: string[]): Compiled {
    let spec: ItemSpec | undefined;
    let field = name;
    if (t.columns) {
      const found = this.lookupColumn(t, name);
      if (!found) {
        if (t.metadata?.has(name)) return this.withPath(this.metaColumn(name), rest, tok);
        const hint = suggest(name, [...t.columns.keys(), ...(t.metadata ?? [])]);
        this.fail(tok, `unknown column '${name}' in ${t.alias ?? t.name}${hint ? `; did you mean '${hint}'?` : ''}`);
      }
      [field, spec] = found!;
    }
    let fn: Fn;
    if (t.index < 0) {
      fn = (c) => {
        const x = c.v[field];
        return x === undefined ? null : x;
      };
    } else {
      const i = t.index;
      this.uses.add(i);
      fn = (c) => {
        const row = c.j[i];
        if (row === undefined) return null;
        const x = row[field];
        return x === undefined ? null : x;
      };
    }
    const col: Compiled = { fn, type: spec ? typeOfSpec(spec) : 'any', spec, name: field };
    return this.withPath(col, rest, tok);
  }

  private metaColumn(name: string): Compiled {
    let read: Fn;
    switch (name) {
      case '_timestamp':
        read = (c) => (c.r.timestamp === undefined ? null : new Date(c.r.timestamp));
        break;
      case '_key':
        read = (c) => (isNull(c.r.key) ? null : typeof c.r.key === 'string' ? c.r.key : Buffer.from(c.r.key).toString('utf8'));
        break;
      case '_headers':
        read = (c) => c.r.headers ?? null;
        break;
      default:
        read = (c) => {
          const x = c.r.meta?.[name];
          return x === undefined ? null : x;
        };
    }
    // The runtime copies selected metadata into the row (metadata_fields); the row's copy wins.
    const fn: Fn = (c) => {
      const x = c.v[name];
      return x !== undefined ? x : read(c);
    };
    const type: SqlType = name === '_timestamp' ? 'timestamp' : name === '_key' ? 'string' : name === '_headers' ? 'json' : 'any';
    return { fn, type, name };
  }

  /** `col.a.b`: fields inside a json column. */
  private withPath(c: Compiled, rest: string[], tok: Token): Compiled {
    if (!rest.length) return c;
    if (!['json', 'any', 'null'].includes(c.type)) this.fail(tok, `column '${c.name}' is ${c.spec?.type ?? c.type}, not json: it has no field '${rest[0]}'`);
    const f = c.fn;
    const fn: Fn = (x) => {
      let cur = f(x);
      for (const k of rest) {
        cur = jsonGet(cur, k);
        if (cur === null) return null;
      }
      return cur;
    };
    return { fn, type: 'json', name: rest[rest.length - 1] };
  }

  // ---- operators --------------------------------------------------------------------------------------------

  private unary(e: Extract<Expr, { k: 'unary' }>): Compiled {
    const a = this.compile(e.e);
    const f = a.fn;
    let out: Compiled;
    if (e.op === 'NOT') {
      if (!BOOLISH.has(a.type)) this.fail(e.tok, `NOT needs a boolean, got ${a.type}`);
      const b = this.boolFn(a);
      out = {
        fn: (c) => {
          const v = b(c);
          return isNull(v) ? null : !v;
        },
        type: 'boolean',
      };
    } else {
      if (!NUMERIC.has(a.type) && !['any', 'null', 'json', 'interval'].includes(a.type)) this.fail(e.tok, `unary '${e.op}' needs a number, got ${a.type}`);
      const neg = e.op === '-';
      out = {
        fn: (c) => {
          const v = f(c);
          return isNull(v) ? null : neg ? -toNum(v) : toNum(v);
        },
        type: a.type === 'null' ? 'null' : a.type === 'interval' ? 'interval' : NUMERIC.has(a.type) ? a.type : 'float',
      };
    }
    return a.isConst ? this.fold(out.fn, e.tok, out.type) : out;
  }

  private binary(e: Extract<Expr, { k: 'bin' }>): Compiled {
    const l = this.compile(e.l);
    const r = this.compile(e.r);
    let out: Compiled;
    switch (e.op) {
      case 'AND':
      case 'OR': {
        for (const [x, node] of [[l, e.l], [r, e.r]] as const) if (!BOOLISH.has(x.type)) this.fail(node.tok, `${e.op} needs boolean operands, got ${x.type}`);
        const a = this.boolFn(l);
        const b = this.boolFn(r);
        out =
          e.op === 'AND'
            ? {
                fn: (c) => {
                  const x = a(c);
                  if (x === false) return false;
                  const y = b(c);
                  if (y === false) return false;
                  return isNull(x) || isNull(y) ? null : true;
                },
                type: 'boolean',
              }
            : {
                fn: (c) => {
                  const x = a(c);
                  if (x === true) return true;
                  const y = b(c);
                  if (y === true) return true;
                  return isNull(x) || isNull(y) ? null : false;
                },
                type: 'boolean',
              };
        break;
      }
      case '=':
      case '!=':
      case '<':
      case '<=':
      case '>':
      case '>=':
        if (!comparable(l.type, r.type)) this.fail(e.tok, `cannot compare ${l.type} with ${r.type} using '${e.tok.text}'`);
        out = { fn: comparison(e.op, l, r), type: 'boolean' };
        break;
      case '||': {
        const a = l.fn;
        const b = r.fn;
        out = {
          fn: (c) => {
            const x = a(c);
            if (isNull(x)) return null;
            const y = b(c);
            if (isNull(y)) return null;
            return toText(x) + toText(y);
          },
          type: 'string',
        };
        break;
      }
      default:
        out = this.arithmetic(e, l, r);
    }
    return l.isConst && r.isConst ? this.fold(out.fn, e.tok, out.type) : out;
  }

  private arithmetic(e: Extract<Expr, { k: 'bin' }>, l: Compiled, r: Compiled): Compiled {
    const op = e.op;
    const lt = l.type;
    const rt = r.type;
    const time = (t: SqlType) => t === 'timestamp' || t === 'date';
    const okNum = (t: SqlType) => NUMERIC.has(t) || t === 'any' || t === 'null' || t === 'json';
    let type: SqlType;
    if (time(lt) || time(rt) || lt === 'interval' || rt === 'interval') {
      if (time(lt) && (rt === 'interval' || rt === 'null') && (op === '+' || op === '-')) type = 'timestamp';
      else if (lt === 'interval' && time(rt) && op === '+') type = 'timestamp';
      else if (time(lt) && time(rt) && op === '-') type = 'interval';
      else if (lt === 'interval' && (rt === 'interval' || rt === 'null') && (op === '+' || op === '-')) type = 'interval';
      else if (lt === 'interval' && okNum(rt) && (op === '*' || op === '/')) type = 'interval';
      else if (okNum(lt) && rt === 'interval' && op === '*') type = 'interval';
      else if (lt === 'any' || rt === 'any' || lt === 'json' || rt === 'json') type = 'any';
      else return this.fail(e.tok, `operator '${op}' cannot be applied to ${lt} and ${rt}`);
    } else if (!okNum(lt) || !okNum(rt)) {
      const hint = op === '+' && (lt === 'string' || rt === 'string') ? ' (use || to concatenate text)' : '';
      return this.fail(e.tok, `operator '${op}' cannot be applied to ${lt} and ${rt}${hint}`);
    } else if (lt === 'null' || rt === 'null') type = 'null';
    else if (lt === 'int' && rt === 'int') type = 'int';
    else if ((lt === 'decimal' || lt === 'int') && (rt === 'decimal' || rt === 'int')) type = 'decimal';
    else if (lt === 'any' || rt === 'any' || lt === 'json' || rt === 'json') type = 'any';
    else type = 'float';
    const a = l.fn;
    const b = r.fn;
    const intDiv = lt === 'int' && rt === 'int';
    const timeResult = type === 'timestamp';
    const dynamic = type === 'any';
    const fn: Fn = (c) => {
      const x = a(c);
      if (isNull(x)) return null;
      const y = b(c);
      if (isNull(y)) return null;
      if (timeResult || (dynamic && (x instanceof Date || y instanceof Date))) {
        if (x instanceof Date || typeof x === 'string') {
          const ms = toMillis(x);
          if (y instanceof Date) return op === '-' ? ms - y.getTime() : null;
          return new Date(op === '-' ? ms - toNum(y) : ms + toNum(y));
        }
        return new Date(toNum(x) + toMillis(y));
      }
      if (lt === 'timestamp' || lt === 'date') return toMillis(x) - toMillis(y);
      const p = typeof x === 'number' ? x : toNum(x);
      const q = typeof y === 'number' ? y : toNum(y);
      switch (op) {
        case '+':
          return p + q;
        case '-':
          return p - q;
        case '*':
          return p * q;
        case '/':
          if (q === 0) throw new SqlValueError('division by zero');
          return intDiv ? Math.trunc(p / q) : p / q;
        default:
          if (q === 0) throw new SqlValueError('division by zero');
          return p % q;
      }
    };
    return { fn, type: type === 'decimal' ? 'float' : type };
  }

  private inList(e: Extract<Expr, { k: 'in' }>): Compiled {
    const x = this.compile(e.e);
    const items = e.list.map((i) => {
      const c = this.compile(i);
      if (!comparable(x.type, c.type)) this.fail(i.tok, `cannot compare ${x.type} with ${c.type} in IN (...)`);
      return c;
    });
    const xf = x.fn;
    const not = e.not;
    const fns = items.map((i) => i.fn);
    const consts = items.every((i) => i.isConst) ? items.map((i) => i.fn(undefined as never)) : undefined;
    // All-constant lists of one primitive kind answer by a Set lookup; anything else compares one by one.
    const kind = consts && consts.length && consts.every((v) => typeof v === typeof consts[0]) && (typeof consts[0] === 'string' || typeof consts[0] === 'number') ? typeof consts[0] : undefined;
    const set = kind ? new Set(consts) : undefined;
    const fn: Fn = (c) => {
      const v = xf(c);
      if (isNull(v)) return null;
      if (set !== undefined && typeof v === kind) return set.has(v) !== not;
      let sawNull = false;
      for (const f of fns) {
        const y = f(c);
        if (isNull(y)) sawNull = true;
        else if (sqlEquals(v, y)) return !not;
      }
      return sawNull ? null : not;
    };
    return x.isConst && consts ? this.fold(fn, e.tok, 'boolean') : { fn, type: 'boolean' };
  }

  private like(e: Extract<Expr, { k: 'like' }>): Compiled {
    const x = this.compile(e.e);
    if (!accepts('text', x.type)) this.fail(e.e.tok, `LIKE needs text, got ${x.type}`);
    const p = this.compile(e.pat);
    const esc = e.esc ? this.compile(e.esc) : undefined;
    if (esc && !esc.isConst) this.fail(e.esc!.tok, 'ESCAPE must be a constant');
    const escChar = esc ? (esc.fn(undefined as never) as string | null) ?? undefined : undefined;
    const xf = x.fn;
    const not = e.not;
    const ci = e.ci;
    if (p.isConst) {
      const pat = p.fn(undefined as never);
      if (isNull(pat)) return { fn: () => null, type: 'boolean', isConst: true };
      const re = likeRegExp(toText(pat), ci, escChar);
      return {
        fn: (c) => {
          const v = xf(c);
          return isNull(v) ? null : re.test(toText(v)) !== not;
        },
        type: 'boolean',
      };
    }
    const pf = p.fn;
    return {
      fn: (c) => {
        const v = xf(c);
        const q = pf(c);
        return isNull(v) || isNull(q) ? null : likeRegExp(toText(q), ci, escChar).test(toText(v)) !== not;
      },
      type: 'boolean',
    };
  }

  private caseExpr(e: Extract<Expr, { k: 'case' }>): Compiled {
    const base = e.base ? this.compile(e.base) : undefined;
    const conds = e.whens.map(([w]) => {
      if (base) {
        const c = this.compile(w);
        if (!comparable(base.type, c.type)) this.fail(w.tok, `cannot compare ${base.type} with ${c.type} in CASE`);
        return c.fn;
      }
      return this.condition(w, 'WHEN');
    });
    const results = e.whens.map(([, t]) => this.compile(t));
    const els = e.else ? this.compile(e.else) : undefined;
    const all = els ? [...results, els] : results;
    const type = unify(all.map((x) => x.type), (a, b) => this.fail(e.tok, `CASE branches have different types: ${a} and ${b}`));
    const rf = results.map((x) => x.fn);
    const ef = els?.fn;
    const n = conds.length;
    let fn: Fn;
    if (base) {
      const bf = base.fn;
      fn = (c) => {
        const v = bf(c);
        if (!isNull(v)) {
          for (let i = 0; i < n; i++) {
            const w = conds[i]!(c);
            if (!isNull(w) && sqlEquals(v, w)) return rf[i]!(c);
          }
        }
        return ef ? ef(c) : null;
      };
    } else {
      fn = (c) => {
        for (let i = 0; i < n; i++) if (conds[i]!(c) === true) return rf[i]!(c);
        return ef ? ef(c) : null;
      };
    }
    const spec = all.every((x) => x.spec?.type === all[0]!.spec?.type) ? all[0]!.spec : undefined;
    return { fn, type, spec };
  }

  cast(inner: Expr, typeRef: TypeRef, tryCast: boolean, tok: Token): Compiled {
    const a = this.compile(inner);
    const info = parseTypeName(typeRef.text);
    if (typeof info === 'string') this.fail(typeRef.tok, info);
    const spec: ItemSpec = { type: info.type === 'object' ? 'json' : info.type };
    if (info.precision !== undefined) spec.precision = info.precision;
    if (info.scale !== undefined) spec.scale = info.scale;
    if (info.items !== undefined) spec.items = info.items;
    if (info.unit !== undefined) spec.unit = info.unit;
    const conv = converter(spec);
    const f = a.fn;
    const fn: Fn = tryCast
      ? (c) => {
          const v = f(c);
          if (isNull(v)) return null;
          try {
            return conv(v);
          } catch (err) {
            if (err instanceof SqlValueError) return null;
            throw err;
          }
        }
      : (c) => {
          const v = f(c);
          return isNull(v) ? null : conv(v);
        };
    const type = typeOfSpec(spec);
    return a.isConst ? this.fold(fn, tok, type, spec, a.name) : { fn, type, spec, name: a.name };
  }

  private call(e: Extract<Expr, { k: 'call' }>): Compiled {
    const def = FUNCTIONS[e.name];
    if (!def) {
      if (['count', 'sum', 'avg', 'min', 'max'].includes(e.name)) this.fail(e.tok, `aggregate function '${e.name}' needs state across records; the SQL layer works on one record at a time`);
      const hint = suggest(e.name, FUNCTION_NAMES);
      this.fail(e.tok, `unknown function '${e.name}'${hint ? `; did you mean '${hint}'?` : ''}`);
    }
    const n = e.args.length;
    if (n < def.min || n > def.max) {
      const want = def.min === def.max ? `${def.min}` : def.max === Infinity ? `at least ${def.min}` : `${def.min} to ${def.max}`;
      this.fail(e.tok, `function ${e.name} takes ${want} argument${want === '1' ? '' : 's'}, got ${n}`);
    }
    const args = e.args.map((x) => this.compile(x));
    args.forEach((x, i) => {
      const kind: ArgKind = def.args[Math.min(i, def.args.length - 1)] ?? 'any';
      if (!accepts(kind, x.type)) {
        const what = kind === 'num' ? 'a number' : kind === 'text' ? 'text' : kind === 'time' ? 'a timestamp' : kind === 'bool' ? 'a boolean' : 'a value';
        this.fail(e.args[i]!.tok, `function ${e.name}: argument ${i + 1} must be ${what}, got ${x.type}${kind === 'text' ? ` (write CAST(... AS TEXT))` : ''}`);
      }
    });
    if (e.name === 'date_trunc' && args[0]!.isConst) {
      const u = args[0]!.fn(undefined as never);
      if (typeof u === 'string' && !(TRUNC_UNITS as readonly string[]).includes(u.toLowerCase())) {
        const hint = suggest(u, TRUNC_UNITS);
        this.fail(e.args[0]!.tok, `unknown date_trunc unit '${u}'${hint ? `; did you mean '${hint}'?` : ''} (use ${TRUNC_UNITS.join(', ')})`);
      }
      void truncTimestamp;
    }
    const type = typeof def.ret === 'function' ? def.ret(args.map((x) => x.type)) : def.ret;
    const impl = def.impl;
    const fs = args.map((x) => x.fn);
    let fn: Fn;
    if (def.nulls) fn = (c) => impl(...fs.map((f) => f(c)));
    else if (n === 0) fn = () => impl();
    else if (n === 1) {
      const f0 = fs[0]!;
      fn = (c) => {
        const x = f0(c);
        return isNull(x) ? null : impl(x);
      };
    } else if (n === 2) {
      const [f0, f1] = [fs[0]!, fs[1]!];
      fn = (c) => {
        const x = f0(c);
        if (isNull(x)) return null;
        const y = f1(c);
        return isNull(y) ? null : impl(x, y);
      };
    } else {
      fn = (c) => {
        const vs = new Array(n);
        for (let i = 0; i < n; i++) {
          const v = fs[i]!(c);
          if (isNull(v)) return null;
          vs[i] = v;
        }
        return impl(...vs);
      };
    }
    const name = e.name;
    if (!def.volatile && args.every((x) => x.isConst)) return this.fold(fn, e.tok, type, undefined, name);
    return { fn, type, name };
  }
}

function comparison(op: string, l: Compiled, r: Compiled): Fn {
  const a = l.fn;
  const b = r.fn;
  const test: (d: number) => boolean =
    op === '=' ? (d) => d === 0 : op === '!=' ? (d) => d !== 0 : op === '<' ? (d) => d < 0 : op === '<=' ? (d) => d <= 0 : op === '>' ? (d) => d > 0 : (d) => d >= 0;
  if (r.isConst) {
    const k = b(undefined as never);
    if (isNull(k)) return () => null;
    // The common `col > 10` / `col = 'x'` shape: compare primitives directly, fall back to the general rules.
    if (typeof k === 'number') {
      switch (op) {
        case '>':
          return (c) => {
            const x = a(c);
            return isNull(x) ? null : typeof x === 'number' ? x > k : compare(x, k) > 0;
          };
        case '<':
          return (c) => {
            const x = a(c);
            return isNull(x) ? null : typeof x === 'number' ? x < k : compare(x, k) < 0;
          };
      }
    }
    if (op === '=' && (typeof k === 'string' || typeof k === 'number')) {
      return (c) => {
        const x = a(c);
        return isNull(x) ? null : typeof x === typeof k ? x === k : compare(x, k) === 0;
      };
    }
    return (c) => {
      const x = a(c);
      return isNull(x) ? null : test(compare(x, k));
    };
  }
  return (c) => {
    const x = a(c);
    if (isNull(x)) return null;
    const y = b(c);
    if (isNull(y)) return null;
    return test(compare(x, y));
  };
}

/** The common type of CASE branches: NULL fits anything, int widens to float, unknown types are accepted. */
export function unify(types: SqlType[], conflict: (a: SqlType, b: SqlType) => never): SqlType {
  let t: SqlType = 'null';
  for (const x of types) {
    if (x === 'null' || x === t) continue;
    if (t === 'null') t = x;
    else if (x === 'any' || t === 'any' || x === 'json' || t === 'json') t = 'any';
    else if (NUMERIC.has(x) && NUMERIC.has(t)) t = x === 'float' || t === 'float' ? 'float' : 'decimal';
    else if ((x === 'string' && (t === 'timestamp' || t === 'date')) || (t === 'string' && (x === 'timestamp' || x === 'date'))) t = 'string';
    else conflict(t, x);
  }
  return t;
}

/** CAST conversions, following SQL rather than the schema's record coercion (3.7::INT is 4, not an error). */
export function converter(spec: ItemSpec): (v: unknown) => unknown {
  switch (spec.type) {
    case 'string':
      return toText;
    case 'int32':
    case 'int64':
      return (v) => {
        if (typeof v === 'bigint') return v;
        if (typeof v === 'string' && /^\s*[+-]?\d{16,}\s*$/.test(v)) return BigInt(v.trim());
        const n = v instanceof Date ? v.getTime() : toNum(v);
        if (!Number.isFinite(n)) throw new SqlValueError(`cannot cast ${show(v)} to ${spec.type}`);
        const r = Math.sign(n) * Math.round(Math.abs(n));
        if (spec.type === 'int32' && (r > 2147483647 || r < -2147483648)) throw new SqlValueError(`${show(v)} is out of range for int32`);
        return r;
      };
    case 'float32':
    case 'float64':
      return (v) => {
        try {
          return toNum(v);
        } catch {
          throw new SqlValueError(`cannot cast ${show(v)} to ${spec.type}`);
        }
      };
    case 'decimal':
      return (v) => {
        let n: number;
        try {
          n = toNum(v);
        } catch {
          throw new SqlValueError(`cannot cast ${show(v)} to decimal`);
        }
        const scale = spec.scale ?? (spec.precision !== undefined ? 0 : undefined);
        const s = scale === undefined ? String(n) : n.toFixed(scale);
        if (spec.precision !== undefined && s.replace(/[-.]/g, '').replace(/^0+(?=\d)/, '').length > spec.precision) {
          throw new SqlValueError(`${show(v)} does not fit decimal(${spec.precision},${scale ?? 0})`);
        }
        return s;
      };
    case 'boolean':
      return (v) => {
        try {
          return toBool(v);
        } catch {
          throw new SqlValueError(`cannot cast ${show(v)} to boolean`);
        }
      };
    case 'timestamp': {
      const mult = spec.unit === 's' ? 1000 : spec.unit === 'us' ? 1e-3 : spec.unit === 'ns' ? 1e-6 : 1;
      return (v) => {
        let ms: number;
        try {
          ms = typeof v === 'number' || typeof v === 'bigint' ? Number(v) * mult : toMillis(v);
        } catch {
          throw new SqlValueError(`cannot cast ${show(v)} to timestamp`);
        }
        const d = new Date(ms);
        if (Number.isNaN(d.getTime())) throw new SqlValueError(`cannot cast ${show(v)} to timestamp`);
        return d;
      };
    }
    case 'date':
      return (v) => {
        if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(v.trim())) return v.trim();
        let ms: number;
        try {
          ms = toMillis(v);
        } catch {
          throw new SqlValueError(`cannot cast ${show(v)} to date`);
        }
        return new Date(ms).toISOString().slice(0, 10);
      };
    case 'json':
    case 'object':
      return (v) => {
        if (typeof v !== 'string') return v;
        const t = v.trim();
        if (t[0] !== '{' && t[0] !== '[') return v;
        try {
          return JSON.parse(t);
        } catch {
          throw new SqlValueError(`cannot cast ${show(v)} to json`);
        }
      };
    case 'bytes':
      return (v) => (v instanceof Uint8Array ? v : Buffer.from(toText(v), 'utf8'));
    case 'array': {
      const item = converter(spec.items ?? { type: 'json' });
      return (v) => {
        let a = v;
        if (typeof a === 'string') {
          try {
            a = JSON.parse(a);
          } catch {
            throw new SqlValueError(`cannot cast ${show(v)} to an array`);
          }
        }
        if (!Array.isArray(a)) throw new SqlValueError(`cannot cast ${show(v)} to an array`);
        return a.map((x) => (isNull(x) ? null : item(x)));
      };
    }
    default:
      return (v) => v;
  }
}

export { UNIVERSAL_META };
