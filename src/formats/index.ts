// The format registry: names, options and factories of every payload format.

import { parseOptions, type AnyObject } from '../core/spec.js';
import { ConfigError, SluiceError, type ConfigIssue } from '../core/errors.js';
import type { Format, SchemaSpec } from '../core/types.js';
import { suggest } from '../core/units.js';
import { jsonFormat, jsonOptions, type JsonOptions } from './json.js';
import type { TextOptions } from './text.js';
import type { BytesOptions } from './bytes.js';
import type { CsvOptions } from './csv.js';
import type { AvroOptions } from './avro.js';
import type { ProtobufOptions } from './protobuf.js';
import type { ParquetOptions } from './parquet.js';
import type { DebeziumOptions } from './debezium.js';
import { NotLoadedError, onDemand } from '../core/loading.js';

export { stringifyJson } from './json.js';

/** A format chosen in configuration: canonical name and its validated options (defaults filled in). */
export interface FormatSpec {
  name: string;
  options: Record<string, unknown>;
}

export interface FormatDefinition extends FormatLine, FormatImpl {}

/** What a format's module provides: its options schema and its factory. */
export interface FormatImpl {
  /** A zod strictObject; its `.meta()` descriptions and aliases feed docs and `sluice formats`. */
  options: AnyObject;
  /** `options` has been parsed by the `options` schema. */
  create(options: Record<string, unknown>, schema?: SchemaSpec): Format;
}

interface FormatLine {
  name: string;
  aliases: string[];
  description: string;
  /** Only usable on a sink (it cannot decode) / on a source (it cannot encode). */
  encodeOnly?: boolean;
  decodeOnly?: boolean;
  /** The format's module, loaded on first use (JSON is always loaded: the runtime and probes use it directly). */
  load(): Promise<FormatImpl>;
}

const jsonImpl: FormatImpl = { options: jsonOptions as AnyObject, create: (o) => jsonFormat(o as unknown as JsonOptions) };

// One row per format. New formats (avro, protobuf, parquet, debezium-json) are added here and nowhere else.
export const FORMATS: readonly FormatLine[] = [
  {
    name: 'json',
    aliases: ['jsonl', 'ndjson', 'json_lines'],
    description: 'JSON objects: one per message, a JSON array of them, or newline-delimited JSON (one per line).',
    load: async () => jsonImpl,
  },
  {
    name: 'text',
    aliases: ['string'],
    description: 'Each message (or each line) as one string column named `value`.',
    load: async () => {
      const m = await import('./text.js');
      return { options: m.textOptions as AnyObject, create: (o) => m.textFormat(o as unknown as TextOptions) };
    },
  },
  {
    name: 'bytes',
    aliases: ['raw', 'binary'],
    description: 'Each message as one binary column named `value`, passed through untouched.',
    load: async () => {
      const m = await import('./bytes.js');
      return { options: m.bytesOptions as AnyObject, create: (o) => m.bytesFormat(o as unknown as BytesOptions) };
    },
  },
  {
    name: 'csv',
    aliases: [],
    description: 'Comma-separated values with an optional header row; fields decode as strings.',
    load: async () => {
      const m = await import('./csv.js');
      return { options: m.csvOptions as AnyObject, create: (o, schema) => m.csvFormat(o as unknown as CsvOptions, schema) };
    },
  },
  {
    name: 'avro',
    aliases: [],
    description: 'Avro binary: raw with an inline schema, or the Confluent wire format with a schema registry.',
    load: async () => {
      const m = await import('./avro.js');
      return { options: m.avroOptions as unknown as AnyObject, create: (o, schema) => m.avroFormat(o as unknown as AvroOptions, schema) };
    },
  },
  {
    name: 'protobuf',
    aliases: ['proto', 'protobuf_binary'],
    description: 'Protocol Buffers messages of one type from a .proto definition, raw or in the Confluent wire format with a schema registry.',
    load: async () => {
      const m = await import('./protobuf.js');
      return { options: m.protobufOptions as unknown as AnyObject, create: (o) => m.protobufFormat(o as unknown as ProtobufOptions) };
    },
  },
  {
    name: 'parquet',
    aliases: ['pq'],
    description: 'Apache Parquet files: a whole file decodes to its rows; a sink writes each batch as one complete file.',
    load: async () => {
      const m = await import('./parquet.js');
      return { options: m.parquetOptions as unknown as AnyObject, create: (o, schema) => m.parquetFormat(o as unknown as ParquetOptions, schema) };
    },
  },
  {
    name: 'debezium-json',
    aliases: ['debezium_json', 'debezium'],
    description: "Debezium JSON change events (with or without the schema/payload wrapper): the row after a change (before it, for deletes) plus __op, __table, __db, __source_ts_ms and __ts_ms.",
    load: async () => {
      const m = await import('./debezium.js');
      return { options: m.debeziumOptions as AnyObject, create: (o, schema) => m.debeziumFormat(o as unknown as DebeziumOptions, false, schema) };
    },
  },
  {
    name: 'debezium-json-upsert',
    aliases: ['debezium_json_upsert', 'debezium_upsert'],
    description: "Debezium JSON change events as upserts: c/u/r give the new row, d and tombstones a delete marker (key columns, __op: 'd', __deleted: true).",
    load: async () => {
      const m = await import('./debezium.js');
      return { options: m.debeziumOptions as AnyObject, create: (o, schema) => m.debeziumFormat(o as unknown as DebeziumOptions, true, schema) };
    },
  },
];

const definitions = onDemand((line: FormatLine) => line.load().then((impl): FormatDefinition => ({ ...line, ...impl })));
const load = definitions.load;

// JSON's module is imported above anyway; its definition is ready before any caller asks.
const jsonLine = FORMATS.find((f) => f.name === 'json')!;
definitions.preset(jsonLine, { ...jsonLine, ...jsonImpl });

/** Loads the formats with these names or aliases (every format when none are given); other strings are ignored. */
export async function loadFormats(names?: Iterable<string>): Promise<void> {
  const lines = names === undefined ? FORMATS : [...new Set([...names].flatMap((n) => lineOf(n) ?? []))];
  await Promise.all(lines.map(load));
}

/** Every format, loaded, in the table's order (for listings and docs). */
export async function allFormats(): Promise<FormatDefinition[]> {
  return Promise.all(FORMATS.map(load));
}

function lineOf(name: string): FormatLine | undefined {
  const n = looseName(name);
  return FORMATS.find((f) => looseName(f.name) === n || f.aliases.some((a) => looseName(a) === n));
}

/**
 * The definition for a name or alias, case-insensitively; undefined for an unknown name. A known format that is not
 * loaded yet throws a NotLoadedError (see loadFormats and whenLoaded).
 */
export function findFormat(name: string): FormatDefinition | undefined {
  const line = lineOf(name);
  if (!line) return undefined;
  const def = definitions.get(line);
  if (!def) throw new NotLoadedError(`format '${line.name}'`, () => load(line));
  return def;
}

// `JSON`, `json-lines` and `json_lines` all name the same format.
const looseName = (s: string) => s.trim().toLowerCase().replace(/[-_\s]/g, '');

export function formatNames(): string[] {
  return FORMATS.map((f) => f.name);
}

function unknownFormat(name: string, path: (string | number)[]): ConfigIssue {
  const all = FORMATS.flatMap((f) => [f.name, ...f.aliases]);
  const hint = suggest(name, all);
  return {
    path,
    message: `unknown format '${name}'${hint ? `; did you mean '${hint}'?` : ''} (known formats: ${formatNames().join(', ')})`,
  };
}

/**
 * Read the `format:` key. Accepts a name (`json`), a name with options side by side (`{name: csv, delimiter: ';'}`)
 * and Arroyo/Laminar's single-key shape (`{csv: {delimiter: ';'}}`). Issue paths are relative to `path`.
 */
export function parseFormatConfig(
  input: unknown,
  path: (string | number)[] = [],
): { ok: true; value: FormatSpec } | { ok: false; issues: ConfigIssue[] } {
  let name: string;
  let options: unknown;
  let namePath = path;
  let optionsPath = path;
  if (typeof input === 'string') {
    name = input;
    options = {};
  } else if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    const obj = input as Record<string, unknown>;
    const keys = Object.keys(obj);
    if ('name' in obj) {
      if (typeof obj.name !== 'string') return fail([{ path: [...path, 'name'], message: 'format name must be a string' }]);
      name = obj.name;
      const { name: _n, ...rest } = obj;
      options = rest;
      namePath = [...path, 'name'];
    } else if (keys.length === 1) {
      const key = keys[0]!;
      const v = obj[key];
      if (v !== null && v !== undefined && (typeof v !== 'object' || Array.isArray(v))) {
        // `{delimiter: ';'}` alone: options without a name, not Arroyo's `{csv: {...}}`.
        return fail([{ path, message: `format needs a name: write 'json', {name: csv, ${key}: ...} or {csv: {${key}: ...}}` }]);
      }
      name = key;
      options = v ?? {};
      namePath = [...path, key];
      optionsPath = [...path, key];
    } else {
      return fail([
        {
          path,
          message:
            keys.length === 0
              ? 'format is empty: give a name such as json or csv'
              : `format needs a 'name' key (or a single key naming the format, e.g. {csv: {delimiter: ';'}})`,
        },
      ]);
    }
  } else {
    return fail([{ path, message: `format must be a name such as 'json' or a map, got ${input === null ? 'null' : typeof input}` }]);
  }
  const def = findFormat(name);
  if (!def) return fail([unknownFormat(name, namePath)]);
  const r = parseOptions(def.options, options, optionsPath);
  if (!r.ok) return r;
  return { ok: true, value: { name: def.name, options: r.value as Record<string, unknown> } };
}

function fail(issues: ConfigIssue[]): { ok: false; issues: ConfigIssue[] } {
  return { ok: false, issues };
}

/**
 * The format for a spec. Options are validated again (cheaply, once) so hand-built specs get their defaults; bad
 * options throw a ConfigError. The schema lets CSV name headerless columns and order encoded columns.
 */
export function createFormat(spec: FormatSpec, schema?: SchemaSpec): Format {
  const def = findFormat(spec.name);
  if (!def) throw new ConfigError([unknownFormat(spec.name, [])]);
  const r = parseOptions(def.options, spec.options ?? {});
  if (!r.ok) throw new ConfigError(r.issues);
  const format = def.create(r.value as Record<string, unknown>, schema);
  if (!def.encodeOnly && !def.decodeOnly) return format;
  return {
    name: format.name,
    decoder: () => {
      if (def.encodeOnly) throw new SluiceError('CONFIG', `format '${def.name}' can only be written (use it on a sink)`);
      return format.decoder();
    },
    encoder: () => {
      if (def.decodeOnly) throw new SluiceError('CONFIG', `format '${def.name}' can only be read (use it on a source)`);
      return format.encoder();
    },
  };
}

export type { JsonOptions, TextOptions, BytesOptions, CsvOptions };
