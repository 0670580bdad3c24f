// Turns a parsed config document (from YAML, or the REST API's JSON) into pipeline definitions. Every problem is
// collected as an issue with its path in the document; the caller maps paths to file:line:col.

import { z } from 'zod';
import { parseOptions, bool, duration, size, num, shapeOf } from '../core/spec.js';
import type { ConnectorSpec } from '../core/spec.js';
import type { ConfigIssue } from '../core/errors.js';
import type { BadDataPolicy } from '../core/types.js';
import { DEFAULT_BATCH, DEFAULT_BUFFER, DEFAULT_RETRY, type EndpointDef, type PipelineDef, type RetryPolicy, type RouteDef } from '../core/model.js';
import { findConnector, connectorNames } from '../connectors/index.js';
import { parseFormatConfig } from '../formats/index.js';
import { describeValue } from '../formats/util.js';
import { parseSchemaConfig } from '../core/schema.js';
import { suggest } from '../core/units.js';

type Path = (string | number)[];

const BAD_DATA = ['fail', 'drop', 'dlq'] as const;

const endpointSchema = z.strictObject({
  connector: z.string().optional().meta({ description: 'Connector name.', aliases: ['driver', 'type'] }),
  table: z.string().optional().meta({ description: 'Use a table from `tables:` by name.' }),
  profile: z
    .string()
    .optional()
    .meta({ description: 'Connection profile by name.', aliases: ['connection_profile', 'connectionProfile', 'connectionSelector', 'connection'] }),
  config: z.record(z.string(), z.unknown()).optional().meta({ description: 'Connector options.', aliases: ['properties', 'options', 'settings'] }),
  format: z.unknown().optional().meta({ description: 'Payload format.', aliases: ['data_type', 'encoding'] }),
  schema: z.unknown().optional().meta({ description: 'Declared schema.', aliases: ['stream_schema', 'columns'] }),
  bad_data: z.enum(BAD_DATA).optional().meta({ description: 'What to do with records that fail decoding or the schema.', aliases: ['badData', 'on_bad_data'] }),
  metadata_fields: z.unknown().optional().meta({ description: 'Connector metadata selected as row fields.', aliases: ['metadata'] }),
  payload_path: z.string().min(1).optional().meta({ description: 'Unwrap the row at this dotted path of each decoded payload.', aliases: ['payloadPath'] }),
  name: z.string().optional(),
  description: z.string().optional(),
});

const ON_EXHAUSTED = ['fail', 'dlq', 'pause'] as const;

const retrySchema = z.strictObject({
  max_attempts: num({ int: true, min: 1 }).optional(),
  initial_backoff: duration().optional(),
  max_backoff: duration().optional(),
  on_exhausted: z
    .enum(ON_EXHAUSTED)
    .optional()
    .meta({ description: 'After the last attempt, or at once for a permanent error: fail, dlq (write the batch to the dead-letter sink) or pause (retry every max_backoff until the sink recovers).', aliases: ['on_failure', 'onFailure', 'onExhausted'] }),
});

const pipelineSchema = z.strictObject({
  name: z.string().min(1).regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, _ . and - only').optional(),
  description: z.string().optional(),
  source: z.unknown().optional(),
  sink: z.unknown().optional(),
  dlq: z.unknown().optional().meta({ aliases: ['dead_letter', 'dead_letter_queue'] }),
  routes: z
    .array(
      z.strictObject({
        name: z.string().min(1).regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, _ . and - only'),
        when: z
          .strictObject({
            field: z.string().min(1),
            equals: z.unknown().optional(),
            in: z.array(z.unknown()).optional(),
            matches: z.string().optional(),
          })
          .optional(),
        payload_path: z.string().min(1).optional(),
        schema: z.unknown().optional(),
        sink: z.unknown(),
        retry: retrySchema.optional(),
      }),
    )
    .optional(),
  transform: z.string().optional(),
  batch: z
    .strictObject({
      max_records: num({ int: true, min: 1, aliases: ['count', 'size', 'max_count'] }).optional(),
      max_bytes: size({ aliases: ['bytes'] }).optional(),
      linger: duration({ aliases: ['linger_ms', 'period', 'flush_interval'] }).optional(),
    })
    .optional(),
  buffer: z
    .strictObject({
      max_records: num({ int: true, min: 1 }).optional(),
      max_bytes: size().optional(),
    })
    .optional(),
  retry: retrySchema.optional(),
  enabled: bool({ default: true }).optional(),
});

const documentSchema = z.strictObject({
  ...pipelineSchema.shape,
  source: z.unknown().optional(),
  sink: z.unknown().optional(),
  pipelines: z.array(z.unknown()).optional(),
  connection_profiles: z.record(z.string(), z.unknown()).optional().meta({ aliases: ['profiles', 'connections'] }),
  tables: z.record(z.string(), z.unknown()).optional().meta({ aliases: ['streams'] }),
  version: z.union([z.string(), z.number()]).optional(),
});

const profileSchema = z.strictObject({
  connector: z.string().meta({ aliases: ['driver', 'type'] }),
  config: z.record(z.string(), z.unknown()).optional().meta({ aliases: ['properties', 'options', 'settings'] }),
  description: z.string().optional(),
  name: z.string().optional(),
});

export interface CompiledDocument {
  pipelines: PipelineDef[];
  profiles: Record<string, { connector: string; config: Record<string, unknown> }>;
  tables: Record<string, unknown>;
}

export interface CompileOptions {
  /** Name for a single unnamed pipeline (the file's base name). */
  defaultName?: string;
}

/** Compile a whole document. Never throws for bad input: problems are in `issues`. */
export function compileDocument(doc: unknown, o: CompileOptions = {}): { value?: CompiledDocument; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = [];
  if (doc === null || doc === undefined) return { issues: [{ path: [], message: 'the document is empty' }] };
  if (typeof doc !== 'object' || Array.isArray(doc)) return { issues: [{ path: [], message: 'expected a map with a pipeline or a `pipelines:` list' }] };
  const top = parseOptions(documentSchema, doc);
  if (!top.ok) return { issues: top.issues };
  const d = top.value;
  const profiles: CompiledDocument['profiles'] = {};
  for (const [name, p] of Object.entries(d.connection_profiles ?? {})) {
    const r = parseOptions(profileSchema, p, ['connection_profiles', name]);
    if (!r.ok) issues.push(...r.issues);
    else profiles[name] = { connector: r.value.connector, config: r.value.config ?? {} };
  }
  const tables = (d.tables ?? {}) as Record<string, unknown>;
  const rawPipelines: Array<{ value: unknown; path: Path }> = [];
  if (d.pipelines) {
    if (d.source !== undefined || d.sink !== undefined) issues.push({ path: ['pipelines'], message: 'use either a top-level `source`/`sink` pipeline or a `pipelines:` list, not both' });
    d.pipelines.forEach((p, i) => rawPipelines.push({ value: p, path: ['pipelines', i] }));
  } else if (d.source !== undefined || d.sink !== undefined) {
    const { pipelines: _p, connection_profiles: _c, tables: _t, version: _v, ...single } = doc as Record<string, unknown>;
    rawPipelines.push({ value: single, path: [] });
  } else if (!Object.keys(tables).length && !Object.keys(profiles).length) {
    issues.push({ path: [], message: 'no pipeline: add `source:` and `sink:`, or a `pipelines:` list' });
  }
  const pipelines: PipelineDef[] = [];
  const names = new Set<string>();
  for (const rp of rawPipelines) {
    const p = compilePipeline(rp.value, rp.path, { profiles, tables, defaultName: rawPipelines.length === 1 ? o.defaultName : undefined }, issues);
    if (!p) continue;
    if (names.has(p.name)) issues.push({ path: [...rp.path, 'name'], message: `pipeline name '${p.name}' is used twice` });
    names.add(p.name);
    pipelines.push(p);
  }
  return issues.length ? { issues } : { value: { pipelines, profiles, tables }, issues };
}

interface Scope {
  profiles: CompiledDocument['profiles'];
  tables: Record<string, unknown>;
  defaultName?: string;
}

export function compilePipeline(input: unknown, path: Path, scope: Scope, issues: ConfigIssue[]): PipelineDef | undefined {
  const r = parseOptions(pipelineSchema, input, path);
  if (!r.ok) {
    issues.push(...r.issues);
    // Still check the endpoints, so one run reports every problem in the file.
    const raw = (input && typeof input === 'object' ? input : {}) as Record<string, unknown>;
    for (const role of ['source', 'sink', 'dlq'] as const) {
      if (raw[role] !== undefined) compileEndpoint(raw[role], [...path, role], role === 'source' ? 'source' : 'sink', scope, issues, raw.dlq !== undefined);
    }
    return undefined;
  }
  const p = r.value;
  const name = p.name ?? scope.defaultName;
  if (!name) issues.push({ path, message: "missing 'name' (every pipeline in a list needs one)" });
  const before = issues.length;
  if (p.source === undefined) issues.push({ path, message: "missing 'source'" });
  if (p.sink === undefined && !p.routes?.length) issues.push({ path, message: "missing 'sink' (or 'routes')" });
  const dlq = p.dlq === undefined ? undefined : compileEndpoint(p.dlq, [...path, 'dlq'], 'sink', scope, issues, undefined);
  const source = p.source === undefined ? undefined : compileEndpoint(p.source, [...path, 'source'], 'source', scope, issues, dlq !== undefined);
  const sink = p.sink === undefined ? undefined : compileEndpoint(p.sink, [...path, 'sink'], 'sink', scope, issues, undefined);
  // Sink failures: with a dead-letter sink nothing is lost by default (failed batches go there and stay replayable);
  // without one the pipeline stops, as a restart replays what was not committed.
  const retry = compileRetry(p.retry ?? {}, { ...DEFAULT_RETRY, on_exhausted: p.dlq === undefined ? 'fail' : 'dlq' });
  const checkExhausted = (v: string | undefined, at: Path) => {
    if (v === 'dlq' && p.dlq === undefined) issues.push({ path: [...at, 'on_exhausted'], message: "on_exhausted is 'dlq' but the pipeline has no `dlq:` sink" });
  };
  checkExhausted(p.retry?.on_exhausted, [...path, 'retry']);
  const routes: RouteDef[] = [];
  const routeNames = new Set<string>();
  (p.routes ?? []).forEach((r, i) => {
    const rp = [...path, 'routes', i];
    if (routeNames.has(r.name)) issues.push({ path: [...rp, 'name'], message: `route name '${r.name}' is used twice` });
    routeNames.add(r.name);
    if (r.when) {
      const n = [r.when.equals, r.when.in, r.when.matches].filter((x) => x !== undefined).length;
      if (n !== 1) issues.push({ path: [...rp, 'when'], message: 'give exactly one of equals, in, matches' });
      if (r.when.matches !== undefined) {
        try {
          new RegExp(r.when.matches);
        } catch (e) {
          issues.push({ path: [...rp, 'when', 'matches'], message: `invalid regular expression: ${(e as Error).message}` });
        }
      }
    }
    let schema: RouteDef['schema'];
    if (r.schema !== undefined) {
      const s = parseSchemaConfig(r.schema, [...rp, 'schema']);
      if (!s.ok) issues.push(...s.issues);
      else schema = s.value;
    }
    const rs = compileEndpoint(r.sink, [...rp, 'sink'], 'sink', scope, issues, undefined);
    if (r.retry) checkExhausted(r.retry.on_exhausted, [...rp, 'retry']);
    if (rs) routes.push({ name: r.name, when: r.when as RouteDef['when'], payload_path: r.payload_path, schema, sink: rs, ...(r.retry ? { retry: compileRetry(r.retry, retry) } : {}) });
  });
  // An exactly-once sink stores the source position with its rows; another output (a route, the dead-letter sink)
  // commits separately, so after a crash the stored position could skip its records or repeat the sink's.
  const exactly = (e: EndpointDef | undefined) => !!e && !!findConnector(e.connector)?.sink?.exactlyOnce?.(e.options);
  const eoPath = exactly(sink) ? [...path, 'sink'] : routes.findIndex((r) => exactly(r.sink)) >= 0 ? [...path, 'routes', routes.findIndex((r) => exactly(r.sink)), 'sink'] : undefined;
  if (eoPath && (routes.length || dlq)) {
    issues.push({
      path: eoPath,
      message: `an exactly-once sink cannot be combined with ${routes.length ? '`routes`' : 'a `dlq:` sink'}: that output commits separately, so a crash could lose or repeat its records; remove it${routes.length ? '' : " (bad_data 'drop' or 'fail' need no dlq)"} or turn exactly-once off`,
    });
  }
  if (source?.bad_data === 'dlq' && p.dlq === undefined) {
    issues.push({ path: [...path, 'source', 'bad_data'], message: "bad_data is 'dlq' but the pipeline has no `dlq:` sink" });
  }
  if (issues.length > before || !source || (!sink && !routes.length) || !name) return undefined;
  return {
    name,
    description: p.description,
    source,
    sink,
    dlq,
    routes: routes.length ? routes : undefined,
    transform: p.transform,
    batch: {
      max_records: p.batch?.max_records ?? DEFAULT_BATCH.max_records,
      max_bytes: p.batch?.max_bytes ?? DEFAULT_BATCH.max_bytes,
      linger_ms: p.batch?.linger ?? DEFAULT_BATCH.linger_ms,
    },
    buffer: {
      max_records: p.buffer?.max_records ?? DEFAULT_BUFFER.max_records,
      max_bytes: p.buffer?.max_bytes ?? DEFAULT_BUFFER.max_bytes,
    },
    retry,
  };
}

function compileRetry(r: z.infer<typeof retrySchema>, base: RetryPolicy): RetryPolicy {
  return {
    max_attempts: r.max_attempts ?? base.max_attempts,
    initial_backoff_ms: r.initial_backoff ?? base.initial_backoff_ms,
    max_backoff_ms: r.max_backoff ?? base.max_backoff_ms,
    on_exhausted: r.on_exhausted ?? base.on_exhausted,
  };
}

/** Where each top-level connector option came from (profile, table or the endpoint itself), for error locations. */
type KeyOrigin = Map<string, Path>;

export function compileEndpoint(
  input: unknown,
  path: Path,
  role: 'source' | 'sink',
  scope: Scope,
  issues: ConfigIssue[],
  hasDlq: boolean | undefined,
): EndpointDef | undefined {
  let tableName: string | undefined;
  let ep: z.output<typeof endpointSchema>;
  let epPath = path;
  if (typeof input === 'string') {
    tableName = input;
    ep = {};
  } else {
    const r = parseOptions(endpointSchema, input, path);
    if (!r.ok) {
      issues.push(...r.issues);
      return undefined;
    }
    ep = r.value;
    tableName = ep.table;
  }
  // A table supplies defaults that the endpoint may override.
  const layers: Array<{ config: Record<string, unknown>; path: Path }> = [];
  if (tableName !== undefined) {
    const t = scope.tables[tableName];
    if (t === undefined) {
      const hint = suggest(tableName, Object.keys(scope.tables));
      issues.push({ path: typeof input === 'string' ? path : [...path, 'table'], message: `unknown table '${tableName}'${hint ? `; did you mean '${hint}'?` : ''}` });
      return undefined;
    }
    const tr = parseOptions(endpointSchema, t, ['tables', tableName]);
    if (!tr.ok) {
      issues.push(...tr.issues);
      return undefined;
    }
    const tv = tr.value;
    epPath = ['tables', tableName];
    if (tv.config) layers.push({ config: tv.config, path: ['tables', tableName, 'config'] });
    ep = {
      ...tv,
      ...Object.fromEntries(Object.entries(ep).filter(([, v]) => v !== undefined)),
      config: undefined,
    };
    if (typeof input !== 'string' && (input as Record<string, unknown>).config) layers.push({ config: (input as { config: Record<string, unknown> }).config, path: [...path, 'config'] });
  } else if (ep.config) {
    layers.push({ config: ep.config, path: [...path, 'config'] });
  }
  let profileConfig: { config: Record<string, unknown>; path: Path } | undefined;
  let connectorName = ep.connector;
  if (ep.profile !== undefined) {
    const prof = scope.profiles[ep.profile];
    if (!prof) {
      const hint = suggest(ep.profile, Object.keys(scope.profiles));
      issues.push({ path: [...epPath, 'profile'], message: `unknown connection profile '${ep.profile}'${hint ? `; did you mean '${hint}'?` : ''}` });
      return undefined;
    }
    connectorName ??= prof.connector;
    profileConfig = { config: prof.config, path: ['connection_profiles', ep.profile, 'config'] };
  }
  if (!connectorName) {
    issues.push({ path, message: "missing 'connector'" });
    return undefined;
  }
  const spec = findConnector(connectorName);
  if (!spec) {
    const hint = suggest(connectorName, connectorNames());
    issues.push({ path: [...epPath, 'connector'], message: `unknown connector '${connectorName}'${hint ? `; did you mean '${hint}'?` : ''}` });
    return undefined;
  }
  const factory = role === 'source' ? spec.source : spec.sink;
  if (!factory) {
    issues.push({ path: [...epPath, 'connector'], message: `connector '${spec.name}' cannot be used as a ${role === 'source' ? 'source' : 'sink'}` });
    return undefined;
  }
  // Merge: alias defaults < profile < table < endpoint.
  const merged: Record<string, unknown> = {};
  const origin: KeyOrigin = new Map();
  const aliasDefaults = spec.aliasDefaults?.[connectorName.toLowerCase()] ?? spec.aliasDefaults?.[connectorName];
  if (aliasDefaults) Object.assign(merged, aliasDefaults);
  for (const layer of [profileConfig, ...layers]) {
    if (!layer) continue;
    for (const [k, v] of Object.entries(layer.config)) {
      merged[k] = v;
      origin.set(k, layer.path);
    }
  }
  // Laminar tables say `type: source|sink` inside config; Timeplus puts `data_type` among the connector options.
  const optionShape = shapeOf(factory.options) ?? {};
  if ('type' in merged && !('type' in optionShape)) {
    if (merged.type !== role) {
      const t = merged.type;
      const message = typeof t === 'string' ? `this table is a ${t}, used here as a ${role}` : `type must be 'source' or 'sink', got ${describeValue(t)}`;
      issues.push({ path: [...(origin.get('type') ?? path), 'type'], message });
    }
    delete merged.type;
  }
  let formatInput = ep.format;
  for (const k of ['data_type', 'format']) {
    if (k in merged && !(k in optionShape)) {
      formatInput ??= merged[k];
      delete merged[k];
    }
  }
  // Endpoint-level settings that users also write among the connector options (SQL WITH lists are flat).
  let payloadPath = ep.payload_path;
  if ('payload_path' in merged && !('payload_path' in optionShape)) {
    if (typeof merged.payload_path !== 'string' || !merged.payload_path) issues.push({ path: [...(origin.get('payload_path') ?? path), 'payload_path'], message: 'expected a dotted field path such as data or payload.items' });
    else payloadPath ??= merged.payload_path;
    delete merged.payload_path;
  }
  const before = issues.length;
  const opts = parseOptions(factory.options, merged, [...path, 'config']);
  if (!opts.ok) {
    for (const i of opts.issues) {
      const key = i.path[path.length + 1];
      const from = typeof key === 'string' ? origin.get(key) : undefined;
      issues.push(from ? { ...i, path: [...from, ...i.path.slice(path.length + 1)] } : i);
    }
  }
  const fallback = typeof factory.defaultFormat === 'function' ? (opts.ok ? factory.defaultFormat(opts.value) : 'json') : factory.defaultFormat;
  let fmtInput: unknown = formatInput ?? fallback ?? 'json';
  if (opts.ok) fmtInput = withRegistry(fmtInput, opts.value as Record<string, unknown>);
  const fmt = parseFormatConfig(fmtInput);
  if (!fmt.ok) issues.push(...fmt.issues.map((i) => ({ ...i, path: [...epPath, 'format', ...i.path] })));
  let schema: EndpointDef['schema'];
  if (ep.schema !== undefined) {
    // `stream_schema: [...]` / `columns: [...]` written directly at the endpoint arrive here as lists.
    const raw = Array.isArray(ep.schema)
      ? ep.schema.some((x) => x && typeof x === 'object' && 'columns' in x)
        ? { stream_schema: ep.schema }
        : ep.schema.some((x) => x && typeof x === 'object' && ('databrewType' in x || 'pk' in x))
          ? { columns: ep.schema }
          : { fields: ep.schema }
      : ep.schema;
    const s = parseSchemaConfig(raw, [...epPath, 'schema']);
    if (!s.ok) issues.push(...s.issues);
    else schema = s.value;
  }
  const metadata_fields = parseMetadataFields(ep.metadata_fields, [...epPath, 'metadata_fields'], role === 'source' ? spec.source : undefined, issues);
  if (issues.length > before || !opts.ok || !fmt.ok) return undefined;
  let bad: BadDataPolicy = ep.bad_data ?? (hasDlq ? 'dlq' : 'fail');
  if (role !== 'source') bad = 'fail';
  return {
    connector: spec.name,
    options: opts.value as Record<string, unknown>,
    config: merged,
    format: fmt.value,
    schema,
    bad_data: bad,
    metadata_fields,
    payload_path: role === 'source' ? payloadPath : undefined,
    profile: ep.profile,
    table: tableName,
  };
}

const UNIVERSAL_METADATA = ['_timestamp', '_key', '_headers'];

function parseMetadataFields(v: unknown, path: Path, factory: ConnectorSpec['source'], issues: ConfigIssue[]): Record<string, string> {
  if (v === undefined) return {};
  const out: Record<string, string> = {};
  const known = [...UNIVERSAL_METADATA, ...Object.keys(factory?.metadata ?? {})];
  const add = (field: string, meta: string, p: Path) => {
    const m = meta.startsWith('_') ? meta : `_${meta}`;
    if (!known.includes(m)) {
      const hint = suggest(m, known);
      issues.push({ path: p, message: `unknown metadata '${meta}'${hint ? `; did you mean '${hint}'?` : ''} (available: ${known.join(', ')})` });
      return;
    }
    out[field] = m;
  };
  if (Array.isArray(v)) v.forEach((m, i) => (typeof m === 'string' ? add(m, m, [...path, i]) : issues.push({ path: [...path, i], message: 'expected a metadata name such as _offset' })));
  else if (v && typeof v === 'object') for (const [f, m] of Object.entries(v)) typeof m === 'string' ? add(f, m, [...path, f]) : issues.push({ path: [...path, f], message: 'expected a metadata name such as _offset' });
  else issues.push({ path, message: 'expected a list of metadata names or a map of field: metadata name' });
  return out;
}

const REGISTRY_FORMATS = new Set(['avro', 'protobuf']);

/**
 * The seeds put the schema registry among the connector's options (Timeplus `schema_registry_address` on the Kafka
 * source, Laminar's `schemaRegistryEnum` on the profile); the registry belongs to the format, so hand those settings
 * to a registry-aware format unless the format sets its own.
 */
function withRegistry(format: unknown, o: Record<string, unknown>): unknown {
  const nested = (o.schema_registry ?? {}) as Record<string, unknown>;
  const reg: Record<string, unknown> = {};
  const address = o.schema_registry_address ?? nested.address ?? nested.endpoint;
  if (address === undefined) return format;
  reg.schema_registry_address = address;
  const key = o.schema_registry_api_key ?? nested.api_key;
  const secret = o.schema_registry_api_secret ?? nested.api_secret;
  if (key !== undefined) reg.schema_registry_api_key = key;
  if (secret !== undefined) reg.schema_registry_api_secret = secret;
  // Subject names follow the topic (topic_name strategy) when the connector writes one fixed topic.
  const topic = Array.isArray(o.topic) && o.topic.length === 1 ? o.topic[0] : o.topic;
  if (typeof topic === 'string' && !topic.includes('{{') && !topic.startsWith('/')) reg.topic = topic;
  if (typeof format === 'string') return REGISTRY_FORMATS.has(format.toLowerCase()) ? { name: format, ...reg } : format;
  if (!format || typeof format !== 'object' || Array.isArray(format)) return format;
  const f = format as Record<string, unknown>;
  if (typeof f.name === 'string') return REGISTRY_FORMATS.has(f.name.toLowerCase()) ? { ...reg, ...f } : format;
  const keys = Object.keys(f);
  if (keys.length === 1 && REGISTRY_FORMATS.has(keys[0]!.toLowerCase())) return { [keys[0]!]: { ...reg, ...((f[keys[0]!] as object) ?? {}) } };
  return format;
}
