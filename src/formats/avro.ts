// Avro binary through avsc: raw (an inline schema) or in the Confluent wire format with a schema registry.
//
// Values are turned into the row types the rest of Sluice uses: long -> number when it is a safe integer and BigInt
// otherwise (never a silent precision loss), timestamps -> Date, date -> 'YYYY-MM-DD', decimal -> exact decimal text,
// bytes -> Buffer, unions unwrapped to their value.

import { createRequire } from 'node:module';
import type * as Avsc from 'avsc';
import { z } from '../core/spec.js';
import { RecordError, SluiceError, errorMessage } from '../core/errors.js';
import type { Decoder, Encoder, FieldSpec, SchemaSpec } from '../core/types.js';
import { encodeLengthDelimited } from './framing.js';
import { MAX_JSON_DEPTH, stringifyJson } from './json.js';
import {
  asBytes,
  readSchemaId,
  registryOptionProblems,
  registryOptionShape,
  fetchUnknownIds,
  IdFailures,
  SchemaRegistryClient,
  subjectFor,
  topicEncoders,
  unknownIds,
  writeHeader,
  type PreparedFormat,
  type RegistryOptions,
} from './registry.js';
import { asBuffer, describeValue, nestedDeeperThan } from './util.js';

const schemaOption = z.union([z.string().min(1), z.record(z.string(), z.unknown()), z.array(z.unknown())]);

export const avroOptions = z
  .strictObject({
    schema: z
      .optional(schemaOption)
      .meta({
        description:
          'Avro schema as JSON (a string or a map). Without a registry it is the schema of every message. With a registry it is the schema written by a sink, and the reader schema a source resolves each writer schema to. When unset, a sink derives a record schema from the pipeline schema (or uses the latest registered version of the subject).',
        aliases: ['avro_schema', 'reader_schema', 'schema_json'],
      }),
    record_name: z.string().min(1).default('Row').meta({
      description: 'Name (optionally namespace-qualified, `com.acme.Trade`) of the record schema derived from the pipeline schema.',
    }),
    ...registryOptionShape,
  })
  .superRefine((o, ctx) => {
    for (const message of registryOptionProblems(o as RegistryOptions)) ctx.addIssue({ code: 'custom', message, path: [] });
    if (o.schema !== undefined) {
      try {
        parseAvroSchema(o.schema);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: errorMessage(e), path: ['schema'] });
      }
    }
    if (o.confluent_wire_format === false && o.schema === undefined) {
      ctx.addIssue({ code: 'custom', message: 'raw Avro (confluent_wire_format: false) needs an inline schema', path: ['schema'] });
    }
  });

export interface AvroOptions extends RegistryOptions {
  schema?: string | Record<string, unknown> | unknown[];
  record_name: string;
}

// ---- avsc types ----------------------------------------------------------------------------------------------

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

type AvroType = Avsc.Type;
interface LogicalBase {
  readonly underlyingType: AvroType;
  readonly typeName: string;
}

// avsc is CommonJS; it is required on first use, synchronously, because schemas are checked while options are
// validated and formats are created synchronously. Its long and logical types extend avsc classes, so they are
// defined then too.
const require = createRequire(import.meta.url);

interface AvscTypes {
  avro: typeof Avsc;
  Int64: AvroType;
  logicalTypes: Record<string, new (schema: Avsc.Schema, opts?: unknown) => Avsc.types.LogicalType>;
}

let loaded: AvscTypes | undefined;

function avsc(): AvscTypes {
  return (loaded ??= defineTypes(require('avsc') as typeof Avsc));
}

function defineTypes(avro: typeof Avsc): AvscTypes {
  guardBlockCounts(avro);
  /** int64 with full precision: a number while it is a safe integer, a BigInt beyond. */
  const Int64 = avro.types.LongType.__with({
    fromBuffer(b: Buffer) {
      const v = b.readBigInt64LE(0);
      return v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : v;
    },
    toBuffer(v: number | bigint) {
      const b = Buffer.allocUnsafe(8);
      b.writeBigInt64LE(typeof v === 'bigint' ? v : BigInt(v), 0);
      return b;
    },
    fromJSON(v: unknown) {
      if (typeof v === 'string') {
        const b = BigInt(v);
        return b >= MIN_SAFE && b <= MAX_SAFE ? Number(b) : b;
      }
      return v;
    },
    toJSON(v: number | bigint) {
      return typeof v === 'bigint' ? v.toString() : v;
    },
    isValid(v: unknown) {
      if (typeof v === 'number') return Number.isSafeInteger(v);
      return typeof v === 'bigint' && v >= I64_MIN && v <= I64_MAX;
    },
    compare(a: number | bigint, b: number | bigint) {
      return a < b ? -1 : a > b ? 1 : 0;
    },
  });

  const LogicalType = avro.types.LogicalType as unknown as new (schema: unknown, opts?: unknown) => LogicalBase;

  function toMillis(v: unknown): number | undefined {
    if (v instanceof Date) return Number.isNaN(v.getTime()) ? undefined : v.getTime();
    if (typeof v === 'number') return Number.isFinite(v) ? Math.trunc(v) : undefined;
    if (typeof v === 'bigint') return Number(v);
    if (typeof v === 'string') {
      const t = Date.parse(v);
      return Number.isNaN(t) ? undefined : t;
    }
    return undefined;
  }

  /** The writer type is `kind` itself (already converted) or its underlying primitive (convert on read). */
  function resolveLogical(self: { _fromValue(v: unknown): unknown }, writer: AvroType, same: (w: AvroType) => boolean, base: string[]) {
    if (same(writer)) return (v: unknown) => v;
    if (base.includes(writer.typeName) || (writer.typeName === 'abstract:long' && base.includes('long'))) return (v: unknown) => self._fromValue(v);
    return undefined;
  }

  class TimestampMillis extends LogicalType {
    _fromValue(v: number | bigint) {
      return new Date(Number(v));
    }
    _toValue(v: unknown) {
      return toMillis(v);
    }
    _resolve(t: AvroType) {
      return resolveLogical(this, t, (w) => w instanceof TimestampMillis, ['long', 'int']);
    }
  }

  class TimestampMicros extends LogicalType {
    _fromValue(v: number | bigint) {
      // A Date holds milliseconds; the microseconds below them are dropped (floor, so ordering is kept).
      return new Date(typeof v === 'bigint' ? Number(v / 1000n) - (v % 1000n < 0n ? 1 : 0) : Math.floor(v / 1000));
    }
    _toValue(v: unknown) {
      if (typeof v === 'bigint') return v;
      const ms = toMillis(v);
      return ms === undefined ? undefined : ms * 1000;
    }
    _resolve(t: AvroType) {
      return resolveLogical(this, t, (w) => w instanceof TimestampMicros, ['long']);
    }
  }

  const DAY = 86_400_000;

  class DateType extends LogicalType {
    _fromValue(days: number) {
      return new Date(days * DAY).toISOString().slice(0, 10);
    }
    _toValue(v: unknown) {
      if (typeof v === 'number') return Number.isInteger(v) ? v : undefined;
      if (v instanceof Date) return Number.isNaN(v.getTime()) ? undefined : Math.floor(v.getTime() / DAY);
      if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(v)) {
        const t = Date.parse(v + 'T00:00:00Z');
        return Number.isNaN(t) ? undefined : t / DAY;
      }
      return undefined;
    }
    _resolve(t: AvroType) {
      return resolveLogical(this, t, (w) => w instanceof DateType, ['int']);
    }
  }

  /** Decimal as exact text with `scale` fraction digits, stored as a big-endian two's-complement unscaled integer. */
  class DecimalType extends LogicalType {
    private readonly scale: number;
    private readonly precision: number;
    private readonly size: number | undefined;
    constructor(schema: { precision?: number; scale?: number; size?: number }, opts?: unknown) {
      super(schema, opts);
      this.precision = schema.precision ?? 0;
      this.scale = schema.scale ?? 0;
      this.size = schema.size;
    }
    _fromValue(b: Buffer) {
      let n = 0n;
      for (let i = 0; i < b.length; i++) n = (n << 8n) | BigInt(b[i]!);
      if (b.length && b[0]! & 0x80) n -= 1n << BigInt(b.length * 8);
      const neg = n < 0n;
      let s = (neg ? -n : n).toString();
      if (this.scale > 0) {
        s = s.padStart(this.scale + 1, '0');
        s = s.slice(0, s.length - this.scale) + '.' + s.slice(s.length - this.scale);
      }
      return neg ? '-' + s : s;
    }
    _toValue(v: unknown) {
      const n = unscaled(v, this.scale);
      if (n === undefined) return undefined;
      if (this.precision > 0 && (n < 0n ? -n : n).toString().length > this.precision) return undefined;
      let len = 1;
      while (n >= 1n << BigInt(len * 8 - 1) || n < -(1n << BigInt(len * 8 - 1))) len++;
      if (this.size !== undefined) {
        if (len > this.size) return undefined;
        len = this.size;
      }
      const out = Buffer.allocUnsafe(len);
      let x = n < 0n ? (1n << BigInt(len * 8)) + n : n;
      for (let i = len - 1; i >= 0; i--) {
        out[i] = Number(x & 0xffn);
        x >>= 8n;
      }
      return out;
    }
    _resolve(t: AvroType) {
      return resolveLogical(this, t, (w) => w instanceof DecimalType && (w as unknown as DecimalType).scale === this.scale, ['bytes', 'fixed']);
    }
    _export(attrs: Record<string, unknown>) {
      attrs.precision = this.precision;
      attrs.scale = this.scale;
    }
  }

  /** `value * 10^scale` as an exact integer, from decimal text, a number or a BigInt; undefined when it is not exact. */
  function unscaled(v: unknown, scale: number): bigint | undefined {
    if (typeof v === 'bigint') return v * 10n ** BigInt(scale);
    let s: string;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return undefined;
      s = String(v);
    } else if (typeof v === 'string') s = v.trim();
    else return undefined;
    const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(s);
    if (!m || (!m[2] && !m[3])) return undefined;
    let digits = (m[2] ?? '') + (m[3] ?? '');
    const point = (m[2] ?? '').length + (m[4] ? Number(m[4]) : 0) + scale;
    if (point < 0) return /^0*$/.test(digits) ? 0n : undefined;
    if (point < digits.length) {
      // Digits below the scale must be zeros: rounding would change the value silently.
      if (!/^0*$/.test(digits.slice(point))) return undefined;
      digits = digits.slice(0, point);
    } else digits += '0'.repeat(point - digits.length);
    const n = BigInt(digits || '0');
    return m[1] === '-' ? -n : n;
  }

  /** Any JSON value stored as a string (the `json` schema type); other Avro readers see plain JSON text. */
  class JsonText extends LogicalType {
    _fromValue(s: string) {
      try {
        return JSON.parse(s);
      } catch {
        return s;
      }
    }
    _toValue(v: unknown) {
      // null belongs to the union's null branch (a nullable field); matching it here too would make the union ambiguous.
      return v === undefined || v === null ? undefined : stringifyJson(v);
    }
    _resolve(t: AvroType) {
      return resolveLogical(this, t, (w) => w instanceof JsonText, ['string']);
    }
  }

  const LOGICAL_TYPES = {
    'timestamp-millis': TimestampMillis,
    'local-timestamp-millis': TimestampMillis,
    'timestamp-micros': TimestampMicros,
    'local-timestamp-micros': TimestampMicros,
    date: DateType,
    decimal: DecimalType,
    json: JsonText,
  } as unknown as AvscTypes['logicalTypes'];

  return { avro, Int64: Int64 as unknown as AvroType, logicalTypes: LOGICAL_TYPES };
}

interface Tap {
  buf: Buffer;
  pos: number;
  readLong(): number;
  skipLong(): void;
  readString(): string;
}
interface BlockType {
  itemsType?: AvroType;
  valuesType?: AvroType;
}

/**
 * avsc reads an array or map block by looping over the item count the data claims, even past the end of the buffer: a
 * corrupt message of a few bytes claiming two billion items kept a decoder busy and allocating until the process ran
 * out of memory. A block cannot hold more items than the bytes left can encode (each at least `minBytes` long), so a
 * larger count marks the read invalid at once and the message is reported as truncated or corrupt.
 */
function guardBlockCounts(avro: typeof Avsc): void {
  const proto = (t: unknown) => (t as { prototype: { _read(this: BlockType, tap: Tap): unknown } }).prototype;
  const invalid = (tap: Tap) => void (tap.pos = tap.buf.length + 1);
  const blockSize = (tap: Tap) => {
    let n = tap.readLong();
    if (n < 0) {
      n = -n;
      tap.skipLong();
    }
    return n;
  };
  const fits = (tap: Tap, n: number, item: AvroType, key: number) => {
    const each = minBytes(item) + key;
    return tap.pos <= tap.buf.length && (each === 0 ? n <= MAX_EMPTY_ITEMS : n <= (tap.buf.length - tap.pos) / each);
  };
  proto(avro.types.ArrayType)._read = function (tap) {
    const items = this.itemsType as unknown as { _read(tap: Tap): unknown };
    const val: unknown[] = [];
    let n: number;
    while ((n = blockSize(tap))) {
      if (!fits(tap, n, this.itemsType!, 0)) {
        invalid(tap);
        return val;
      }
      while (n--) val.push(items._read(tap));
    }
    return val;
  };
  proto(avro.types.MapType)._read = function (tap) {
    const values = this.valuesType as unknown as { _read(tap: Tap): unknown };
    const val: Record<string, unknown> = {};
    let n: number;
    while ((n = blockSize(tap))) {
      if (!fits(tap, n, this.valuesType!, 1)) {
        invalid(tap);
        return val;
      }
      while (n--) {
        const key = tap.readString();
        val[key] = values._read(tap);
      }
    }
    return val;
  };
}

/** Items that encode to no bytes at all (null, empty records) have no byte bound; this many per block is plenty. */
const MAX_EMPTY_ITEMS = 1_000_000;

/** The fewest bytes a value of this type encodes to. */
function minBytes(t: AvroType, seen = new Set<AvroType>()): number {
  const any = t as unknown as { typeName: string; fields?: { type: AvroType }[]; size?: number; underlyingType?: AvroType };
  if (any.underlyingType) return minBytes(any.underlyingType, seen);
  switch (any.typeName) {
    case 'null':
      return 0;
    case 'float':
      return 4;
    case 'double':
      return 8;
    case 'fixed':
      return any.size ?? 0;
    case 'record':
    case 'error': {
      if (seen.has(t)) return 0;
      seen.add(t);
      let n = 0;
      for (const f of any.fields ?? []) n += minBytes(f.type, seen);
      return n;
    }
    default:
      // boolean, int, long, string, bytes, enum, union index, array and map terminators: at least one byte.
      return 1;
  }
}

/** A schema option (JSON text or an object) as a schema object; throws naming what is wrong. */
export function parseAvroSchema(schema: unknown): AvroType {
  let s = schema;
  if (typeof s === 'string') {
    const t = s.trim();
    try {
      s = t.startsWith('{') || t.startsWith('[') || t.startsWith('"') ? JSON.parse(t) : t;
    } catch (e) {
      throw new SluiceError('CONFIG', `schema is not valid JSON: ${errorMessage(e)}`);
    }
  }
  try {
    return avroType(s);
  } catch (e) {
    throw new SluiceError('CONFIG', `invalid Avro schema: ${errorMessage(e)}`);
  }
}

/**
 * An avsc type with our long and logical types. Unions are unwrapped (a value is matched to its branch) unless two
 * branches cannot be told apart (two records, string and enum); those few stay wrapped as `{BranchName: value}`.
 */
function avroType(schema: unknown): AvroType {
  const lib = avsc();
  const make = (wrapUnions: 'never' | 'auto') =>
    lib.avro.Type.forSchema(schema as Avsc.Schema, {
      registry: { long: lib.Int64 },
      logicalTypes: lib.logicalTypes,
      wrapUnions,
      omitRecordMethods: true,
    } as Partial<Avsc.ForSchemaOptions>);
  try {
    return make('never');
  } catch (e) {
    if (!/ambiguous unwrapped union/.test(errorMessage(e))) throw e;
    return make('auto');
  }
}

function containsBytes(t: AvroType, seen = new Set<AvroType>()): boolean {
  if (seen.has(t)) return false;
  seen.add(t);
  const any = t as unknown as { typeName: string; fields?: { type: AvroType }[]; types?: AvroType[]; itemsType?: AvroType; valuesType?: AvroType; underlyingType?: AvroType };
  if (any.typeName === 'bytes' || any.typeName === 'fixed') return true;
  if (any.typeName.startsWith('logical:')) return false; // converts its own values
  if (any.fields) return any.fields.some((f) => containsBytes(f.type, seen));
  if (any.types) return any.types.some((x) => containsBytes(x, seen));
  if (any.itemsType) return containsBytes(any.itemsType, seen);
  if (any.valuesType) return containsBytes(any.valuesType, seen);
  return false;
}

/** avsc wants Buffer for bytes; rows carry any Uint8Array. Views are wrapped, not copied. */
function buffersFor(v: unknown, depth = 0): unknown {
  if (typeof v !== 'object' || v === null || depth > 64) return v;
  if (v instanceof Uint8Array) return asBuffer(v);
  if (v instanceof Date) return v;
  if (Array.isArray(v)) return v.map((x) => buffersFor(x, depth + 1));
  const o = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o)) out[k] = buffersFor(o[k], depth + 1);
  return out;
}

// ---- pipeline schema -> Avro ---------------------------------------------------------------------------------

/** A record schema for the pipeline schema's fields; nullable fields become `["null", T]` with default null. */
export function avroSchemaFor(spec: SchemaSpec, recordName: string): Record<string, unknown> {
  const names = new Set<string>();
  const record = (name: string, fields: FieldSpec[]): Record<string, unknown> => {
    let n = name;
    for (let i = 2; names.has(n); i++) n = `${name}${i}`;
    names.add(n);
    return { type: 'record', name: n, fields: fields.map((f) => field(f, n)) };
  };
  const field = (f: FieldSpec, parent: string): Record<string, unknown> => {
    const t = typeOf(f, `${parent.split('.').pop()}_${f.name}`);
    const nullable = f.nullable !== false;
    const out: Record<string, unknown> = { name: f.name, type: nullable ? ['null', t] : t };
    if (nullable) out.default = null;
    return out;
  };
  const typeOf = (f: Omit<FieldSpec, 'name'>, nested: string): unknown => {
    switch (f.type) {
      case 'string':
        return 'string';
      case 'int32':
        return 'int';
      case 'int64':
        return 'long';
      case 'float32':
        return 'float';
      case 'float64':
        return 'double';
      case 'boolean':
        return 'boolean';
      case 'timestamp':
        return { type: 'long', logicalType: 'timestamp-millis' };
      case 'date':
        return { type: 'int', logicalType: 'date' };
      case 'decimal':
        // Avro decimals have a fixed scale; without one the exact text is kept as a string.
        return f.scale !== undefined || f.precision !== undefined
          ? { type: 'bytes', logicalType: 'decimal', precision: f.precision ?? 38, scale: f.scale ?? 0 }
          : 'string';
      case 'bytes':
        return 'bytes';
      case 'json':
        return { type: 'string', logicalType: 'json' };
      case 'array':
        return { type: 'array', items: typeOf(f.items ?? { type: 'json' }, nested) };
      case 'object':
        return record(nested, f.fields ?? []);
      default:
        return 'string';
    }
  };
  return record(recordName, spec.fields);
}

// ---- the format ----------------------------------------------------------------------------------------------

interface IdEntry {
  /** Reads a message body written with this id's schema (resolved to the reader schema when one is set). */
  read(body: Buffer): { value: unknown; offset: number };
}

export function avroFormat(o: AvroOptions, pipelineSchema?: SchemaSpec): PreparedFormat {
  const registry = SchemaRegistryClient.fromOptions(o);
  const wire = o.confluent_wire_format ?? registry !== undefined;
  const reader = o.schema !== undefined ? parseAvroSchema(o.schema) : undefined;
  const byId = new Map<number, IdEntry>();
  const failed = new IdFailures();

  const entryFor = (id: number, writerSchema: string): IdEntry => {
    const writer = avroType(JSON.parse(writerSchema));
    if (!reader) return { read: (b) => writer.decode(b, 0) };
    let resolver: unknown;
    try {
      resolver = reader.createResolver(writer);
    } catch (e) {
      throw new SluiceError('CONFIG', `the writer schema of id ${id} cannot be read with the configured schema: ${errorMessage(e)}`);
    }
    return { read: (b) => reader.decode(b, 0, resolver as never) };
  };

  // Writer schema for encoding: explicit, derived from the pipeline schema, or (with a registry) the subject's latest.
  let writerType: AvroType | undefined =
    reader ?? (pipelineSchema?.fields.length ? avroType(avroSchemaFor(pipelineSchema, o.record_name)) : undefined);
  let writerId: number | undefined;
  let encodeBlocker: string | undefined;
  const bytesInside = () => (writerType ? containsBytes(writerType) : false);

  // A templated Kafka topic has no subject until a record names the topic: one writer id per resolved topic.
  const perTopic = topicEncoders(o, wire, () => avroFormat(o, pipelineSchema));

  const format: PreparedFormat = {
    name: 'avro',
    prepare(payloads) {
      if (!registry || !wire) return undefined;
      return fetchUnknownIds(registry, payloads, (id) => byId.has(id), failed, (s) => {
        if (s.schemaType !== 'AVRO') throw new SluiceError('DECODE', `schema id ${s.id} in ${registry.url} is a ${s.schemaType} schema, not Avro`);
        byId.set(s.id, entryFor(s.id, s.schema));
      });
    },
    async prepareEncode(topic) {
      if (!registry || !wire || writerId !== undefined) return;
      const named = writerType as unknown as { name?: string } | undefined;
      let subject: string;
      try {
        subject = subjectFor(o, named?.name, topic);
      } catch (e) {
        // Called without a topic (by the runtime, before the sink opens): the sink may still call again with one.
        if (topic === undefined) {
          encodeBlocker = errorMessage(e);
          return;
        }
        throw e;
      }
      if (!writerType) {
        const latest = await registry.latest(subject);
        if (latest.schemaType !== 'AVRO') throw new SluiceError('CONFIG', `subject '${subject}' in ${registry.url} holds a ${latest.schemaType} schema, not Avro`);
        writerType = avroType(JSON.parse(latest.schema));
        writerId = latest.id;
        return;
      }
      const text = JSON.stringify(writerType.schema({ exportAttrs: true } as never));
      const id = o.auto_register ? await registry.register(subject, text, 'AVRO') : await registry.lookup(subject, text, 'AVRO');
      if (id === undefined) {
        throw new SluiceError('CONFIG', `the schema is not registered under subject '${subject}' in ${registry.url}; register it or set auto_register: true`);
      }
      writerId = id;
    },
    decoder: (): Decoder => {
      if (!reader && !(registry && wire)) {
        throw new SluiceError('CONFIG', 'the avro format cannot decode without a schema: set schema (raw Avro) or schema_registry_address');
      }
      return { decode(payload, out, onError) {
        const buf = asBytes(payload);
        let body = buf;
        let entry: IdEntry | undefined;
        if (wire) {
          const id = readSchemaId(buf);
          if (typeof id !== 'number') return onError(id, payload);
          body = buf.subarray(5);
          if (registry) {
            entry = byId.get(id);
            if (!entry) {
              const why = failed.message(id);
              return onError(
                new RecordError('DECODE', `unknown schema id ${id}${why ? `: ${why}` : ` (not fetched from ${registry.url}; the batch was not prepared)`}`),
                payload,
              );
            }
          }
        }
        entry ??= readerEntry;
        decodeDatums(entry!, body, payload, out, onError, wire);
      } };
    },
    encoder: (): Encoder => {
      const fixBytes = bytesInside();
      const encode = (value: unknown): Buffer => {
        if (!writerType) {
          throw new SluiceError(
            'CONFIG',
            registry && wire ? encodeBlocker ?? 'the Avro schema was not fetched from the registry before encoding (the encoder was not prepared)' : 'Avro encoding needs a schema: set schema or declare the pipeline schema',
          );
        }
        if (wire && writerId === undefined && registry) {
          throw new SluiceError('CONFIG', encodeBlocker ?? 'the Avro schema id is unknown: the encoder was not prepared (prepare) before encoding');
        }
        const v = fixBytes ? buffersFor(value) : value;
        let body: Buffer;
        try {
          body = writerType.toBuffer(v);
        } catch {
          throw new RecordError('SCHEMA', explainInvalid(writerType, v));
        }
        return wire ? writeHeader(writerId ?? 0, body) : body;
      };
      return {
        extension: 'bin',
        encode,
        encodeStream: (values) => encodeLengthDelimited(values.map(encode)),
        prepare: (topic?: string) => format.prepareEncode!(topic),
        forTopic: perTopic,
      };
    },
  };
  const readerEntry: IdEntry | undefined = reader ? { read: (b) => reader.decode(b, 0) } : undefined;
  return format;
}

/** Decode one payload: normally one datum; several concatenated datums are all read. */
function decodeDatums(
  entry: IdEntry | undefined,
  body: Buffer,
  payload: string | Uint8Array,
  out: unknown[],
  onError: (err: Error, raw: string | Uint8Array) => void,
  wire: boolean,
): void {
  if (!entry) return onError(new RecordError('DECODE', 'no Avro schema to decode with: set schema or schema_registry_address'), payload);
  if (body.length === 0) return onError(new RecordError('DECODE', `empty Avro message${wire ? ' after the Confluent header' : ''}`), payload);
  let pos = 0;
  do {
    let r: { value: unknown; offset: number };
    try {
      r = entry.read(pos ? body.subarray(pos) : body);
    } catch (e) {
      // avsc reads past the end of a short buffer as garbage and fails wherever that leads; say what it usually means.
      return onError(
        new RecordError('DECODE', `invalid Avro data at byte ${pos + (wire ? 5 : 0)} (corrupt, truncated, or written with another schema): ${errorMessage(e)}`),
        payload,
      );
    }
    if (r.offset < 0) {
      return onError(new RecordError('DECODE', `truncated Avro data: the message ends before the record does (${body.length - pos} bytes left at byte ${pos + (wire ? 5 : 0)})`), payload);
    }
    if (r.offset === 0 && body.length > pos) {
      return onError(new RecordError('DECODE', `invalid Avro data at byte ${pos + (wire ? 5 : 0)}: nothing could be read`), payload);
    }
    // A recursive schema lets a small message nest without bound (each level costs at least a byte). Rows nested deeper
    // than JSON text may be (MAX_JSON_DEPTH) would overflow the stack of later steps (encoders, the dead-letter sink).
    if (r.offset > MAX_JSON_DEPTH && nestedDeeperThan(r.value, MAX_JSON_DEPTH)) {
      return onError(new RecordError('DECODE', `Avro record nested more than ${MAX_JSON_DEPTH} levels deep at byte ${pos + (wire ? 5 : 0)}`), payload);
    }
    out.push(r.value);
    pos += r.offset;
    // With the Confluent header a message holds exactly one datum.
    if (wire && pos < body.length) {
      out.pop();
      return onError(new RecordError('DECODE', `invalid Avro data: ${body.length - pos} bytes left after the record (wrong schema for this message?)`), payload);
    }
  } while (pos < body.length);
}

/** The first field that does not fit the Avro schema, in the words schema errors use elsewhere. */
function explainInvalid(t: AvroType, v: unknown): string {
  let msg = 'the row does not fit the Avro schema';
  t.isValid(v, {
    errorHook(path: string[], val: unknown, type: AvroType) {
      if (msg !== 'the row does not fit the Avro schema') return;
      const expected = (type as unknown as { typeName: string }).typeName.replace(/^logical:/, '').replace('abstract:', '');
      msg = `${path.length ? `field '${path.join('.')}': ` : ''}expected Avro ${expected}, got ${describeValue(val)}`;
    },
  });
  return msg;
}
