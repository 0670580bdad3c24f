// Turns stored control objects into the document the YAML compiler takes, so the API, YAML files and imports share one
// compiler: a profile is a `connection_profiles:` entry, a table a `tables:` entry, a pipeline a YAML pipeline.

import { compileDocument, compileEndpoint, type CompiledDocument } from '../config/compile.js';
import { substituteEnv } from '../config/env.js';
import { ConfigError, type ConfigIssue } from '../core/errors.js';
import type { PipelineDef, EndpointDef } from '../core/model.js';
import { findConnector } from '../connectors/index.js';
import type { SecretBox } from './secrets.js';
import type { PipelineRow, ProfileRow, TableRow } from './store.js';

type Path = (string | number)[];

/** Keys of a table's `schema` object in the API; everything but `format` and the policies is the declared schema. */
export const TABLE_ENDPOINT_KEYS = ['format', 'bad_data', 'metadata_fields', 'payload_path'] as const;

/** A stored table as a YAML `tables:` entry. */
export function tableToYaml(t: Pick<TableRow, 'connector' | 'profile_id' | 'config' | 'schema'>, profileName: (id: string) => string | undefined, config = t.config): Record<string, unknown> {
  const out: Record<string, unknown> = { connector: t.connector };
  if (t.profile_id) out.profile = profileName(t.profile_id) ?? t.profile_id;
  out.config = config;
  const s = t.schema ?? {};
  const decl: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) {
    if ((TABLE_ENDPOINT_KEYS as readonly string[]).includes(k)) out[k] = v;
    else decl[k] = v;
  }
  if (Object.keys(decl).length) out.schema = decl;
  return out;
}

/** A YAML `tables:` entry in the API's shape (for imports). */
export function yamlToTable(y: Record<string, unknown>): { connector?: string; profile?: string; config: Record<string, unknown>; schema: Record<string, unknown> } {
  const schema: Record<string, unknown> = {};
  for (const k of TABLE_ENDPOINT_KEYS) if (y[k] !== undefined) schema[k] = y[k];
  if (y.schema && typeof y.schema === 'object' && !Array.isArray(y.schema)) Object.assign(schema, y.schema);
  else if (Array.isArray(y.schema)) schema.fields = y.schema;
  return {
    connector: typeof y.connector === 'string' ? y.connector : undefined,
    profile: typeof y.profile === 'string' ? y.profile : undefined,
    config: (y.config ?? {}) as Record<string, unknown>,
    schema,
  };
}

/** `${ENV}` substitution over a whole tree; unset variables without a default are reported with their path. */
export function substituteTree(v: unknown, env: NodeJS.ProcessEnv, path: Path, issues: ConfigIssue[]): unknown {
  if (typeof v === 'string') {
    const s = substituteEnv(v, env);
    for (const m of s.missing) issues.push({ path, message: `environment variable '${m}' is not set (write \${${m}:-default} to give a default)` });
    return s.value;
  }
  if (Array.isArray(v)) return v.map((x, i) => substituteTree(x, env, [...path, i], issues));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substituteTree(x, env, [...path, k], issues)]));
  return v;
}

export interface Catalog {
  profiles: ProfileRow[];
  tables: TableRow[];
}

interface Scope {
  profiles: CompiledDocument['profiles'];
  tables: Record<string, unknown>;
  /** Unset variables per profile/table name; they matter only where that profile or table is used. */
  missing: Map<string, ConfigIssue[]>;
}

function buildScope(c: Catalog, box: SecretBox, env: NodeJS.ProcessEnv): Scope {
  const byId = new Map(c.profiles.map((p) => [p.id, p.name]));
  const missing = new Map<string, ConfigIssue[]>();
  const profiles: Scope['profiles'] = {};
  for (const p of c.profiles) {
    const issues: ConfigIssue[] = [];
    profiles[p.name] = { connector: p.connector, config: substituteTree(box.open(p.config, findConnector(p.connector)), env, ['connection_profiles', p.name, 'config'], issues) as Record<string, unknown> };
    if (issues.length) missing.set(`profile:${p.name}`, issues);
  }
  const tables: Record<string, unknown> = {};
  for (const t of c.tables) {
    const issues: ConfigIssue[] = [];
    const config = substituteTree(box.open(t.config, findConnector(t.connector)), env, ['tables', t.name, 'config'], issues) as Record<string, unknown>;
    tables[t.name] = tableToYaml(t, (id) => byId.get(id), config);
    if (issues.length) missing.set(`table:${t.name}`, issues);
  }
  return { profiles, tables, missing };
}

function endpointsOf(def: PipelineDef): EndpointDef[] {
  return [def.source, ...(def.sink ? [def.sink] : []), ...(def.dlq ? [def.dlq] : []), ...(def.routes ?? []).map((r) => r.sink)];
}

/** Profile and table names a JSON pipeline definition refers to, found without compiling it. */
export function referencesOf(definition: unknown): { tables: Set<string>; profiles: Set<string> } {
  const tables = new Set<string>();
  const profiles = new Set<string>();
  const ep = (e: unknown) => {
    if (typeof e === 'string') tables.add(e);
    else if (e && typeof e === 'object') {
      const o = e as Record<string, unknown>;
      if (typeof o.table === 'string') tables.add(o.table);
      for (const k of ['profile', 'connection_profile', 'connectionProfile', 'connection']) if (typeof o[k] === 'string') profiles.add(o[k] as string);
    }
  };
  if (definition && typeof definition === 'object') {
    const d = definition as Record<string, unknown>;
    ep(d.source);
    ep(d.sink);
    ep(d.dlq);
    if (Array.isArray(d.routes)) for (const r of d.routes) ep((r as Record<string, unknown>)?.sink);
  }
  return { tables, profiles };
}

/** Profile and table names any stored pipeline uses: a JSON definition's endpoints, or what a SQL query names. */
export async function pipelineReferences(row: Pick<PipelineRow, 'kind' | 'definition'>): Promise<{ tables: Set<string>; profiles: Set<string> }> {
  const spec = '../sql/index.js';
  const m = (await import(spec).catch(() => ({}))) as {
    sqlReferences?: (q: string) => { tables: Set<string>; profiles: Set<string> };
    parseSelect?: (q: string, file: string) => { joins: Array<{ table: { name: string } }> };
  };
  if (row.kind !== 'sql') {
    const refs = referencesOf(row.definition);
    // Lookup tables a YAML transform joins are stored tables too.
    const t = (row.definition as { transform?: unknown } | null)?.transform;
    if (typeof t === 'string' && m.parseSelect) {
      try {
        for (const j of m.parseSelect(t, 'transform').joins) refs.tables.add(j.table.name);
      } catch {
        /* an unparsable transform joins nothing */
      }
    }
    return refs;
  }
  const refs = m.sqlReferences?.(String((row.definition as { query?: unknown }).query ?? '')) ?? { tables: new Set<string>(), profiles: new Set<string>() };
  // SQL names are matched case-insensitively by the compiler.
  return { tables: new Set([...refs.tables].map((t) => t.toLowerCase())), profiles: new Set([...refs.profiles].map((p) => p.toLowerCase())) };
}

type SqlCompiler = (text: string, file: string, o?: { env?: NodeJS.ProcessEnv; profiles?: CompiledDocument['profiles']; tables?: Record<string, unknown> }) => CompiledDocument;
let sqlCompiler: Promise<SqlCompiler | undefined> | undefined;

/** The SQL compiler, when this build has one (it lands separately in src/sql/). */
export function loadSqlCompiler(): Promise<SqlCompiler | undefined> {
  // A variable specifier keeps tsc from resolving a module that may not exist yet.
  const spec = '../sql/index.js';
  sqlCompiler ??= import(spec).then(
    (m: { compileSqlText?: SqlCompiler }) => (typeof m.compileSqlText === 'function' ? m.compileSqlText : undefined),
    () => undefined,
  );
  return sqlCompiler;
}

export class SqlUnavailableError extends Error {}

interface SqlRuntime {
  createTransform(def: PipelineDef, o: { tables?: Record<string, unknown>; profiles?: CompiledDocument['profiles'] }): { transform: (r: never[]) => unknown; close(): Promise<void> } | undefined;
  checkTransform(def: PipelineDef, o: { tables?: Record<string, unknown>; profiles?: CompiledDocument['profiles'] }): ConfigIssue[];
}

/** The SQL layer's transform hook (`transform:` in a pipeline, the SELECT of an INSERT INTO). */
export async function loadSqlRuntime(): Promise<SqlRuntime | undefined> {
  const spec = '../sql/index.js';
  return import(spec).then(
    (m: Partial<SqlRuntime>) => (typeof m.createTransform === 'function' && typeof m.checkTransform === 'function' ? (m as SqlRuntime) : undefined),
    () => undefined,
  );
}

/** Compile one stored (or about to be stored) pipeline against the catalog. Issue paths are relative to the definition. */
export async function compilePipelineRow(row: Pick<PipelineRow, 'name' | 'kind' | 'definition'>, c: Catalog, box: SecretBox, env: NodeJS.ProcessEnv = process.env): Promise<{ def?: PipelineDef; doc?: CompiledDocument; issues: ConfigIssue[] }> {
  const scope = buildScope(c, box, env);
  if (row.kind === 'sql') {
    const compile = await loadSqlCompiler();
    if (!compile) throw new SqlUnavailableError('SQL pipelines need the SQL compiler, which this build does not have yet; send a JSON (YAML-equivalent) definition instead');
    const issues: ConfigIssue[] = [];
    const text = substituteTree(String((row.definition as { query: string }).query), env, ['query'], issues) as string;
    if (issues.length) return { issues };
    try {
      // Stored profiles (`connection_profile = 'name'`) and connection tables (by name) are usable from SQL.
      const doc = compile(text, `${row.name}.sql`, { env, profiles: scope.profiles, tables: scope.tables });
      if (doc.pipelines.length !== 1) return { issues: [{ path: ['query'], message: `the query must define exactly one pipeline (an INSERT INTO ... SELECT); it defines ${doc.pipelines.length}` }] };
      return { def: { ...doc.pipelines[0]!, name: row.name }, doc, issues: [] };
    } catch (e) {
      if (e instanceof ConfigError) return { issues: e.issues.map((i) => ({ ...i, path: ['query', ...i.path] })) };
      throw e;
    }
  }
  const issues: ConfigIssue[] = [];
  const definition = substituteTree({ ...(row.definition as object), name: row.name }, env, [], issues) as Record<string, unknown>;
  if (issues.length) return { issues };
  // Compile against the catalog through the compiler's own scope: tables and profiles by name.
  const full = compileWithScope({ pipelines: [definition] }, scope);
  if (full.issues.length || !full.value) return { issues: full.issues.map((i) => ({ ...i, path: relPath(i.path) })) };
  const def = full.value.pipelines[0]!;
  const extra: ConfigIssue[] = [];
  for (const e of endpointsOf(def)) {
    if (e.profile) extra.push(...(scope.missing.get(`profile:${e.profile}`) ?? []));
    if (e.table) extra.push(...(scope.missing.get(`table:${e.table}`) ?? []));
  }
  if (extra.length) return { issues: extra };
  return { def, doc: full.value, issues: [] };
}

function compileWithScope(doc: Record<string, unknown>, scope: Scope) {
  // compileDocument validates profiles again from their raw form; hand them over as written.
  const profiles = Object.fromEntries(Object.entries(scope.profiles).map(([n, p]) => [n, { connector: p.connector, config: p.config }]));
  return compileDocument({ connection_profiles: profiles, tables: scope.tables, pipelines: doc.pipelines }, {});
}

/** `pipelines[0].source.config` -> `source.config`; catalog paths (`tables.x...`) stay as they are. */
function relPath(p: Path): Path {
  return p[0] === 'pipelines' && p[1] === 0 ? p.slice(2) : p;
}

/** Validate a table (or a table about to be created) the way a pipeline would use it. */
export function compileTable(t: Pick<TableRow, 'name' | 'connector' | 'profile_id' | 'config' | 'schema'>, c: Catalog, box: SecretBox, role: 'source' | 'sink', env: NodeJS.ProcessEnv = process.env): { endpoint?: EndpointDef; issues: ConfigIssue[] } {
  const scope = buildScope({ profiles: c.profiles, tables: c.tables.filter((x) => x.name !== t.name) }, box, env);
  const byId = new Map(c.profiles.map((p) => [p.id, p.name]));
  const issues: ConfigIssue[] = [];
  const config = substituteTree(box.open(t.config, findConnector(t.connector)), env, ['config'], issues) as Record<string, unknown>;
  if (t.profile_id) {
    const pn = byId.get(t.profile_id);
    if (pn) issues.push(...(scope.missing.get(`profile:${pn}`) ?? []).map((i) => ({ ...i, path: ['connectionProfileId'], message: `profile '${pn}': ${i.message}` })));
  }
  if (issues.length) return { issues };
  const tables = { ...scope.tables, [t.name]: tableToYaml(t, (id) => byId.get(id), config) };
  const endpoint = compileEndpoint(t.name, ['table'], role, { profiles: scope.profiles, tables }, issues, undefined);
  return { endpoint, issues: issues.map((i) => ({ ...i, path: tablePath(i.path, t.name) })) };
}

/** Compiler paths (`tables.<name>.format`) in the API's table shape (`schema.format`). */
function tablePath(p: Path, name: string): Path {
  if (p[0] !== 'tables' || p[1] !== name) return p;
  const rest = p.slice(2);
  const head = rest[0];
  if (head === 'profile') return ['connectionProfileId'];
  if (head === 'schema') return ['schema', ...rest.slice(1)];
  if (typeof head === 'string' && (TABLE_ENDPOINT_KEYS as readonly string[]).includes(head)) return ['schema', ...rest];
  return rest;
}

/** The role a table plays: `type: source|sink` in its config (Laminar), else what the connector can do. */
export function tableRole(t: Pick<TableRow, 'connector' | 'config'>): 'source' | 'sink' {
  const type = t.config?.type;
  if (type === 'sink' || type === 'source') return type;
  const spec = findConnector(t.connector);
  return spec?.source ? 'source' : 'sink';
}
