// Connector specs: one zod object per role drives validation, aliases, JSON Schema, `sluice connectors` and docs.

import { z } from 'zod';
import type { Sink, SinkContext, Source, SourceContext, FieldSpec } from './types.js';
import { parseDuration, parseSize, suggest } from './units.js';
import { formatPath, type ConfigIssue } from './errors.js';

export { z };

export type AnyObject = z.ZodObject<z.ZodRawShape>;

/** Option metadata stored with zod's `.meta()`; lands in the JSON Schema as-is. */
export interface OptionMeta {
  [key: string]: unknown;
  description?: string;
  /** Other accepted spellings (the seeds' names), e.g. `websocket.url`, `bootstrapServers`. */
  aliases?: string[];
  /** Never logged, always redacted. */
  secret?: boolean;
  /** How the value is written: `duration`, `size`. */
  'x-kind'?: string;
  examples?: unknown[];
  default?: unknown;
  /** Hidden from the short listing. */
  advanced?: boolean;
}

export function opt<T extends z.ZodType>(schema: T, meta: OptionMeta): T {
  return schema.meta(meta as Record<string, unknown>);
}

/** A duration option: "200ms", "5s", "1m", or milliseconds as a number. Parses to milliseconds. */
export function duration(meta: OptionMeta & { default?: string | number } = {}) {
  const base = z.union([z.number(), z.string()]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `'${v}' is not a duration (use e.g. 200ms, 5s, 1m)` });
      return z.NEVER;
    }
    return ms;
  });
  const m = { ...meta, 'x-kind': 'duration' };
  return meta.default === undefined ? base.meta(m) : base.prefault(meta.default).meta(m);
}

/** A size option: "64KB", "10MiB", or bytes as a number. Parses to bytes. */
export function size(meta: OptionMeta & { default?: string | number } = {}) {
  const base = z.union([z.number(), z.string()]).transform((v, ctx) => {
    const b = parseSize(v);
    if (b === undefined) {
      ctx.addIssue({ code: 'custom', message: `'${v}' is not a size (use e.g. 64KB, 10MiB, or bytes)` });
      return z.NEVER;
    }
    return b;
  });
  const m = { ...meta, 'x-kind': 'size' };
  return meta.default === undefined ? base.meta(m) : base.prefault(meta.default).meta(m);
}

/** A boolean that also accepts "true"/"false" strings (SQL WITH options and env substitutions are strings). */
export function bool(meta: OptionMeta & { default?: boolean } = {}) {
  const base = z.preprocess(
    (v) => (v === 'true' ? true : v === 'false' ? false : v),
    z.boolean(),
  );
  return meta.default === undefined ? base.meta(meta) : base.prefault(meta.default).meta(meta);
}

/** A number that also accepts numeric strings. */
export function num(meta: OptionMeta & { default?: number; int?: boolean; min?: number; max?: number } = {}) {
  let inner = z.number();
  if (meta.int) inner = inner.int();
  if (meta.min !== undefined) inner = inner.min(meta.min);
  if (meta.max !== undefined) inner = inner.max(meta.max);
  const base = z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' && !isNaN(Number(v)) ? Number(v) : v), inner);
  const { int: _i, min: _a, max: _b, ...m } = meta;
  return meta.default === undefined ? base.meta(m) : base.prefault(meta.default).meta(m);
}

/** A list that also accepts a comma-separated string. */
export function list<T extends z.ZodType>(item: T, meta: OptionMeta = {}) {
  return z
    .preprocess((v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v), z.array(item))
    .meta(meta);
}

/** Parses the Kafka Connect form `"k1:v1,k2:v2"`; anything else (a map) is passed on unchanged for the schema to check. */
export function parseHeaderPairs(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const out: Record<string, string> = {};
  for (const pair of v.split(',')) {
    const t = pair.trim();
    if (!t) continue;
    const at = t.indexOf(':');
    // Left as a string so the map check reports it.
    if (at <= 0) return v;
    out[t.slice(0, at).trim()] = t.slice(at + 1).trim();
  }
  return out;
}

/** A header map, or the `"k1:v1,k2:v2"` string form; values become strings. */
export function headerMap() {
  return z.preprocess(parseHeaderPairs, z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)));
}

// ---- connector definitions -----------------------------------------------------------------------------------

/** What the runtime knows about the pipeline side a connector serves. */
export interface EndpointInfo {
  /** Format name the user chose (`json`, `csv`, ...). */
  format: string;
  schema?: { fields: FieldSpec[] };
  /** The connection profile the endpoint names: endpoints naming the same profile may share one client connection. */
  profile?: string;
}

/** A table answering point lookups by key (eKuiper's lookup sources), for enriching records in SQL joins. */
export interface LookupTable {
  /** The row stored under `key`, or undefined. */
  get(key: string): Promise<Record<string, unknown> | undefined>;
  /** Several keys in one round trip; the result is in key order. */
  getMany(keys: string[]): Promise<Array<Record<string, unknown> | undefined>>;
  close(): Promise<void>;
}

export interface LookupFactory<O> {
  options: z.ZodType<O, any>;
  create(options: O, info: EndpointInfo): LookupTable;
}

export interface SourceFactory<O> {
  options: z.ZodType<O, any>;
  create(options: O, info: EndpointInfo): Source;
  /** The format used when the user names none; a function can choose by the options (a file's extension). */
  defaultFormat?: string | ((options: O) => string);
  /** The metadata fields this source can expose (`_offset`, `_partition`, ...). */
  metadata?: Record<string, string>;
  /** Whether a restart resumes from committed positions. */
  replayable?: boolean;
}

export interface SinkFactory<O> {
  options: z.ZodType<O, any>;
  create(options: O, info: EndpointInfo): Sink;
  defaultFormat?: string | ((options: O) => string);
  /** Whether these options make the sink exactly-once (`Sink.exactlyOnce`), checked when a pipeline is compiled. */
  exactlyOnce?: (options: O) => boolean;
}

/** `test()` reports each step as it happens, in words a user understands. */
export type TestReporter = (step: { message: string; done?: boolean; error?: boolean }) => void;

export interface ConnectorSpec {
  name: string;
  /** Other names the connector answers to (`log` and `console` for `stdout`). */
  aliases?: string[];
  /** Options implied by an alias name, e.g. `impulse` -> { template: 'impulse' } for the generator. */
  aliasDefaults?: Record<string, Record<string, unknown>>;
  title: string;
  description: string;
  source?: SourceFactory<any>;
  sink?: SinkFactory<any>;
  lookup?: LookupFactory<any>;
  /** Suggestions for the control plane's autocomplete (topics, streams, queues, keys). */
  autocomplete?(options: unknown, signal: AbortSignal): Promise<Record<string, string[]>>;
  test?(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void>;
}

// ---- option schemas built on first use -------------------------------------------------------------------------
//
// zod v4 schemas are heavy to build (closures, registries, bags per node): building every connector's options when the
// registry is imported cost ~7 MB and ~90 ms of a `sluice run` that uses two connectors (issue 9). Options modules
// therefore export builders wrapped in `lazyOptions`, and connector specs hold the builder; the schema is built the
// first time something reads `factory.options`.

const builtOptions: string[] = [];

/**
 * A memoized builder of option schemas. `name` labels it in `builtOptionSchemas()`, which tests read to check that a
 * pipeline only builds the options of the connectors and formats it uses.
 */
export function lazyOptions<T>(name: string, build: () => T): () => T {
  let value: T | undefined;
  let done = false;
  return () => {
    if (!done) {
      value = build();
      done = true;
      builtOptions.push(name);
    }
    return value as T;
  };
}

/** The labels of the option builders that have run in this process, in the order they ran. */
export function builtOptionSchemas(): readonly string[] {
  return builtOptions;
}

/** A factory as a connector module writes it: `options` may be a builder, called on first read. */
type Deferred<F extends { options: unknown }> = Omit<F, 'options'> & { options: F['options'] | (() => F['options']) };

/** What `defineConnector` takes: a ConnectorSpec whose factories may give their options as builders. */
export interface ConnectorDefinition extends Omit<ConnectorSpec, 'source' | 'sink' | 'lookup'> {
  source?: Deferred<SourceFactory<any>>;
  sink?: Deferred<SinkFactory<any>>;
  lookup?: Deferred<LookupFactory<any>>;
}

/** The factory with `options` as a getter that runs the builder once; a schema given directly is kept as it is. */
function deferOptions<F extends { options: unknown }>(f: Deferred<F>): F {
  const options = f.options;
  if (typeof options !== 'function') return f as F;
  const out = { ...f } as Record<string, unknown>;
  let built: unknown;
  Object.defineProperty(out, 'options', {
    enumerable: true,
    get: () => (built ??= (options as () => unknown)()),
  });
  return out as F;
}

export function defineConnector(def: ConnectorDefinition): ConnectorSpec {
  const { source, sink, lookup, ...rest } = def;
  return {
    ...rest,
    ...(source ? { source: deferOptions(source) } : {}),
    ...(sink ? { sink: deferOptions(sink) } : {}),
    ...(lookup ? { lookup: deferOptions(lookup) } : {}),
  };
}

// Re-exported so connectors import everything spec-related from one place.
export type { Source, Sink, SourceContext, SinkContext };

// ---- introspection -------------------------------------------------------------------------------------------

/** Peel optional/default/pipe wrappers to the schema that holds the shape. */
function unwrap(s: z.ZodType): z.ZodType {
  let cur: any = s;
  for (let i = 0; i < 10; i++) {
    const def = cur?._zod?.def;
    if (!def) break;
    if (def.type === 'optional' || def.type === 'default' || def.type === 'prefault' || def.type === 'nullable') cur = def.innerType;
    else if (def.type === 'pipe') cur = def.in._zod.def.type === 'transform' ? def.out : def.in;
    else break;
  }
  return cur;
}

/** Object shape of an option schema, if it is an object. */
export function shapeOf(s: z.ZodType): Record<string, z.ZodType> | undefined {
  const u: any = unwrap(s);
  return u?._zod?.def?.type === 'object' ? (u._zod.def.shape as Record<string, z.ZodType>) : undefined;
}

export function metaOf(s: z.ZodType): OptionMeta {
  let cur: any = s;
  const out: OptionMeta = {};
  for (let i = 0; i < 10 && cur; i++) {
    const m = z.globalRegistry.get(cur) as OptionMeta | undefined;
    if (m) for (const [k, v] of Object.entries(m)) if ((out as any)[k] === undefined) (out as any)[k] = v;
    const def = cur._zod?.def;
    if (!def) break;
    if (def.innerType) cur = def.innerType;
    else if (def.type === 'pipe') cur = def.in;
    else break;
  }
  return out;
}

export function toJsonSchema(s: z.ZodType): Record<string, unknown> {
  return z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}

export interface OptionDoc {
  name: string;
  type: string;
  required: boolean;
  default?: unknown;
  aliases: string[];
  description: string;
  secret: boolean;
  /** Nested options of an object option. */
  children?: OptionDoc[];
}

/** A flat, human-oriented description of an options object (CLI listing, docs pages). */
export function describeOptions(s: z.ZodType): OptionDoc[] {
  const js = toJsonSchema(s) as any;
  return describeJson(js);
}

function describeJson(js: any): OptionDoc[] {
  const props = js.properties ?? {};
  const req = new Set<string>(js.required ?? []);
  return Object.entries<any>(props).map(([name, p]) => {
    const d: OptionDoc = {
      name,
      type: typeName(p),
      required: req.has(name) && p.default === undefined,
      default: p.default,
      aliases: p.aliases ?? [],
      description: p.description ?? '',
      secret: !!p.secret,
    };
    const obj = p.type === 'object' ? p : p.anyOf?.find((x: any) => x.type === 'object');
    if (obj?.properties) d.children = describeJson(obj);
    return d;
  });
}

function typeName(p: any): string {
  if (p['x-kind']) return p['x-kind'];
  if (p.enum) return p.enum.map((e: unknown) => JSON.stringify(e)).join(' | ');
  if (p.const !== undefined) return JSON.stringify(p.const);
  if (p.anyOf) return [...new Set(p.anyOf.map(typeName))].join(' | ');
  if (p.oneOf) return [...new Set(p.oneOf.map(typeName))].join(' | ');
  if (Array.isArray(p.type)) return p.type.join(' | ');
  if (p.type === 'array') return `list of ${p.items ? typeName(p.items) : 'any'}`;
  if (p.type === 'object' && p.additionalProperties && typeof p.additionalProperties === 'object') return 'map';
  return p.type ?? 'any';
}

// ---- option normalisation ------------------------------------------------------------------------------------

export interface NormalizedOptions {
  value: Record<string, unknown>;
  issues: ConfigIssue[];
  /** canonical path (joined with \u0000) -> the path as the user wrote it, for error locations. */
  origin: Map<string, (string | number)[]>;
}

/**
 * Map aliases to canonical names, expand dotted keys (`tls.disable` -> tls: {disable}) and report unknown keys with
 * a suggestion. Keys are matched exactly first, then case- and separator-insensitively (`groupId` = `group_id`).
 */
export function normalizeOptions(schema: z.ZodType, input: unknown, basePath: (string | number)[] = []): NormalizedOptions {
  const origin = new Map<string, (string | number)[]>();
  const issues: ConfigIssue[] = [];
  const value = normalizeInto(schema, input, [], basePath, origin, issues);
  return { value: (value ?? {}) as Record<string, unknown>, issues, origin };
}

const loose = (k: string) => k.toLowerCase().replace(/[-_.\s]/g, '');

function aliasTable(shape: Record<string, z.ZodType>): Map<string, string> {
  const t = new Map<string, string>();
  for (const [name, s] of Object.entries(shape)) {
    t.set(name, name);
    for (const a of metaOf(s).aliases ?? []) t.set(a, name);
  }
  for (const [k, v] of [...t]) if (!t.has(loose(k))) t.set(loose(k), v);
  return t;
}

function normalizeInto(
  schema: z.ZodType,
  input: unknown,
  canon: (string | number)[],
  orig: (string | number)[],
  origin: Map<string, (string | number)[]>,
  issues: ConfigIssue[],
): unknown {
  origin.set(canon.join('\u0000'), orig);
  const shape = shapeOf(schema);
  if (!shape || input === null || typeof input !== 'object' || Array.isArray(input)) {
    const elem = arrayElement(schema);
    if (elem && Array.isArray(input) && shapeOf(elem)) {
      return input.map((v, i) => normalizeInto(elem, v, [...canon, i], [...orig, i], origin, issues));
    }
    return input;
  }
  const strict = isStrict(schema);
  const table = aliasTable(shape);
  const out: Record<string, unknown> = {};
  const seenFrom = new Map<string, string>();
  for (const [key, v] of Object.entries(input as Record<string, unknown>)) {
    let target = table.get(key) ?? table.get(loose(key));
    let rest: string[] = [];
    if (target === undefined && key.includes('.')) {
      // `tls.skip_verify_server` -> tls: { skip_verify_server }; the longest known prefix wins.
      const parts = key.split('.');
      for (let n = parts.length - 1; n >= 1 && target === undefined; n--) {
        const head = parts.slice(0, n).join('.');
        const t = table.get(head) ?? table.get(loose(head));
        if (t !== undefined && shapeOf(shape[t]!)) {
          target = t;
          rest = parts.slice(n);
        }
      }
    }
    if (target === undefined && v && typeof v === 'object' && !Array.isArray(v)) {
      // A nested map whose dotted spelling is an alias (`schemaRegistryEnum: { endpoint }` for
      // `schemaRegistryEnum.endpoint`): flatten it and normalise the dotted keys instead.
      const inner = Object.entries(v as Record<string, unknown>);
      if (inner.length && inner.every(([k2]) => table.has(`${key}.${k2}`) || table.has(loose(`${key}.${k2}`)))) {
        for (const [k2, v2] of inner) {
          const t = table.get(`${key}.${k2}`) ?? table.get(loose(`${key}.${k2}`))!;
          seenFrom.set(t, `${key}.${k2}`);
          out[t] = normalizeInto(shape[t]!, v2, [...canon, t], [...orig, key, k2], origin, issues);
        }
        continue;
      }
    }
    if (target === undefined) {
      if (!strict) {
        out[key] = v;
        continue;
      }
      const names = [...Object.keys(shape), ...Object.values(shape).flatMap((s) => metaOf(s).aliases ?? [])];
      const hint = suggest(key, names);
      issues.push({
        path: [...orig, key],
        message: `unknown option '${key}'${hint ? `; did you mean '${hint}'?` : ''}`,
      });
      continue;
    }
    if (seenFrom.has(target) && rest.length === 0 && shapeOf(shape[target]!) === undefined) {
      issues.push({ path: [...orig, key], message: `'${key}' and '${seenFrom.get(target)}' set the same option '${target}'` });
      continue;
    }
    if (rest.length) {
      // Re-nest and normalise inside the object option.
      let nested: unknown = v;
      for (let i = rest.length - 1; i >= 0; i--) nested = { [rest[i]!]: nested };
      const merged = { ...((out[target] as object) ?? {}), ...(nested as object) };
      out[target] = merged;
      seenFrom.set(target, key);
      origin.set([...canon, target, ...rest].join('\u0000'), [...orig, key]);
      continue;
    }
    seenFrom.set(target, key);
    const nv = normalizeInto(shape[target]!, v, [...canon, target], [...orig, key], origin, issues);
    out[target] = out[target] && typeof out[target] === 'object' && typeof nv === 'object' ? { ...(out[target] as object), ...(nv as object) } : nv;
  }
  // Dotted keys merged into object options still need their inner keys normalised.
  for (const [k, v] of Object.entries(out)) {
    const s = shape[k];
    if (s && shapeOf(s) && v && typeof v === 'object' && !Array.isArray(v) && seenFrom.get(k)?.includes('.')) {
      out[k] = normalizeInto(s, v, [...canon, k], origin.get([...canon, k].join('\u0000')) ?? [...orig, k], origin, issues);
    }
  }
  return out;
}

function arrayElement(s: z.ZodType): z.ZodType | undefined {
  const u: any = unwrap(s);
  return u?._zod?.def?.type === 'array' ? u._zod.def.element : undefined;
}

function isStrict(s: z.ZodType): boolean {
  const u: any = unwrap(s);
  const catchall = u?._zod?.def?.catchall;
  return !!catchall && catchall._zod?.def?.type === 'never';
}

/** Normalise then validate; issues carry the user's own key spelling in their paths. */
export function parseOptions<T>(
  schema: z.ZodType<T, any>,
  input: unknown,
  basePath: (string | number)[] = [],
): { ok: true; value: T } | { ok: false; issues: ConfigIssue[] } {
  const n = normalizeOptions(schema, input ?? {}, basePath);
  // Options are parsed once per pipeline: zod's JIT-compiled object parser costs more to build than it saves here.
  const r = schema.safeParse(n.value, { reportInput: true, jitless: true });
  const issues = [...n.issues];
  if (!r.success) {
    const secrets = secretKeys(schema);
    for (const zi of r.error.issues) {
      const p = zi.path.filter((x): x is string | number => typeof x !== 'symbol');
      if (zi.code === 'unrecognized_keys') continue; // reported by normalisation with a suggestion
      const secret = p.some((k) => typeof k === 'string' && secrets.has(k));
      issues.push({ path: mapPath(n.origin, p, basePath), message: zodMessage(zi, p, secret) });
    }
  }
  if (issues.length) return { ok: false, issues };
  return { ok: true, value: (r as { data: T }).data };
}

function mapPath(origin: Map<string, (string | number)[]>, p: (string | number)[], basePath: (string | number)[]) {
  for (let n = p.length; n >= 0; n--) {
    const o = origin.get(p.slice(0, n).join('\u0000'));
    if (o) return [...o, ...p.slice(n)];
  }
  return [...basePath, ...p];
}

function zodMessage(zi: z.core.$ZodIssue, path: (string | number)[], secret: boolean): string {
  const field = path.length ? String(path[path.length - 1]) : 'value';
  switch (zi.code) {
    case 'invalid_type':
      if ((zi as any).input === undefined) return `missing required option '${field}'`;
      // A secret's value never appears in a message, even when it has the wrong type.
      return `expected ${zi.expected}, got ${secret ? typeof (zi as any).input : describeValue((zi as any).input)}`;
    case 'invalid_value':
      return `must be one of ${(zi as any).values.map((v: unknown) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_union':
      return zi.message === 'Invalid input' ? 'value has the wrong type' : zi.message;
    default:
      return zi.message;
  }
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `string '${v.length > 40 ? v.slice(0, 40) + '…' : v}'`;
  return `${typeof v} ${String(v)}`;
}

/** Dotted paths of every option marked secret, for redaction. */
export function secretKeys(s: z.ZodType): Set<string> {
  const out = new Set<string>();
  const walk = (schema: z.ZodType) => {
    const shape = shapeOf(schema);
    if (!shape) return;
    for (const [k, v] of Object.entries(shape)) {
      if (metaOf(v).secret) out.add(k);
      walk(v);
    }
  };
  walk(s);
  return out;
}

export { formatPath };
