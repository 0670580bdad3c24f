// A client for the Confluent Schema Registry REST API and the Confluent wire format, shared by avro and protobuf.
//
// Decoders are synchronous, registry lookups are not: a format built on the registry exposes `prepare(payloads)`,
// which the runtime awaits before decoding a batch. It fetches the schema ids the batch names that are not cached yet,
// so `decode` only ever reads the cache. Ids are immutable in the registry, so a cached schema never goes stale.

import { z, bool, duration, opt } from '../core/spec.js';
import { RecordError, SluiceError, errorMessage } from '../core/errors.js';
import type { Encoder, Format } from '../core/types.js';
import { asBuffer } from './util.js';

/**
 * A Format whose decoders/encoders depend on registry state fetched ahead of time. `prepare(payloads)` (the Format
 * contract) fetches the schemas a batch names; `prepareEncode(topic)` looks up or registers the writer schema once,
 * shared by every encoder of the format, and is what each encoder's `prepare(topic?)` calls.
 */
export interface PreparedFormat extends Format {
  prepareEncode?(topic?: string): Promise<void>;
}

// ---- options shared by the registry-backed formats -----------------------------------------------------------

export const registryOptionShape = {
  schema_registry_address: opt(z.string().min(1).optional(), {
    description:
      'Base URL of a Confluent-compatible Schema Registry, e.g. `http://registry:8081`. Decoding reads the schema id from each message header and fetches that schema; encoding registers or looks up the schema under `subject`.',
    aliases: ['schemaRegistryEnum.endpoint', 'schema_registry_url', 'registry_url', 'schema_registry'],
    examples: ['http://localhost:8081'],
  }),
  schema_registry_api_key: opt(z.string().min(1).optional(), {
    description: 'API key for the registry (Confluent Cloud); sent as the basic-auth user name.',
    aliases: ['schemaRegistryEnum.apiKey', 'schema_registry_key'],
  }),
  schema_registry_api_secret: opt(z.string().min(1).optional(), {
    description: 'API secret for the registry; sent as the basic-auth password.',
    aliases: ['schemaRegistryEnum.apiSecret', 'schema_registry_secret'],
    secret: true,
  }),
  schema_registry_username: opt(z.string().min(1).optional(), {
    description: 'Basic-auth user name for the registry (instead of an API key).',
    aliases: ['registry_username'],
  }),
  schema_registry_password: opt(z.string().min(1).optional(), {
    description: 'Basic-auth password for the registry.',
    aliases: ['registry_password'],
    secret: true,
  }),
  subject: opt(z.string().min(1).optional(), {
    description:
      'Registry subject to encode under. When unset it follows `subject_strategy` from the topic (`<topic>-value`) or the record name.',
  }),
  subject_strategy: opt(z.enum(['topic_name', 'record_name', 'topic_record_name']).default('topic_name'), {
    description:
      'How the subject is named when `subject` is unset: `topic_name` = `<topic>-value`, `record_name` = the fully-qualified record/message name, `topic_record_name` = `<topic>-<record name>`.',
    aliases: ['subject_name_strategy'],
  }),
  topic: opt(z.string().min(1).optional(), {
    description: 'Topic name for the topic_name strategies when the connector does not supply one.',
    advanced: true,
  }),
  auto_register: bool({
    default: false,
    description:
      'Encoding: register the schema under the subject when it is not there yet (subject to the registry\'s compatibility rules). When false the schema must already be registered, or, without a schema of our own, the latest version of the subject is used.',
    aliases: ['auto_register_schemas', 'autoRegisterSchemas'],
  }),
  confluent_wire_format: bool({
    description:
      'Messages start with the Confluent header: a zero byte and the 4-byte big-endian schema id. Default: true when a registry is set, false otherwise.',
    aliases: ['wire_format'],
  }).optional(),
  registry_timeout: duration({ default: '10s', description: 'Timeout of one registry request.', advanced: true }),
};

export interface RegistryOptions {
  schema_registry_address?: string;
  schema_registry_api_key?: string;
  schema_registry_api_secret?: string;
  schema_registry_username?: string;
  schema_registry_password?: string;
  subject?: string;
  subject_strategy: 'topic_name' | 'record_name' | 'topic_record_name';
  topic?: string;
  auto_register: boolean;
  confluent_wire_format?: boolean;
  /** Milliseconds. */
  registry_timeout: number;
}

/** Options that do not fit together, as messages; empty when they do. */
export function registryOptionProblems(o: RegistryOptions): string[] {
  const out: string[] = [];
  if (!!o.schema_registry_api_key !== !!o.schema_registry_api_secret) {
    out.push('schema_registry_api_key and schema_registry_api_secret must be given together');
  }
  if (!!o.schema_registry_username !== !!o.schema_registry_password) {
    out.push('schema_registry_username and schema_registry_password must be given together');
  }
  if (o.schema_registry_api_key && o.schema_registry_username) {
    out.push('give either schema_registry_api_key/_api_secret or schema_registry_username/_password, not both');
  }
  if (o.schema_registry_address !== undefined) {
    let u: URL | undefined;
    try {
      u = new URL(o.schema_registry_address);
    } catch {
      /* reported below */
    }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
      out.push(`schema_registry_address '${o.schema_registry_address}' is not an http(s) URL`);
    }
  }
  return out;
}

/**
 * `Encoder.forTopic` for a registry-backed format whose subject follows from the topic (topic_name and
 * topic_record_name strategies, no fixed `subject` or `topic`): one prepared encoder per topic, from a format instance
 * of its own (its own writer id), built on first use and cached; a failed preparation is not cached, so it is retried.
 * Undefined when the subject does not depend on the topic.
 */
export function topicEncoders(o: RegistryOptions, wire: boolean, make: () => PreparedFormat): ((topic: string) => Promise<Encoder>) | undefined {
  if (!wire || !(o.schema_registry_address) || o.subject || o.topic || o.subject_strategy === 'record_name') return undefined;
  const byTopic = new Map<string, Promise<Encoder>>();
  return (topic) => {
    let p = byTopic.get(topic);
    if (!p) {
      p = (async () => {
        const f = make();
        await f.prepareEncode!(topic);
        return f.encoder();
      })();
      byTopic.set(topic, p);
      p.catch(() => byTopic.delete(topic));
    }
    return p;
  };
}

/** The subject a schema is written under, or an explanation of what is missing. */
export function subjectFor(o: RegistryOptions, recordName: string | undefined, topic: string | undefined): string {
  if (o.subject) return o.subject;
  const t = topic ?? o.topic;
  switch (o.subject_strategy) {
    case 'record_name':
      if (!recordName) throw new SluiceError('CONFIG', 'subject_strategy record_name needs a named record/message type; set subject');
      return recordName;
    case 'topic_record_name':
      if (!t || !recordName) throw new SluiceError('CONFIG', 'subject_strategy topic_record_name needs a topic and a record name; set subject');
      return `${t}-${recordName}`;
    default:
      if (!t) throw new SluiceError('CONFIG', 'the registry subject is unknown: set subject (or topic for subject_strategy topic_name)');
      return `${t}-value`;
  }
}

// ---- wire format ---------------------------------------------------------------------------------------------

export const MAGIC = 0;

/** The schema id in a Confluent header, or a reason why there is none. */
export function readSchemaId(b: Uint8Array): number | RecordError {
  if (b.length < 5) return new RecordError('DECODE', `message of ${b.length} bytes is too short for the Confluent header (magic byte + 4-byte schema id)`);
  if (b[0] !== MAGIC) return new RecordError('DECODE', `message does not start with the Confluent magic byte 0 (got ${b[0]}); is it in the Confluent wire format?`);
  return ((b[1]! << 24) >>> 0) + (b[2]! << 16) + (b[3]! << 8) + b[4]!;
}

export function writeHeader(id: number, body: Uint8Array, extra?: Uint8Array): Buffer {
  const x = extra?.length ?? 0;
  const out = Buffer.allocUnsafe(5 + x + body.length);
  out[0] = MAGIC;
  out.writeUInt32BE(id, 1);
  if (x) out.set(extra!, 5);
  out.set(body, 5 + x);
  return out;
}

export function asBytes(payload: string | Uint8Array): Buffer {
  if (typeof payload === 'string') return Buffer.from(payload, 'latin1');
  return asBuffer(payload);
}

// ---- REST client ---------------------------------------------------------------------------------------------

export interface RegisteredSchema {
  id: number;
  schema: string;
  /** AVRO (the registry leaves it out for Avro), PROTOBUF or JSON. */
  schemaType: string;
  version?: number;
  subject?: string;
}

/** What the registry said when it refused a request, with its own error code and message. */
export class RegistryError extends SluiceError {
  readonly status: number;
  readonly registryCode?: number;
  constructor(message: string, status: number, registryCode: number | undefined, opts: { retriable?: boolean; auth?: boolean; cause?: unknown } = {}) {
    super(opts.auth ? 'AUTH' : status === 0 ? 'CONNECT' : 'CONFIG', message, { retriable: opts.retriable, cause: opts.cause });
    this.name = 'RegistryError';
    this.status = status;
    this.registryCode = registryCode;
  }
}

export interface RegistryClientOptions {
  url: string;
  /** Basic-auth credentials (API key/secret or user name/password). */
  username?: string;
  password?: string;
  timeoutMs?: number;
}

export class SchemaRegistryClient {
  readonly url: string;
  private readonly auth: string | undefined;
  private readonly timeoutMs: number;
  private readonly byId = new Map<number, RegisteredSchema>();
  private readonly inflight = new Map<number, Promise<RegisteredSchema>>();
  /** Requests sent, for tests and metrics. */
  requests = 0;

  constructor(o: RegistryClientOptions) {
    let url = o.url;
    let user = o.username;
    let pass = o.password;
    // fetch refuses URLs with credentials, and messages show the URL: move `user:pass@` into the auth header.
    try {
      const u = new URL(o.url);
      if (u.username || u.password) {
        user ??= decodeURIComponent(u.username);
        pass ??= decodeURIComponent(u.password);
        u.username = '';
        u.password = '';
        url = u.toString();
      }
    } catch {
      /* validated with the options */
    }
    this.url = url.replace(/\/+$/, '');
    this.auth = user !== undefined ? 'Basic ' + Buffer.from(`${user}:${pass ?? ''}`).toString('base64') : undefined;
    this.timeoutMs = o.timeoutMs ?? 10_000;
  }

  static fromOptions(o: RegistryOptions): SchemaRegistryClient | undefined {
    if (!o.schema_registry_address) return undefined;
    return new SchemaRegistryClient({
      url: o.schema_registry_address,
      username: o.schema_registry_api_key ?? o.schema_registry_username,
      password: o.schema_registry_api_secret ?? o.schema_registry_password,
      timeoutMs: o.registry_timeout,
    });
  }

  /** A schema already fetched, without a request. */
  cached(id: number): RegisteredSchema | undefined {
    return this.byId.get(id);
  }

  /** GET /schemas/ids/{id}; concurrent calls for one id share one request, and the answer is kept for good. */
  schemaById(id: number): Promise<RegisteredSchema> {
    const hit = this.byId.get(id);
    if (hit) return Promise.resolve(hit);
    let p = this.inflight.get(id);
    if (!p) {
      p = this.request('GET', `/schemas/ids/${id}`, undefined, `schema id ${id}`)
        .then((body) => {
          const b = body as { schema?: unknown; schemaType?: unknown };
          if (typeof b?.schema !== 'string') throw new RegistryError(`schema registry ${this.url}: answer for schema id ${id} has no schema`, 200, undefined);
          const s: RegisteredSchema = { id, schema: b.schema, schemaType: typeof b.schemaType === 'string' ? b.schemaType : 'AVRO' };
          this.byId.set(id, s);
          return s;
        })
        .finally(() => this.inflight.delete(id));
      this.inflight.set(id, p);
    }
    return p;
  }

  /** POST /subjects/{subject}/versions: the id of the schema under the subject, registering it if needed. */
  async register(subject: string, schema: string, schemaType: string): Promise<number> {
    const body: Record<string, unknown> = { schema };
    if (schemaType !== 'AVRO') body.schemaType = schemaType;
    const r = (await this.request('POST', `/subjects/${encodeURIComponent(subject)}/versions`, body, `subject '${subject}'`)) as { id?: unknown };
    if (typeof r?.id !== 'number') throw new RegistryError(`schema registry ${this.url}: registering under subject '${subject}' returned no id`, 200, undefined);
    this.byId.set(r.id, { id: r.id, schema, schemaType });
    return r.id;
  }

  /** POST /subjects/{subject}: the id when this exact schema is registered under the subject, else undefined. */
  async lookup(subject: string, schema: string, schemaType: string): Promise<number | undefined> {
    const body: Record<string, unknown> = { schema };
    if (schemaType !== 'AVRO') body.schemaType = schemaType;
    try {
      const r = (await this.request('POST', `/subjects/${encodeURIComponent(subject)}`, body, `subject '${subject}'`)) as { id?: unknown };
      if (typeof r?.id !== 'number') return undefined;
      this.byId.set(r.id, { id: r.id, schema, schemaType });
      return r.id;
    } catch (e) {
      // 40401 subject not found, 40403 schema not found (under that subject).
      if (e instanceof RegistryError && e.status === 404) return undefined;
      throw e;
    }
  }

  /** GET /subjects/{subject}/versions/latest. */
  async latest(subject: string): Promise<RegisteredSchema> {
    const r = (await this.request('GET', `/subjects/${encodeURIComponent(subject)}/versions/latest`, undefined, `subject '${subject}'`)) as Record<string, unknown>;
    if (typeof r?.id !== 'number' || typeof r.schema !== 'string') {
      throw new RegistryError(`schema registry ${this.url}: latest version of subject '${subject}' has no id or schema`, 200, undefined);
    }
    const s: RegisteredSchema = {
      id: r.id,
      schema: r.schema,
      schemaType: typeof r.schemaType === 'string' ? r.schemaType : 'AVRO',
      version: typeof r.version === 'number' ? r.version : undefined,
      subject,
    };
    this.byId.set(s.id, s);
    return s;
  }

  private async request(method: string, path: string, body: unknown, what: string): Promise<unknown> {
    this.requests++;
    const headers: Record<string, string> = { accept: 'application/vnd.schemaregistry.v1+json, application/json' };
    if (body !== undefined) headers['content-type'] = 'application/vnd.schemaregistry.v1+json';
    if (this.auth) headers.authorization = this.auth;
    let res: Response;
    try {
      res = await fetch(this.url + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      const cause = (e as { cause?: unknown }).cause;
      const why = e instanceof Error && e.name === 'TimeoutError' ? `no answer within ${this.timeoutMs} ms` : errorMessage(cause ?? e);
      throw new RegistryError(`schema registry ${this.url} unreachable while fetching ${what}: ${why}`, 0, undefined, { retriable: true, cause: e });
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (res.ok) return json;
    const err = json as { error_code?: unknown; message?: unknown } | undefined;
    const code = typeof err?.error_code === 'number' ? err.error_code : undefined;
    const msg = typeof err?.message === 'string' ? err.message : text.slice(0, 200) || res.statusText;
    const prefix = `schema registry ${this.url}`;
    switch (res.status) {
      case 401:
      case 403:
        throw new RegistryError(`${prefix} refused the credentials (HTTP ${res.status}) for ${what}: ${msg}; check schema_registry_api_key/_api_secret or schema_registry_username/_password`, res.status, code, { auth: true });
      case 404:
        throw new RegistryError(`${prefix}: ${what} not found (HTTP 404${code ? `, error ${code}` : ''}): ${msg}`, 404, code);
      case 409:
        throw new RegistryError(`${prefix} rejected the schema for ${what} as incompatible with the registered versions (HTTP 409${code ? `, error ${code}` : ''}): ${msg}`, 409, code);
      case 422:
        throw new RegistryError(`${prefix} rejected the schema for ${what} as invalid (HTTP 422${code ? `, error ${code}` : ''}): ${msg}`, 422, code);
      default:
        throw new RegistryError(`${prefix} answered HTTP ${res.status} for ${what}${code ? ` (error ${code})` : ''}: ${msg}`, res.status, code, { retriable: res.status >= 500 || res.status === 429 });
    }
  }
}

/**
 * The ids named by the Confluent headers of `payloads` that `have` does not know, each once. Payloads without a valid
 * header are skipped here; decode reports them.
 */
export function unknownIds(payloads: ReadonlyArray<string | Uint8Array>, have: (id: number) => boolean): number[] {
  const out: number[] = [];
  let last = -1;
  for (let i = 0; i < payloads.length; i++) {
    const p = payloads[i]!;
    if (typeof p === 'string' || p.length < 5 || p[0] !== MAGIC) continue;
    const id = ((p[1]! << 24) >>> 0) + (p[2]! << 16) + (p[3]! << 8) + p[4]!;
    // Batches are usually all one schema: skip the set lookup for a run of the same id.
    if (id === last) continue;
    last = id;
    if (!have(id) && !out.includes(id)) out.push(id);
  }
  return out;
}

/**
 * Why an id could not be fetched, kept for the decode error. A permanent failure (404, wrong schema type) is not asked
 * again for `retryMs`, so a stream of messages with a bad id does not send one request per batch.
 */
export class IdFailures {
  private readonly m = new Map<number, { message: string; at: number; permanent: boolean }>();
  constructor(private readonly retryMs = 30_000) {}
  set(id: number, message: string, permanent: boolean): void {
    this.m.set(id, { message, at: Date.now(), permanent });
  }
  delete(id: number): void {
    this.m.delete(id);
  }
  message(id: number): string | undefined {
    return this.m.get(id)?.message;
  }
  /** Failed for good, recently enough that asking again is pointless. */
  recent(id: number): boolean {
    const f = this.m.get(id);
    return f !== undefined && f.permanent && Date.now() - f.at < this.retryMs;
  }
}

/**
 * The decode-side `prepare`: fetch the ids of `payloads` not known yet and hand each schema to `load`. Returns
 * undefined when there is nothing to fetch, so the common batch costs no promise. Only an id the registry does not
 * have, or one `load` rejects (another schema type, unreadable), becomes bad data per record; an unreachable registry
 * or refused credentials reject, so that nothing is dropped or dead-lettered for a setup problem.
 */
export function fetchUnknownIds(
  registry: SchemaRegistryClient,
  payloads: ReadonlyArray<string | Uint8Array>,
  known: (id: number) => boolean,
  failed: IdFailures,
  load: (s: RegisteredSchema) => void,
): Promise<void> | undefined {
  const ids = unknownIds(payloads, (id) => known(id) || failed.recent(id));
  if (!ids.length) return undefined;
  const one = (id: number) =>
    registry.schemaById(id).then(
      (s) => {
        try {
          load(s);
          failed.delete(id);
        } catch (e) {
          failed.set(id, errorMessage(e), true);
        }
      },
      (e: unknown) => {
        const permanent = e instanceof RegistryError && e.status === 404;
        failed.set(id, errorMessage(e), permanent);
        if (!permanent) throw e;
      },
    );
  return Promise.all(ids.map(one)).then(() => undefined);
}
