// .sql files: CREATE TABLE / CREATE CONNECTION PROFILE / INSERT INTO ... SELECT compile to the YAML-equivalent
// document, which goes through compileDocument, so aliases, profiles, validation and did-you-mean are the YAML ones.
// Issue paths from that compiler are mapped back to the SQL token that wrote the value.

import { ConfigError, type ConfigIssue, type SourceLocation } from '../core/errors.js';
import { parseSchemaConfig, parseTypeName } from '../core/schema.js';
import type { SchemaSpec } from '../core/types.js';
import { suggest } from '../core/units.js';
import { compileDocument, compileEndpoint, type CompiledDocument } from '../config/compile.js';
import { findConnector } from '../connectors/index.js';
import type { CreateTableStmt, InsertStmt, OptionDef, SetStmt, Statement } from './ast.js';
import { ExprCompiler, UNIVERSAL_META, type ItemSpec } from './expr.js';
import type { Token } from './lexer.js';
import { parseScript } from './parser.js';
import { printSelect } from './print.js';
import { compileSelectStmt } from './select.js';
import { compileLookupTable } from './runtime.js';

type Path = (string | number)[];

export interface SqlCompileOptions {
  env?: NodeJS.ProcessEnv;
  /** Connection profiles defined elsewhere (the control plane's store), usable with `connection_profile = 'name'`. */
  profiles?: Record<string, { connector: string; config: Record<string, unknown> }>;
  /**
   * Tables defined elsewhere (the control plane's connection tables), as YAML `tables:` entries: a statement may read
   * or write them by name without a CREATE TABLE. A CREATE TABLE of the same name in the text wins.
   */
  tables?: Record<string, unknown>;
}

interface TableInfo {
  stmt: CreateTableStmt;
  role?: 'source' | 'sink' | 'lookup';
  roleTok?: Token;
  connector?: string;
  yaml: Record<string, unknown>;
  /** Declared non-metadata columns, once the schema parsed. */
  schema?: SchemaSpec;
  /** Metadata columns: column name -> metadata name, with declared types. */
  meta: Map<string, { key: string; spec: ItemSpec }>;
}

const loose = (k: string) => k.toLowerCase().replace(/[-_.\s]/g, '');

/**
 * Pipeline settings a `SET 'pipeline.<group>.<field>' = ...` may give, with the YAML pipeline's names (and their
 * aliases): `pipeline.batch.max_records` is `batch: {max_records: ...}` in YAML. `pipeline.dlq` names a sink table.
 */
const SETTINGS: Record<string, string[]> = {
  batch: ['max_records', 'max_bytes', 'linger', 'linger_ms', 'count', 'size', 'max_count', 'bytes', 'period', 'flush_interval'],
  buffer: ['max_records', 'max_bytes'],
  retry: ['max_attempts', 'initial_backoff', 'max_backoff'],
};
const SETTING_NAMES = ['pipeline.dlq', ...['batch.max_records', 'batch.max_bytes', 'batch.linger', 'buffer.max_records', 'buffer.max_bytes', 'retry.max_attempts', 'retry.initial_backoff', 'retry.max_backoff'].map((k) => `pipeline.${k}`)];


/** Compile a .sql file's text; throws ConfigError whose issues point at the offending token (file:line:col). */
export function compileSqlText(text: string, file: string, o: SqlCompileOptions = {}): CompiledDocument {
  const stmts = parseScript(text, file, { env: o.env ?? process.env });
  return new DocCompiler(file, o).run(stmts);
}

class DocCompiler {
  private readonly locs = new Map<string, Token>();
  private readonly issues: Array<ConfigIssue & { tok?: Token }> = [];
  private readonly tables = new Map<string, TableInfo>();
  /** Names of tables taken from `o.tables`; they are checked only where a pipeline uses them. */
  private readonly external = new Set<string>();
  private readonly profiles: Record<string, { connector: string; config: Record<string, unknown> }> = {};
  private readonly doc: { connection_profiles: Record<string, unknown>; tables: Record<string, unknown>; pipelines: unknown[] } = {
    connection_profiles: {},
    tables: {},
    pipelines: [],
  };
  private first?: Token;

  constructor(
    private readonly file: string,
    private readonly o: SqlCompileOptions,
  ) {}

  private at(path: Path, tok: Token) {
    this.locs.set(JSON.stringify(path), tok);
  }

  private err(tok: Token, message: string) {
    this.issues.push({ path: [], message, tok });
  }

  private loc(tok: Token): SourceLocation {
    return { file: this.file, line: tok.line, col: tok.col };
  }

  /** The token of the longest recorded prefix of `path`. */
  private locate(path: Path): Token | undefined {
    for (let n = path.length; n > 0; n--) {
      const t = this.locs.get(JSON.stringify(path.slice(0, n)));
      if (t) return t;
    }
    return this.first;
  }

  run(stmts: Statement[]): CompiledDocument {
    if (!stmts.length) throw new ConfigError([{ path: [], message: 'no statements: write CREATE TABLE ... WITH (...) and INSERT INTO ... SELECT ...', loc: { file: this.file, line: 1, col: 1 } }]);
    this.first = stmts[0]!.tok;
    for (const [name, p] of Object.entries(this.o.profiles ?? {})) {
      this.doc.connection_profiles[name] = p;
      this.profiles[name] = p;
    }
    for (const s of stmts) {
      if (s.kind === 'profile') this.profile(s.name, s.nameTok, s.options);
      else if (s.kind === 'table') this.table(s);
    }
    // SET applies to the INSERTs after it, as in a Flink SQL script; RESET takes settings back.
    const settingsOf = new Map<InsertStmt, Map<string, SetStmt>>();
    let settings = new Map<string, SetStmt>();
    for (const s of stmts) {
      if (s.kind === 'set') {
        const k = this.settingKey(s.key, s.keyTok);
        if (k) settings = new Map(settings).set(k, s);
      } else if (s.kind === 'reset') {
        if (!s.key) settings = new Map();
        else {
          const k = this.settingKey(s.key, s.keyTok!);
          if (k) (settings = new Map(settings)).delete(k);
        }
      } else if (s.kind === 'insert') settingsOf.set(s, settings);
    }
    const inserts = stmts.filter((s): s is InsertStmt => s.kind === 'insert');
    const used = new Set<string>();
    const names = new Set<string>();
    inserts.forEach((s, i) => this.insert(s, i, used, names, settingsOf.get(s) ?? new Map()));
    this.throwIfIssues();

    const r = compileDocument(this.doc);
    for (const i of r.issues) this.issues.push(i);
    // Tables no pipeline reads or writes are still checked, in the role they declare.
    const scope = { profiles: this.profiles, tables: this.doc.tables };
    for (const [name, t] of this.tables) {
      if (used.has(name) || this.external.has(name)) continue;
      if (t.role === 'lookup') {
        this.issues.push(...compileLookupTable(name, this.doc.tables, this.profiles).issues);
        continue;
      }
      const spec = t.connector ? findConnector(t.connector) : undefined;
      const role = t.role ?? (spec && !spec.source && spec.sink ? 'sink' : 'source');
      compileEndpoint(name, ['tables', name], role, scope, this.issues, undefined);
    }
    this.throwIfIssues();
    return r.value!;
  }

  private throwIfIssues() {
    if (!this.issues.length) return;
    const seen = new Set<string>();
    const out: ConfigIssue[] = [];
    for (const i of this.issues) {
      const tok = i.tok ?? this.locate(i.path);
      const issue: ConfigIssue = { path: i.path, message: i.message, loc: i.loc ?? (tok ? this.loc(tok) : undefined) };
      const k = `${JSON.stringify(issue.loc)}${issue.message}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(issue);
    }
    throw new ConfigError(out);
  }

  private profile(name: string, nameTok: Token, options: OptionDef[]) {
    if (this.profiles[name] && !this.o.profiles?.[name]) return this.err(nameTok, `connection profile '${name}' is defined twice`);
    const config: Record<string, unknown> = {};
    let connector: string | undefined;
    this.at(['connection_profiles', name], nameTok);
    for (const op of options) {
      const lk = loose(op.key);
      if (lk === 'connector' || lk === 'driver') {
        connector = String(op.value);
        this.at(['connection_profiles', name, 'connector'], op.keyTok);
      } else {
        config[op.key] = op.value;
        this.at(['connection_profiles', name, 'config', op.key], op.keyTok);
      }
    }
    if (!connector) return this.err(nameTok, `connection profile '${name}' needs connector = '...'`);
    this.profiles[name] = { connector, config };
    this.doc.connection_profiles[name] = { connector, config };
  }

  private table(s: CreateTableStmt) {
    const name = s.name;
    if (this.tables.has(name)) return this.err(s.nameTok, `table '${name}' is defined twice`);
    const base: Path = ['tables', name];
    this.at(base, s.nameTok);
    const yaml: Record<string, unknown> = {};
    const config: Record<string, unknown> = {};
    const info: TableInfo = { stmt: s, yaml, meta: new Map() };
    let formatName: string | undefined;
    let formatTok: Token | undefined;
    const formatOpts: Record<string, unknown> = {};
    let unknownFields: unknown;
    for (const op of s.options) {
      const lk = loose(op.key);
      const v = op.value;
      if (lk === 'connector' || lk === 'driver') {
        yaml.connector = info.connector = String(v);
        this.at([...base, 'connector'], op.keyTok);
      } else if (lk === 'type' && typeof v === 'string' && ['source', 'sink', 'lookup'].includes(v.toLowerCase())) {
        info.role = v.toLowerCase() as TableInfo['role'];
        info.roleTok = op.keyTok;
      } else if (lk === 'format' || lk === 'datatype' || lk === 'encoding') {
        formatName = String(v);
        formatTok = op.keyTok;
        this.at([...base, 'format'], op.keyTok);
      } else if (op.key.toLowerCase().startsWith('format.')) {
        formatOpts[op.key.slice(7)] = v;
        this.at([...base, 'format', op.key.slice(7)], op.keyTok);
      } else if (lk === 'baddata' || lk === 'onbaddata') {
        yaml.bad_data = v;
        this.at([...base, 'bad_data'], op.keyTok);
      } else if (lk === 'payloadpath') {
        yaml.payload_path = v;
        this.at([...base, 'payload_path'], op.keyTok);
      } else if (lk === 'connectionprofile' || lk === 'profile' || lk === 'connection' || lk === 'connectionselector') {
        yaml.profile = String(v);
        this.at([...base, 'profile'], op.keyTok);
      } else if (lk === 'unknownfields') {
        unknownFields = v;
        this.at([...base, 'schema', 'unknown_fields'], op.keyTok);
      } else {
        config[op.key] = v;
        this.at([...base, 'config', op.key], op.keyTok);
      }
    }
    if (!info.connector && typeof yaml.profile === 'string') info.connector = this.profiles[yaml.profile]?.connector;
    if (Object.keys(config).length) yaml.config = config;
    if (Object.keys(formatOpts).length) {
      if (!formatName) this.err(s.withTok ?? s.nameTok, "format options need the format's name: add format = '...'");
      yaml.format = { name: formatName, ...formatOpts };
    } else if (formatName !== undefined) yaml.format = formatName;
    void formatTok;

    // Columns: metadata columns become metadata_fields, the rest the schema.
    const spec = info.connector ? findConnector(info.connector) : undefined;
    const available = new Set([...UNIVERSAL_META, ...Object.keys(spec?.source?.metadata ?? {})]);
    const fields: Array<Record<string, unknown>> = [];
    const metadataFields: Record<string, string> = {};
    const pk: string[] = [];
    for (const c of s.columns) {
      const key = c.metadata?.key ?? (c.name.startsWith('_') && available.has(c.name) ? c.name : undefined);
      if (key !== undefined) {
        metadataFields[c.name] = key;
        this.at([...base, 'metadata_fields', c.name], c.metadata?.tok ?? c.tok);
        const t = parseTypeName(c.type.text);
        if (typeof t === 'string') this.err(c.type.tok, t);
        info.meta.set(c.name, { key, spec: typeof t === 'string' ? { type: 'json' } : { type: t.type === 'object' ? 'json' : t.type } });
        continue;
      }
      this.at([...base, 'schema', 'fields', fields.length], c.tok);
      this.at([...base, 'schema', 'fields', fields.length, 'type'], c.type.tok);
      const f: Record<string, unknown> = { name: c.name, type: c.type.text };
      if (c.notNull) f.nullable = false;
      fields.push(f);
      if ((c as { pk?: boolean }).pk) pk.push(c.name);
    }
    if (s.primaryKey) {
      for (const t of s.primaryKey.cols) if (!pk.includes(t.text)) pk.push(t.text);
      this.at([...base, 'schema', 'primary_key'], s.primaryKey.tok);
    }
    if (Object.keys(metadataFields).length) yaml.metadata_fields = metadataFields;
    if (fields.length) {
      const schema: Record<string, unknown> = { fields };
      if (pk.length) schema.primary_key = pk;
      if (unknownFields !== undefined) schema.unknown_fields = unknownFields;
      yaml.schema = schema;
      const parsed = parseSchemaConfig(schema, [...base, 'schema']);
      if (parsed.ok) info.schema = parsed.value;
      else this.issues.push(...parsed.issues);
    } else if (pk.length) this.err(s.primaryKey!.tok, 'PRIMARY KEY names columns, but the table declares none');
    if (s.watermark) {
      // Watermarks matter to windows, which a per-record pipeline has none of: checked, then ignored.
      const w = s.watermark;
      const cols = new Map<string, ItemSpec>();
      for (const f of info.schema?.fields ?? []) cols.set(f.name, f);
      if (!cols.has(w.col.text) && !info.meta.has(w.col.text)) {
        const hint = suggest(w.col.text, [...cols.keys()]);
        this.err(w.col, `unknown column '${w.col.text}'${hint ? `; did you mean '${hint}'?` : ''}`);
      } else {
        try {
          new ExprCompiler(this.file, [{ name, index: -1, columns: info.schema ? cols : undefined, metadata: new Set(info.meta.keys()) }]).compile(w.expr);
        } catch (e) {
          if (e instanceof ConfigError) this.issues.push(...e.issues);
          else throw e;
        }
      }
    }
    this.tables.set(name, info);
    this.doc.tables[name] = yaml;
  }

  private findTable(tok: Token): TableInfo | undefined {
    const t = this.tables.get(tok.text);
    if (t) return t;
    const ci = [...this.tables.keys()].filter((k) => k.toLowerCase() === tok.text.toLowerCase());
    if (ci.length === 1) return this.tables.get(ci[0]!);
    const ext = this.externalTable(tok);
    if (ext) return ext;
    const hint = suggest(tok.text, [...this.tables.keys(), ...Object.keys(this.o.tables ?? {})]);
    this.err(tok, `unknown table '${tok.text}'${hint ? `; did you mean '${hint}'?` : ''} (define it with CREATE TABLE ... WITH (...))`);
    return undefined;
  }

  /** A table of `o.tables` (a stored connection table), taken into the document the first time a statement names it. */
  private externalTable(tok: Token): TableInfo | undefined {
    const all = this.o.tables ?? {};
    let name: string | undefined = Object.hasOwn(all, tok.text) ? tok.text : undefined;
    if (name === undefined) {
      const ci = Object.keys(all).filter((k) => k.toLowerCase() === tok.text.toLowerCase());
      if (ci.length === 1) name = ci[0];
    }
    if (name === undefined) return undefined;
    const y = all[name];
    if (!y || typeof y !== 'object' || Array.isArray(y)) return undefined;
    const yaml = y as Record<string, unknown>;
    const stmt: CreateTableStmt = { kind: 'table', tok, name, nameTok: tok, columns: [], options: [] };
    const info: TableInfo = { stmt, yaml, meta: new Map() };
    const config = (yaml.config ?? {}) as Record<string, unknown>;
    const type = typeof config.type === 'string' ? config.type.toLowerCase() : undefined;
    if (type === 'source' || type === 'sink' || type === 'lookup') info.role = type;
    const profile = typeof yaml.profile === 'string' ? yaml.profile : undefined;
    info.connector = typeof yaml.connector === 'string' ? yaml.connector : profile ? this.profiles[profile]?.connector : undefined;
    if (yaml.schema !== undefined) {
      const parsed = parseSchemaConfig(yaml.schema, ['tables', name, 'schema']);
      if (parsed.ok) info.schema = parsed.value;
    }
    const mf = yaml.metadata_fields;
    const metaNames: Array<[string, string]> = Array.isArray(mf)
      ? mf.filter((x): x is string => typeof x === 'string').map((x) => [x, x])
      : mf && typeof mf === 'object'
        ? Object.entries(mf as Record<string, unknown>).map(([k, v]) => [k, String(v)])
        : [];
    for (const [col, key] of metaNames) info.meta.set(col, { key, spec: { type: key === '_timestamp' ? 'timestamp' : key === '_key' ? 'string' : 'json' } });
    this.at(['tables', name], tok);
    this.tables.set(name, info);
    this.doc.tables[name] = yaml;
    this.external.add(name);
    return info;
  }

  /** `pipeline.batch.max_records` -> `batch.max_records`, `pipeline.dlq` -> `dlq`; an unknown key is an error at it. */
  private settingKey(key: string, tok: Token): string | undefined {
    const parts = key.toLowerCase().split('.');
    if (parts[0] === 'pipeline') {
      if (parts.length === 2 && ['dlq', 'dead_letter', 'dead_letter_queue'].includes(parts[1]!)) return 'dlq';
      if (parts.length === 3 && SETTINGS[parts[1]!]?.includes(parts[2]!)) return `${parts[1]}.${parts[2]}`;
    }
    const hint = suggest(key.toLowerCase(), SETTING_NAMES);
    this.err(tok, `unknown setting '${key}'${hint ? `; did you mean '${hint}'?` : ''} (settings: ${SETTING_NAMES.join(', ')})`);
    return undefined;
  }

  private insert(s: InsertStmt, index: number, used: Set<string>, names: Set<string>, settings: Map<string, SetStmt>) {
    const sel = s.select;
    const sink = this.findTable(s.sinkTok);
    const src = this.findTable(sel.from!.tok);
    if (!sink || !src) return;
    if (sink.role === 'source') return this.err(s.sinkTok, `table '${sink.stmt.name}' is declared type = 'source'; INSERT INTO needs a sink table`);
    if (sink.role === 'lookup') return this.err(s.sinkTok, `table '${sink.stmt.name}' is a lookup table; INSERT INTO needs a sink table`);
    if (src.role === 'sink') return this.err(sel.from!.tok, `table '${src.stmt.name}' is declared type = 'sink'; FROM needs a source table`);
    if (src.role === 'lookup') return this.err(sel.from!.tok, `table '${src.stmt.name}' is a lookup table; it can only be joined`);
    used.add(src.stmt.name);
    used.add(sink.stmt.name);

    // The source's columns as the query sees them: declared fields plus metadata columns.
    let input: SchemaSpec | undefined;
    if (src.schema) {
      input = { fields: [...src.schema.fields, ...[...src.meta].map(([n, m]) => ({ name: n, ...m.spec }))] };
    }
    const srcSpec = src.connector ? findConnector(src.connector) : undefined;
    const lookups: Record<string, { schema?: SchemaSpec }> = {};
    for (const j of sel.joins) {
      const t = this.findTable(j.table.tok);
      if (!t) return;
      const spec = t.connector ? findConnector(t.connector) : undefined;
      if (t.role && t.role !== 'lookup') return this.err(j.table.tok, `table '${t.stmt.name}' is declared type = '${t.role}'; JOIN needs a lookup table (type = 'lookup')`);
      if (spec && !spec.lookup) return this.err(j.table.tok, `connector '${spec.name}' cannot look rows up by key, so table '${t.stmt.name}' cannot be joined (redis can)`);
      t.role = 'lookup';
      const r = compileLookupTable(t.stmt.name, this.doc.tables, this.profiles);
      this.issues.push(...r.issues);
      lookups[j.table.name] = { schema: t.schema };
      used.add(t.stmt.name);
    }

    // Columns of the sink receive the select list by position, as in SQL.
    const targetCols = s.columns?.map((c) => c.text) ?? sink.schema?.fields.map((f) => f.name);
    const hasStar = sel.items.some((i) => i.star);
    if (targetCols && !hasStar) {
      if (targetCols.length !== sel.items.length) {
        return this.err(s.columns ? s.columns[0]! : s.tok, `INSERT INTO ${sink.stmt.name} has ${targetCols.length} column${targetCols.length === 1 ? '' : 's'} but the SELECT gives ${sel.items.length}`);
      }
      if (s.columns && sink.schema) {
        for (const c of s.columns) {
          if (!sink.schema.fields.some((f) => f.name === c.text)) {
            const hint = suggest(c.text, sink.schema.fields.map((f) => f.name));
            return this.err(c, `unknown column '${c.text}' in ${sink.stmt.name}${hint ? `; did you mean '${hint}'?` : ''}`);
          }
        }
      }
      sel.items.forEach((item, i) => {
        item.alias = targetCols[i];
      });
    } else if (s.columns && hasStar) return this.err(s.columns[0]!, 'a column list needs an explicit SELECT list, not *');

    let compiled;
    try {
      compiled = compileSelectStmt(sel, this.file, input, { metadata: [...Object.keys(srcSpec?.source?.metadata ?? {}), ...src.meta.keys()], lookups });
    } catch (e) {
      if (e instanceof ConfigError) {
        this.issues.push(...e.issues);
        return;
      }
      throw e;
    }
    sel.items.forEach((item, i) => {
      if (!item.star && item.alias === undefined) item.alias = compiled.itemNames[i];
    });
    const passThrough = sel.items.length === 1 && sel.items[0]!.star?.table === undefined && sel.items[0]!.star !== undefined && !sel.where && !sel.joins.length;
    let name = s.name ?? sink.stmt.name;
    if (names.has(name)) {
      if (s.name) this.err(s.tok, `pipeline name '${name}' is used twice`);
      let n = 2;
      while (names.has(`${name}_${n}`)) n++;
      name = `${name}_${n}`;
    }
    names.add(name);
    const p: Record<string, unknown> = { name, source: src.stmt.name, sink: sink.stmt.name };
    if (!passThrough) p.transform = printSelect(sel);
    const path: Path = ['pipelines', index];
    this.at(path, s.tok);
    this.at([...path, 'source'], sel.from!.tok);
    this.at([...path, 'sink'], s.sinkTok);
    for (const [k, st] of settings) {
      if (k === 'dlq') {
        const t = this.findTable({ ...st.valueTok, text: String(st.value) });
        if (!t) continue;
        if (t.role === 'source' || t.role === 'lookup') {
          this.err(st.valueTok, `table '${t.stmt.name}' is declared type = '${t.role}'; the dead-letter queue needs a sink table`);
          continue;
        }
        used.add(t.stmt.name);
        p.dlq = t.stmt.name;
        this.at([...path, 'dlq'], st.valueTok);
        continue;
      }
      const [group, field] = k.split('.') as [string, string];
      ((p[group] ??= {}) as Record<string, unknown>)[field] = st.value;
      this.at([...path, group], st.keyTok);
      this.at([...path, group, field], st.valueTok);
    }
    this.doc.pipelines.push(p);
  }
}

/**
 * Tables and connection profiles a SQL pipeline's text uses without defining them (FROM, JOIN, INSERT INTO,
 * `SET 'pipeline.dlq'`, `connection_profile = '...'`): what the control plane's in-use checks look for. Names are as
 * written; the compiler matches them case-insensitively when unambiguous. Unparsable text uses nothing.
 */
export function sqlReferences(text: string): { tables: Set<string>; profiles: Set<string> } {
  const tables = new Set<string>();
  const profiles = new Set<string>();
  let stmts: Statement[];
  try {
    stmts = parseScript(text, 'query');
  } catch {
    return { tables, profiles };
  }
  const local = new Set<string>();
  const localProfiles = new Set<string>();
  for (const s of stmts) {
    if (s.kind === 'table') local.add(s.name.toLowerCase());
    if (s.kind === 'profile') localProfiles.add(s.name.toLowerCase());
  }
  const table = (name: string) => void (local.has(name.toLowerCase()) || tables.add(name));
  for (const s of stmts) {
    if (s.kind === 'insert') {
      table(s.sink);
      if (s.select.from) table(s.select.from.name);
      for (const j of s.select.joins) table(j.table.name);
    } else if (s.kind === 'set' && /^pipeline\.(dlq|dead_letter|dead_letter_queue)$/i.test(s.key)) table(String(s.value));
    else if (s.kind === 'table' || s.kind === 'profile') {
      for (const o of s.options) {
        const lk = loose(o.key);
        if ((lk === 'connectionprofile' || lk === 'profile' || lk === 'connection' || lk === 'connectionselector') && !localProfiles.has(String(o.value).toLowerCase())) profiles.add(String(o.value));
      }
    }
  }
  return { tables, profiles };
}
