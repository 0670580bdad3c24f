import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { createFormat, parseFormatConfig } from './index.js';
import { RecordError } from '../core/errors.js';
import type { Format } from '../core/types.js';
import type { PreparedFormat } from './registry.js';
import { decodeIndexes, encodeIndexes } from './protobuf.js';
import { FakeSchemaRegistry } from '../testing/schema-registry.js';

const PROTO = `
syntax = "proto3";
package acme.orders;
import "google/protobuf/timestamp.proto";

message Order {
  enum Status { NEW = 0; PAID = 1; SHIPPED = 2; }
  message Line { string sku = 1; int32 qty = 2; }
  int64 id = 1;
  uint64 big = 2;
  sint64 delta = 3;
  string customer = 4;
  double total = 5;
  float weight = 6;
  bool gift = 7;
  bytes blob = 8;
  Status status = 9;
  repeated Line lines = 10;
  map<string, int64> counters = 11;
  google.protobuf.Timestamp placed = 12;
  repeated string tags = 13;
}

message Refund { int64 order_id = 1; string reason = 2; }
`;

function decodeAll(f: Format, payloads: Uint8Array[]) {
  const dec = f.decoder();
  const rows: unknown[] = [];
  const errors: Error[] = [];
  for (const p of payloads) dec.decode(p, rows, (e) => errors.push(e));
  return { rows, errors };
}

const order = {
  id: 2n ** 62n + 1n,
  big: 18446744073709551615n,
  delta: -5,
  customer: 'Zoë',
  total: 12.5,
  weight: 0.5,
  gift: true,
  blob: Buffer.from([0, 255, 7]),
  status: 'PAID',
  lines: [{ sku: 'a', qty: 2 }, { sku: 'b', qty: 0 }],
  counters: { views: 3, huge: 2n ** 60n },
  placed: new Date('2024-03-04T05:06:07.089Z'),
  tags: ['x', 'y'],
};

describe('protobuf options', () => {
  it('accepts inline text or a file path, with aliases, and names what is wrong', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-proto-'));
    const file = join(dir, 'orders.proto');
    writeFileSync(file, PROTO);
    expect(parseFormatConfig({ name: 'protobuf', proto_file: file, message_name: 'acme.orders.Order' }).ok).toBe(true);
    expect(parseFormatConfig({ proto: { proto: PROTO, message: 'acme.orders.Refund' } }).ok).toBe(true);
    const wrongType = parseFormatConfig({ name: 'protobuf', proto: PROTO, message: 'acme.orders.Ordr' });
    expect(!wrongType.ok && wrongType.issues[0]).toEqual({
      path: ['message'],
      message: "message type 'acme.orders.Ordr' is not defined in the .proto (defined: acme.orders.Order, acme.orders.Order.Line, acme.orders.Refund)",
    });
    const bad = parseFormatConfig({ name: 'protobuf', proto: 'syntax = "proto3"; message { }', message: 'X' });
    expect(!bad.ok && bad.issues[0]!.message).toMatch(/^invalid \.proto definition: /);
    const missing = parseFormatConfig({ name: 'protobuf', proto: join(dir, 'nope.proto'), message: 'X' });
    expect(!missing.ok && missing.issues[0]!.message).toMatch(/^cannot read the \.proto file '.*nope\.proto': ENOENT/);
    const noMessage = parseFormatConfig({ name: 'protobuf', proto: PROTO });
    expect(!noMessage.ok && noMessage.issues[0]!.message).toBe('raw Protobuf needs both proto and message (or set schema_registry_address)');
    const typo = parseFormatConfig({ name: 'protobuf', proto: PROTO, mesage: 'acme.orders.Order' });
    expect(!typo.ok && typo.issues.some((i) => i.message === "unknown option 'mesage'; did you mean 'message'?")).toBe(true);
  });
});

describe('raw protobuf', () => {
  const f = createFormat({ name: 'protobuf', options: { proto: PROTO, message: 'acme.orders.Order' } });

  it('round-trips scalars, int64 family, enums, nested and repeated messages, maps, bytes and Timestamp', () => {
    const bytes = f.encoder().encode(order) as Uint8Array;
    const { rows, errors } = decodeAll(f, [bytes]);
    expect(errors).toEqual([]);
    expect(rows).toEqual([{ ...order, counters: { views: 3, huge: 2n ** 60n } }]);
    expect((rows[0] as { placed: unknown }).placed).toBeInstanceOf(Date);
  });

  it('is wire-compatible with protobufjs used directly, and fills proto3 defaults', () => {
    const root = protobuf.parse(PROTO, { keepCase: true }).root;
    const T = root.lookupType('acme.orders.Refund');
    const bytes = T.encode(T.fromObject({ order_id: 9, reason: 'late' })).finish();
    const g = createFormat({ name: 'protobuf', options: { proto: PROTO, message: 'acme.orders.Refund' } });
    expect(decodeAll(g, [bytes]).rows).toEqual([{ order_id: 9, reason: 'late' }]);
    expect(decodeAll(g, [new Uint8Array(0)]).rows).toEqual([{ order_id: 0, reason: '' }]);
    expect(T.toObject(T.decode(g.encoder().encode({ order_id: 10n, reason: 'x' }) as Uint8Array), { longs: Number })).toEqual({ order_id: 10, reason: 'x' });
  });

  it('reports truncated data as a decode error and a row that does not fit as a schema error', () => {
    const good = f.encoder().encode(order) as Uint8Array;
    const { rows, errors } = decodeAll(f, [good.subarray(0, 12), good]);
    expect(rows).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(RecordError);
    expect(errors[0]!.message).toMatch(/^invalid Protobuf data for acme\.orders\.Order: /);
    expect(() => f.encoder().encode({ id: 'abc' })).toThrow(/^does not fit acme\.orders\.Order: id: integer\|Long expected/);
    expect(() => f.encoder().encode({ status: 'LOST' })).toThrow(/status: enum value expected/);
  });
});

describe('confluent message indexes', () => {
  it('encodes [0] as one zero byte and other paths as zigzag counts and indexes', () => {
    expect([...encodeIndexes([0])]).toEqual([0]);
    expect([...encodeIndexes([1])]).toEqual([2, 2]);
    expect([...encodeIndexes([0, 1])]).toEqual([4, 0, 2]);
    for (const p of [[0], [1], [0, 1], [3, 0, 70]]) expect(decodeIndexes(encodeIndexes(p), 0)).toEqual({ path: p, offset: encodeIndexes(p).length });
  });
});

describe('protobuf with a schema registry', () => {
  const reg = new FakeSchemaRegistry();
  beforeAll(async () => {
    await reg.start();
  });
  afterAll(async () => {
    await reg.stop();
  });

  it('auto-registers the .proto, writes the Confluent header with the message index, and decodes by id', async () => {
    const topic = `refunds-${Date.now()}`;
    const w = createFormat({ name: 'protobuf', options: { proto: PROTO, message: 'acme.orders.Refund', schema_registry_address: reg.url, auto_register: true } }) as PreparedFormat;
    await w.prepareEncode!(topic);
    expect(reg.count(`POST /subjects/${topic}-value/versions`)).toBe(1);
    const msg = Buffer.from(w.encoder().encode({ order_id: 2n ** 63n - 1n, reason: 'damaged' }) as Uint8Array);
    expect(msg[0]).toBe(0);
    expect([...msg.subarray(5, 7)]).toEqual([2, 2]); // Refund is the second top-level message
    const nested = createFormat({ name: 'protobuf', options: { proto: PROTO, message: 'acme.orders.Order.Line', schema_registry_address: reg.url, subject: `${topic}-value` } }) as PreparedFormat;
    await nested.prepareEncode!();
    const lineMsg = Buffer.from(nested.encoder().encode({ sku: 'q', qty: 4 }) as Uint8Array);
    // A reader needs no proto of its own: the registry has it.
    const r = createFormat({ name: 'protobuf', options: { schema_registry_address: reg.url } }) as PreparedFormat;
    await r.prepare!([msg, lineMsg]);
    expect(reg.count(`GET /schemas/ids/${msg.readUInt32BE(1)}`)).toBeLessThanOrEqual(1);
    expect(decodeAll(r, [msg, lineMsg])).toEqual({ rows: [{ order_id: 2n ** 63n - 1n, reason: 'damaged' }, { sku: 'q', qty: 4 }], errors: [] });
  });

  it('reports an index path the registered file does not have, and an unregistered proto', async () => {
    const id = reg.add(`x-${Date.now()}`, PROTO, 'PROTOBUF');
    const r = createFormat({ name: 'protobuf', options: { schema_registry_address: reg.url } }) as PreparedFormat;
    const bad = Buffer.concat([Buffer.from([0, 0, 0, 0, id]), Buffer.from(encodeIndexes([7])), Buffer.from([8, 1])]);
    await r.prepare!([bad]);
    expect(decodeAll(r, [bad]).errors[0]!.message).toBe(`schema id ${id} has no message at index path [7]`);
    const w = createFormat({ name: 'protobuf', options: { proto: PROTO, message: 'acme.orders.Refund', schema_registry_address: reg.url, subject: `none-${Date.now()}` } }) as PreparedFormat;
    await expect(w.prepareEncode!()).rejects.toThrow(/the \.proto is not registered under subject 'none-\d+'.*set auto_register: true/);
  });
});
