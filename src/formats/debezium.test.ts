import { describe, expect, it } from 'vitest';
import { createFormat, parseFormatConfig } from './index.js';
import { RecordError } from '../core/errors.js';
import type { KeyedDecoder } from './debezium.js';

const source = { version: '2.5.0', connector: 'postgresql', name: 'dbserver1', ts_ms: 1700000000000, db: 'inventory', schema: 'public', table: 'customers' };
const event = (op: string, before: unknown, after: unknown) => ({ before, after, source, op, ts_ms: 1700000000123 });
const wrapped = (payload: unknown) => ({
  schema: {
    type: 'struct',
    name: 'dbserver1.inventory.customers.Envelope',
    fields: [
      { type: 'struct', field: 'before', optional: true, name: 'dbserver1.inventory.customers.Value', fields: valueFields },
      { type: 'struct', field: 'after', optional: true, name: 'dbserver1.inventory.customers.Value', fields: valueFields },
      { type: 'string', field: 'op' },
    ],
  },
  payload,
});
const valueFields = [
  { type: 'int32', field: 'id' },
  { type: 'string', field: 'email' },
  { type: 'bytes', field: 'balance', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2' } },
  { type: 'int64', field: 'created', name: 'io.debezium.time.MicroTimestamp' },
  { type: 'int32', field: 'born', name: 'io.debezium.time.Date' },
  { type: 'string', field: 'seen', name: 'io.debezium.time.ZonedTimestamp' },
];

function run(name: string, payloads: (string | Uint8Array)[], options: Record<string, unknown> = {}, schema?: Parameters<typeof createFormat>[1]) {
  const dec = createFormat({ name, options }, schema).decoder();
  const rows: unknown[] = [];
  const errors: string[] = [];
  for (const p of payloads) dec.decode(p, rows, (e) => errors.push(e.message));
  return { rows, errors };
}

const meta = { __table: 'customers', __db: 'inventory', __source_ts_ms: 1700000000000, __ts_ms: 1700000000123 };

describe('debezium-json', () => {
  it('unwraps c/u/r to the after row and d to the before row, with metadata, with or without the schema wrapper', () => {
    const a = { id: 1, email: 'a@x' };
    const b = { id: 1, email: 'b@x' };
    const plain = [event('r', null, a), event('c', null, a), event('u', a, b), event('d', b, null)].map((e) => JSON.stringify(e));
    const expected = [
      { ...a, __op: 'r', ...meta },
      { ...a, __op: 'c', ...meta },
      { ...b, __op: 'u', ...meta },
      { ...b, __op: 'd', ...meta },
    ];
    expect(run('debezium-json', plain)).toEqual({ rows: expected, errors: [] });
    const withSchema = [event('r', null, a), event('c', null, a), event('u', a, b), event('d', b, null)].map((e) => Buffer.from(JSON.stringify(wrapped(e))));
    expect(run('debezium', withSchema)).toEqual({ rows: expected, errors: [] });
  });

  it('leaves the metadata out when asked', () => {
    expect(run('debezium_json', [JSON.stringify(event('c', null, { id: 1 }))], { include_metadata: false }).rows).toEqual([{ id: 1 }]);
  });

  it('converts Kafka Connect logical types when the schema is included', () => {
    const after = { id: 7, email: 'z@x', balance: Buffer.from([0xff, 0x85]).toString('base64'), created: 1700000000123456, born: 19000, seen: '2024-01-02T03:04:05.678Z' };
    const { rows } = run('debezium-json', [JSON.stringify(wrapped(event('c', null, after)))]);
    expect(rows[0]).toMatchObject({ id: 7, balance: '-1.23', created: new Date(1700000000123), born: '2022-01-08', seen: new Date('2024-01-02T03:04:05.678Z') });
    // Without the schema there is nothing to go by: values stay as Debezium wrote them.
    expect(run('debezium-json', [JSON.stringify(event('c', null, after))]).rows[0]).toMatchObject({ balance: after.balance, created: after.created });
  });

  it('skips tombstones, truncates and messages, and reports what is not a change event', () => {
    const { rows, errors } = run('debezium-json', ['', 'null', JSON.stringify({ schema: null, payload: null }), JSON.stringify(event('t', null, null)), '{"a":1}', '[1]', '{"op":"x"}', '{"op":"c","after":null}', '{oops']);
    expect(rows).toEqual([]);
    expect(errors).toEqual([
      "not a Debezium change event: 'op' is missing (expected c, u, d or r)",
      'expected a Debezium change event (a JSON object), got an array',
      "unknown Debezium op 'x' (expected c, u, d, r, t or m)",
      "Debezium 'c' event has no 'after' row (got null)",
      expect.stringMatching(/^invalid JSON in Debezium event: /),
    ]);
  });

  it('encodes rows as Debezium envelopes, op from __op (default c), and reads them back', () => {
    const enc = createFormat({ name: 'debezium-json', options: {} }).encoder();
    const c = JSON.parse(enc.encode({ id: 1, big: 2n ** 60n }) as string);
    expect(c).toMatchObject({ before: null, after: { id: 1, big: 1152921504606846976 }, op: 'c', source: { connector: 'sluice' } });
    expect(typeof c.ts_ms).toBe('number');
    const d = JSON.parse(enc.encode({ id: 1, name: 'x', __op: 'd', __table: 't1' }) as string);
    expect(d).toMatchObject({ before: { id: 1, name: 'x' }, after: null, op: 'd', source: { table: 't1' } });
    expect(() => enc.encode({ id: 1, __op: 'z' })).toThrow("field '__op': must be one of c, u, d, r, got string 'z'");
    const stream = enc.encodeStream([{ id: 1 }, { id: 2, __op: 'u' }], true) as string;
    const back = run('debezium-json', stream.trim().split('\n'), { include_metadata: false });
    expect(back.rows).toEqual([{ id: 1 }, { id: 2 }]);
  });
});

describe('debezium-json-upsert', () => {
  it('gives upserts for c/u/r and a delete marker with the key columns for d', () => {
    const a = { id: 1, email: 'a@x', name: 'A' };
    const { rows } = run('debezium-json-upsert', [event('c', null, a), event('u', a, { ...a, name: 'B' }), event('d', { ...a, name: 'B' }, null)].map((e) => JSON.stringify(wrapped(e))), { include_metadata: false, key_fields: 'id' });
    expect(rows).toEqual([
      { ...a, __op: 'c' },
      { ...a, name: 'B', __op: 'u' },
      { id: 1, __op: 'd', __deleted: true },
    ]);
  });

  it("takes the key columns from the pipeline schema's primary key, else all of before", () => {
    const d = JSON.stringify(event('d', { id: 5, region: 'eu', email: 'x' }, null));
    const withPk = run('debezium-json-upsert', [d], {}, { fields: [{ name: 'id', type: 'int64' }, { name: 'region', type: 'string' }], primary_key: ['id', 'region'] });
    expect(withPk.rows).toEqual([{ id: 5, region: 'eu', __op: 'd', __deleted: true }]);
    expect(run('debezium-json-upsert', [d]).rows).toEqual([{ id: 5, region: 'eu', email: 'x', __op: 'd', __deleted: true }]);
  });

  it('turns a tombstone into a delete marker when the record key is known, and skips it otherwise', () => {
    const dec = createFormat({ name: 'debezium_json_upsert', options: {} }).decoder() as KeyedDecoder;
    const rows: unknown[] = [];
    const errors: Error[] = [];
    const onError = (e: Error) => errors.push(e);
    dec.decodeWithKey(new Uint8Array(0), Buffer.from(JSON.stringify({ schema: { type: 'struct' }, payload: { id: 9 } })), rows, onError);
    dec.decodeWithKey(null, '{"id": 10}', rows, onError);
    dec.decodeWithKey('', null, rows, onError);
    dec.decode('', rows, onError);
    expect(rows).toEqual([
      { id: 9, __op: 'd', __deleted: true },
      { id: 10, __op: 'd', __deleted: true },
    ]);
    // A scalar key needs one key column to be named.
    dec.decodeWithKey('', 'abc', rows, onError);
    expect(errors[0]).toBeInstanceOf(RecordError);
    expect(errors[0]!.message).toMatch(/tombstone with a key that is not a JSON object .*set key_fields/);
    const one = createFormat({ name: 'debezium-json-upsert', options: { key_fields: ['sku'] } }).decoder() as KeyedDecoder;
    const r2: unknown[] = [];
    one.decodeWithKey('', 'abc', r2, onError);
    expect(r2).toEqual([{ sku: 'abc', __op: 'd', __deleted: true }]);
    // A non-tombstone with a key decodes as usual.
    one.decodeWithKey(JSON.stringify(event('c', null, { sku: 'q' })), 'q', r2, onError);
    expect(r2[1]).toMatchObject({ sku: 'q', __op: 'c' });
  });

  it('encodes a delete marker as a delete event with the key columns as before', () => {
    const enc = createFormat({ name: 'debezium-json-upsert', options: { key_fields: ['id'] } }).encoder();
    expect(JSON.parse(enc.encode({ id: 3, __op: 'd', __deleted: true }) as string)).toMatchObject({ before: { id: 3 }, after: null, op: 'd' });
  });

  it('validates options with aliases and suggestions', () => {
    expect(parseFormatConfig({ name: 'debezium-json-upsert', key_columns: 'a, b' })).toMatchObject({ ok: true, value: { options: { key_fields: ['a', 'b'] } } });
    const r = parseFormatConfig({ name: 'debezium', include_metdata: false });
    expect(!r.ok && r.issues[0]!.message).toBe("unknown option 'include_metdata'; did you mean 'include_metadata'?");
  });
});
