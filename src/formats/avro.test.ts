import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import avro from 'avsc';
import { createFormat, parseFormatConfig } from './index.js';
import { RecordError, SluiceError } from '../core/errors.js';
import type { Format, SchemaSpec } from '../core/types.js';
import type { PreparedFormat } from './registry.js';
import { FakeSchemaRegistry } from '../testing/schema-registry.js';
import { avroSchemaFor } from './avro.js';

function decodeAll(f: Format, payloads: (string | Uint8Array)[]) {
  const dec = f.decoder();
  const rows: unknown[] = [];
  const errors: { message: string; raw: string | Uint8Array; err: Error }[] = [];
  for (const p of payloads) dec.decode(p, rows, (err, raw) => errors.push({ message: err.message, raw, err }));
  return { rows, errors };
}

const everything = {
  type: 'record',
  name: 'Everything',
  namespace: 'com.acme',
  fields: [
    { name: 'n', type: 'null' },
    { name: 'b', type: 'boolean' },
    { name: 'i', type: 'int' },
    { name: 'l', type: 'long' },
    { name: 'f', type: 'float' },
    { name: 'd', type: 'double' },
    { name: 'by', type: 'bytes' },
    { name: 's', type: 'string' },
    { name: 'e', type: { type: 'enum', name: 'Color', symbols: ['RED', 'GREEN'] } },
    { name: 'fx', type: { type: 'fixed', name: 'Four', size: 4 } },
    { name: 'arr', type: { type: 'array', items: 'long' } },
    { name: 'map', type: { type: 'map', values: 'string' } },
    { name: 'opt', type: ['null', 'string'], default: null },
    { name: 'choice', type: ['null', 'long', 'string'] },
    { name: 'nested', type: { type: 'record', name: 'Inner', fields: [{ name: 'x', type: 'int' }] } },
    { name: 'ts', type: { type: 'long', logicalType: 'timestamp-millis' } },
    { name: 'tsu', type: { type: 'long', logicalType: 'timestamp-micros' } },
    { name: 'day', type: { type: 'int', logicalType: 'date' } },
    { name: 'dec', type: { type: 'bytes', logicalType: 'decimal', precision: 10, scale: 2 } },
    { name: 'decfx', type: { type: 'fixed', name: 'Dec8', size: 8, logicalType: 'decimal', precision: 18, scale: 4 } },
    { name: 'tm', type: { type: 'int', logicalType: 'time-millis' } },
    { name: 'id', type: { type: 'string', logicalType: 'uuid' } },
  ],
};

const sample = {
  n: null,
  b: true,
  i: -42,
  l: 9_007_199_254_740_993n, // 2^53 + 1: not representable as a double
  f: 1.5,
  d: Math.PI,
  by: Buffer.from([0, 1, 254, 255]),
  s: 'Zoë ☃',
  e: 'GREEN',
  fx: Buffer.from('abcd'),
  arr: [1, -(2n ** 63n), 2n ** 63n - 1n],
  map: { k: 'v' },
  opt: 'set',
  choice: 7,
  nested: { x: 3 },
  ts: new Date('2024-05-06T07:08:09.123Z'),
  tsu: new Date('2024-05-06T07:08:09.456Z'),
  day: '2024-02-29',
  dec: '-12345.67',
  decfx: '3.1416',
  tm: 3_600_000,
  id: '0b7c5a4e-8a3d-4f0e-9b9a-3c2f1e0d9a8b',
};

describe('avro options', () => {
  it('accepts the seed spellings of the registry options and the schema as JSON text or a map', () => {
    const r = parseFormatConfig({ name: 'avro', 'schemaRegistryEnum.endpoint': 'http://registry:8081', schema_registry_api_key: 'k', schema_registry_api_secret: 's', subject: 'x' });
    expect(r.ok && r.value.options).toMatchObject({ schema_registry_address: 'http://registry:8081', schema_registry_api_key: 'k', subject_strategy: 'topic_name', auto_register: false });
    const r2 = parseFormatConfig({ avro: { registry_url: 'http://r:8081', autoRegisterSchemas: 'true' } });
    expect(r2.ok && r2.value.options).toMatchObject({ schema_registry_address: 'http://r:8081', auto_register: true });
    expect(parseFormatConfig({ name: 'avro', schema: JSON.stringify(everything) }).ok).toBe(true);
    expect(parseFormatConfig({ name: 'avro', schema: everything }).ok).toBe(true);
  });

  it('reports a misspelt option with a suggestion, a bad schema, and half-given credentials', () => {
    const r = parseFormatConfig({ name: 'avro', schema_registy_address: 'http://r' }, ['source', 'format']);
    expect(!r.ok && r.issues[0]).toEqual({ path: ['source', 'format', 'schema_registy_address'], message: "unknown option 'schema_registy_address'; did you mean 'schema_registry_address'?" });
    const bad = parseFormatConfig({ name: 'avro', schema: '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "lng"}]}' });
    expect(!bad.ok && bad.issues[0]!.message).toMatch(/invalid Avro schema: .*lng/);
    expect(!bad.ok && bad.issues[0]!.path).toEqual(['schema']);
    const notJson = parseFormatConfig({ name: 'avro', schema: '{"type": ' });
    expect(!notJson.ok && notJson.issues[0]!.message).toMatch(/schema is not valid JSON/);
    const half = parseFormatConfig({ name: 'avro', schema_registry_address: 'http://r', schema_registry_api_key: 'k' });
    expect(!half.ok && half.issues[0]!.message).toBe('schema_registry_api_key and schema_registry_api_secret must be given together');
    const url = parseFormatConfig({ name: 'avro', schema_registry_address: 'registry:8081' });
    expect(!url.ok && url.issues[0]!.message).toMatch(/not an http\(s\) URL/);
  });

  it('refuses to build a decoder with neither a schema nor a registry', () => {
    expect(() => createFormat({ name: 'avro', options: {} }).decoder()).toThrow(/cannot decode without a schema/);
  });
});

describe('raw avro', () => {
  const f = createFormat({ name: 'avro', options: { schema: everything } });

  it('round-trips every primitive, complex and logical type', () => {
    const bytes = f.encoder().encode(sample) as Uint8Array;
    const { rows, errors } = decodeAll(f, [bytes]);
    expect(errors).toEqual([]);
    expect(rows).toEqual([{ ...sample, arr: [1, -(2n ** 63n), 2n ** 63n - 1n] }]);
    const row = rows[0] as Record<string, unknown>;
    expect(row.ts).toBeInstanceOf(Date);
    expect(Buffer.isBuffer(row.by)).toBe(true);
    expect(typeof row.l).toBe('bigint');
    expect((row.arr as unknown[])[0]).toBe(1); // safe longs stay numbers
  });

  it('is binary-compatible with plain avsc (what other Avro producers write)', () => {
    const schema = { type: 'record', name: 'P', fields: [{ name: 'id', type: 'long' }, { name: 'ts', type: { type: 'long', logicalType: 'timestamp-millis' } }, { name: 'v', type: ['null', 'double'] }] };
    const plain = avro.Type.forSchema(schema as avro.Schema);
    const bytes = plain.toBuffer({ id: 12, ts: 1_700_000_000_000, v: 2.5 });
    const g = createFormat({ name: 'avro', options: { schema } });
    expect(decodeAll(g, [bytes]).rows).toEqual([{ id: 12, ts: new Date(1_700_000_000_000), v: 2.5 }]);
    expect(plain.fromBuffer(g.encoder().encode({ id: 13, ts: new Date(5), v: null }) as Buffer)).toEqual({ id: 13, ts: 5, v: null });
  });

  it('keeps int64 precision both ways', () => {
    const g = createFormat({ name: 'avro', options: { schema: { type: 'record', name: 'L', fields: [{ name: 'v', type: 'long' }] } } });
    for (const v of [0, -1, 2 ** 53 - 1, 2n ** 53n + 1n, -(2n ** 63n), 2n ** 63n - 1n]) {
      const out = decodeAll(g, [g.encoder().encode({ v }) as Uint8Array]).rows[0] as { v: unknown };
      expect(out.v).toBe(v);
    }
    // A BigInt that fits a double comes back as a number.
    expect((decodeAll(g, [g.encoder().encode({ v: 5n }) as Uint8Array]).rows[0] as { v: unknown }).v).toBe(5);
    expect(() => g.encoder().encode({ v: 2n ** 63n })).toThrow(/field 'v': expected Avro long/);
    expect(() => g.encoder().encode({ v: 1.5 })).toThrow(RecordError);
  });

  it('reports truncated and corrupt messages as decode errors and carries on', () => {
    const good = f.encoder().encode(sample) as Uint8Array;
    const truncated = good.subarray(0, good.length - 3);
    const { rows, errors } = decodeAll(f, [truncated, Buffer.from([0xff, 0xff, 0xff]), good, new Uint8Array(0)]);
    expect(rows).toHaveLength(1);
    expect(errors).toHaveLength(3);
    expect(errors[0]!.message).toMatch(/^truncated Avro data: the message ends before the record does/);
    expect(errors[0]!.err).toBeInstanceOf(RecordError);
    expect((errors[0]!.err as RecordError).code).toBe('DECODE');
    expect(errors[0]!.raw).toBe(truncated);
    expect(errors[1]!.message).toMatch(/^invalid Avro data at byte 0 \(corrupt, truncated, or written with another schema\): /);
    expect(errors[2]!.message).toBe('empty Avro message');
  });

  it('reports an invalid enum index or union branch instead of crashing', () => {
    const g = createFormat({ name: 'avro', options: { schema: { type: 'record', name: 'U', fields: [{ name: 'u', type: ['null', 'int'] }] } } });
    // Union branch 5 does not exist (zigzag 10 = 5).
    const { errors } = decodeAll(g, [Buffer.from([10, 2])]);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/^invalid Avro data at byte 0 \(corrupt, truncated, or written with another schema\): /);
  });

  it('names the field that does not fit when encoding', () => {
    const g = createFormat({ name: 'avro', options: { schema: { type: 'record', name: 'R', fields: [{ name: 'price', type: 'double' }, { name: 'qty', type: 'int' }] } } });
    expect(() => g.encoder().encode({ price: 'abc', qty: 1 })).toThrow("field 'price': expected Avro double, got string 'abc'");
  });

  it('decodes several concatenated datums in one raw payload, and writes streams length-delimited', () => {
    const g = createFormat({ name: 'avro', options: { schema: '{"type":"record","name":"A","fields":[{"name":"a","type":"int"}]}' } });
    const e = g.encoder();
    const both = Buffer.concat([e.encode({ a: 1 }) as Uint8Array, e.encode({ a: 2 }) as Uint8Array]);
    expect(decodeAll(g, [both]).rows).toEqual([{ a: 1 }, { a: 2 }]);
    const stream = Buffer.from(e.encodeStream([{ a: 1 }, { a: 300 }], true) as Uint8Array);
    expect(stream.readUInt32BE(0)).toBe(1);
    expect(decodeAll(g, [stream.subarray(4, 5), stream.subarray(9)]).rows).toEqual([{ a: 1 }, { a: 300 }]);
  });

  it('derives a record schema from the pipeline schema when none is given', () => {
    const schema: SchemaSpec = {
      fields: [
        { name: 'id', type: 'int64', nullable: false },
        { name: 'price', type: 'decimal', precision: 10, scale: 2 },
        { name: 'at', type: 'timestamp' },
        { name: 'day', type: 'date' },
        { name: 'tags', type: 'array', items: { type: 'string' } },
        { name: 'extra', type: 'json' },
        { name: 'blob', type: 'bytes' },
        { name: 'inner', type: 'object', fields: [{ name: 'ok', type: 'boolean' }] },
      ],
    };
    const g = createFormat({ name: 'avro', options: {} }, schema);
    const row = { id: 2n ** 60n, price: '10.50', at: new Date(1000), day: '2024-01-02', tags: ['a'], extra: { deep: [1, 'x'] }, blob: new Uint8Array([1, 2]), inner: { ok: true } };
    const bytes = g.encoder().encode(row) as Uint8Array;
    const back = createFormat({ name: 'avro', options: { schema: derivedSchemaText(schema) } });
    const { rows } = decodeAll(back, [bytes]);
    expect(rows).toEqual([{ ...row, blob: Buffer.from([1, 2]) }]);
    // Nullable fields may be left out.
    expect(decodeAll(back, [g.encoder().encode({ id: 1 }) as Uint8Array]).rows).toEqual([{ id: 1, price: null, at: null, day: null, tags: null, extra: null, blob: null, inner: null }]);
  });
});

const derivedSchemaText = (s: SchemaSpec) => JSON.stringify(avroSchemaFor(s, 'Row'));

describe('avro with a schema registry', () => {
  const reg = new FakeSchemaRegistry({ username: 'key', password: 'secret' });
  beforeAll(async () => {
    await reg.start();
  });
  afterAll(async () => {
    await reg.stop();
  });

  const opts = (o: Record<string, unknown> = {}) => ({ schema_registry_address: reg.url, schema_registry_api_key: 'key', schema_registry_api_secret: 'secret', ...o });
  const tradeV1 = { type: 'record', name: 'Trade', namespace: 'ex', fields: [{ name: 'sym', type: 'string' }, { name: 'qty', type: 'long' }] };

  /** Confluent framing written by hand, as any producer would. */
  const framed = (id: number, schema: object, value: unknown) => {
    const body = avro.Type.forSchema(schema as avro.Schema).toBuffer(value);
    const out = Buffer.alloc(5 + body.length);
    out.writeUInt32BE(id, 1);
    body.copy(out, 5);
    return out;
  };

  it('decodes by the schema id in the header, fetching each id once', async () => {
    const id = reg.add(`trades-${Date.now()}-value`, tradeV1);
    const f = createFormat({ name: 'avro', options: opts() }) as PreparedFormat;
    const before = reg.count(`GET /schemas/ids/${id}`);
    const batch = [framed(id, tradeV1, { sym: 'A', qty: 1 }), framed(id, tradeV1, { sym: 'B', qty: 2 })];
    await Promise.all([f.prepare!(batch), f.prepare!(batch)]);
    await f.prepare!([framed(id, tradeV1, { sym: 'C', qty: 3 })]);
    expect(reg.count(`GET /schemas/ids/${id}`) - before).toBe(1);
    // Once every id of a batch is known, prepare costs nothing: no promise for the runtime to wait on.
    expect(f.prepare!(batch)).toBeUndefined();
    const { rows, errors } = decodeAll(f, [...batch, framed(id, tradeV1, { sym: 'C', qty: 3 })]);
    expect(errors).toEqual([]);
    expect(rows).toEqual([{ sym: 'A', qty: 1 }, { sym: 'B', qty: 2 }, { sym: 'C', qty: 3 }]);
  });

  it('reports an id the registry does not know, and a message without the header', async () => {
    const f = createFormat({ name: 'avro', options: opts() }) as PreparedFormat;
    const unknown = framed(987_654, tradeV1, { sym: 'A', qty: 1 });
    await f.prepare!([unknown]);
    const { errors } = decodeAll(f, [unknown, Buffer.from([1, 2, 3, 4, 5, 6]), Buffer.from([0, 0])]);
    expect(errors.map((e) => e.message)).toEqual([
      expect.stringMatching(/^unknown schema id 987654: schema registry http:\/\/127\.0\.0\.1:\d+: schema id 987654 not found \(HTTP 404, error 40403\): Schema not found$/),
      'message does not start with the Confluent magic byte 0 (got 1); is it in the Confluent wire format?',
      'message of 2 bytes is too short for the Confluent header (magic byte + 4-byte schema id)',
    ]);
    // A missing id is not asked for again on every batch.
    await f.prepare!([unknown]);
    expect(reg.count('GET /schemas/ids/987654')).toBe(1);
    // Without prepare the decoder says so rather than guessing.
    const g = createFormat({ name: 'avro', options: opts() });
    expect(decodeAll(g, [framed(1, tradeV1, { sym: 'A', qty: 1 })]).errors[0]!.message).toMatch(/unknown schema id 1 \(not fetched from .*the batch was not prepared\)/);
  });

  it('resolves each writer schema to the configured reader schema (schema evolution)', async () => {
    const subject = `evo-${Date.now()}-value`;
    const id1 = reg.add(subject, tradeV1);
    const v2 = { ...tradeV1, fields: [...tradeV1.fields, { name: 'venue', type: ['null', 'string'], default: null }] };
    const id2 = reg.add(subject, v2);
    const f = createFormat({ name: 'avro', options: opts({ schema: v2 }) }) as PreparedFormat;
    const batch = [framed(id1, tradeV1, { sym: 'A', qty: 1 }), framed(id2, v2, { sym: 'B', qty: 2, venue: 'X' })];
    await f.prepare!(batch);
    expect(decodeAll(f, batch).rows).toEqual([{ sym: 'A', qty: 1, venue: null }, { sym: 'B', qty: 2, venue: 'X' }]);
  });

  it('auto-registers on encode under the topic_name subject, then decodes what it wrote', async () => {
    const topic = `orders-${Date.now()}`;
    const schema = { type: 'record', name: 'Order', fields: [{ name: 'id', type: 'long' }, { name: 'at', type: { type: 'long', logicalType: 'timestamp-millis' } }] };
    const f = createFormat({ name: 'avro', options: opts({ schema, auto_register: true }) }) as PreparedFormat;
    await f.prepareEncode!(topic);
    expect(reg.count(`POST /subjects/${topic}-value/versions`)).toBe(1);
    const msg = Buffer.from(f.encoder().encode({ id: 2n ** 62n, at: new Date(42) }) as Uint8Array);
    expect(msg[0]).toBe(0);
    const id = msg.readUInt32BE(1);
    const reader = createFormat({ name: 'avro', options: opts() }) as PreparedFormat;
    await reader.prepare!([msg]);
    expect(decodeAll(reader, [msg]).rows).toEqual([{ id: 2n ** 62n, at: new Date(42) }]);
    // The registered schema keeps the logical type for other readers.
    const latest = (await (await fetch(`${reg.url}/subjects/${topic}-value/versions/latest`, { headers: { authorization: 'Basic ' + Buffer.from('key:secret').toString('base64') } })).json()) as { id: number; schema: string };
    expect(latest.id).toBe(id);
    expect(JSON.parse(latest.schema).fields[1].type).toEqual({ type: 'long', logicalType: 'timestamp-millis' });
  });

  it("prepares through the encoder: without a topic it waits for the sink to name one", async () => {
    const topic = `late-${Date.now()}`;
    const schema = { type: 'record', name: 'Late', fields: [{ name: 'n', type: 'int' }] };
    const enc = createFormat({ name: 'avro', options: opts({ schema, auto_register: true }) }).encoder() as import('../core/types.js').Encoder & { prepare(topic?: string): Promise<void> };
    await enc.prepare(); // what the runtime does before the sink opens: no topic yet, so nothing happens
    expect(() => enc.encode({ n: 1 })).toThrow('the registry subject is unknown: set subject (or topic for subject_strategy topic_name)');
    await enc.prepare(topic); // what a Kafka sink does once it knows its topic
    expect(reg.count(`POST /subjects/${topic}-value/versions`)).toBe(1);
    expect(Buffer.from(enc.encode({ n: 1 }) as Uint8Array)[0]).toBe(0);
  });

  it('follows the record_name and topic_record_name strategies', async () => {
    const schema = { type: 'record', name: 'Ping', namespace: 'com.acme', fields: [{ name: 'n', type: 'int' }] };
    const a = createFormat({ name: 'avro', options: opts({ schema, auto_register: true, subject_strategy: 'record_name' }) }) as PreparedFormat;
    await a.prepareEncode!();
    expect(reg.count('POST /subjects/com.acme.Ping/versions')).toBe(1);
    const b = createFormat({ name: 'avro', options: opts({ schema, auto_register: true, subject_strategy: 'topic_record_name' }) }) as PreparedFormat;
    await b.prepareEncode!('pings');
    expect(reg.count('POST /subjects/pings-com.acme.Ping/versions')).toBe(1);
    const c = createFormat({ name: 'avro', options: opts({ schema }) }) as PreparedFormat;
    await expect(c.prepareEncode!('t')).rejects.toThrow(/not registered under subject 't-value'/); // topic_name: looked up as t-value
    const d = createFormat({ name: 'avro', options: opts({ schema, subject_strategy: 'topic_record_name' }) }) as PreparedFormat;
    await expect(d.prepareEncode!(undefined)).resolves.toBeUndefined();
    expect(() => d.encoder().encode({ n: 1 })).toThrow('subject_strategy topic_record_name needs a topic and a record name; set subject');
  });

  it('without auto_register, uses a registered schema and refuses an unregistered one', async () => {
    const subject = `fixed-${Date.now()}`;
    reg.add(subject, tradeV1);
    const f = createFormat({ name: 'avro', options: opts({ schema: tradeV1, subject }) }) as PreparedFormat;
    await f.prepareEncode!();
    expect(f.encoder().encode({ sym: 'A', qty: 1 })).toBeInstanceOf(Uint8Array);
    const other = { ...tradeV1, name: 'Other' };
    const g = createFormat({ name: 'avro', options: opts({ schema: other, subject }) }) as PreparedFormat;
    await expect(g.prepareEncode!()).rejects.toThrow(`the schema is not registered under subject '${subject}' in ${reg.url}; register it or set auto_register: true`);
    // No schema at all: the subject's latest version.
    const h = createFormat({ name: 'avro', options: opts({ subject }) }) as PreparedFormat;
    await h.prepareEncode!();
    const msg = Buffer.from(h.encoder().encode({ sym: 'Z', qty: 9 }) as Uint8Array);
    expect(avro.Type.forSchema(tradeV1 as avro.Schema).fromBuffer(msg.subarray(5))).toEqual({ sym: 'Z', qty: 9 });
    // Encoding before prepareEncode is a clear error, not a message with a wrong id.
    const k = createFormat({ name: 'avro', options: opts({ schema: tradeV1, subject }) });
    expect(() => k.encoder().encode({ sym: 'A', qty: 1 })).toThrow(/the encoder was not prepared/);
  });

  it("reports the registry's compatibility and validation errors with its message", async () => {
    const subject = `compat-${Date.now()}`;
    reg.add(subject, tradeV1);
    reg.incompatible.set(subject, 'Schema being registered is incompatible with an earlier schema for subject "' + subject + '"');
    const v2 = { ...tradeV1, fields: [{ name: 'sym', type: 'int' }] };
    const f = createFormat({ name: 'avro', options: opts({ schema: v2, subject, auto_register: true }) }) as PreparedFormat;
    const err = await f.prepareEncode!().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as Error).message).toBe(
      `schema registry ${reg.url} rejected the schema for subject '${subject}' as incompatible with the registered versions (HTTP 409, error 409): Schema being registered is incompatible with an earlier schema for subject "${subject}"`,
    );
  });

  it('names the registry and the options when credentials are refused, without the secret', async () => {
    const f = createFormat({ name: 'avro', options: opts({ schema_registry_api_secret: 'wrong-secret' }) }) as PreparedFormat;
    // A setup problem stops the batch (nothing is dropped as bad data) and is not worth retrying.
    const err = await Promise.resolve(f.prepare!([framed(1, tradeV1, { sym: 'A', qty: 1 })])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('AUTH');
    expect((err as SluiceError).retriable).toBe(false);
    expect((err as Error).message).toMatch(/refused the credentials \(HTTP 401\).*check schema_registry_api_key/);
    expect((err as Error).message).not.toContain('wrong-secret');
  });

  it('takes credentials written into the registry URL without showing them', async () => {
    const f = createFormat({ name: 'avro', options: { schema_registry_address: reg.url.replace('http://', 'http://key:secret@') } }) as PreparedFormat;
    const id = reg.add(`url-auth-${Date.now()}`, tradeV1);
    const msg = framed(id, tradeV1, { sym: 'U', qty: 1 });
    await f.prepare!([msg]);
    expect(decodeAll(f, [msg]).rows).toEqual([{ sym: 'U', qty: 1 }]);
    const g = createFormat({ name: 'avro', options: { schema_registry_address: reg.url.replace('http://', 'http://key:nope@') } }) as PreparedFormat;
    const err = ((await Promise.resolve(g.prepare!([msg])).catch((e: unknown) => e)) as Error).message;
    expect(err).toMatch(/refused the credentials/);
    expect(err).not.toContain('nope');
  });

  it('fails prepare with a retriable error naming the registry when it is unreachable', async () => {
    const down = new FakeSchemaRegistry();
    await down.start();
    const url = down.url;
    await down.stop();
    const f = createFormat({ name: 'avro', options: { schema_registry_address: url } }) as PreparedFormat;
    const err = await Promise.resolve(f.prepare!([framed(1, tradeV1, { sym: 'A', qty: 1 })])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).retriable).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`^schema registry ${url} unreachable while fetching schema id 1: `));
    // If the batch is decoded anyway, each record says why.
    expect(decodeAll(f, [framed(1, tradeV1, { sym: 'A', qty: 1 })]).errors[0]!.message).toMatch(/^unknown schema id 1: schema registry .* unreachable/);
  });
});

describe('avro through the runtime', () => {
  it('decodes raw Avro payloads, sends a truncated one to the dead-letter sink, and commits only after the sink', async () => {
    const { startPipeline } = await import('../core/runtime.js');
    const { memoryStateStore } = await import('../core/state.js');
    const { silentLog } = await import('../testing/harness.js');
    const { DEFAULT_BATCH, DEFAULT_BUFFER, DEFAULT_RETRY } = await import('../core/model.js');
    const { z } = await import('zod');
    const schema = { type: 'record', name: 'T', fields: [{ name: 'id', type: 'long' }, { name: 'at', type: { type: 'long', logicalType: 'timestamp-millis' } }] };
    const enc = createFormat({ name: 'avro', options: { schema } }).encoder();
    const good = (id: number | bigint) => enc.encode({ id, at: new Date(1000) }) as Uint8Array;
    const truncated = good(5).subarray(0, 2);
    const committed: unknown[] = [];
    const written: unknown[] = [];
    const dead: unknown[] = [];
    let failWrites = 1;
    const connectors = {
      src: {
        name: 'src', title: '', description: '',
        source: {
          options: z.object({}),
          create: () => ({
            async run(ctx: import('../core/types.js').SourceContext) {
              await ctx.emit({ records: [{ value: good(1) }, { value: truncated, meta: { _offset: 1 } }, { value: good(2n ** 62n) }], ack: 'a1' });
            },
            commit(acks: unknown[]) {
              committed.push(...acks);
            },
          }),
        },
      },
      rec: {
        name: 'rec', title: '', description: '',
        sink: {
          options: z.object({ dlq: z.boolean().optional() }),
          create: (o: { dlq?: boolean }) => ({
            async open() {},
            async write(records: import('../core/types.js').SluiceRecord[]) {
              if (!o.dlq && failWrites-- > 0) {
                // The first attempt fails: nothing may be committed yet.
                expect(committed).toEqual([]);
                throw new SluiceError('SINK', 'down for a moment', { retriable: true });
              }
              (o.dlq ? dead : written).push(...records.map((r) => r.value));
            },
          }),
        },
      },
    } as Record<string, import('../core/spec.js').ConnectorSpec>;
    const ep = (connector: string, over: Record<string, unknown> = {}) => ({ connector, options: {}, config: {}, format: { name: 'avro', options: { schema } }, bad_data: 'fail' as const, metadata_fields: {}, ...over });
    const h = startPipeline(
      {
        name: 'avro-rt',
        source: ep('src', { bad_data: 'dlq' }),
        sink: ep('rec'),
        dlq: ep('rec', { options: { dlq: true }, format: { name: 'json', options: {} } }),
        batch: { ...DEFAULT_BATCH, linger_ms: 0 },
        buffer: { ...DEFAULT_BUFFER },
        retry: { ...DEFAULT_RETRY, initial_backoff_ms: 1, max_backoff_ms: 2 },
      } as never,
      { log: silentLog, state: memoryStateStore(), dataDir: '/tmp/sluice-avro-test', connector: (n: string) => connectors[n]! },
    );
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(written).toEqual([{ id: 1, at: new Date(1000) }, { id: 2n ** 62n, at: new Date(1000) }]);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ error: expect.stringMatching(/^truncated Avro data/), error_class: 'DECODE', metadata: { _offset: 1 } });
    expect(committed).toEqual(['a1']);
  });

  it('fetches registry schemas before decoding (the runtime awaits prepare), in order', async () => {
    const { startPipeline } = await import('../core/runtime.js');
    const { memoryStateStore } = await import('../core/state.js');
    const { silentLog } = await import('../testing/harness.js');
    const { DEFAULT_BATCH, DEFAULT_BUFFER, DEFAULT_RETRY } = await import('../core/model.js');
    const { z } = await import('zod');
    const reg = await new FakeSchemaRegistry().start();
    try {
      const v1 = { type: 'record', name: 'E', fields: [{ name: 'n', type: 'int' }] };
      const v2 = { type: 'record', name: 'E', fields: [{ name: 'n', type: 'int' }, { name: 's', type: 'string', default: '' }] };
      const id1 = reg.add('e-value', v1);
      const id2 = reg.add('e-value', v2);
      const frame = (id: number, schema: object, v: unknown) => {
        const body = avro.Type.forSchema(schema as avro.Schema).toBuffer(v);
        const b = Buffer.alloc(5 + body.length);
        b.writeUInt32BE(id, 1);
        body.copy(b, 5);
        return b;
      };
      const written: unknown[] = [];
      const connectors = {
        src: { name: 'src', title: '', description: '', source: { options: z.object({}), create: () => ({
          async run(ctx: import('../core/types.js').SourceContext) {
            await ctx.emit({ records: [{ value: frame(id1, v1, { n: 1 }) }], ack: 1 });
            await ctx.emit({ records: [{ value: frame(id2, v2, { n: 2, s: 'x' }) }, { value: frame(id1, v1, { n: 3 }) }], ack: 2 });
          },
        }) } },
        rec: { name: 'rec', title: '', description: '', sink: { options: z.object({}), create: () => ({
          async open() {},
          async write(records: import('../core/types.js').SluiceRecord[]) {
            written.push(...records.map((r) => r.value));
          },
        }) } },
      } as Record<string, import('../core/spec.js').ConnectorSpec>;
      const ep = (connector: string, format: unknown) => ({ connector, options: {}, config: {}, format, bad_data: 'fail' as const, metadata_fields: {} });
      const h = startPipeline(
        {
          name: 'avro-reg',
          source: ep('src', { name: 'avro', options: { schema_registry_address: reg.url } }),
          sink: ep('rec', { name: 'json', options: {} }),
          batch: { ...DEFAULT_BATCH, linger_ms: 0 },
          buffer: { ...DEFAULT_BUFFER },
          retry: { ...DEFAULT_RETRY },
        } as never,
        { log: silentLog, state: memoryStateStore(), dataDir: '/tmp/sluice-avro-test', connector: (n: string) => connectors[n]! },
      );
      const r = await h.done;
      expect(r.status).toBe('completed');
      expect(written).toEqual([{ n: 1 }, { n: 2, s: 'x' }, { n: 3 }]);
      expect(reg.count('GET /schemas/ids/')).toBe(2);
    } finally {
      await reg.stop();
    }
  });

  it('a registry that stays unreachable fails the pipeline after the retries, committing and dropping nothing', async () => {
    const { startPipeline } = await import('../core/runtime.js');
    const { memoryStateStore } = await import('../core/state.js');
    const { silentLog } = await import('../testing/harness.js');
    const { DEFAULT_BATCH, DEFAULT_BUFFER } = await import('../core/model.js');
    const { z } = await import('zod');
    const reg = await new FakeSchemaRegistry().start();
    const url = reg.url;
    await reg.stop(); // nothing listens there any more
    const frame = Buffer.from([0, 0, 0, 0, 7, 2]);
    const committed: unknown[] = [];
    const written: unknown[] = [];
    const connectors = {
      src: { name: 'src', title: '', description: '', source: { options: z.object({}), create: () => ({
        async run(ctx: import('../core/types.js').SourceContext) {
          await ctx.emit({ records: [{ value: frame }], ack: 1 });
        },
        commit(acks: unknown[]) {
          committed.push(...acks);
        },
      }) } },
      rec: { name: 'rec', title: '', description: '', sink: { options: z.object({}), create: () => ({
        async open() {},
        async write(records: import('../core/types.js').SluiceRecord[]) {
          written.push(...records);
        },
      }) } },
    } as Record<string, import('../core/spec.js').ConnectorSpec>;
    const ep = (connector: string, format: unknown) => ({ connector, options: {}, config: {}, format, bad_data: 'drop' as const, metadata_fields: {} });
    const h = startPipeline(
      {
        name: 'avro-down',
        source: ep('src', { name: 'avro', options: { schema_registry_address: url } }),
        sink: ep('rec', { name: 'json', options: {} }),
        batch: { ...DEFAULT_BATCH, linger_ms: 0 },
        buffer: { ...DEFAULT_BUFFER },
        retry: { max_attempts: 3, initial_backoff_ms: 1, max_backoff_ms: 5 },
      } as never,
      { log: silentLog, state: memoryStateStore(), dataDir: '/tmp/sluice-avro-test', connector: (n: string) => connectors[n]! },
    );
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/format 'avro' is not ready/);
    expect(r.stats.dropped).toBe(0);
    expect(written).toEqual([]);
    expect(committed).toEqual([]);
  });
});
