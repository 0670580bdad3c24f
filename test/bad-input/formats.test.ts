// Bad payloads through every format's real decoder: each one is either rows or an error a user can read, the
// decoder never throws anything but a readable Error, never takes unbounded time, and what it decodes can be encoded.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import avro from 'avsc';
import { createFormat } from '../../src/formats/index.js';
import { stringifyJson } from '../../src/formats/json.js';
import type { PreparedFormat } from '../../src/formats/registry.js';
import { RecordError } from '../../src/core/errors.js';
import type { Format, SchemaSpec } from '../../src/core/types.js';
import { FakeSchemaRegistry } from '../../src/testing/schema-registry.js';
import { bounded, expectReadable, mutatedBytes, mutatedText, params } from './support.js';

interface Outcome {
  rows: unknown[];
  errors: Error[];
  threw?: unknown;
}

/** One payload through a fresh decoder, holding the decoder to its contract. */
function decodeOne(f: Format, payload: string | Uint8Array, key?: string): Outcome {
  const dec = f.decoder();
  const out: Outcome = { rows: [], errors: [] };
  bounded(2_000, `decoding a ${payload.length}-byte ${f.name} payload`, () => {
    try {
      const onError = (e: Error, raw: string | Uint8Array) => {
        expect(e).toBeInstanceOf(Error);
        expect(typeof raw === 'string' || raw instanceof Uint8Array).toBe(true);
        out.errors.push(e);
      };
      if (dec.decodeWithKey) dec.decodeWithKey(payload, key, out.rows, onError);
      else dec.decode(payload, out.rows, onError);
    } catch (e) {
      out.threw = e;
    }
  });
  // `decode` may throw for a whole payload (the runtime then treats it as one bad record), but only a readable Error.
  if (out.threw !== undefined) {
    expect(out.threw).toBeInstanceOf(Error);
    expectReadable((out.threw as Error).message);
  }
  for (const e of out.errors) expectReadable(e.message);
  for (const r of out.rows) {
    expect(typeof r === 'object' && r !== null && !Array.isArray(r)).toBe(true);
    // Whatever decodes must reach a sink: the JSON encoder (also used for DLQ entries) takes it.
    expect(typeof stringifyJson(r)).toBe('string');
  }
  return out;
}

const text = (s: string) => s;
const utf8 = (s: string) => new TextEncoder().encode(s);
/** Valid UTF-8 with one bad sequence spliced in. */
const invalidUtf8 = (valid: string) =>
  fc.tuple(fc.nat({ max: valid.length }), fc.constantFrom([0xff], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf5, 0x80, 0x80, 0x80])).map(([i, bad]) => {
    const a = utf8(valid.slice(0, i));
    const b = utf8(valid.slice(i));
    const out = new Uint8Array(a.length + bad.length + b.length);
    out.set(a);
    out.set(bad, a.length);
    out.set(b, a.length + bad.length);
    return out;
  });

/** Deeply nested JSON built without recursion. */
const deepJson = (depth: number, open = '{"a":', close = '}', inner = '1') => open.repeat(depth) + inner + close.repeat(depth);

describe('json decoder', () => {
  const f = createFormat({ name: 'json', options: {} });
  const valid = '{"id":1,"name":"Zoë","tags":["a","b"],"nested":{"x":1.5,"ok":true,"n":null}}';
  const ndjson = `${valid}\n{"id":2}\n{"id":3,"s":"x"}\n`;

  it('turns mutated JSON and NDJSON into rows or positioned errors', () => {
    fc.assert(
      fc.property(fc.oneof(mutatedText(valid), mutatedText(ndjson)), (p) => {
        const o = decodeOne(f, p);
        for (const e of o.errors) {
          expect(e).toBeInstanceOf(RecordError);
          expect(e.message).toMatch(/^(invalid JSON (on line \d+ )?at position \d+|invalid JSON at position|expected a JSON object)/);
        }
      }),
      params(400),
    );
  });

  it('reports invalid UTF-8 with the byte offset', () => {
    fc.assert(
      fc.property(invalidUtf8(ndjson), (p) => {
        const o = decodeOne(f, p);
        expect(o.rows).toEqual([]);
        expect(o.errors.map((e) => e.message)).toEqual([expect.stringMatching(/^invalid UTF-8 at byte \d+$/)]);
      }),
      params(100),
    );
  });

  it('takes random bytes without throwing', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (p) => void decodeOne(f, p)), params(300));
  });

  it('rejects 100k levels of nesting as a record error instead of overflowing the stack later', () => {
    for (const p of [deepJson(100_000), deepJson(100_000, '[', ']'), `{"ok":1}\n${deepJson(100_000)}\n{"ok":2}`]) {
      const o = decodeOne(f, p);
      expect(o.threw).toBeUndefined();
      expect(o.errors).toHaveLength(1);
      expect(o.errors[0]!.message).toMatch(/nest/);
      expect(o.rows.length).toBe(p.startsWith('{"ok"') ? 2 : 0);
    }
  });

  it('decodes an oversized value (8 MiB string) in bounded time', () => {
    const big = `{"id":1,"blob":"${'x'.repeat(8 * 1024 * 1024)}"}`;
    const o = decodeOne(f, utf8(big));
    expect(o.errors).toEqual([]);
    expect(o.rows).toHaveLength(1);
  });
});

describe('text decoder', () => {
  const f = createFormat({ name: 'text', options: { split_lines: true } });
  it('decodes any valid UTF-8 and reports any invalid byte', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 100 }).map(text), fc.uint8Array({ maxLength: 100 }), invalidUtf8('line one\nline two')), (p) => {
        const o = decodeOne(f, p);
        if (p instanceof Uint8Array && o.errors.length) expect(o.errors[0]!.message).toMatch(/^invalid UTF-8 at byte \d+$/);
        if (typeof p === 'string') expect(o.errors).toEqual([]);
      }),
      params(300),
    );
  });
});

describe('csv decoder', () => {
  const f = createFormat({ name: 'csv', options: {} });
  const valid = 'id,name,price\n1,apple,1.5\n2,"pear, green",2\n3,"say ""hi""",3\n';

  it('reports rows with the wrong column count, naming both counts', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.stringMatching(/^[a-z0-9]{0,5}$/), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 20 }), (rows) => {
        const o = decodeOne(f, ['id,name,price', ...rows.map((r) => r.join(','))].join('\n'));
        const bad = rows.filter((r) => r.length !== 3 && !(r.length === 1 && r[0] === '')).length;
        expect(o.errors).toHaveLength(bad);
        for (const e of o.errors) expect(e.message).toMatch(/^row has \d+ fields?, header has 3$/);
        expect(o.rows).toHaveLength(rows.filter((r) => r.length === 3).length);
      }),
      params(200),
    );
  });

  it('turns mutated CSV (broken quotes, random bytes, invalid UTF-8) into rows or errors', () => {
    fc.assert(
      fc.property(fc.oneof(mutatedText(valid, fc.constantFrom('"', ',', '\n', '\r', '""', 'x"y')), mutatedText(valid), invalidUtf8(valid), fc.uint8Array({ maxLength: 100 })), (p) => {
        decodeOne(f, p);
      }),
      params(400),
    );
  });

  it('keeps decoding after a bad record in the same stream (one decoder, many payloads)', () => {
    const dec = f.decoder();
    const rows: unknown[] = [];
    const errors: Error[] = [];
    for (const p of ['id,name', '1,a', '2,"unclosed', '3,c', '4,d,extra', '5,e']) dec.decode(p, rows, (e) => errors.push(e));
    expect(rows).toEqual([{ id: '1', name: 'a' }, { id: '3', name: 'c' }, { id: '5', name: 'e' }]);
    expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/^invalid CSV: /), 'row has 3 fields, header has 2']);
  });
});

const tradeSchema = {
  type: 'record',
  name: 'Trade',
  namespace: 'ex',
  fields: [
    { name: 'sym', type: 'string' },
    { name: 'qty', type: 'long' },
    { name: 'tags', type: { type: 'array', items: 'string' } },
    { name: 'attrs', type: { type: 'map', values: 'double' } },
    { name: 'note', type: ['null', 'string'], default: null },
    { name: 'blob', type: 'bytes' },
  ],
};
const trade = { sym: 'ACME', qty: 12, tags: ['a', 'b', 'c'], attrs: { x: 1.5, y: -2 }, note: 'hi', blob: Buffer.from([1, 2, 3]) };
const tradeBody = () => {
  const t = avro.Type.forSchema(tradeSchema as avro.Schema, { wrapUnions: true });
  return new Uint8Array(t.toBuffer({ ...trade, note: { string: 'hi' } }));
};

describe('avro decoder (raw)', () => {
  const f = createFormat({ name: 'avro', options: { schema: tradeSchema, confluent_wire_format: false } });
  const valid = tradeBody();

  it('decodes the valid message', () => {
    expect(decodeOne(f, valid)).toMatchObject({ rows: [trade], errors: [] });
  });

  it('turns truncated, flipped and random Avro into rows or a DECODE error, in bounded time', () => {
    fc.assert(
      fc.property(mutatedBytes(valid), (p) => {
        const o = decodeOne(f, p);
        expect(o.threw).toBeUndefined();
        // Raw Avro payloads may hold several datums: what follows a readable one is reported, never dropped silently.
        expect(o.errors.length).toBeLessThanOrEqual(1);
        if (o.errors.length === 0) expect(o.rows.length).toBeGreaterThanOrEqual(1);
        for (const e of o.errors) expect(e).toBeInstanceOf(RecordError);
      }),
      params(400),
    );
  });

  it('reports every truncation of the message as truncated', () => {
    for (let i = 1; i < valid.length; i++) {
      const o = decodeOne(f, valid.slice(0, i));
      expect(o.errors.map((e) => e.message)).toEqual([expect.stringMatching(/^(truncated Avro data|invalid Avro data)/)]);
    }
  });

  it('answers an array or map block count of billions without looping over it', () => {
    // sym "A", qty 0, then an array block claiming 2^31 items and nothing after.
    const p = new Uint8Array([2, 0x41, 0, 0xfe, 0xff, 0xff, 0xff, 0x0f]);
    const o = decodeOne(f, p);
    expect(o.errors).toHaveLength(1);
    const m = new Uint8Array([2, 0x41, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0x0f]);
    expect(decodeOne(f, m).errors).toHaveLength(1);
  });
});

describe('avro decoder (recursive schema)', () => {
  it('rejects records nested over 1000 levels deep (a few KB of data) instead of passing on rows no encoder can write', () => {
    const schema = { type: 'record', name: 'N', fields: [{ name: 'c', type: ['null', 'N'], default: null }] };
    const f = createFormat({ name: 'avro', options: { schema, confluent_wire_format: false } });
    const nested = (depth: number) => {
      const p = new Uint8Array(depth + 1).fill(2);
      p[depth] = 0;
      return p;
    };
    expect(decodeOne(f, nested(900))).toMatchObject({ errors: [], rows: [expect.anything()] });
    expect(decodeOne(f, nested(1500)).errors.map((e) => e.message)).toEqual(['Avro record nested more than 1000 levels deep at byte 0']);
    // Deeper still, avsc itself runs out of stack (where depends on the stack left): still one error, no row.
    for (const depth of [3000, 8000, 100_000]) {
      const o = decodeOne(f, nested(depth));
      expect(o.rows).toEqual([]);
      expect(o.errors).toHaveLength(1);
    }
  });
});

describe('avro decoder (Confluent wire format with a schema registry)', () => {
  const reg = new FakeSchemaRegistry();
  let id = 0;
  beforeAll(async () => {
    await reg.start();
    id = reg.add('trades-value', tradeSchema);
  });
  afterAll(async () => {
    await reg.stop();
  });
  const framed = (schemaId: number, body: Uint8Array) => {
    const out = new Uint8Array(5 + body.length);
    new DataView(out.buffer).setUint32(1, schemaId);
    out.set(body, 5);
    return out;
  };

  it('turns mutated framed messages (header and body) into rows or errors once prepared', async () => {
    const f = createFormat({ name: 'avro', options: { schema_registry_address: reg.url } }) as PreparedFormat;
    const valid = framed(id, tradeBody());
    await fc.assert(
      fc.asyncProperty(fc.array(mutatedBytes(valid), { minLength: 1, maxLength: 5 }), async (payloads) => {
        await f.prepare?.(payloads);
        for (const p of payloads) {
          const o = decodeOne(f, p);
          expect(o.threw).toBeUndefined();
          expect(o.rows.length + o.errors.length).toBe(1);
        }
      }),
      params(150),
    );
  });
});

const PROTO = `
syntax = "proto3";
package t;
message Line { string sku = 1; int32 qty = 2; }
message Node { string name = 1; repeated Node children = 2; }
message Order {
  int64 id = 1;
  string customer = 2;
  double total = 3;
  bytes blob = 4;
  repeated Line lines = 5;
  map<string, int64> counters = 6;
  Node tree = 7;
  enum Status { NEW = 0; PAID = 1; }
  Status status = 8;
}
`;

describe('protobuf decoder', () => {
  const f = createFormat({ name: 'protobuf', options: { proto: PROTO, message: 't.Order' } });
  const valid = f.encoder().encode({
    id: 7,
    customer: 'Zoë',
    total: 9.5,
    blob: Buffer.from([1, 2]),
    lines: [{ sku: 'a', qty: 1 }],
    counters: { v: 3 },
    tree: { name: 'r', children: [{ name: 'c' }] },
    status: 'PAID',
  }) as Uint8Array;

  it('turns mutated and random protobuf into rows or a DECODE error', () => {
    fc.assert(
      fc.property(mutatedBytes(valid), (p) => {
        const o = decodeOne(f, p);
        expect(o.threw).toBeUndefined();
        expect(o.rows.length + o.errors.length).toBe(1);
        for (const e of o.errors) expect(e.message).toMatch(/^invalid Protobuf data for t\.Order: /);
      }),
      params(400),
    );
  });

  it('answers a message nested 100k levels deep with an error, not a stack overflow', () => {
    // Node.children (field 2, length-delimited) nested inside itself: sizes inside out, then written outside in.
    const depth = 100_000;
    const varint = (n: number) => {
      const b: number[] = [];
      do {
        b.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
        n >>>= 7;
      } while (n);
      return b;
    };
    const size = [0];
    for (let k = 1; k <= depth; k++) size.push(1 + varint(size[k - 1]!).length + size[k - 1]!);
    const p = new Uint8Array(size[depth]!);
    let at = 0;
    for (let k = depth; k >= 1; k--) {
      p[at++] = 0x12;
      for (const x of varint(size[k - 1]!)) p[at++] = x;
    }
    const g = createFormat({ name: 'protobuf', options: { proto: PROTO, message: 't.Node' } });
    const o = decodeOne(g, p);
    expect(o.threw).toBeUndefined();
    expect(o.rows).toEqual([]);
    expect(o.errors).toHaveLength(1);
  });
});

describe('debezium decoders', () => {
  const source = { version: '2.5.0', connector: 'postgresql', name: 'db', ts_ms: 1, db: 'inv', schema: 'public', table: 't' };
  const valid = JSON.stringify({ before: null, after: { id: 1, email: 'a@b' }, source, op: 'c', ts_ms: 2 });
  const del = JSON.stringify({ before: { id: 1, email: 'a@b' }, after: null, source, op: 'd', ts_ms: 3 });
  for (const name of ['debezium-json', 'debezium-json-upsert']) {
    it(`${name}: mutated change events become rows or errors`, () => {
      const f = createFormat({ name, options: {} });
      fc.assert(
        fc.property(fc.oneof(mutatedText(valid), mutatedText(del), fc.json().map(text), fc.uint8Array({ maxLength: 80 })), fc.option(fc.string({ maxLength: 10 }), { nil: undefined }), (p, key) => {
          decodeOne(f, p, key);
        }),
        params(300),
      );
    });
  }
});

describe('parquet decoder', () => {
  const schema: SchemaSpec = {
    fields: [
      { name: 'id', type: 'int64' },
      { name: 'name', type: 'string' },
      { name: 'price', type: 'decimal', precision: 10, scale: 2 },
      { name: 'tags', type: 'array', items: { type: 'string' } },
    ],
  };
  const f = createFormat({ name: 'parquet', options: {} }, schema);
  const rows = Array.from({ length: 20 }, (_, i) => ({ id: i, name: `n${i}`, price: `${i}.25`, tags: ['a', String(i)] }));
  const valid = f.encoder().encodeStream(rows, true) as Uint8Array;

  it('decodes the valid file', () => {
    expect(decodeOne(f, valid).rows).toHaveLength(20);
  });

  // Damage anywhere: the footer, page headers, level runs (one byte there used to claim billions of repeats, which
  // hyparquet wrote out until the process ran out of memory), values.
  it('turns truncated, corrupted and random files into rows or errors, in bounded time', () => {
    fc.assert(
      fc.property(mutatedBytes(valid), (p) => {
        const o = decodeOne(f, p);
        if (o.threw === undefined && o.errors.length === 0) expect(o.rows.length).toBeLessThanOrEqual(20 + 1);
      }),
      params(300),
    );
  });
});
