// What the runtime calls: a pipeline's `transform` text compiled against its source (declared schema, metadata
// fields, the connector's metadata) with the lookup tables it joins opened from the document's tables.

import { ConfigError, type ConfigIssue } from '../core/errors.js';
import type { PipelineDef } from '../core/model.js';
import { parseSchemaConfig } from '../core/schema.js';
import { parseOptions, type LookupTable } from '../core/spec.js';
import type { SchemaSpec, SluiceRecord } from '../core/types.js';
import { suggest } from '../core/units.js';
import { connectorNames, findConnector } from '../connectors/index.js';
import { parseSelect } from './parser.js';
import { compileSelectStmt, type LookupBinding, type SqlTransform } from './select.js';

type Profiles = Record<string, { connector: string; config: Record<string, unknown> }>;

export interface CompiledLookup {
  connector: string;
  options: Record<string, unknown>;
  schema?: SchemaSpec;
}

/**
 * Check a table (as in a document's `tables:`) for use as a lookup table: its connector must offer `lookup`, and its
 * options (profile merged under them) must fit that spec. Issue paths are document paths (`tables.<name>.config...`).
 */
export function compileLookupTable(name: string, tables: Record<string, unknown>, profiles: Profiles = {}): { value?: CompiledLookup; issues: ConfigIssue[] } {
  const path = ['tables', name];
  const raw = tables[name];
  if (raw === undefined) {
    const hint = suggest(name, Object.keys(tables));
    return { issues: [{ path: [], message: `unknown table '${name}'${hint ? `; did you mean '${hint}'?` : ''}` }] };
  }
  if (!raw || typeof raw !== 'object') return { issues: [{ path, message: 'expected a table definition' }] };
  const t = raw as Record<string, unknown>;
  const profName = (t.profile ?? t.connection_profile) as string | undefined;
  const prof = profName !== undefined ? profiles[profName] : undefined;
  if (profName !== undefined && !prof) {
    const hint = suggest(profName, Object.keys(profiles));
    return { issues: [{ path: [...path, 'profile'], message: `unknown connection profile '${profName}'${hint ? `; did you mean '${hint}'?` : ''}` }] };
  }
  const connector = (t.connector ?? t.driver ?? prof?.connector) as string | undefined;
  if (!connector) return { issues: [{ path, message: "missing 'connector'" }] };
  const spec = findConnector(connector);
  if (!spec) {
    const hint = suggest(connector, connectorNames());
    return { issues: [{ path: [...path, 'connector'], message: `unknown connector '${connector}'${hint ? `; did you mean '${hint}'?` : ''}` }] };
  }
  if (!spec.lookup) return { issues: [{ path: [...path, 'connector'], message: `connector '${spec.name}' cannot look rows up by key, so it cannot be joined` }] };
  const config = { ...(prof?.config ?? {}), ...((t.config ?? t.properties ?? {}) as Record<string, unknown>) };
  const r = parseOptions(spec.lookup.options, config, [...path, 'config']);
  const issues: ConfigIssue[] = r.ok ? [] : [...r.issues];
  let schema: SchemaSpec | undefined;
  if (t.schema !== undefined) {
    const s = parseSchemaConfig(t.schema, [...path, 'schema']);
    if (s.ok) schema = s.value;
    else issues.push(...s.issues);
  }
  if (!r.ok || issues.length) return { issues };
  return { value: { connector: spec.name, options: r.value as Record<string, unknown>, schema }, issues };
}

export interface TransformOptions {
  /** The document's tables and profiles (CompiledDocument), for the lookup tables a JOIN names. */
  tables?: Record<string, unknown>;
  profiles?: Profiles;
  /** Live lookup tables by name; used instead of opening them from `tables` (tests, shared clients). */
  lookups?: Record<string, LookupTable>;
  /** A record whose expression fails goes here (the runtime's bad_data path); without it the batch fails. */
  onError?: (record: SluiceRecord, error: Error) => void;
  /** Where the transform text sits, for error positions. */
  file?: string;
  line?: number;
  col?: number;
}

export interface PipelineTransform {
  transform: SqlTransform;
  /** The transform returns promises (it joins lookup tables): await each batch. */
  async: boolean;
  outputSchema?: SchemaSpec;
  /** Close the lookup tables this transform opened. */
  close(): Promise<void>;
}

/** The source's columns as a query sees them: the declared schema plus the selected metadata fields. */
export function sourceColumns(def: PipelineDef): SchemaSpec | undefined {
  const schema = def.source.schema;
  if (!schema) return undefined;
  const fields = [...schema.fields];
  for (const name of Object.keys(def.source.metadata_fields)) {
    if (!fields.some((f) => f.name === name)) fields.push({ name, type: name === '_timestamp' ? 'timestamp' : name === '_key' ? 'string' : 'json' });
  }
  return { ...schema, fields };
}

function compileFor(def: PipelineDef, o: TransformOptions, open: boolean): { result?: PipelineTransform; opened: LookupTable[] } {
  const file = o.file ?? `${def.name}: transform`;
  const stmt = parseSelect(def.transform!, file, { line: o.line, col: o.col });
  const bindings: Record<string, LookupBinding> = {};
  const opened: LookupTable[] = [];
  for (const j of stmt.joins) {
    const name = j.table.name;
    if (bindings[name]) continue;
    const given = o.lookups?.[name];
    let schema: SchemaSpec | undefined;
    let table = given;
    if (o.tables?.[name] !== undefined) {
      const r = compileLookupTable(name, o.tables, o.profiles);
      if (!r.value) throw new ConfigError(r.issues.map((i) => ({ ...i, loc: { file, line: j.table.tok.line, col: j.table.tok.col } })));
      schema = r.value.schema;
      if (!table && open) {
        const spec = findConnector(r.value.connector)!;
        table = spec.lookup!.create(r.value.options, { format: 'json', schema });
        opened.push(table);
      }
    } else if (!given) {
      continue; // compileSelectStmt reports the unknown lookup table at its position
    }
    bindings[name] = { schema, table };
  }
  const metadata = Object.keys(findConnector(def.source.connector)?.source?.metadata ?? {});
  const c = compileSelectStmt(stmt, file, sourceColumns(def), { metadata, lookups: bindings, onError: o.onError });
  return {
    result: {
      transform: c.transform,
      async: c.async,
      outputSchema: c.outputSchema,
      close: async () => {
        await Promise.all(opened.map((t) => t.close()));
      },
    },
    opened,
  };
}

/**
 * The transform of a pipeline (`def.transform`, from a YAML `transform:` or an INSERT ... SELECT), or undefined when
 * it has none. Opens the lookup tables a JOIN names; call `close()` when the pipeline stops. Throws ConfigError.
 */
export function createTransform(def: PipelineDef, o: TransformOptions = {}): PipelineTransform | undefined {
  if (!def.transform) return undefined;
  return compileFor(def, o, true).result;
}

/** Problems with a pipeline's transform, without opening anything (for `sluice check` on YAML files). */
export function checkTransform(def: PipelineDef, o: TransformOptions = {}): ConfigIssue[] {
  if (!def.transform) return [];
  try {
    compileFor(def, o, false);
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
}

/**
 * The runtime hook for a pipeline's transform (RunOptions.makeTransform): the runtime passes its bad-record callback,
 * so a record whose expression fails follows the source's bad_data policy, and closes the lookup tables at stop.
 */
export function transformFactory(
  def: PipelineDef,
  o: Omit<TransformOptions, 'onError'> = {},
): ((onError: (record: SluiceRecord, error: Error) => void) => PipelineTransform | undefined) | undefined {
  if (!def.transform) return undefined;
  return (onError) => createTransform(def, { ...o, onError });
}
