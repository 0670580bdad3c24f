// A SELECT turned into a batch transform: WHERE drops records, the select list rebuilds each record's value, and
// lookup joins fetch every distinct key of a batch in one `getMany` round trip.

import { ConfigError } from '../core/errors.js';
import type { LookupTable } from '../core/spec.js';
import type { FieldSpec, SchemaSpec, SluiceRecord } from '../core/types.js';
import type { Expr, SelectStmt } from './ast.js';
import { ExprCompiler, UNIVERSAL_META, specOfType, type Ctx, type Fn, type ItemSpec, type Row, type TableScope } from './expr.js';
import type { Token } from './lexer.js';
import { parseSelect } from './parser.js';
import { toText } from './values.js';

/** Rewrites a batch; records a WHERE rejects (or an inner join does not match) are left out of the result. */
export type SqlTransform = (records: SluiceRecord[]) => SluiceRecord[] | Promise<SluiceRecord[]>;

export interface LookupBinding {
  /** Declared columns of the lookup table (unknown names are errors); without one any column is accepted. */
  schema?: SchemaSpec;
  /** The live table; needed to run the transform, not to check the query. */
  table?: LookupTable;
}

export interface SelectOptions {
  /** File name for error positions (default `<transform>`), and where the SQL starts in it. */
  file?: string;
  line?: number;
  col?: number;
  /** Record metadata readable as columns besides `_timestamp`, `_key`, `_headers` (`_offset`, `_partition`, ...). */
  metadata?: Iterable<string>;
  /** Tables a JOIN may name, by name. */
  lookups?: Record<string, LookupBinding>;
  /**
   * A record whose expression fails (a CAST that does not fit, division by zero) is handed here and left out of the
   * result; without it the transform throws (a RecordError) and the batch fails.
   */
  onError?: (record: SluiceRecord, error: Error) => void;
}

export interface CompiledSelect {
  transform: SqlTransform;
  /** The output row's schema, when every output column's type is known. */
  outputSchema?: SchemaSpec;
  /** True when the query joins a lookup table: the transform returns a promise. */
  async: boolean;
  /** Names of the lookup tables the query joins, in join order. */
  lookups: string[];
  /** Output column name of each select item (undefined for `*`). */
  itemNames: Array<string | undefined>;
}

interface JoinPlan {
  left: boolean;
  name: string;
  tok: Token;
  /** The key looked up, computed from the source row and earlier joins. */
  key: Fn;
  /** The lookup table column the key is compared with; filled into the row when the table's row lacks it. */
  keyColumn: string;
  /** Other ON conditions, checked on the fetched row. */
  residual?: Fn;
}

interface Plan {
  pre?: Fn;
  joins: JoinPlan[];
  post?: Fn;
  project?: (c: Ctx) => Row;
  outputSchema?: SchemaSpec;
}

const EMPTY_ROW: Row = Object.freeze({}) as Row;
const NO_JOINS: Array<Row | undefined> = [];

/** Compile `SELECT ... [FROM t [JOIN l ON ...]] [WHERE ...]` for a YAML `transform:` (FROM is optional there). */
export function compileSelect(sql: string, inputSchema?: SchemaSpec, o: SelectOptions = {}): CompiledSelect {
  const file = o.file ?? '<transform>';
  const stmt = parseSelect(sql, file, { line: o.line, col: o.col });
  return compileSelectStmt(stmt, file, inputSchema, o);
}

function columnMap(schema: SchemaSpec | undefined): Map<string, ItemSpec> | undefined {
  if (!schema) return undefined;
  const m = new Map<string, ItemSpec>();
  for (const f of schema.fields) {
    const { name, ...spec } = f;
    m.set(name, spec);
  }
  return m;
}

function splitAnd(e: Expr): Expr[] {
  return e.k === 'bin' && e.op === 'AND' ? [...splitAnd(e.l), ...splitAnd(e.r)] : [e];
}

function andAll(fns: Fn[]): Fn | undefined {
  if (!fns.length) return undefined;
  if (fns.length === 1) return fns[0];
  return (c) => {
    let sawNull = false;
    for (const f of fns) {
      const v = f(c);
      if (v === false) return false;
      if (v !== true) sawNull = true;
    }
    return sawNull ? null : true;
  };
}

export function compileSelectStmt(stmt: SelectStmt, file: string, inputSchema: SchemaSpec | undefined, o: SelectOptions = {}): CompiledSelect {
  const fail = (t: Token, message: string): never => {
    throw new ConfigError([{ path: [], message, loc: { file, line: t.line, col: t.col } }]);
  };
  const metadata = new Set<string>([...UNIVERSAL_META, ...(o.metadata ?? [])]);
  const tables: TableScope[] = [
    { name: stmt.from?.name ?? 'source', alias: stmt.from?.alias, index: -1, columns: columnMap(inputSchema), metadata },
  ];
  const plan: Plan = { joins: [] };

  // Joins, in order: each ON may read the source and the joins before it.
  stmt.joins.forEach((j, i) => {
    const binding = o.lookups?.[j.table.name];
    if (!binding) {
      const names = Object.keys(o.lookups ?? {});
      const hint = names.length ? names.find((n) => n.toLowerCase() === j.table.name.toLowerCase()) : undefined;
      fail(j.table.tok, `'${j.table.name}' is not a lookup table${hint ? `; did you mean '${hint}'?` : ''} (a JOIN reads a table whose connector can look rows up by key, such as redis)`);
    }
    const scope: TableScope = { name: j.table.name, alias: j.table.alias, index: i, columns: columnMap(binding!.schema) };
    const label = scope.alias ?? scope.name;
    if (tables.some((t) => (t.alias ?? t.name) === label)) fail(j.table.tok, `table name '${label}' is used twice; give one an alias`);
    tables.push(scope);
    const conjuncts = splitAnd(j.on);
    let key: { fn: Fn; column: string } | undefined;
    const residual: Fn[] = [];
    for (const c of conjuncts) {
      if (!key && c.k === 'bin' && c.op === '=') {
        for (const [mine, other] of [[c.l, c.r], [c.r, c.l]] as const) {
          if (key || mine.k !== 'col') continue;
          const probe = new ExprCompiler(file, tables);
          const m = probe.compile(mine);
          if (!(probe.uses.size === 1 && probe.uses.has(i)) || m.name === undefined) continue;
          const otherC = new ExprCompiler(file, tables.slice(0, i + 1));
          let of;
          try {
            of = otherC.compile(other);
          } catch {
            continue;
          }
          key = { fn: of.fn, column: m.name };
        }
        if (key) continue;
      }
      residual.push(new ExprCompiler(file, tables).condition(c, 'ON'));
    }
    if (!key) fail(j.on.tok, `JOIN ${j.table.name} ON needs an equality between ${label}.<column> and an expression over the earlier tables (the key looked up)`);
    plan.joins.push({ left: j.left, name: j.table.name, tok: j.table.tok, key: key!.fn, keyColumn: key!.column, residual: andAll(residual) });
  });

  // WHERE conjuncts that read no joined table run before the lookups, so filtered records cost no round trip.
  if (stmt.where) {
    const pre: Fn[] = [];
    const post: Fn[] = [];
    for (const c of splitAnd(stmt.where)) {
      const ec = new ExprCompiler(file, tables);
      const f = ec.condition(c, 'WHERE');
      (ec.uses.size ? post : pre).push(f);
    }
    plan.pre = andAll(pre);
    plan.post = andAll(post);
  }

  // The select list.
  const names: string[] = [];
  const fns: Fn[] = [];
  const fields: FieldSpec[] = [];
  let schemaKnown = true;
  let starSource = false;
  const starJoins: number[] = [];
  const seen = new Map<string, Token>();
  const addName = (name: string, tok: Token) => {
    if (seen.has(name)) fail(tok, `output column '${name}' is given twice; rename one with AS`);
    seen.set(name, tok);
  };
  let onlyStar = true;
  const itemNames: Array<string | undefined> = [];
  stmt.items.forEach((item, idx) => {
    itemNames.push(undefined);
    if (item.star) {
      const targets = item.star.table === undefined ? tables : tables.filter((t) => (t.alias ?? t.name) === item.star!.table || t.name === item.star!.table);
      if (!targets.length) fail(item.star.tok, `unknown table '${item.star.table}'`);
      for (const t of targets) {
        if (t.index < 0) starSource = true;
        else starJoins.push(t.index);
        if (!t.columns) schemaKnown = false;
        else for (const [n, s] of t.columns) {
          addName(n, item.star.tok);
          fields.push({ name: n, ...s });
        }
      }
      if (item.star.table !== undefined && targets.every((t) => t.index >= 0)) onlyStar = onlyStar && false;
      return;
    }
    onlyStar = false;
    const c = new ExprCompiler(file, tables).compile(item.expr!);
    const name = item.alias ?? c.name ?? `col${idx + 1}`;
    addName(name, item.aliasTok ?? item.expr!.tok);
    itemNames[idx] = name;
    names.push(name);
    fns.push(c.fn);
    const spec = c.spec ?? specOfType(c.type);
    if (c.type === 'any' && !c.spec) schemaKnown = false;
    fields.push({ name, ...spec });
  });
  if (schemaKnown) plan.outputSchema = { fields };

  const passThrough = onlyStar && starSource && !starJoins.length && stmt.items.length === 1;
  if (!passThrough) plan.project = projector(names, fns, starSource, starJoins);

  const lookups = plan.joins.map((j) => j.name);
  const transform = plan.joins.length ? asyncTransform(plan, o) : syncTransform(plan, o);
  return { transform, outputSchema: plan.outputSchema, async: plan.joins.length > 0, lookups, itemNames };
}

function projector(names: string[], fns: Fn[], starSource: boolean, starJoins: number[]): (c: Ctx) => Row {
  const n = names.length;
  if (!starSource && !starJoins.length) {
    return (c) => {
      const o: Row = {};
      for (let i = 0; i < n; i++) o[names[i]!] = fns[i]!(c);
      return o;
    };
  }
  return (c) => {
    const o: Row = starSource ? { ...c.v } : {};
    for (const j of starJoins) {
      const row = c.j[j];
      if (row) for (const k in row) if (!(k in o)) o[k] = row[k];
    }
    for (let i = 0; i < n; i++) o[names[i]!] = fns[i]!(c);
    return o;
  };
}

function isRow(v: unknown): v is Row {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
}

function syncTransform(plan: Plan, o: SelectOptions): SqlTransform {
  const { pre, project } = plan;
  const onError = o.onError;
  return (records) => {
    const out: SluiceRecord[] = [];
    const ctx: Ctx = { v: EMPTY_ROW, r: undefined as unknown as SluiceRecord, j: NO_JOINS };
    for (let i = 0; i < records.length; i++) {
      const rec = records[i]!;
      const v = rec.value;
      ctx.v = isRow(v) ? v : EMPTY_ROW;
      ctx.r = rec;
      try {
        if (pre !== undefined && pre(ctx) !== true) continue;
        if (project !== undefined) rec.value = project(ctx);
      } catch (e) {
        if (onError) {
          onError(rec, e as Error);
          continue;
        }
        throw e;
      }
      out.push(rec);
    }
    return out;
  };
}

function keyText(v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined;
  return toText(v);
}

function asyncTransform(plan: Plan, o: SelectOptions): SqlTransform {
  const onError = o.onError;
  const tables = plan.joins.map((j) => {
    const t = o.lookups?.[j.name]?.table;
    return t;
  });
  return async (records) => {
    const ctx: Ctx = { v: EMPTY_ROW, r: undefined as unknown as SluiceRecord, j: NO_JOINS };
    const guard = (rec: SluiceRecord, f: () => void): boolean => {
      try {
        f();
        return true;
      } catch (e) {
        if (e === SKIP) return false;
        if (onError) {
          onError(rec, e as Error);
          return false;
        }
        throw e;
      }
    };
    let live: Array<{ rec: SluiceRecord; v: Row; j: Array<Row | undefined> }> = [];
    for (const rec of records) {
      const v = isRow(rec.value) ? rec.value : EMPTY_ROW;
      let keep = true;
      if (plan.pre) {
        ctx.v = v;
        ctx.r = rec;
        ctx.j = NO_JOINS;
        if (!guard(rec, () => (keep = plan.pre!(ctx) === true))) continue;
      }
      if (keep) live.push({ rec, v, j: [] });
    }
    for (let ji = 0; ji < plan.joins.length; ji++) {
      const join = plan.joins[ji]!;
      const table = tables[ji];
      if (!table) throw new ConfigError([{ path: [], message: `lookup table '${join.name}' is not open (pass it in lookups)` }]);
      const keys = new Array<string | undefined>(live.length);
      const distinct = new Map<string, number>();
      const next: typeof live = [];
      live.forEach((x, i) => {
        ctx.v = x.v;
        ctx.r = x.rec;
        ctx.j = x.j;
        if (!guard(x.rec, () => (keys[i] = keyText(join.key(ctx))))) {
          keys[i] = undefined;
          (x as { dead?: boolean }).dead = true;
          return;
        }
        const k = keys[i];
        if (k !== undefined && !distinct.has(k)) distinct.set(k, distinct.size);
      });
      const list = [...distinct.keys()];
      const rows = list.length ? await table.getMany(list) : [];
      live.forEach((x, i) => {
        if ((x as { dead?: boolean }).dead) return;
        const k = keys[i];
        let row = k === undefined ? undefined : rows[distinct.get(k)!];
        if (row && !(join.keyColumn in row)) row = { ...row, [join.keyColumn]: k };
        x.j[ji] = row;
        if (row && join.residual) {
          ctx.v = x.v;
          ctx.r = x.rec;
          ctx.j = x.j;
          let ok = false;
          if (!guard(x.rec, () => (ok = join.residual!(ctx) === true))) return;
          if (!ok) x.j[ji] = row = undefined;
        }
        if (row || join.left) next.push(x);
      });
      live = next;
    }
    const out: SluiceRecord[] = [];
    for (const x of live) {
      ctx.v = x.v;
      ctx.r = x.rec;
      ctx.j = x.j;
      const ok = guard(x.rec, () => {
        if (plan.post && plan.post(ctx) !== true) throw SKIP;
        if (plan.project) x.rec.value = plan.project(ctx);
      });
      if (ok) out.push(x.rec);
    }
    return out;
  };
}

// Thrown inside `guard` to leave a record out without treating it as an error.
const SKIP = new Error('skip');
