// Protocol Buffers through protobufjs: raw messages of one type, or the Confluent wire format with a schema registry
// (magic byte, schema id, then the message-index path of the type inside the registered .proto file).
//
// Rows: int64 family -> number when safe else BigInt; enums -> their names; bytes -> Buffer; google.protobuf.Timestamp
// -> Date; fields left unset get proto3 defaults so every row of one type has the same columns.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as protobuf from 'protobufjs';
import { z, opt } from '../core/spec.js';
import { RecordError, SluiceError, errorMessage } from '../core/errors.js';
import type { Decoder, Encoder } from '../core/types.js';
import { encodeLengthDelimited } from './framing.js';
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
  type PreparedFormat,
  type RegistryOptions,
} from './registry.js';

// protobufjs is CommonJS; it is required on first use, synchronously, because a .proto is checked while options are
// validated and formats are created synchronously.
const require = createRequire(import.meta.url);
let lib: typeof protobuf | undefined;
function pb(): typeof protobuf {
  return (lib ??= require('protobufjs') as typeof protobuf);
}

export const protobufOptions = z
  .strictObject({
    proto: z
      .string()
      .min(1)
      .optional()
      .meta({
        description:
          'The .proto definition: inline text, or the path of a .proto file (its imports are resolved next to it; google/protobuf well-known types are built in). Needed for raw Protobuf and for encoding; with a registry, decoding uses the registered definition.',
        aliases: ['proto_file', 'proto_schema', 'schema', 'descriptor'],
      }),
    message: z
      .string()
      .min(1)
      .optional()
      .meta({
        description: 'Fully-qualified message type of every message, e.g. `acme.orders.Order`. With a registry, decoding takes the type from each message header instead.',
        aliases: ['message_name', 'message_type', 'type_name'],
      }),
    ...registryOptionShape,
  })
  .superRefine((o, ctx) => {
    for (const message of registryOptionProblems(o as RegistryOptions)) ctx.addIssue({ code: 'custom', message, path: [] });
    if (o.proto !== undefined) {
      let root: protobuf.Root | undefined;
      try {
        root = loadProto(o.proto).root;
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: errorMessage(e), path: ['proto'] });
      }
      if (root && o.message !== undefined) {
        try {
          lookupMessage(root, o.message);
        } catch (e) {
          ctx.addIssue({ code: 'custom', message: errorMessage(e), path: ['message'] });
        }
      }
    }
    const registry = o.schema_registry_address !== undefined;
    if (!registry && (o.proto === undefined || o.message === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'raw Protobuf needs both proto and message (or set schema_registry_address)', path: [o.proto === undefined ? 'proto' : 'message'] });
    }
  });

export interface ProtobufOptions extends RegistryOptions {
  proto?: string;
  message?: string;
}

// ---- loading .proto ------------------------------------------------------------------------------------------

/** Inline text or a file path: text has a newline, a `;` or a `{`; a path has neither. */
function isInline(proto: string): boolean {
  return /[\n;{]/.test(proto);
}

export function loadProto(proto: string): { root: protobuf.Root; text: string } {
  const root = new (pb().Root)();
  if (!isInline(proto)) {
    let text: string;
    try {
      text = readFileSync(proto, 'utf8');
    } catch (e) {
      throw new SluiceError('CONFIG', `cannot read the .proto file '${proto}': ${errorMessage(e)}`);
    }
    try {
      root.loadSync(proto, { keepCase: true });
      root.resolveAll();
    } catch (e) {
      throw new SluiceError('CONFIG', `invalid .proto file '${proto}': ${errorMessage(e)}`);
    }
    return { root, text };
  }
  return { root: parseProtoText(proto, root), text: proto };
}

function parseProtoText(text: string, root = new (pb().Root)()): protobuf.Root {
  try {
    const parsed = pb().parse(text, root, { keepCase: true });
    for (const imp of [...(parsed.imports ?? []), ...(parsed.weakImports ?? [])]) {
      const common = (pb().common as unknown as Record<string, { nested?: protobuf.INamespace['nested'] }>)[imp];
      if (!common?.nested) throw new Error(`import '${imp}' is not available inline (only google/protobuf well-known types are; use a .proto file path for other imports)`);
      root.addJSON(common.nested);
    }
    root.resolveAll();
  } catch (e) {
    throw new SluiceError('CONFIG', `invalid .proto definition: ${errorMessage(e)}`);
  }
  return root;
}

function lookupMessage(root: protobuf.Root, name: string): protobuf.Type {
  let t: protobuf.Type | undefined;
  try {
    t = root.lookupType(name.startsWith('.') ? name : `.${name}`);
  } catch {
    t = undefined;
  }
  if (!t) {
    const all: string[] = [];
    const walk = (ns: protobuf.NamespaceBase) => {
      for (const n of ns.nestedArray) {
        if (n instanceof pb().Type) all.push(n.fullName.slice(1));
        if (n instanceof pb().Namespace || n instanceof pb().Type) walk(n as protobuf.NamespaceBase);
      }
    };
    walk(root);
    throw new SluiceError('CONFIG', `message type '${name}' is not defined in the .proto (defined: ${all.filter((n) => !n.startsWith('google.protobuf.')).join(', ') || 'none'})`);
  }
  return t;
}

// ---- message indexes (Confluent protobuf framing) ------------------------------------------------------------

/** The top-level messages of the file in declaration order (the package namespace's types). */
function fileMessages(root: protobuf.Root, pkg: string | undefined): protobuf.Type[] {
  let ns: protobuf.NamespaceBase = root;
  if (pkg) {
    const found = root.lookup(pkg);
    if (found instanceof pb().Namespace) ns = found;
  }
  return ns.nestedArray.filter((n): n is protobuf.Type => n instanceof pb().Type && !n.fullName.startsWith('.google.protobuf.'));
}

function typeByIndexes(root: protobuf.Root, pkg: string | undefined, path: number[]): protobuf.Type | undefined {
  let list = fileMessages(root, pkg);
  let t: protobuf.Type | undefined;
  for (const i of path) {
    t = list[i];
    if (!t) return undefined;
    list = t.nestedArray.filter((n): n is protobuf.Type => n instanceof pb().Type);
  }
  return t;
}

function indexesOf(root: protobuf.Root, pkg: string | undefined, type: protobuf.Type): number[] {
  const path: number[] = [];
  let t: protobuf.ReflectionObject | null = type;
  while (t instanceof pb().Type) {
    const parent: protobuf.NamespaceBase | null = t.parent;
    const siblings = parent instanceof pb().Type ? parent.nestedArray.filter((n) => n instanceof pb().Type) : fileMessages(root, pkg);
    path.unshift(siblings.indexOf(t));
    t = parent instanceof pb().Type ? parent : null;
  }
  return path;
}

function zigzag(n: number): number {
  return (n << 1) ^ (n >> 31);
}

function writeVarint(out: number[], v: number): void {
  let x = v >>> 0;
  while (x > 0x7f) {
    out.push((x & 0x7f) | 0x80);
    x >>>= 7;
  }
  out.push(x);
}

/** Confluent's encoding of the index path: [0] is the single byte 0, otherwise the count then each index (zigzag). */
export function encodeIndexes(path: number[]): Uint8Array {
  if (path.length === 1 && path[0] === 0) return Uint8Array.of(0);
  const out: number[] = [];
  writeVarint(out, zigzag(path.length));
  for (const i of path) writeVarint(out, zigzag(i));
  return Uint8Array.from(out);
}

/** The index path and where the message body starts, or an error. */
export function decodeIndexes(b: Uint8Array, start: number): { path: number[]; offset: number } | RecordError {
  let pos = start;
  const read = (): number | undefined => {
    let x = 0;
    let shift = 0;
    for (;;) {
      if (pos >= b.length || shift > 28) return undefined;
      const c = b[pos++]!;
      x |= (c & 0x7f) << shift;
      if (c < 0x80) break;
      shift += 7;
    }
    return (x >>> 1) ^ -(x & 1);
  };
  const n = read();
  if (n === undefined || n < 0 || n > 64) return new RecordError('DECODE', 'invalid message-index header after the Confluent schema id');
  if (n === 0) return { path: [0], offset: pos };
  const path: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = read();
    if (v === undefined || v < 0) return new RecordError('DECODE', 'invalid message-index header after the Confluent schema id');
    path.push(v);
  }
  return { path, offset: pos };
}

// ---- value conversion ----------------------------------------------------------------------------------------

const LONG_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const TIMESTAMP = '.google.protobuf.Timestamp';
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

type Kind = 'long' | 'enum' | 'message' | 'timestamp';
interface Step {
  name: string;
  kind: Kind;
  repeated: boolean;
  map: boolean;
  type?: protobuf.Type;
  enumType?: protobuf.Enum;
  unsigned: boolean;
}

/** Per message type: the fields that need converting between protobufjs objects and rows. */
const stepsCache = new WeakMap<protobuf.Type, Step[]>();

function stepsOf(t: protobuf.Type): Step[] {
  let s = stepsCache.get(t);
  if (s) return s;
  s = [];
  stepsCache.set(t, s); // before recursing: message types may refer to themselves
  for (const f of t.fieldsArray) {
    f.resolve();
    const map = f instanceof pb().MapField;
    const step = { name: f.name, repeated: f.repeated, map, unsigned: f.type.startsWith('u') || f.type === 'fixed64' };
    if (LONG_TYPES.has(f.type)) s.push({ ...step, kind: 'long' });
    else if (f.resolvedType instanceof pb().Enum) s.push({ ...step, kind: 'enum', enumType: f.resolvedType });
    else if (f.resolvedType instanceof pb().Type) {
      s.push({ ...step, kind: f.resolvedType.fullName === TIMESTAMP ? 'timestamp' : 'message', type: f.resolvedType });
    }
  }
  return s;
}

function longFromString(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const b = BigInt(v);
  return b >= MIN_SAFE && b <= MAX_SAFE ? Number(b) : b;
}

/** protobufjs toObject output (longs as strings) -> row, in place. */
function toRow(t: protobuf.Type, o: Record<string, unknown>): Record<string, unknown> {
  const steps = stepsOf(t);
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i]!;
    const v = o[s.name];
    if (v === undefined || v === null) continue;
    const one = (x: unknown): unknown => {
      switch (s.kind) {
        case 'long':
          return longFromString(x);
        case 'timestamp': {
          const ts = x as { seconds?: unknown; nanos?: number };
          const sec = Number(longFromString(ts.seconds ?? 0));
          return new Date(sec * 1000 + Math.floor((ts.nanos ?? 0) / 1e6));
        }
        case 'message':
          return toRow(s.type!, x as Record<string, unknown>);
        default:
          return x;
      }
    };
    if (s.kind === 'enum') continue; // toObject gave names already
    if (s.map) {
      const m = v as Record<string, unknown>;
      for (const k of Object.keys(m)) m[k] = one(m[k]);
    } else if (s.repeated) {
      const a = v as unknown[];
      for (let j = 0; j < a.length; j++) a[j] = one(a[j]);
    } else o[s.name] = one(v);
  }
  return o;
}

/** Row -> an object protobufjs `verify`/`fromObject` accept (Long for BigInt, enum numbers, Timestamp messages). */
function fromRow(t: protobuf.Type, row: Record<string, unknown>): Record<string, unknown> {
  const steps = stepsOf(t);
  if (!steps.length) return row;
  const o: Record<string, unknown> = { ...row };
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i]!;
    const v = o[s.name];
    if (v === undefined || v === null) continue;
    const one = (x: unknown): unknown => {
      switch (s.kind) {
        case 'long':
          if (typeof x === 'bigint' || (typeof x === 'string' && /^-?\d+$/.test(x))) return longFrom(String(x), s.unsigned);
          return x;
        case 'enum':
          return typeof x === 'string' && s.enumType!.values[x] !== undefined ? s.enumType!.values[x] : x;
        case 'timestamp': {
          let ms: number | undefined;
          if (x instanceof Date) ms = x.getTime();
          else if (typeof x === 'number') ms = x;
          else if (typeof x === 'string' && !Number.isNaN(Date.parse(x))) ms = Date.parse(x);
          if (ms === undefined) return x;
          const sec = Math.floor(ms / 1000);
          return { seconds: sec, nanos: (ms - sec * 1000) * 1e6 };
        }
        case 'message':
          return typeof x === 'object' && x !== null ? fromRow(s.type!, x as Record<string, unknown>) : x;
      }
    };
    if (s.map && typeof v === 'object') {
      const m: Record<string, unknown> = {};
      for (const k of Object.keys(v as object)) m[k] = one((v as Record<string, unknown>)[k]);
      o[s.name] = m;
    } else if (s.repeated && Array.isArray(v)) o[s.name] = v.map(one);
    else o[s.name] = one(v);
  }
  return o;
}

// protobufjs bundles long.js; its typings only declare the constructor.
type LongCtor = { fromString(s: string, unsigned?: boolean): unknown };
let longCtor: LongCtor | undefined;
const longFrom = (s: string, unsigned?: boolean) => (longCtor ??= pb().util.Long as unknown as LongCtor).fromString(s, unsigned);

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, defaults: true };

// ---- the format ----------------------------------------------------------------------------------------------

interface Parsed {
  root: protobuf.Root;
  pkg: string | undefined;
}

function packageOf(text: string): string | undefined {
  return /^\s*package\s+([\w.]+)\s*;/m.exec(text)?.[1];
}

export function protobufFormat(o: ProtobufOptions): PreparedFormat {
  const registry = SchemaRegistryClient.fromOptions(o);
  const wire = o.confluent_wire_format ?? registry !== undefined;
  const local = o.proto !== undefined ? loadProto(o.proto) : undefined;
  const localType = local && o.message ? lookupMessage(local.root, o.message) : undefined;
  const byId = new Map<number, Parsed>();
  const failed = new IdFailures();
  let writerId: number | undefined;
  let writerIndexes: Uint8Array | undefined;
  let encodeBlocker: string | undefined;

  const decodeBody = (t: protobuf.Type, b: Uint8Array, payload: string | Uint8Array, out: unknown[], onError: (e: Error, raw: string | Uint8Array) => void) => {
    let msg: protobuf.Message;
    try {
      msg = t.decode(b);
    } catch (e) {
      return onError(new RecordError('DECODE', `invalid Protobuf data for ${t.fullName.slice(1)}: ${errorMessage(e)}`), payload);
    }
    out.push(toRow(t, t.toObject(msg, TO_OBJECT)));
  };

  // A templated Kafka topic has no subject until a record names the topic: one writer id per resolved topic.
  const perTopic = topicEncoders(o, wire, () => protobufFormat(o));

  const format: PreparedFormat = {
    name: 'protobuf',
    prepare(payloads) {
      if (!registry || !wire) return undefined;
      return fetchUnknownIds(registry, payloads, (id) => byId.has(id), failed, (s) => {
        if (s.schemaType !== 'PROTOBUF') throw new SluiceError('DECODE', `schema id ${s.id} in ${registry.url} is a ${s.schemaType} schema, not Protobuf`);
        byId.set(s.id, { root: parseProtoText(s.schema), pkg: packageOf(s.schema) });
      });
    },
    async prepareEncode(topic) {
      if (!registry || !wire || writerId !== undefined) return;
      if (!local || !localType) throw new SluiceError('CONFIG', 'encoding Protobuf needs proto and message');
      let subject: string;
      try {
        subject = subjectFor(o, localType.fullName.slice(1), topic);
      } catch (e) {
        // Called without a topic (by the runtime, before the sink opens): the sink may still call again with one.
        if (topic === undefined) {
          encodeBlocker = errorMessage(e);
          return;
        }
        throw e;
      }
      const id = o.auto_register ? await registry.register(subject, local.text, 'PROTOBUF') : await registry.lookup(subject, local.text, 'PROTOBUF');
      if (id === undefined) throw new SluiceError('CONFIG', `the .proto is not registered under subject '${subject}' in ${registry.url}; register it or set auto_register: true`);
      writerIndexes = encodeIndexes(indexesOf(local.root, packageOf(local.text), localType));
      writerId = id;
    },
    decoder: (): Decoder => {
      if (!localType && !(registry && wire)) throw new SluiceError('CONFIG', 'the protobuf format cannot decode without proto and message (or a schema registry)');
      return {
        decode(payload, out, onError) {
          const buf = asBytes(payload);
          if (!wire) return decodeBody(localType!, buf, payload, out, onError);
          const id = readSchemaId(buf);
          if (typeof id !== 'number') return onError(id, payload);
          const idx = decodeIndexes(buf, 5);
          if (idx instanceof RecordError) return onError(idx, payload);
          let t = localType;
          if (registry) {
            const p = byId.get(id);
            if (!p) {
              const why = failed.message(id);
              return onError(new RecordError('DECODE', `unknown schema id ${id}${why ? `: ${why}` : ` (not fetched from ${registry.url}; the batch was not prepared)`}`), payload);
            }
            t = typeByIndexes(p.root, p.pkg, idx.path);
            if (!t) return onError(new RecordError('DECODE', `schema id ${id} has no message at index path [${idx.path.join(', ')}]`), payload);
          }
          decodeBody(t!, buf.subarray(idx.offset), payload, out, onError);
        },
      };
    },
    encoder: (): Encoder => {
      const encode = (value: unknown): Uint8Array => {
        if (!localType) throw new SluiceError('CONFIG', 'encoding Protobuf needs proto and message');
        if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new RecordError('SCHEMA', `a Protobuf message needs a row (an object)`);
        const obj = fromRow(localType, value as Record<string, unknown>);
        const problem = localType.verify(obj);
        if (problem) throw new RecordError('SCHEMA', `does not fit ${localType.fullName.slice(1)}: ${problem}`);
        const body = localType.encode(localType.fromObject(obj)).finish();
        if (!wire) return body;
        if (registry && writerId === undefined) throw new SluiceError('CONFIG', encodeBlocker ?? 'the Protobuf schema id is unknown: the encoder was not prepared (prepare) before encoding');
        const idx = writerIndexes ?? encodeIndexes(local ? indexesOf(local.root, packageOf(local.text), localType) : [0]);
        const out = Buffer.allocUnsafe(5 + idx.length + body.length);
        out[0] = 0;
        out.writeUInt32BE(writerId ?? 0, 1);
        out.set(idx, 5);
        out.set(body, 5 + idx.length);
        return out;
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
  return format;
}
