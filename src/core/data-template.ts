// Data templates: the logic-light language sinks use to shape the text they send (eKuiper's "data templates").
// See docs/templates.md. A template is parsed once into a tree of small closures; rendering walks them and appends to
// one string. Rendering never throws: a missing field renders as empty text (or `null` under `json`), and a helper
// given a value it cannot handle renders empty too, because one odd record must not stop a pipeline at the sink.
// The exception is field-template mode (`compileFieldTemplate`: topics, keys, subjects), where a missing `{{ field }}`
// is an error naming the field, because an empty segment would route the record where nobody reads it.

import { SluiceError } from './errors.js';
import { suggest } from './units.js';
import { lazyOptions, opt, z } from './spec.js';
import { stringifyJson } from '../formats/json.js';
import type { Encoder, SluiceRecord } from './types.js';
import { utf8Of } from '../formats/util.js';

export interface DataTemplateOptions {
  /** `json`: values are escaped for the inside of a JSON string (the default for JSON bodies); `none`: as-is. */
  escape?: 'json' | 'none';
  /**
   * Field-template mode (topics, keys, subjects, routing keys): a tag that is a bare path (`{{ region }}`) and finds
   * nothing throws the returned error instead of rendering empty, because an empty topic or key segment would send
   * the record somewhere nobody reads. Helpers (`{{ default region "eu" }}`) still render as usual.
   */
  missing?: (field: string, tag: string) => Error;
}

export interface DataTemplate {
  readonly source: string;
  /** The whole text when the template has no tags. */
  readonly constant?: string;
  render(row: unknown, record?: SluiceRecord): string;
}

/** A compile error; the message starts with `line:col` of the offending tag. */
export class DataTemplateError extends SluiceError {
  readonly line: number;
  readonly col: number;
  constructor(message: string, line: number, col: number) {
    super('CONFIG', `template ${line}:${col}: ${message}`);
    this.name = 'DataTemplateError';
    this.line = line;
    this.col = col;
  }
}

// ---- scope --------------------------------------------------------------------------------------------------------

interface Scope {
  /** Context stack: [row, each item, nested each item, ...]. */
  ctx: unknown[];
  /** Loop state stack, parallel to ctx[1..]. */
  loops: Array<{ index: number; length: number; key?: string }>;
  rec?: SluiceRecord;
}

type Expr = (s: Scope) => unknown;
type Part = (s: Scope) => string;

const isObj = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !(v instanceof Uint8Array) && !(v instanceof Date);

function metaOf(rec: SluiceRecord | undefined, name: string): unknown {
  if (!rec) return undefined;
  switch (name) {
    case '_key':
      return rec.key == null ? undefined : typeof rec.key === 'string' ? rec.key : Buffer.from(rec.key).toString('utf8');
    case '_timestamp':
      return rec.timestamp;
    case '_headers':
      return rec.headers;
    default:
      return rec.meta?.[name];
  }
}

/** Text of a value outside JSON: strings as-is, dates as ISO, objects as compact JSON. */
export function textOf(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v instanceof Date) return isNaN(v.getTime()) ? '' : v.toISOString();
  if (v instanceof Uint8Array) return utf8Of(v);
  return stringifyJson(v);
}

const NEEDS_ESCAPE = /["\\\u0000-\u001f\u2028\u2029]/;
function escapeJson(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s;
  return JSON.stringify(s).slice(1, -1).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (isObj(v)) return Object.keys(v).length > 0;
  return !!v && !(typeof v === 'number' && isNaN(v));
}

// ---- helpers ------------------------------------------------------------------------------------------------------

function toDate(v: unknown): Date | undefined {
  let d: Date;
  if (v instanceof Date) d = v;
  else if (typeof v === 'number') d = new Date(v);
  else if (typeof v === 'bigint') d = new Date(Number(v));
  else if (typeof v === 'string' && v !== '') d = /^-?\d+(\.\d+)?$/.test(v) ? new Date(Number(v)) : new Date(v);
  else return undefined;
  return isNaN(d.getTime()) ? undefined : d;
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const DATE_TOKENS = /YYYY|MM|DD|HH|mm|ss|SSS|Z/g;

function formatDate(d: Date, fmt: string): string {
  switch (fmt) {
    case 'iso':
      return d.toISOString();
    case 'unix':
    case 'epoch_s':
      return String(Math.floor(d.getTime() / 1000));
    case 'unix_ms':
    case 'epoch_ms':
      return String(d.getTime());
  }
  return fmt.replace(DATE_TOKENS, (t) => {
    switch (t) {
      case 'YYYY':
        return pad(d.getUTCFullYear(), 4);
      case 'MM':
        return pad(d.getUTCMonth() + 1);
      case 'DD':
        return pad(d.getUTCDate());
      case 'HH':
        return pad(d.getUTCHours());
      case 'mm':
        return pad(d.getUTCMinutes());
      case 'ss':
        return pad(d.getUTCSeconds());
      case 'SSS':
        return pad(d.getUTCMilliseconds(), 3);
      default:
        return 'Z';
    }
  });
}

const num = (v: unknown): number | undefined => {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string' && v.trim() !== '' && !isNaN(Number(v))) return Number(v);
  return undefined;
};

/** A value the `json` helper and JSON-escaping treat as already rendered. */
class Raw {
  constructor(readonly text: string) {}
}

interface Helper {
  min: number;
  max: number;
  fn: (args: unknown[]) => unknown;
}

const cmp = (a: unknown, b: unknown): number | undefined => {
  const x = num(a);
  const y = num(b);
  if (x !== undefined && y !== undefined) return x - y;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  return undefined;
};
const looseEq = (a: unknown, b: unknown) => a === b || (a != null && b != null && textOf(a) === textOf(b));

export const HELPERS: Record<string, Helper> = {
  json: { min: 1, max: 1, fn: ([v]) => new Raw(v === undefined ? 'null' : stringifyJson(v)) },
  raw: { min: 1, max: 1, fn: ([v]) => new Raw(textOf(v)) },
  upper: { min: 1, max: 1, fn: ([v]) => textOf(v).toUpperCase() },
  lower: { min: 1, max: 1, fn: ([v]) => textOf(v).toLowerCase() },
  trim: { min: 1, max: 1, fn: ([v]) => textOf(v).trim() },
  default: { min: 2, max: 2, fn: ([v, d]) => (v === undefined || v === null || v === '' ? d : v) },
  date: {
    min: 1,
    max: 2,
    fn: ([v, f]) => {
      const d = toDate(v);
      return d ? formatDate(d, typeof f === 'string' ? f : 'iso') : undefined;
    },
  },
  number: {
    min: 1,
    max: 2,
    fn: ([v, digits]) => {
      const n = num(v);
      if (n === undefined) return undefined;
      const k = num(digits);
      return k === undefined ? String(n) : n.toFixed(Math.max(0, Math.min(20, Math.trunc(k))));
    },
  },
  len: { min: 1, max: 1, fn: ([v]) => (Array.isArray(v) || typeof v === 'string' ? v.length : isObj(v) ? Object.keys(v).length : 0) },
  join: { min: 1, max: 2, fn: ([v, sep]) => (Array.isArray(v) ? v.map(textOf).join(typeof sep === 'string' ? sep : ',') : textOf(v)) },
  eq: { min: 2, max: 2, fn: ([a, b]) => looseEq(a, b) },
  ne: { min: 2, max: 2, fn: ([a, b]) => !looseEq(a, b) },
  gt: { min: 2, max: 2, fn: ([a, b]) => (cmp(a, b) ?? 0) > 0 && cmp(a, b) !== undefined },
  gte: { min: 2, max: 2, fn: ([a, b]) => cmp(a, b) !== undefined && cmp(a, b)! >= 0 },
  lt: { min: 2, max: 2, fn: ([a, b]) => cmp(a, b) !== undefined && cmp(a, b)! < 0 },
  lte: { min: 2, max: 2, fn: ([a, b]) => cmp(a, b) !== undefined && cmp(a, b)! <= 0 },
  and: { min: 2, max: 8, fn: (a) => a.every(truthy) },
  or: { min: 2, max: 8, fn: (a) => a.some(truthy) },
  not: { min: 1, max: 1, fn: ([v]) => !truthy(v) },
};

// ---- lexing of tag contents ---------------------------------------------------------------------------------------

type Tok = { t: 'str'; v: string; at: number } | { t: 'num'; v: number; at: number } | { t: 'word'; v: string; at: number } | { t: '(' | ')'; at: number };

const WORD = /[A-Za-z_@$.\[\]0-9\-]/;

function lexTag(text: string, base: number, fail: (msg: string, off: number) => never): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
    } else if (c === '(' || c === ')') {
      out.push({ t: c, at: base + i });
      i++;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) fail('unterminated string', base + i);
      const body = text.slice(i + 1, j);
      let v: string;
      try {
        v = c === '"' ? (JSON.parse(`"${body}"`) as string) : body.replace(/\\'/g, "'");
      } catch {
        fail('invalid escape in string', base + i);
      }
      out.push({ t: 'str', v, at: base + i });
      i = j + 1;
    } else if (/[-0-9]/.test(c) && /^-?\d/.test(text.slice(i))) {
      const m = /^-?\d+(\.\d+)?/.exec(text.slice(i))!;
      out.push({ t: 'num', v: Number(m[0]), at: base + i });
      i += m[0].length;
    } else if (WORD.test(c)) {
      let j = i;
      while (j < text.length && WORD.test(text[j]!)) j++;
      out.push({ t: 'word', v: text.slice(i, j), at: base + i });
      i = j;
    } else {
      fail(`unexpected character '${c}'`, base + i);
    }
  }
  return out;
}

// ---- compiling ----------------------------------------------------------------------------------------------------

const SEGMENT = /^(?:[A-Za-z_$][\w$-]*)(?:\.[A-Za-z_$0-9][\w$-]*|\[\d+\])*$/;

function splitPath(p: string): Array<string | number> {
  const out: Array<string | number> = [];
  for (const m of p.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}

function walk(v: unknown, path: ReadonlyArray<string | number>, from: number): unknown {
  let cur = v;
  for (let i = from; i < path.length; i++) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[path[i]!];
  }
  return cur;
}

export function compileDataTemplate(source: string, options: DataTemplateOptions = {}): DataTemplate {
  const escape = options.escape ?? 'json';
  const missing = options.missing;
  const fieldMode = missing !== undefined;
  const lineStarts = [0];
  for (let i = 0; i < source.length; i++) if (source[i] === '\n') lineStarts.push(i + 1);
  const fail = (msg: string, off: number): never => {
    let line = 0;
    while (line + 1 < lineStarts.length && lineStarts[line + 1]! <= off) line++;
    throw new DataTemplateError(msg, line + 1, off - lineStarts[line]! + 1);
  };

  const pathExpr = (word: string, at: number, depth: number): Expr => {
    if (word === 'this' || word === '.') return (s) => s.ctx[s.ctx.length - 1];
    if (word === '@index' || word === '@first' || word === '@last' || word === '@key') {
      if (depth === 0) fail(`'${word}' is only defined inside {{#each}}`, at);
      if (word === '@index') return (s) => s.loops[s.loops.length - 1]?.index;
      if (word === '@key') return (s) => s.loops[s.loops.length - 1]?.key;
      if (word === '@first') return (s) => s.loops[s.loops.length - 1]?.index === 0;
      return (s) => {
        const l = s.loops[s.loops.length - 1];
        return l ? l.index === l.length - 1 : false;
      };
    }
    let text = word;
    let root = false;
    if (text.startsWith('@root.')) {
      root = true;
      text = text.slice(6);
    } else if (text.startsWith('this.')) {
      text = text.slice(5);
      if (!SEGMENT.test(text)) fail(`'${word}' is not a field path (write e.g. price, customer.id or items[0].sku)`, at);
      const path = splitPath(text);
      return (s) => walk(s.ctx[s.ctx.length - 1], path, 0);
    }
    if (!SEGMENT.test(text)) fail(`'${word}' is not a field path (write e.g. price, customer.id or items[0].sku)`, at);
    const path = splitPath(text);
    const first = path[0] as string;
    const meta = first.startsWith('_');
    if (root || depth === 0) {
      return (s) => {
        const row = s.ctx[0];
        if (meta && !(isObj(row) && first in row)) return walk(metaOf(s.rec, first), path, 1);
        return walk(row, path, 0);
      };
    }
    // Inside a loop a name is looked up in the item first, then in the enclosing items and the row.
    return (s) => {
      for (let i = s.ctx.length - 1; i >= 0; i--) {
        const c = s.ctx[i];
        if (isObj(c) && first in c) return walk(c, path, 0);
      }
      if (meta) return walk(metaOf(s.rec, first), path, 1);
      return undefined;
    };
  };

  const parseExpr = (toks: Tok[], depth: number, tag = ''): { expr: Expr; helper?: string } => {
    let pos = 0;
    const atom = (): Expr => {
      const t = toks[pos++];
      if (!t) fail('expected a value', toks[toks.length - 1]?.at ?? 0);
      if (t!.t === 'str' || t!.t === 'num') {
        const v = t!.v;
        return () => v;
      }
      if (t!.t === '(') {
        const e = call(true);
        const close = toks[pos++];
        if (!close || close.t !== ')') fail("missing ')'", close?.at ?? t!.at);
        return e;
      }
      if (t!.t === ')') fail("unexpected ')'", t!.at);
      const w = (t as { v: string }).v;
      if (w === 'true') return () => true;
      if (w === 'false') return () => false;
      if (w === 'null') return () => null;
      return pathExpr(w, t!.at, depth);
    };
    const call = (nested: boolean): Expr => {
      const t = toks[pos];
      if (t && t.t === 'word' && HELPERS[t.v] && (toks.length > pos + 1 && toks[pos + 1]!.t !== ')')) {
        const h = HELPERS[t.v]!;
        pos++;
        const args: Expr[] = [];
        while (pos < toks.length && toks[pos]!.t !== ')') args.push(atom());
        if (args.length < h.min || args.length > h.max) {
          fail(`'${t.v}' takes ${h.min === h.max ? h.min : `${h.min} to ${h.max}`} argument(s), got ${args.length}`, t.at);
        }
        const fn = h.fn;
        if (args.length === 1) {
          const a = args[0]!;
          return (s) => fn([a(s)]);
        }
        return (s) => fn(args.map((a) => a(s)));
      }
      if (t && t.t === 'word' && toks.length > pos + 1 && toks[pos + 1]!.t !== ')' && !nested) {
        const hint = suggest(t.v, Object.keys(HELPERS));
        if (fieldMode) {
          // Field templates are mostly `{{ field }}`: say that first, and skip guesses for very short words.
          fail(`'{{ ${tag} }}' is not a field name (write e.g. {{ region }} or {{ customer.id }}) and '${t.v}' is not a helper${hint && t.v.length > 2 ? `; did you mean '${hint}'?` : ''}`, t.at);
        }
        fail(`unknown helper '${t.v}'${hint ? `; did you mean '${hint}'?` : ''}`, t.at);
      }
      if (t && t.t === 'word' && nested && toks.length > pos + 1 && toks[pos + 1]!.t !== ')') {
        const hint = suggest(t.v, Object.keys(HELPERS));
        fail(`unknown helper '${t.v}'${hint ? `; did you mean '${hint}'?` : ''}`, t.at);
      }
      return atom();
    };
    if (!toks.length) fail('empty tag', 0);
    const first = toks[0]!;
    const expr = call(false);
    if (pos < toks.length) fail(`unexpected '${toks[pos]!.t === 'word' || toks[pos]!.t === 'str' ? (toks[pos] as { v: string }).v : toks[pos]!.t}'`, toks[pos]!.at);
    return { expr, helper: first.t === 'word' && HELPERS[first.v] ? first.v : undefined };
  };

  const output = (expr: Expr): Part => {
    if (escape === 'json') {
      return (s) => {
        const v = expr(s);
        if (v instanceof Raw) return v.text;
        return escapeJson(textOf(v));
      };
    }
    return (s) => {
      const v = expr(s);
      return v instanceof Raw ? v.text : textOf(v);
    };
  };

  // Block parsing over the tag stream.
  interface Frame {
    kind: 'root' | 'if' | 'unless' | 'each';
    at: number;
    parts: Part[];
    elseParts?: Part[];
    cond?: Expr;
  }
  const stack: Frame[] = [{ kind: 'root', at: 0, parts: [] }];
  const cur = () => {
    const f = stack[stack.length - 1]!;
    return f.elseParts ?? f.parts;
  };
  const loopDepth = () => stack.filter((f) => f.kind === 'each').length;

  let i = 0;
  let lit = '';
  const flushLit = () => {
    if (lit) {
      const text = lit;
      cur().push(() => text);
      lit = '';
    }
  };
  while (i < source.length) {
    const open = source.indexOf('{{', i);
    const strayClose = source.indexOf('}}', i);
    if (strayClose >= 0 && (open < 0 || strayClose < open)) fail("'}}' without a matching '{{'", strayClose);
    if (open < 0) {
      lit += source.slice(i);
      break;
    }
    lit += source.slice(i, open);
    const close = source.indexOf('}}', open + 2);
    if (close < 0) fail(fieldMode ? "unbalanced '{{': missing '}}'" : "'{{' is never closed with '}}'", open);
    const inner = source.slice(open + 2, close);
    const innerAt = open + 2;
    i = close + 2;
    const trimmed = inner.trim();
    const lead = innerAt + inner.indexOf(trimmed[0] ?? '');
    if (trimmed.startsWith('!')) continue;
    flushLit();
    if (trimmed.startsWith('#')) {
      const m = /^#(\w*)\s*/.exec(trimmed)!;
      const kind = m[1] as Frame['kind'] | undefined;
      if (kind !== 'if' && kind !== 'each' && kind !== 'unless') {
        const hint = kind ? suggest(kind as string, ['if', 'each', 'unless']) : undefined;
        fail(`unknown block '#${String(kind ?? '')}'${hint ? `; did you mean '#${hint}'?` : ''} (blocks are #if, #unless and #each)`, lead);
      }
      const rest = trimmed.slice(m[0].length);
      if (!rest) fail(`{{#${kind}}} needs a value, e.g. {{#${kind} items}}`, lead);
      const toks = lexTag(rest, lead + m[0].length, fail);
      const { expr } = parseExpr(toks, loopDepth());
      stack.push({ kind: kind as 'if' | 'each' | 'unless', at: lead, parts: [], cond: expr });
      continue;
    }
    if (trimmed.startsWith('/')) {
      const kind = trimmed.slice(1).trim();
      const f = stack[stack.length - 1]!;
      if (f.kind === 'root') fail(`'{{/${kind}}}' without an open block`, lead);
      if (kind !== f.kind) fail(`'{{/${kind}}}' closes '{{#${f.kind}}}' opened at ${posText(f.at)}`, lead);
      stack.pop();
      cur().push(block(f));
      continue;
    }
    if (trimmed === 'else') {
      const f = stack[stack.length - 1]!;
      if (f.kind === 'root') fail("'{{else}}' outside {{#if}}, {{#unless}} or {{#each}}", lead);
      if (f.elseParts) fail(`a second '{{else}}' in the block opened at ${posText(f.at)}`, lead);
      f.elseParts = [];
      continue;
    }
    if (fieldMode && !/\s/.test(trimmed) && !SEGMENT.test(trimmed) && !/^(this|@\w+|@root\..+|this\..+)$/.test(trimmed)) {
      fail(`'{{ ${trimmed} }}' is not a field name (write e.g. {{ region }} or {{ customer.id }})`, lead);
    }
    const toks = lexTag(inner, innerAt, fail);
    let { expr } = parseExpr(toks, loopDepth(), trimmed);
    const only = toks.length === 1 ? toks[0]! : undefined;
    if (missing && only?.t === 'word' && !['true', 'false', 'null'].includes(only.v) && !only.v.startsWith('@')) {
      const get = expr;
      const field = only.v.startsWith('this.') ? only.v.slice(5) : only.v;
      const tagText = `{{ ${trimmed} }}`;
      expr = (s) => {
        const v = get(s);
        if (v === undefined || v === null) throw missing(field, tagText);
        return v;
      };
    }
    cur().push(output(expr));
  }
  flushLit();
  if (stack.length > 1) {
    const f = stack[stack.length - 1]!;
    fail(`'{{#${f.kind}}}' is never closed with '{{/${f.kind}}}'`, f.at);
  }

  function posText(off: number): string {
    let line = 0;
    while (line + 1 < lineStarts.length && lineStarts[line + 1]! <= off) line++;
    return `${line + 1}:${off - lineStarts[line]! + 1}`;
  }

  function seq(parts: Part[]): Part {
    if (parts.length === 0) return () => '';
    if (parts.length === 1) return parts[0]!;
    return (s) => {
      let out = '';
      for (let k = 0; k < parts.length; k++) out += parts[k]!(s);
      return out;
    };
  }

  function block(f: Frame): Part {
    const body = seq(f.parts);
    const other = seq(f.elseParts ?? []);
    const cond = f.cond!;
    if (f.kind === 'if') return (s) => (truthy(cond(s)) ? body(s) : other(s));
    if (f.kind === 'unless') return (s) => (truthy(cond(s)) ? other(s) : body(s));
    return (s) => {
      const v = cond(s);
      let items: unknown[];
      let keys: string[] | undefined;
      if (Array.isArray(v)) items = v;
      else if (isObj(v)) {
        keys = Object.keys(v);
        items = keys.map((k) => v[k]);
      } else return other(s);
      if (!items.length) return other(s);
      let out = '';
      const loop = { index: 0, length: items.length, key: undefined as string | undefined };
      s.loops.push(loop);
      s.ctx.push(undefined);
      for (let k = 0; k < items.length; k++) {
        loop.index = k;
        loop.key = keys?.[k];
        s.ctx[s.ctx.length - 1] = items[k];
        out += body(s);
      }
      s.ctx.pop();
      s.loops.pop();
      return out;
    };
  }

  const top = stack[0]!.parts;
  if (top.length === 0) return { source, constant: '', render: () => '' };
  if (top.length === 1 && !source.includes('{{')) return { source, constant: source, render: () => source };
  const all = seq(top);
  return {
    source,
    render(row, record) {
      return all({ ctx: [row], loops: [], rec: record });
    },
  };
}

// ---- field templates and payload templates for sinks --------------------------------------------------------------

/** A sink's topic, key, subject, routing key or header template: rendered per record, strict about missing fields. */
export interface FieldTemplate {
  readonly source: string;
  /** True when the template has no tags (it always renders `source`). */
  readonly constant: boolean;
  /** Throws the `missing` error when a bare `{{ field }}` finds nothing (missing or null) in the record. */
  render(rec: SluiceRecord): string;
}

/** The compile problem of a field template (`template 1:7: ...`), or undefined; for option validation. */
export function fieldTemplateProblem(source: string): string | undefined {
  try {
    compileDataTemplate(source, { escape: 'none', missing: () => new Error('missing') });
    return undefined;
  } catch (e) {
    if (e instanceof DataTemplateError) return e.message;
    throw e;
  }
}

/**
 * Compile a field template once. `what` names the option in errors (`topic`, `header 'x-id'`); `missing` builds the
 * render error for a record without a field (default: a permanent sink error naming the option, template and field).
 */
export function compileFieldTemplate(source: string, what: string, missing?: (field: string, tag: string) => Error): FieldTemplate {
  const onMissing =
    missing ??
    ((field: string) =>
      new SluiceError('SINK', `${what} template '${source}': field '${field}' is missing or null in the record`, {
        retriable: false,
        hint: 'every record needs the fields the template names; use {{ default field "x" }} or filter upstream',
      }));
  let t: DataTemplate;
  try {
    t = compileDataTemplate(source, { escape: 'none', missing: onMissing });
  } catch (e) {
    if (e instanceof DataTemplateError) throw new SluiceError('CONFIG', `${what}: ${e.message}`);
    throw e;
  }
  if (t.constant !== undefined) {
    const text = t.constant;
    return { source, constant: true, render: () => text };
  }
  return { source, constant: false, render: (rec) => t.render(rec.value, rec) };
}

/** A string option that must compile as a field template (topics, keys); the issue carries the tag's line:col. */
export function fieldTemplateString(meta: Parameters<typeof opt>[1]) {
  return opt(
    z.string().min(1).superRefine((s, ctx) => {
      const problem = fieldTemplateProblem(s);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    meta,
  );
}

/**
 * The `template` and `template_escape` options every text-sending sink shares (eKuiper's `dataTemplate`): the payload
 * of each record is the rendered template instead of the format's encoding.
 */
export const payloadTemplateShape = lazyOptions('core:payload template', () => ({
  template: opt(
    z
      .string()
      .min(1)
      .superRefine((s, ctx) => {
        try {
          compileDataTemplate(s, { escape: 'json' });
        } catch (e) {
          ctx.addIssue({ code: 'custom', message: e instanceof DataTemplateError ? e.message : String(e) });
        }
      })
      .optional(),
    {
      description:
        'Data template for each record\'s payload (see docs/templates.md), e.g. `{"id":{{ id }},"name":"{{ name }}"}`; replaces the format\'s encoding. Values are JSON-escaped unless `template_escape: none`.',
      aliases: ['dataTemplate', 'data_template', 'payload_template'],
      examples: ['{"device":"{{ device }}","temp":{{ number temp 1 }}}'],
    },
  ),
  template_escape: opt(z.enum(['json', 'none']).default('json'), {
    description: 'Escaping of values inserted by `template`: `json` (inside JSON strings) or `none` (plain text payloads).',
    aliases: ['templateEscape'],
    advanced: true,
  }),
}));

export interface PayloadTemplateOptions {
  template?: string;
  template_escape?: 'json' | 'none';
}

/** Renders one record's payload: the sink's `template` when set, else undefined (the sink encodes with its format). */
export type PayloadTemplate = (rec: SluiceRecord) => string;

/** The compiled `template` option, or undefined. Compile errors name the option and the tag's line:col. */
export function payloadTemplate(o: PayloadTemplateOptions): PayloadTemplate | undefined {
  if (o.template === undefined) return undefined;
  let t: DataTemplate;
  try {
    t = compileDataTemplate(o.template, { escape: o.template_escape ?? 'json' });
  } catch (e) {
    if (e instanceof DataTemplateError) throw new SluiceError('CONFIG', `template: ${e.message}`);
    throw e;
  }
  return (rec) => t.render(rec.value, rec);
}

/** The payload of a record: the template rendered when there is one, else the record encoded by the format. */
export function payloadOf(tpl: PayloadTemplate | undefined, encoder: Encoder, rec: SluiceRecord): string | Uint8Array {
  return tpl ? tpl(rec) : encoder.encode(rec.value);
}
