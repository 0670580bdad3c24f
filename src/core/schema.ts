// Schemas: reading them from configuration (ours, DataBrew's, Laminar/Arroyo's), checking and coercing rows against
// them, inferring them from sample rows, and printing them.

import type { FieldSpec, FieldType, SchemaSpec } from './types.js';
import { ConfigError, RecordError, type ConfigIssue } from './errors.js';
import { suggest } from './units.js';
import { toBase64 } from '../formats/util.js';

type Path = (string | number)[];
type ItemSpec = Omit<FieldSpec, 'name'>;
type Unit = NonNullable<FieldSpec['unit']>;
type Result<T> = { ok: true; value: T } | { ok: false; issues: ConfigIssue[] };

export const FIELD_TYPES: readonly FieldType[] = [
  'string',
  'int32',
  'int64',
  'float32',
  'float64',
  'decimal',
  'boolean',
  'timestamp',
  'date',
  'json',
  'bytes',
  'array',
  'object',
];

// ---- type names ----------------------------------------------------------------------------------------------

/** Every accepted spelling (lower case) of each type. `object`-like names become `json` when no fields are given. */
export const TYPE_ALIASES: Readonly<Record<FieldType, readonly string[]>> = {
  string: ['string', 'text', 'varchar', 'char', 'character', 'character varying', 'nvarchar', 'nchar', 'utf8', 'largeutf8', 'str', 'uuid', 'inet', 'mac'],
  int32: ['int32', 'int', 'integer', 'int4', 'smallint', 'int2', 'int16', 'tinyint', 'mediumint', 'short', 'uint8', 'uint16', 'serial'],
  int64: ['int64', 'bigint', 'int8', 'long', 'uint32', 'uint64', 'bigserial'],
  float32: ['float32', 'float', 'real', 'float4', 'f32'],
  float64: ['float64', 'double', 'double precision', 'float8', 'f64', 'number'],
  decimal: ['decimal', 'numeric', 'dec'],
  boolean: ['boolean', 'bool'],
  timestamp: ['timestamp', 'datetime', 'timestamptz', 'timestamp with time zone', 'timestamp without time zone', 'instant'],
  date: ['date', 'date32', 'date64'],
  json: ['json', 'jsonb', 'map', 'any'],
  bytes: ['bytes', 'bytea', 'binary', 'blob', 'varbinary', 'largebinary'],
  array: ['array', 'list'],
  object: ['object', 'struct', 'record'],
};

// Laminar/Arroyo spell epoch timestamps as their own primitives.
const EPOCH_TYPES: Record<string, Unit> = { unixseconds: 's', unixmillis: 'ms', unixmicros: 'us', unixnanos: 'ns' };

const TYPE_BY_NAME = new Map<string, FieldType>();
for (const t of FIELD_TYPES) for (const a of TYPE_ALIASES[t]) TYPE_BY_NAME.set(a, t);

const UNITS: Record<string, Unit> = {
  s: 's', sec: 's', second: 's', seconds: 's',
  ms: 'ms', milli: 'ms', millis: 'ms', millisecond: 'ms', milliseconds: 'ms',
  us: 'us', µs: 'us', micro: 'us', micros: 'us', microsecond: 'us', microseconds: 'us',
  ns: 'ns', nano: 'ns', nanos: 'ns', nanosecond: 'ns', nanoseconds: 'ns',
};

interface TypeInfo {
  type: FieldType;
  precision?: number;
  scale?: number;
  unit?: Unit;
  items?: ItemSpec;
  /** Written as object/struct/json: becomes `object` when fields are given, else `json`. */
  structLike?: boolean;
}

function unknownTypeMessage(name: string): string {
  const hint = suggest(name, [...TYPE_BY_NAME.keys(), ...Object.keys(EPOCH_TYPES)]);
  return `unknown type '${name}'${hint ? `; did you mean '${hint}'?` : ''} (known types: ${FIELD_TYPES.join(', ')}, and SQL names such as BIGINT, VARCHAR, DOUBLE, DECIMAL(10,2), array<string>)`;
}

/** A type written as text: `BIGINT`, `decimal(10, 2)`, `array<int64>`, `int64[]`, `List<JSON>`, `Utf8`. */
export function parseTypeName(text: string): TypeInfo | string {
  const t = text.trim().toLowerCase().replace(/\s+/g, ' ');
  if (t === '') return 'type is empty';
  if (t.endsWith('[]')) return arrayOf(parseTypeName(t.slice(0, -2)));
  let m = /^(?:array|list) ?<(.*)>$/.exec(t);
  if (m) return arrayOf(parseTypeName(m[1]!));
  let base = t;
  let args: number[] | undefined;
  m = /^([a-z][a-z0-9_ ]*?) ?\((.*)\)$/.exec(t);
  if (m) {
    base = m[1]!;
    const parts = m[2]!.split(',').map((s) => s.trim());
    if (!parts.every((p) => /^\d+$/.test(p))) return `type '${text}': arguments must be whole numbers`;
    args = parts.map(Number);
  }
  let unsigned = false;
  if (base.endsWith(' unsigned')) {
    unsigned = true;
    base = base.slice(0, -' unsigned'.length);
  }
  const epoch = EPOCH_TYPES[base.replace(/[_ ]/g, '')];
  if (epoch) return { type: 'timestamp', unit: epoch };
  let type = TYPE_BY_NAME.get(base) ?? TYPE_BY_NAME.get(base.replace(/_/g, ''));
  if (type === undefined) return unknownTypeMessage(text.trim());
  if (unsigned && type === 'int32') type = 'int64';
  const info: TypeInfo = { type };
  if (type === 'object' || (type === 'json' && base !== 'any')) info.structLike = true;
  if (args) {
    if (type === 'decimal') {
      if (args.length > 2) return `type '${text}': decimal takes (precision) or (precision, scale)`;
      info.precision = args[0];
      info.scale = args[1] ?? 0;
    } else if (type === 'float32' && base === 'float') {
      // SQL FLOAT(p): up to 24 bits of mantissa is single precision.
      if (args[0]! > 24) info.type = 'float64';
    } else if (type !== 'string' && type !== 'bytes' && type !== 'timestamp') {
      return `type '${text}' takes no arguments`;
    }
  }
  return info;
}

function arrayOf(inner: TypeInfo | string): TypeInfo | string {
  if (typeof inner === 'string') return inner;
  return { type: 'array', items: infoToSpec(inner) };
}

function infoToSpec(i: TypeInfo): ItemSpec {
  const s: ItemSpec = { type: i.type === 'object' && i.structLike ? 'json' : i.type };
  if (i.precision !== undefined) s.precision = i.precision;
  if (i.scale !== undefined) s.scale = i.scale;
  if (i.unit !== undefined) s.unit = i.unit;
  if (i.items !== undefined) s.items = i.items;
  return s;
}

// ---- parsing configuration -----------------------------------------------------------------------------------

const loose = (k: string) => k.toLowerCase().replace(/[-_.\s]/g, '');

/** Field keys as written in our shape, DataBrew's and Arroyo's, by their loose spelling. */
const FIELD_KEYS: Record<string, string> = {
  name: 'name',
  fieldname: 'name',
  type: 'type',
  fieldtype: 'type',
  datatype: 'type',
  databrewtype: 'type',
  nativeconnectortype: 'native_type',
  nullable: 'nullable',
  required: 'required',
  pk: 'primary_key',
  primarykey: 'primary_key',
  default: 'default',
  format: 'format',
  unit: 'unit',
  precision: 'precision',
  scale: 'scale',
  items: 'items',
  fields: 'fields',
  columns: 'fields',
  metadata: 'metadata',
  metadatakey: 'metadata',
  // Documentation-only keys other tools write; accepted and dropped.
  description: 'ignore',
  comment: 'ignore',
  doc: 'ignore',
  sqlname: 'ignore',
};

const FIELD_KEY_NAMES = ['name', 'type', 'nullable', 'default', 'format', 'unit', 'precision', 'scale', 'items', 'fields', 'metadata', 'primary_key', 'required', 'databrewType', 'nativeConnectorType', 'pk'];

const TOP_KEYS: Record<string, string> = {
  fields: 'fields',
  columns: 'columns',
  streamschema: 'stream_schema',
  primarykey: 'primary_key',
  primarykeys: 'primary_key',
  unknownfields: 'unknown_fields',
};

const UNKNOWN_FIELDS = ['keep', 'drop', 'error'] as const;

interface Ctx {
  issues: ConfigIssue[];
  /** Top-level fields flagged `primary_key: true` / `pk: true`. */
  pk: string[];
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asBool(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  return undefined;
}

/**
 * Read a schema written in any of the accepted shapes:
 * - ours: `{fields: [{name, type, nullable, ...}] | {name: type}, primary_key, unknown_fields}`
 * - DataBrew: `{stream_schema: [{stream, columns: [{name, databrewType, nativeConnectorType, pk, nullable}]}]}` or `{columns: [...]}`
 * - Laminar/Arroyo: `{fields: [{name, type: {primitive: 'Int64'}}]}` (also `{struct: ...}`, `{list: ...}`, `required`, `metadataKey`)
 * Issue paths are prefixed with `path`.
 */
export function parseSchemaConfig(input: unknown, path: Path = []): Result<SchemaSpec> {
  const ctx: Ctx = { issues: [], pk: [] };
  let fieldsInput: unknown;
  let fieldsPath: Path;
  let pkInput: unknown;
  let pkPath: Path = [...path, 'primary_key'];
  let unknownInput: unknown;
  let unknownPath: Path = [...path, 'unknown_fields'];

  if (Array.isArray(input)) {
    fieldsInput = input;
    fieldsPath = path;
  } else if (isMap(input)) {
    const found: Record<string, { key: string; value: unknown }> = {};
    for (const [key, value] of Object.entries(input)) {
      const canon = TOP_KEYS[loose(key)];
      if (canon === undefined) {
        const hint = suggest(key, ['fields', 'columns', 'stream_schema', 'primary_key', 'unknown_fields']);
        ctx.issues.push({ path: [...path, key], message: `unknown schema key '${key}'${hint ? `; did you mean '${hint}'?` : ''}` });
        continue;
      }
      found[canon] = { key, value };
    }
    const sources = ['fields', 'columns', 'stream_schema'].filter((k) => found[k]);
    if (sources.length !== 1) {
      ctx.issues.push({
        path,
        message: sources.length
          ? `give the fields once: ${sources.join(' and ')} both set`
          : 'schema needs fields: `fields: [{name, type}]`, `fields: {name: type}`, `columns: [...]` or `stream_schema: [...]`',
      });
      return { ok: false, issues: ctx.issues };
    }
    const src = found[sources[0]!]!;
    fieldsPath = [...path, src.key];
    fieldsInput = src.value;
    if (sources[0] === 'stream_schema') {
      const picked = pickStream(src.value, fieldsPath, ctx);
      if (!picked) return { ok: false, issues: ctx.issues };
      [fieldsInput, fieldsPath] = picked;
    }
    if (found.primary_key) {
      pkInput = found.primary_key.value;
      pkPath = [...path, found.primary_key.key];
    }
    if (found.unknown_fields) {
      unknownInput = found.unknown_fields.value;
      unknownPath = [...path, found.unknown_fields.key];
    }
  } else {
    return {
      ok: false,
      issues: [{ path, message: `schema must be a map with \`fields\` (or \`columns\` / \`stream_schema\`), got ${input === null ? 'null' : typeof input}` }],
    };
  }

  const fields = parseFieldList(fieldsInput, fieldsPath, ctx, true);
  const spec: SchemaSpec = { fields };

  const pk = [...ctx.pk];
  if (pkInput !== undefined) {
    const list = typeof pkInput === 'string' ? pkInput.split(',').map((s) => s.trim()).filter(Boolean) : pkInput;
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) {
      ctx.issues.push({ path: pkPath, message: 'primary_key must be a list of field names' });
    } else {
      for (const k of list) if (!pk.includes(k)) pk.push(k);
    }
  }
  if (pk.length) {
    const names = fields.map((f) => f.name);
    for (const k of pk) {
      const f = fields.find((x) => x.name === k);
      if (!f) {
        const hint = suggest(k, names);
        ctx.issues.push({ path: pkPath, message: `primary key '${k}' is not a field${hint ? `; did you mean '${hint}'?` : ''}` });
      } else if (f.nullable === true) {
        ctx.issues.push({ path: pkPath, message: `primary key '${k}' cannot be nullable` });
      }
    }
    spec.primary_key = pk;
  }

  if (unknownInput !== undefined) {
    if (typeof unknownInput === 'string' && (UNKNOWN_FIELDS as readonly string[]).includes(unknownInput)) {
      spec.unknown_fields = unknownInput as SchemaSpec['unknown_fields'];
    } else {
      ctx.issues.push({ path: unknownPath, message: `unknown_fields must be one of ${UNKNOWN_FIELDS.join(', ')}` });
    }
  }

  if (ctx.issues.length) return { ok: false, issues: ctx.issues };
  return { ok: true, value: spec };
}

function pickStream(v: unknown, path: Path, ctx: Ctx): [unknown, Path] | undefined {
  if (!Array.isArray(v) || v.length === 0) {
    ctx.issues.push({ path, message: 'stream_schema must be a list of {stream, columns}' });
    return undefined;
  }
  if (v.length > 1) {
    ctx.issues.push({ path, message: `stream_schema lists ${v.length} streams; a pipeline reads one, so give one pipeline per stream` });
    return undefined;
  }
  const s = v[0];
  if (!isMap(s)) {
    ctx.issues.push({ path: [...path, 0], message: 'expected {stream, columns}' });
    return undefined;
  }
  let columns: [unknown, Path] | undefined;
  for (const [key, value] of Object.entries(s)) {
    const k = loose(key);
    if (k === 'columns' || k === 'fields') columns = [value, [...path, 0, key]];
    else if (k !== 'stream' && k !== 'name') {
      const hint = suggest(key, ['stream', 'columns']);
      ctx.issues.push({ path: [...path, 0, key], message: `unknown key '${key}'${hint ? `; did you mean '${hint}'?` : ''}` });
    }
  }
  if (!columns) ctx.issues.push({ path: [...path, 0], message: 'stream needs `columns`' });
  return columns;
}

function parseFieldList(v: unknown, path: Path, ctx: Ctx, top: boolean): FieldSpec[] {
  const out: FieldSpec[] = [];
  const seen = new Map<string, Path>();
  const add = (f: FieldSpec | undefined, p: Path) => {
    if (!f) return;
    const prev = seen.get(f.name);
    if (prev) {
      ctx.issues.push({ path: p, message: `duplicate field '${f.name}' (first defined at ${fmtPath(prev)})` });
      return;
    }
    seen.set(f.name, p);
    out.push(f);
  };
  if (Array.isArray(v)) {
    v.forEach((item, i) => add(parseField(item, [...path, i], ctx, top, true), [...path, i]));
  } else if (isMap(v)) {
    // Shorthand `{id: int64, name: {type: string, nullable: false}}`.
    for (const [name, t] of Object.entries(v)) {
      const full = isMap(t) && !('primitive' in t) && !('struct' in t) && !('list' in t);
      const p = [...path, name];
      const before = ctx.issues.length;
      add(parseField(full ? { name, ...t } : { name, type: t }, p, ctx, top, true), p);
      // `name: type` has no `type` key of its own to point at.
      if (!full) for (const i of ctx.issues.slice(before)) if (i.path.length === p.length + 1 && i.path[p.length] === 'type') i.path = p;
    }
  } else {
    ctx.issues.push({ path, message: 'fields must be a list of {name, type} or a map of name: type' });
  }
  if ((Array.isArray(v) && v.length === 0) || (isMap(v) && Object.keys(v).length === 0)) ctx.issues.push({ path, message: 'no fields given' });
  return out;
}

function fmtPath(p: Path): string {
  let s = '';
  for (const x of p) s += typeof x === 'number' ? `[${x}]` : s ? `.${x}` : x;
  return s || '(root)';
}

/** One field (`named`) or an array's element spec (name not needed). */
function parseField(input: unknown, path: Path, ctx: Ctx, top: boolean, named: boolean): FieldSpec | undefined {
  if (typeof input === 'string' && !named) input = { type: input };
  if (!isMap(input)) {
    ctx.issues.push({ path, message: named ? 'expected a field {name, type}' : 'expected a type or {type, ...}' });
    return undefined;
  }
  const before = ctx.issues.length;
  const raw: Record<string, { key: string; value: unknown }> = {};
  for (const [key, value] of Object.entries(input)) {
    const canon = FIELD_KEYS[loose(key)];
    if (canon === undefined) {
      const hint = suggest(key, FIELD_KEY_NAMES);
      ctx.issues.push({ path: [...path, key], message: `unknown field option '${key}'${hint ? `; did you mean '${hint}'?` : ''}` });
      continue;
    }
    if (canon === 'ignore') continue;
    if (raw[canon]) {
      ctx.issues.push({ path: [...path, key], message: `'${key}' and '${raw[canon]!.key}' set the same thing` });
      continue;
    }
    raw[canon] = { key, value };
  }
  const at = (k: string) => [...path, raw[k]?.key ?? k];

  let name = '';
  if (named) {
    const n = raw.name?.value;
    if (typeof n !== 'string' || n === '') {
      ctx.issues.push({ path: at('name'), message: n === undefined ? 'field needs a name' : 'field name must be a non-empty string' });
    } else name = n;
  }

  const typeEntry = raw.type ?? raw.native_type;
  let info: TypeValue | undefined;
  if (!typeEntry) ctx.issues.push({ path: at('type'), message: `field${name ? ` '${name}'` : ''} needs a type` });
  else {
    const r = parseTypeValue(typeEntry.value, [...path, typeEntry.key], ctx);
    if (typeof r === 'string') ctx.issues.push({ path: [...path, typeEntry.key], message: r });
    else info = r;
  }
  if (!info) {
    return undefined;
  }
  const f: FieldSpec = { name, type: info.type };
  if (info.precision !== undefined) f.precision = info.precision;
  if (info.scale !== undefined) f.scale = info.scale;
  if (info.unit !== undefined) f.unit = info.unit;
  if (info.items !== undefined) f.items = info.items;
  if (info.structFields) f.fields = info.structFields;

  const nullable = raw.nullable && asBool(raw.nullable.value);
  if (raw.nullable && nullable === undefined) ctx.issues.push({ path: at('nullable'), message: 'nullable must be true or false' });
  const required = raw.required && asBool(raw.required.value);
  if (raw.required && required === undefined) ctx.issues.push({ path: at('required'), message: 'required must be true or false' });
  if (nullable !== undefined && required !== undefined && nullable === required) {
    ctx.issues.push({ path: at('required'), message: 'required and nullable contradict each other' });
  }
  if (nullable !== undefined) f.nullable = nullable;
  else if (required !== undefined) f.nullable = !required;

  if (raw.primary_key) {
    const pk = asBool(raw.primary_key.value);
    if (pk === undefined) ctx.issues.push({ path: at('primary_key'), message: `${raw.primary_key.key} must be true or false` });
    else if (pk && !top) ctx.issues.push({ path: at('primary_key'), message: 'only top-level fields can be part of the primary key' });
    else if (pk && name) ctx.pk.push(name);
  }

  if (raw.metadata) {
    if (typeof raw.metadata.value !== 'string' || !raw.metadata.value) ctx.issues.push({ path: at('metadata'), message: 'metadata must be a metadata field name such as _offset' });
    else if (!top) ctx.issues.push({ path: at('metadata'), message: 'only top-level fields can come from metadata' });
    else f.metadata = raw.metadata.value;
  }

  for (const k of ['precision', 'scale'] as const) {
    const e = raw[k];
    if (!e) continue;
    const n = typeof e.value === 'string' && /^\d+$/.test(e.value) ? Number(e.value) : e.value;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) ctx.issues.push({ path: at(k), message: `${k} must be a whole number` });
    else if (f.type !== 'decimal') ctx.issues.push({ path: at(k), message: `${k} applies to decimal fields only` });
    else if (f[k] !== undefined && f[k] !== n) ctx.issues.push({ path: at(k), message: `${k} ${n} contradicts the type's (${f[k]})` });
    else f[k] = n;
  }
  if (f.type === 'decimal' && f.precision !== undefined) {
    if (f.precision < 1) ctx.issues.push({ path: at('precision'), message: 'precision must be at least 1' });
    else if ((f.scale ?? 0) > f.precision) ctx.issues.push({ path: at('scale'), message: `scale ${f.scale} is larger than precision ${f.precision}` });
  }

  if (raw.unit) {
    const u = typeof raw.unit.value === 'string' ? UNITS[raw.unit.value.toLowerCase()] : undefined;
    if (!u) ctx.issues.push({ path: at('unit'), message: 'unit must be one of s, ms, us, ns' });
    else if (f.type !== 'timestamp') ctx.issues.push({ path: at('unit'), message: 'unit applies to timestamp fields only' });
    else f.unit = u;
  }

  if (raw.format) {
    const v = raw.format.value;
    if (typeof v !== 'string' || !v) ctx.issues.push({ path: at('format'), message: "format must be 'iso', 'epoch' or a pattern such as 'YYYY-MM-DD HH:mm:ss'" });
    else if (f.type !== 'timestamp' && f.type !== 'date') ctx.issues.push({ path: at('format'), message: 'format applies to timestamp and date fields only' });
    else {
      const err = checkFormat(v, f.type);
      if (err) ctx.issues.push({ path: at('format'), message: err });
      else f.format = v;
    }
  }

  if (raw.items) {
    if (f.type !== 'array') ctx.issues.push({ path: at('items'), message: 'items applies to array fields only' });
    else if (f.items && info.itemsFromName) ctx.issues.push({ path: at('items'), message: 'the element type is already given in the type name' });
    else {
      const it = parseField(raw.items.value, at('items'), ctx, false, false);
      if (it) {
        const { name: _n, ...rest } = it;
        f.items = rest;
      }
    }
  }
  if (f.type === 'array' && !f.items) f.items = { type: 'json' };

  if (raw.fields) {
    const nested = parseFieldList(raw.fields.value, at('fields'), ctx, false);
    if (f.type === 'object' || info.structLike) {
      f.type = 'object';
      f.fields = nested;
    } else if (f.type === 'array' && f.items && (f.items.type === 'json' || f.items.type === 'object')) {
      // DataBrew's `List<JSON>` with `columns`: a list of objects.
      f.items = { ...f.items, type: 'object', fields: nested };
    } else {
      ctx.issues.push({ path: at('fields'), message: 'fields applies to object fields only' });
    }
  }
  if (f.type === 'object' && !f.fields) f.type = 'json';

  if (raw.default) {
    f.default = raw.default.value;
    if (ctx.issues.length === before) {
      try {
        const c = buildCoercer(f, 'keep');
        if (c && f.default !== null) c(f.default);
      } catch (e) {
        if (!(e instanceof Mismatch)) throw e;
        ctx.issues.push({ path: at('default'), message: `default does not fit: ${e.reason}` });
      }
    }
  }
  return ctx.issues.length === before ? f : undefined;
}

interface TypeValue extends TypeInfo {
  itemsFromName?: boolean;
  structFields?: FieldSpec[];
}

/** `type:` as text, or Laminar/Arroyo's `{primitive}`, `{struct: {fields}}`, `{list: ...}`, `{type: ...}`. */
function parseTypeValue(v: unknown, path: Path, ctx: Ctx): TypeValue | string {
  if (typeof v === 'string') {
    const r = parseTypeName(v);
    if (typeof r === 'string') return r;
    return r.type === 'array' ? { ...r, itemsFromName: true } : r;
  }
  if (isMap(v)) {
    const keys = Object.keys(v);
    if (keys.length === 1) {
      const k = keys[0]!;
      const inner = v[k];
      switch (loose(k)) {
        case 'primitive':
          return typeof inner === 'string' ? parseTypeValue(inner, [...path, k], ctx) : 'primitive must be a type name';
        case 'type':
          return parseTypeValue(inner, [...path, k], ctx);
        case 'struct': {
          const fieldsIn = isMap(inner) && 'fields' in inner ? inner.fields : inner;
          const p = isMap(inner) && 'fields' in inner ? [...path, k, 'fields'] : [...path, k];
          return { type: 'object', structFields: parseFieldList(fieldsIn, p, ctx, false) };
        }
        case 'list': {
          const el = isMap(inner) && 'items' in inner ? inner.items : inner;
          const p = isMap(inner) && 'items' in inner ? [...path, k, 'items'] : [...path, k];
          const it = typeof el === 'string' || (isMap(el) && !('name' in el) && !('type' in el))
            ? parseTypeValue(el, p, ctx)
            : parseField(el, p, ctx, false, false);
          if (it === undefined) return { type: 'array', items: { type: 'json' }, itemsFromName: true };
          if (typeof it === 'string') return it;
          if ('name' in it && typeof it.name === 'string') {
            const { name: _n, ...rest } = it as FieldSpec;
            return { type: 'array', items: rest, itemsFromName: true };
          }
          const ti = it as TypeValue;
          const items = infoToSpec(ti);
          if (ti.structFields) {
            items.type = 'object';
            items.fields = ti.structFields;
          }
          return { type: 'array', items, itemsFromName: true };
        }
      }
    }
  }
  return `type must be a name such as int64 or string, or {primitive: Int64}`;
}

/** Validate a `format:` for timestamp/date fields. */
function checkFormat(fmt: string, type: FieldType): string | undefined {
  if (fmt === 'iso') return undefined;
  if (fmt === 'epoch') return type === 'timestamp' ? undefined : "format 'epoch' applies to timestamp fields only";
  if (!fmt.includes('YYYY')) return `format '${fmt}' needs at least YYYY (tokens: YYYY MM DD HH mm ss SSS)`;
  return undefined;
}

// ---- coercion ------------------------------------------------------------------------------------------------

/**
 * Thrown inside the compiled coercers and turned into a RecordError at the top. Not an Error: no stack is captured,
 * which matters when a stream of bad records goes to the dead-letter queue. `path` grows as it unwinds.
 */
class Mismatch {
  constructor(
    readonly reason: string,
    public path = '',
  ) {}
}

function joinPath(head: string, tail: string): string {
  if (tail === '') return head;
  return tail.charCodeAt(0) === 91 /* [ */ ? head + tail : `${head}.${tail}`;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return `string '${v.length > 40 ? v.slice(0, 40) + '…' : v}'`;
  if (typeof v === 'bigint') return `bigint ${v}`;
  if (typeof v !== 'object') return `${typeof v} ${String(v)}`;
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a Date';
  if (ArrayBuffer.isView(v)) return 'bytes';
  return 'an object';
}

function expected(what: string, v: unknown, why?: string): Mismatch {
  return new Mismatch(`expected ${what}, got ${describe(v)}${why ? ` (${why})` : ''}`);
}

type Coerce = (v: unknown) => unknown;
type Policy = NonNullable<SchemaSpec['unknown_fields']>;

interface Slot {
  name: string;
  /** Undefined for json: anything goes. */
  coerce: Coerce | undefined;
  nullable: boolean;
  hasDefault: boolean;
  def: unknown;
  /** Object defaults are copied per row so one row's changes do not leak into the next. */
  cloneDefault: boolean;
  /** '' counts as missing (a CSV empty cell in a numeric column). */
  emptyIsNull: boolean;
  /** The name exists on Object.prototype (`constructor`, `__proto__`): read own properties only, write by define. */
  special: boolean;
  /** JavaScript test (on `v`) for values the coercer returns unchanged; see UNCHANGED. */
  unchanged: string | undefined;
  /** For a numeric field: which received texts are the same JSON number as what the coercer makes (see FitTrace). */
  keep: 'int' | 'float' | undefined;
}

interface CompiledObject {
  slots: Slot[];
  policy: Policy;
  known: Set<string>;
  /** Names kept when dropping unknown fields: schema fields (metadata ones too) and extra allowed names. */
  keep: string[];
  /** `fit` for exactly these slots, generated as straight-line code (see compileFit). */
  fit: (r: Record<string, unknown>, t?: FitTrace) => Record<string, unknown>;
}

/**
 * What a fit did to one row, for JSON output that writes the received text (formats/json.ts `jsonPassThrough`):
 * `changed` when anything but the allowed coercions happened; `kept` has a bit set per field (by its index in
 * `keptFields`) whose numeric string a numeric field coerced where the text, unquoted, is the same JSON number. Both
 * are reset at the start of each fit.
 */
export interface FitTrace {
  changed: boolean;
  kept: number;
}

/**
 * A received numeric string whose text, without its quotes, is exactly the JSON number the coercer makes: plain
 * decimal syntax (an integer field: no fraction, which strict integer parsers refuse) and at most 15 digits, which a
 * float64 holds exactly, so a reader parses the same number from either.
 */
const KEEP_FLOAT = /^-?(?:0|[1-9]\d*)(?:\.\d+)?$/;
const KEEP_INT = /^-?(?:0|[1-9]\d*)$/;
function keepFloat(v: string): boolean {
  return v.length <= 17 && KEEP_FLOAT.test(v) && significantDigits(v) <= 15;
}
function keepInt(v: string): boolean {
  return v.length <= 16 && KEEP_INT.test(v);
}
function significantDigits(v: string): number {
  let n = 0;
  let leading = true;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 48 || c > 57) continue;
    if (leading && c === 48) continue;
    leading = false;
    n++;
  }
  return n;
}
const KEEP: Partial<Record<FieldType, 'int' | 'float'>> = { float64: 'float', float32: 'float', int64: 'int', int32: 'int' };
/** Fields past this index are never kept (FitTrace.kept is a 31-bit mask). */
const MAX_KEPT_INDEX = 30;

const NUM_RE = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$/;
const INT_RE = /^\s*[+-]?\d+\s*$/;
const MIN_I64 = -(2n ** 63n);
const MAX_I64 = 2n ** 63n - 1n;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const F32_MAX = 3.4028234663852886e38;

function numberFrom(s: string): number | undefined {
  // Prices and quantities arrive as plain decimals ("0.01234"): a character scan accepts those without the regular
  // expression (a strict subset of NUM_RE, so the result is the same); anything else takes the full check.
  let digits = 0;
  let dot = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) digits++;
    else if (c === 46 && !dot) dot = true;
    else return NUM_RE.test(s) ? Number(s) : undefined;
  }
  return digits > 0 ? Number(s) : undefined;
}

const coerceString: Coerce = (v) => {
  switch (typeof v) {
    case 'string':
      return v;
    case 'number':
    case 'bigint':
    case 'boolean':
      return String(v);
    default:
      if (v instanceof Date && !Number.isNaN(v.getTime())) return v.toISOString();
      throw expected('string', v);
  }
};

const coerceInt32: Coerce = (v) => {
  let n: number | undefined;
  if (typeof v === 'number') {
    if ((v | 0) === v) return v;
    n = v;
  } else if (typeof v === 'string') n = numberFrom(v);
  else if (typeof v === 'bigint') n = v >= -2147483648n && v <= 2147483647n ? Number(v) : Infinity;
  if (n === undefined) throw expected('int32', v);
  if ((n | 0) === n) return n;
  throw expected('int32', v, Number.isInteger(n) || !Number.isFinite(n) ? 'out of range' : 'not an integer');
};

function int64FromBig(b: bigint, v: unknown): number | bigint {
  if (b < MIN_I64 || b > MAX_I64) throw expected('int64', v, 'out of range');
  return b >= -MAX_SAFE && b <= MAX_SAFE ? Number(b) : b;
}

function int64FromNumber(n: number, v: unknown): number | bigint {
  if (Number.isSafeInteger(n)) return n;
  if (!Number.isFinite(n)) throw expected('int64', v, 'out of range');
  if (!Number.isInteger(n)) throw expected('int64', v, 'not an integer');
  return int64FromBig(BigInt(n), v);
}

const coerceInt64: Coerce = (v) => {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : int64FromNumber(v, v);
  if (typeof v === 'string') {
    if (INT_RE.test(v)) {
      const t = v.trim();
      const digits = t.length - (t.charCodeAt(0) === 43 || t.charCodeAt(0) === 45 ? 1 : 0);
      // Up to 15 digits always fits a double exactly; longer ones go through BigInt to keep every digit.
      return digits <= 15 ? Number(t) : int64FromBig(BigInt(t), v);
    }
    const n = numberFrom(v);
    if (n === undefined) throw expected('int64', v);
    return int64FromNumber(n, v);
  }
  if (typeof v === 'bigint') return int64FromBig(v, v);
  throw expected('int64', v);
};

function floatCoercer(type: 'float32' | 'float64'): Coerce {
  const single = type === 'float32';
  return (v) => {
    let n: number | undefined;
    if (typeof v === 'number') n = v;
    else if (typeof v === 'string') n = numberFrom(v);
    else if (typeof v === 'bigint') n = Number(v);
    if (n === undefined) throw expected(type, v);
    if (single && Number.isFinite(n) && Math.abs(n) > F32_MAX) throw expected(type, v, 'out of range');
    return n;
  };
}

const DEC_RE = /^\s*([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\s*$/;

/** Decimal text with exactly `scale` fraction digits (rounded half away from zero), checked against `precision`. */
function decimalCoercer(precision: number | undefined, scale: number | undefined): Coerce {
  const what = precision !== undefined ? `decimal(${precision},${scale ?? 0})` : 'decimal';
  return (v) => {
    let s: string;
    if (typeof v === 'string') s = v;
    else if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw expected(what, v);
      s = String(v);
    } else if (typeof v === 'bigint') s = v.toString();
    else throw expected(what, v);
    const m = DEC_RE.exec(s);
    if (!m || (m[2] === '' && (m[3] === undefined || m[3] === ''))) throw expected(what, v);
    const neg = m[1] === '-';
    let digits = m[2]! + (m[3] ?? '');
    const exp = m[4] ? Number(m[4]) : 0;
    if (Math.abs(exp) > 1000) throw expected(what, v, 'out of range');
    let point = m[2]!.length + exp;
    if (point < 0) {
      digits = '0'.repeat(-point) + digits;
      point = 0;
    } else if (point > digits.length) digits += '0'.repeat(point - digits.length);
    let int = digits.slice(0, point).replace(/^0+/, '');
    let frac = digits.slice(point);
    if (scale !== undefined) {
      if (frac.length > scale) {
        const up = frac.charCodeAt(scale) >= 53; /* '5' */
        frac = frac.slice(0, scale);
        if (up) [int, frac] = increment(int, frac);
      } else if (frac.length < scale) frac += '0'.repeat(scale - frac.length);
    }
    if (precision !== undefined && int.length > precision - (scale ?? 0)) throw expected(what, v, 'out of range');
    const zero = int === '' && /^0*$/.test(frac);
    const body = (int || '0') + (frac ? `.${frac}` : '');
    return neg && !zero ? `-${body}` : body;
  };
}

/** Add one unit in the last place of int.frac, carrying into the integer part. */
function increment(int: string, frac: string): [string, string] {
  const all = (int + frac).split('');
  let i = all.length - 1;
  for (; i >= 0; i--) {
    if (all[i] === '9') all[i] = '0';
    else {
      all[i] = String.fromCharCode(all[i]!.charCodeAt(0) + 1);
      break;
    }
  }
  let s = all.join('');
  if (i < 0) s = '1' + s;
  const cut = s.length - frac.length;
  return [s.slice(0, cut), s.slice(cut)];
}

const BOOLS = new Map<string, boolean>([
  ['true', true], ['false', false], ['1', true], ['0', false], ['yes', true], ['no', false], ['t', true], ['f', false],
]);

const coerceBoolean: Coerce = (v) => {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') {
    if (v === 1) return true;
    if (v === 0) return false;
  } else if (typeof v === 'string') {
    const b = BOOLS.get(v) ?? BOOLS.get(v.trim().toLowerCase());
    if (b !== undefined) return b;
  }
  throw expected('boolean', v);
};

// ---- timestamps and dates ------------------------------------------------------------------------------------

const ISO_RE =
  /^\s*(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?\s*$/;

function daysIn(y: number, m: number): number {
  return m === 2 ? (y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0) ? 29 : 28) : m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31;
}

/** Milliseconds for a UTC wall time, or undefined if any part is out of range. */
function utcMillis(y: number, mo: number, d: number, h: number, mi: number, s: number, ms: number): number | undefined {
  if (mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || s > 59) return undefined;
  if (y >= 100) return Date.UTC(y, mo - 1, d, h, mi, s, ms);
  // Date.UTC maps years 0-99 to 1900-1999.
  const t = new Date(Date.UTC(2000, mo - 1, d, h, mi, s, ms));
  t.setUTCFullYear(y);
  return t.getTime();
}

/** ISO-8601 date or date-time; no zone means UTC. Fractions past milliseconds are truncated. */
export function parseIsoTimestamp(s: string): number | undefined {
  const m = ISO_RE.exec(s);
  if (!m) return undefined;
  const ms = m[7] ? Number((m[7] + '00').slice(0, 3)) : 0;
  const t = utcMillis(+m[1]!, +m[2]!, +m[3]!, m[4] ? +m[4] : 0, m[5] ? +m[5] : 0, m[6] ? +m[6] : 0, ms);
  if (t === undefined) return undefined;
  if (m[9]) {
    const off = (+m[10]! * 60 + (m[11] ? +m[11] : 0)) * 60_000;
    return m[9] === '+' ? t - off : t + off;
  }
  return t;
}

const TOKENS: Record<string, string> = { YYYY: '(\\d{4})', MM: '(\\d{2})', DD: '(\\d{2})', HH: '(\\d{2})', mm: '(\\d{2})', ss: '(\\d{2})', SSS: '(\\d{3})' };

/** Compile a pattern such as `DD/MM/YYYY HH:mm:ss.SSS` (UTC) into a parser returning epoch milliseconds. */
function compilePattern(fmt: string): (s: string) => number | undefined {
  const order: string[] = [];
  let src = '^\\s*';
  let last = 0;
  const re = /YYYY|SSS|MM|DD|HH|mm|ss/g;
  for (let m = re.exec(fmt); m; m = re.exec(fmt)) {
    src += fmt.slice(last, m.index).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    src += TOKENS[m[0]];
    order.push(m[0]);
    last = m.index + m[0].length;
  }
  src += fmt.slice(last).replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '\\s*$';
  const rx = new RegExp(src);
  const at = (tok: string) => order.indexOf(tok) + 1;
  const iY = at('YYYY'), iM = at('MM'), iD = at('DD'), ih = at('HH'), im = at('mm'), is = at('ss'), iS = at('SSS');
  return (s) => {
    const m = rx.exec(s);
    if (!m) return undefined;
    const g = (i: number, dflt: number) => (i ? +m[i]! : dflt);
    return utcMillis(g(iY, 1970), g(iM, 1), g(iD, 1), g(ih, 0), g(im, 0), g(is, 0), g(iS, 0));
  };
}

function timestampCoercer(f: ItemSpec): Coerce {
  const unit = f.unit ?? 'ms';
  const mult = unit === 's' ? 1000 : unit === 'ms' ? 1 : unit === 'us' ? 1e-3 : 1e-6;
  const fmt = f.format ?? 'iso';
  const pattern = fmt !== 'iso' && fmt !== 'epoch' ? compilePattern(fmt) : undefined;
  const iso = fmt === 'iso';
  const what = `timestamp (${pattern ? `'${fmt}'` : iso ? 'ISO-8601' : 'epoch'}${iso || pattern ? ` or epoch ${unit}` : ` ${unit}`})`;
  const fromMillis = (ms: number, v: unknown): Date => {
    const d = new Date(ms);
    if (Number.isNaN(d.getTime())) throw expected(what, v, 'out of range');
    return d;
  };
  return (v) => {
    if (v instanceof Date) {
      if (Number.isNaN(v.getTime())) throw expected(what, v, 'invalid date');
      return v;
    }
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw expected(what, v);
      return fromMillis(v * mult, v);
    }
    if (typeof v === 'bigint') {
      // Scale in BigInt first: nanosecond epochs do not fit a double exactly.
      const ms = unit === 's' ? Number(v) * 1000 : unit === 'ms' ? Number(v) : Number(v / (unit === 'us' ? 1000n : 1_000_000n));
      return fromMillis(ms, v);
    }
    if (typeof v === 'string') {
      const t = pattern ? pattern(v) : iso ? parseIsoTimestamp(v) : undefined;
      if (t !== undefined) return new Date(t);
      if (NUM_RE.test(v)) return fromMillis(Number(v) * mult, v);
    }
    throw expected(what, v);
  };
}

function pad(n: number, w: number): string {
  return String(n).padStart(w, '0');
}

function dateCoercer(f: ItemSpec): Coerce {
  const pattern = f.format && f.format !== 'iso' ? compilePattern(f.format) : undefined;
  const what = `date (${pattern ? `'${f.format}'` : 'YYYY-MM-DD'})`;
  return (v) => {
    if (typeof v === 'string') {
      // The canonical form is checked by character codes: no match array for the common case.
      if (!pattern && v.length === 10 && v.charCodeAt(4) === 45 && v.charCodeAt(7) === 45) {
        const y = digitsAt(v, 0, 4), m = digitsAt(v, 5, 2), d = digitsAt(v, 8, 2);
        if (y >= 0 && m >= 0 && d >= 0) {
          if (m >= 1 && m <= 12 && d >= 1 && d <= daysIn(y, m)) return v;
          throw expected(what, v, 'no such day');
        }
      }
      let t: number | undefined;
      if (pattern) t = pattern(v);
      else {
        const m = /^\s*(\d{4})-(\d{1,2})-(\d{1,2})\s*$/.exec(v);
        if (m) t = utcMillis(+m[1]!, +m[2]!, +m[3]!, 0, 0, 0, 0);
        else if (ISO_RE.test(v)) throw expected(what, v, 'a timestamp; use type timestamp');
      }
      if (t !== undefined) return dateText(new Date(t));
      throw expected(what, v);
    }
    if (v instanceof Date && !Number.isNaN(v.getTime())) return dateText(v);
    throw expected(what, v);
  };
}

function digitsAt(s: string, at: number, n: number): number {
  let x = 0;
  for (let i = at; i < at + n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    x = x * 10 + c;
  }
  return x;
}

function dateText(d: Date): string {
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}`;
}

const B64_RE = /^(?:[A-Za-z0-9+/]*|[A-Za-z0-9_-]*)={0,2}$/;

const coerceBytes: Coerce = (v) => {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') {
    const s = v.trim();
    if (B64_RE.test(s) && s.replace(/=+$/, '').length % 4 !== 1) return Buffer.from(s, 'base64');
    throw expected('bytes (base64)', v);
  }
  throw expected('bytes (base64)', v);
};

function parseJsonText(v: string, open: string): unknown {
  const t = v.trim();
  if (t[0] !== open) return v;
  try {
    return JSON.parse(t);
  } catch {
    return v;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date) && !ArrayBuffer.isView(v);
}

function arrayCoercer(items: ItemSpec, policy: Policy): Coerce {
  const inner = buildCoercer(items, policy);
  const nullable = items.nullable !== false;
  const emptyIsNull = items.type !== 'string' && items.type !== 'json';
  const hasDefault = items.default !== undefined;
  return (v) => {
    const a = typeof v === 'string' ? parseJsonText(v, '[') : v;
    if (!Array.isArray(a)) throw expected('array', v);
    let i = 0;
    try {
      for (; i < a.length; i++) {
        const x: unknown = a[i];
        if (x === undefined || x === null || (x === '' && emptyIsNull)) {
          if (hasDefault) a[i] = items.default;
          else if (!nullable) throw new Mismatch(x === '' ? 'empty (not nullable)' : 'null (not nullable)');
          else if (x !== null) a[i] = null;
          continue;
        }
        if (inner !== undefined) {
          const y = inner(x);
          if (y !== x) a[i] = y;
        }
      }
    } catch (e) {
      if (e instanceof Mismatch) e.path = joinPath(`[${i}]`, e.path);
      throw e;
    }
    return a;
  };
}

function objectCoercer(fields: FieldSpec[], policy: Policy): Coerce {
  const c = compileObject(fields, [], policy, NO_NAMES);
  return (v) => {
    const o = typeof v === 'string' ? parseJsonText(v, '{') : v;
    if (!isPlainObject(o)) throw expected('object', v);
    return c.fit(o);
  };
}

/** The coercer for one type, or undefined when any value is accepted as-is (json). Throws Mismatch. */
const NO_NAMES: ReadonlySet<string> = new Set();

function buildCoercer(f: ItemSpec, policy: Policy): Coerce | undefined {
  switch (f.type) {
    case 'string':
      return coerceString;
    case 'int32':
      return coerceInt32;
    case 'int64':
      return coerceInt64;
    case 'float32':
    case 'float64':
      return floatCoercer(f.type);
    case 'decimal':
      // As in SQL, DECIMAL(p) means DECIMAL(p, 0).
      return decimalCoercer(f.precision, f.scale ?? (f.precision !== undefined ? 0 : undefined));
    case 'boolean':
      return coerceBoolean;
    case 'timestamp':
      return timestampCoercer(f);
    case 'date':
      return dateCoercer(f);
    case 'json':
      return undefined;
    case 'bytes':
      return coerceBytes;
    case 'array':
      return arrayCoercer(f.items ?? { type: 'json' }, policy);
    case 'object':
      return objectCoercer(f.fields ?? [], policy);
    default:
      throw new ConfigError([{ path: [], message: unknownTypeMessage(String(f.type)) }]);
  }
}

function compileObject(fields: FieldSpec[], pk: string[], policy: Policy, allow: ReadonlySet<string>): CompiledObject {
  const slots: Slot[] = [];
  const known = new Set<string>(allow);
  for (const f of fields) {
    known.add(f.name);
    // The runtime fills metadata fields from the record.
    if (f.metadata !== undefined) continue;
    const coerce = buildCoercer(f, policy);
    let def = f.default;
    if (def !== undefined && def !== null && coerce) {
      try {
        def = coerce(def);
      } catch (e) {
        if (e instanceof Mismatch) throw new ConfigError([{ path: ['fields', f.name, 'default'], message: `default does not fit: ${e.reason}` }]);
        throw e;
      }
    }
    slots.push({
      name: f.name,
      coerce,
      nullable: f.nullable !== false && !pk.includes(f.name),
      hasDefault: def !== undefined,
      def,
      cloneDefault: typeof def === 'object' && def !== null,
      emptyIsNull: f.type !== 'string' && f.type !== 'json',
      special: f.name in Object.prototype,
      unchanged: UNCHANGED[f.type],
      // The name is matched in the received text as written there, which needs it to look the same in JSON.
      keep: slots.length <= MAX_KEPT_INDEX && JSON.stringify(f.name) === `"${f.name}"` ? KEEP[f.type] : undefined,
    });
  }
  const c = { slots, policy, known, keep: [...known] } as CompiledObject;
  c.fit = compileFit(c);
  return c;
}

/**
 * A test on `v` (a present, non-empty value) that is true only where the field's coercer would return `v` itself:
 * the generated code then skips the call. Each one mirrors the first branch of its coercer above.
 */
const UNCHANGED: Partial<Record<FieldType, string>> = {
  string: "typeof v === 'string'",
  int32: "typeof v === 'number' && (v | 0) === v",
  int64: "typeof v === 'number' && Number.isSafeInteger(v)",
  float64: "typeof v === 'number'",
  boolean: "typeof v === 'boolean'",
};

const CHANGED = 'if (t !== undefined) t.changed = true;';

/**
 * `fit` for one object schema as generated straight-line code: one property read with a constant name and one coercer
 * call site per field. The generic loop reads `r[slot.name]` and calls `slot.coerce` from one place for every field,
 * which V8 can only treat as megamorphic; here each read and call sees one shape and one target, so they are inlined
 * (measured: validation about 3x faster on a 10-field row). Field names enter the code as JSON string literals only.
 */
function compileFit(c: CompiledObject): CompiledObject['fit'] {
  const body: string[] = ['let i = 0, v, o;', 'try {'];
  c.slots.forEach((s, k) => {
    const key = JSON.stringify(s.name);
    const set = (x: string) => (s.special ? `setField(r, S[${k}], ${x});` : `r[${key}] = ${x};`);
    body.push(`i = ${k};`);
    body.push(s.special ? `v = hasOwn.call(r, ${key}) ? r[${key}] : undefined;` : `v = r[${key}];`);
    body.push(`if (v === undefined || v === null${s.emptyIsNull ? " || v === ''" : ''}) {`);
    if (s.hasDefault) body.push(set(s.cloneDefault ? `structuredClone(S[${k}].def)` : `S[${k}].def`), CHANGED);
    else if (!s.nullable) body.push("throw new Mismatch(v === undefined ? 'missing (not nullable)' : v === null ? 'null (not nullable)' : 'empty (not nullable)');");
    else body.push(`if (v !== null) { ${set('null')} ${CHANGED} }`);
    if (s.coerce === undefined) body.push('}');
    else {
      body.push(s.unchanged ? `} else if (!(${s.unchanged})) {` : '} else {');
      body.push(`o = S[${k}].coerce(v);`, `if (o !== v) ${set('o')}`);
      // A numeric string may be written back as the received digits; any other coercion may have changed the value
      // (nested fields in place, too), so the row no longer matches its received text.
      if (s.keep) body.push(`if (t !== undefined) { if (o !== v && typeof v === 'string' && ${s.keep === 'int' ? 'keepInt' : 'keepFloat'}(v)) t.kept |= ${1 << k}; else t.changed = true; }`);
      else body.push(CHANGED);
      body.push('}');
    }
  });
  body.push('} catch (e) {', `if (e instanceof Mismatch && i < ${c.slots.length}) e.path = joinPath(S[i].name, e.path);`, 'throw e;', '}');
  body.push(c.policy === 'keep' ? 'return r;' : `const out = rest(c, r); if (out !== r) ${CHANGED} return out;`);
  const make = new Function('c', 'S', 'Mismatch', 'setField', 'hasOwn', 'joinPath', 'rest', 'keepInt', 'keepFloat', `"use strict"; return function fit(r, t) {\n${body.join('\n')}\n};`) as (
    ...a: unknown[]
  ) => CompiledObject['fit'];
  return make(c, c.slots, Mismatch, setField, Object.prototype.hasOwnProperty, joinPath, unknownFields, keepInt, keepFloat);
}

function setField(r: Record<string, unknown>, s: Slot, v: unknown): void {
  if (s.special) Object.defineProperty(r, s.name, { value: v, enumerable: true, writable: true, configurable: true });
  else r[s.name] = v;
}

/**
 * After the fields were coerced in place (`c.fit`, generated by compileFit): the unknown_fields policy. Returns `r`, or
 * a new object when unknown fields are dropped.
 */
function unknownFields(c: CompiledObject, r: Record<string, unknown>): Record<string, unknown> {
  if (c.policy === 'keep') return r;
  if (c.policy === 'error') {
    for (const k in r) {
      if (!c.known.has(k)) throw new Mismatch('not in the schema (unknown_fields: error)', k);
    }
    return r;
  }
  // A fresh object rather than `delete`, which would leave the row in slow dictionary mode.
  const o: Record<string, unknown> = {};
  for (const k of c.keep) {
    if (!Object.prototype.hasOwnProperty.call(r, k)) continue;
    if (k in Object.prototype) Object.defineProperty(o, k, { value: r[k], enumerable: true, writable: true, configurable: true });
    else o[k] = r[k];
  }
  return o;
}

export interface CompileOptions {
  /** Field names that are not in the schema but are never unknown (metadata fields the runtime adds). */
  allow?: Iterable<string>;
}

/**
 * Compile a schema into a function that checks and coerces one decoded row. For speed it changes the row in place
 * and returns that same object (a new one only with `unknown_fields: drop`); callers must not rely on the input
 * staying as it was. Throws RecordError('SCHEMA', ..., fieldPath) for a row that does not fit, and ConfigError for a
 * schema that is itself invalid. Fields with `metadata` are skipped: the runtime fills them.
 */
/** A compiled schema: fits a row; with a trace, also says what it changed (FitTrace). */
export interface CompiledSchema {
  (row: unknown, trace?: FitTrace): Record<string, unknown>;
  /** The field a bit of FitTrace.kept stands for, by bit index. */
  readonly keptFields: readonly string[];
}

export function compileSchema(spec: SchemaSpec, opts: CompileOptions = {}): CompiledSchema {
  const allow = new Set(opts.allow ?? []);
  const c = compileObject(spec.fields, spec.primary_key ?? [], spec.unknown_fields ?? 'keep', allow);
  const fit = (row: unknown, trace?: FitTrace) => {
    if (!isPlainObject(row)) throw new RecordError('SCHEMA', `expected a row (an object), got ${describe(row)}`);
    if (trace) {
      trace.changed = false;
      trace.kept = 0;
    }
    try {
      return c.fit(row, trace);
    } catch (e) {
      if (e instanceof Mismatch) throw new RecordError('SCHEMA', e.reason, e.path || undefined);
      throw e;
    }
  };
  return Object.assign(fit, { keptFields: c.slots.map((x) => x.name) });
}

// ---- inference -----------------------------------------------------------------------------------------------

type Kind = 'null' | 'int' | 'float' | 'bool' | 'timestamp' | 'date' | 'string' | 'bytes' | 'json' | 'array';

interface Inferred {
  kind: Kind;
  /** For arrays; undefined while only empty arrays were seen, `false` once elements disagree. */
  items?: Inferred | false;
}

const PRIMITIVE = new Set<Kind>(['int', 'float', 'bool', 'timestamp', 'date', 'string']);
const ISO_DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;

function kindOf(v: unknown, parseStrings: boolean): Inferred {
  switch (typeof v) {
    case 'undefined':
      return { kind: 'null' };
    case 'boolean':
      return { kind: 'bool' };
    case 'number':
      return { kind: Number.isInteger(v) ? 'int' : 'float' };
    case 'bigint':
      return { kind: 'int' };
    case 'string': {
      if (parseStrings) {
        if (v === '') return { kind: 'null' };
        if (INT_RE.test(v)) return { kind: 'int' };
        if (NUM_RE.test(v)) return { kind: 'float' };
        if (v === 'true' || v === 'false') return { kind: 'bool' };
      }
      if (v.length >= 10 && v.length <= 40 && parseIsoTimestamp(v) !== undefined) return { kind: ISO_DATE_ONLY.test(v.trim()) ? 'date' : 'timestamp' };
      return { kind: 'string' };
    }
    case 'object': {
      if (v === null) return { kind: 'null' };
      if (v instanceof Date) return { kind: 'timestamp' };
      if (ArrayBuffer.isView(v)) return { kind: 'bytes' };
      if (Array.isArray(v)) {
        let items: Inferred | false | undefined;
        for (const x of v) {
          const k = kindOf(x, parseStrings);
          if (k.kind === 'null') continue;
          items = items === undefined ? k : items === false ? false : merge(items, k, true);
          if (items === false) break;
        }
        return { kind: 'array', items };
      }
      return { kind: 'json' };
    }
    default:
      return { kind: 'json' };
  }
}

/** The type covering both; `strict` (array elements) gives false instead of widening unlike kinds to string/json. */
function merge(a: Inferred, b: Inferred, strict: boolean): Inferred | false {
  if (a.kind === 'null') return b;
  if (b.kind === 'null') return a;
  if (a.kind === b.kind) {
    if (a.kind !== 'array') return a;
    if (a.items === undefined) return b;
    if (b.items === undefined || a.items === false) return a;
    if (b.items === false) return b;
    return { kind: 'array', items: merge(a.items, b.items, true) };
  }
  const pair = new Set([a.kind, b.kind]);
  if (pair.has('int') && pair.has('float')) return { kind: 'float' };
  if (pair.has('date') && pair.has('timestamp')) return { kind: 'timestamp' };
  if (strict) return false;
  return { kind: PRIMITIVE.has(a.kind) && PRIMITIVE.has(b.kind) ? 'string' : 'json' };
}

function toSpec(i: Inferred): ItemSpec {
  switch (i.kind) {
    case 'int':
      return { type: 'int64' };
    case 'float':
      return { type: 'float64' };
    case 'bool':
      return { type: 'boolean' };
    case 'timestamp':
    case 'date':
    case 'string':
    case 'bytes':
      return { type: i.kind };
    case 'array':
      if (i.items === false) return { type: 'json' };
      return { type: 'array', items: i.items === undefined ? { type: 'json' } : toSpec(i.items) };
    default:
      return { type: 'json' };
  }
}

export interface InferOptions {
  /** Rows looked at; default 1000. */
  maxRows?: number;
  /** Read numbers, booleans and '' (null) out of strings — for CSV samples, where every value is text. */
  parseStrings?: boolean;
}

/**
 * A schema that fits a sample of rows. Integers become int64, other numbers float64, ISO-8601 strings timestamp (or
 * date when there is no time part), objects json, uniform arrays array<items>. A field missing or null in any row is
 * nullable; the rest are NOT NULL. Unlike kinds widen to string (all primitives) or json. Order is first appearance.
 */
export function inferSchema(rows: unknown[], opts: InferOptions = {}): SchemaSpec {
  const max = opts.maxRows ?? 1000;
  const parseStrings = opts.parseStrings ?? false;
  const seen = new Map<string, { t: Inferred; present: number; nulls: number }>();
  let objects = 0;
  for (let r = 0; r < rows.length && r < max; r++) {
    const row = rows[r];
    if (!isPlainObject(row)) continue;
    objects++;
    for (const [k, v] of Object.entries(row)) {
      const t = kindOf(v, parseStrings);
      let e = seen.get(k);
      if (!e) seen.set(k, (e = { t: { kind: 'null' }, present: 0, nulls: 0 }));
      e.present++;
      if (t.kind === 'null') e.nulls++;
      else e.t = merge(e.t, t, false) as Inferred;
    }
  }
  const fields: FieldSpec[] = [];
  for (const [name, e] of seen) {
    fields.push({ name, ...toSpec(e.t), nullable: e.nulls > 0 || e.present < objects });
  }
  return { fields };
}

// ---- output --------------------------------------------------------------------------------------------------

function jsonValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return v.toISOString();
  if (ArrayBuffer.isView(v)) return toBase64(v);
  if (Array.isArray(v)) return v.map(jsonValue);
  if (isPlainObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonValue(x)]));
  return v;
}

function fieldJson(f: ItemSpec & { name?: string }): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (f.name !== undefined) o.name = f.name;
  o.type = f.type;
  if (f.nullable !== undefined) o.nullable = f.nullable;
  if (f.default !== undefined) o.default = jsonValue(f.default);
  if (f.format !== undefined) o.format = f.format;
  if (f.unit !== undefined) o.unit = f.unit;
  if (f.precision !== undefined) o.precision = f.precision;
  if (f.scale !== undefined) o.scale = f.scale;
  if (f.items !== undefined) o.items = fieldJson(f.items);
  if (f.fields !== undefined) o.fields = f.fields.map(fieldJson);
  if (f.metadata !== undefined) o.metadata = f.metadata;
  return o;
}

/** The schema as plain JSON-compatible data in our own shape; `parseSchemaConfig` reads it back unchanged. */
export function schemaToJson(spec: SchemaSpec): Record<string, unknown> {
  const o: Record<string, unknown> = { fields: spec.fields.map(fieldJson) };
  if (spec.primary_key?.length) o.primary_key = [...spec.primary_key];
  if (spec.unknown_fields !== undefined) o.unknown_fields = spec.unknown_fields;
  return o;
}

function typeText(f: ItemSpec): string {
  switch (f.type) {
    case 'decimal':
      return f.precision !== undefined ? `decimal(${f.precision},${f.scale ?? 0})` : 'decimal';
    case 'array':
      return `array<${typeText(f.items ?? { type: 'json' })}>`;
    case 'object':
      return `object<${(f.fields ?? []).map((x) => `${x.name} ${typeText(x)}`).join(', ')}>`;
    default:
      return f.type;
  }
}

/** One line for CLI output: `id int64 NOT NULL, name string, ts timestamp, PRIMARY KEY (id)`. */
export function describeSchema(spec: SchemaSpec): string {
  const pk = spec.primary_key ?? [];
  const parts = spec.fields.map((f) => {
    let s = `${f.name} ${typeText(f)}`;
    if (f.nullable === false || pk.includes(f.name)) s += ' NOT NULL';
    if (f.metadata !== undefined) s += ` METADATA FROM '${f.metadata}'`;
    return s;
  });
  if (pk.length) parts.push(`PRIMARY KEY (${pk.join(', ')})`);
  return parts.join(', ');
}
