// Random values against declared field types: each is coerced to the declared type or rejected with a RecordError
// naming the field; nothing else is ever thrown, and coercion takes bounded time.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileSchema, parseSchemaConfig } from '../../src/core/schema.js';
import { ConfigError, RecordError } from '../../src/core/errors.js';
import type { FieldSpec, FieldType, SchemaSpec } from '../../src/core/types.js';
import { stringifyJson } from '../../src/formats/json.js';
import { bounded, expectReadable, mutatedText, params } from './support.js';

const scalarType = fc.constantFrom<FieldType>('string', 'int32', 'int64', 'float32', 'float64', 'decimal', 'boolean', 'timestamp', 'date', 'json', 'bytes');

const fieldType: fc.Arbitrary<Omit<FieldSpec, 'name'>> = fc.letrec<{ t: Omit<FieldSpec, 'name'> }>((tie) => ({
  t: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalarType.chain((type): fc.Arbitrary<Omit<FieldSpec, 'name'>> => {
      if (type === 'decimal') return fc.record({ type: fc.constant(type), precision: fc.integer({ min: 1, max: 38 }), scale: fc.integer({ min: 0, max: 10 }) }).filter((d) => d.scale <= d.precision);
      if (type === 'timestamp') {
        return fc.record(
          { type: fc.constant(type), format: fc.constantFrom('iso', 'epoch', 'YYYY-MM-DD HH:mm:ss'), unit: fc.constantFrom<'s' | 'ms' | 'us' | 'ns'>('s', 'ms', 'us', 'ns') },
          { requiredKeys: ['type'] },
        );
      }
      return fc.constant({ type });
    }),
    tie('t').map((items) => ({ type: 'array' as const, items })),
    fc.array(tie('t'), { minLength: 1, maxLength: 3 }).map((fs) => ({ type: 'object' as const, fields: fs.map((f, i) => ({ name: `c${i}`, ...f })) })),
  ),
})).t;

const fieldSpec: fc.Arbitrary<FieldSpec> = fc.tuple(fieldType, fc.boolean()).map(([t, nullable]) => ({ name: 'f', ...t, nullable }));

/** Values of every JS shape a decoder produces, plus strings that look like numbers, dates and booleans. */
const value = fc.oneof(
  fc.anything({ maxDepth: 3, withBigInt: true, withDate: true, withTypedArray: true, withNullPrototype: true, withObjectString: true, withSparseArray: true }),
  fc.constantFrom('1', '-0', '1e400', 'NaN', 'Infinity', '0x10', '9223372036854775808', '2024-02-30', '2024-01-01T00:00:00Z', 'true', 'yes', '', ' 1 ', '1.005', '12345678901234567890.123456'),
  fc.double(),
  fc.bigInt(),
  fc.date({ noInvalidDate: false }),
);

function check(spec: SchemaSpec, row: Record<string, unknown>, encodable = true) {
  const coerce = compileSchema(spec);
  let out: Record<string, unknown> | undefined;
  bounded(1_000, 'coercing one row', () => {
    try {
      out = coerce(row);
    } catch (e) {
      // The only thing a bad value may cause: a SCHEMA RecordError naming the field (or a path below it).
      expect(e).toBeInstanceOf(RecordError);
      const r = e as RecordError;
      expect(r.code).toBe('SCHEMA');
      expect(r.field).toMatch(/^f(\b|\.|\[)/);
      expect(r.message.startsWith(`field '${r.field}': `)).toBe(true);
      expectReadable(r.message);
    }
  });
  // What passed must be encodable by the sink side.
  if (out && encodable) expect(typeof stringifyJson(out)).toBe('string');
}

describe('schema coercion of random values', () => {
  it('coerces or rejects naming the field, for every declared type', () => {
    fc.assert(
      fc.property(fieldSpec, value, (f, v) => check({ fields: [f] }, { f: v })),
      params(2000),
    );
  });

  it('rejects a row that is not an object with a readable error', () => {
    const coerce = compileSchema({ fields: [{ name: 'f', type: 'int32' }] });
    fc.assert(
      fc.property(fc.oneof(fc.constant(null), fc.array(fc.anything()), fc.string(), fc.integer()), (row) => {
        expect(() => coerce(row)).toThrow(RecordError);
        try {
          coerce(row);
        } catch (e) {
          expectReadable((e as Error).message);
        }
      }),
      params(200),
    );
  });

  it('takes values nested 100k levels deep (built by a decoder other than JSON) without a stack overflow', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    let deepArr: unknown = 1;
    for (let i = 0; i < 100_000; i++) deepArr = [deepArr];
    for (const t of ['json', 'object', 'string', 'array', 'bytes', 'int64'] as const) {
      const f: FieldSpec = t === 'array' ? { name: 'f', type: t, items: { type: 'json' } } : { name: 'f', type: t };
      // Passing such a value on is the decoder's concern (see formats.test.ts), not the schema's.
      check({ fields: [f] }, { f: deep }, false);
      check({ fields: [f] }, { f: deepArr }, false);
    }
  });

  it('names the nested field that does not fit (object and array paths)', () => {
    const spec: SchemaSpec = { fields: [{ name: 'f', type: 'object', fields: [{ name: 'xs', type: 'array', items: { type: 'int32', nullable: false } }] }] };
    expect(() => compileSchema(spec)({ f: { xs: [1, 2, 'three'] } })).toThrow(/^field 'f\.xs\[2\]': /);
  });
});

describe('schema configuration from mutated text', () => {
  it('parseSchemaConfig answers issues for any JSON-ish input, never throws', () => {
    const valid = JSON.stringify({ fields: [{ name: 'id', type: 'int64', nullable: false }, { name: 'price', type: 'decimal(10,2)' }, { name: 'tags', type: 'array<string>' }], primary_key: ['id'] });
    fc.assert(
      fc.property(fc.oneof(mutatedText(valid), fc.json()), (text) => {
        let input: unknown;
        try {
          input = JSON.parse(text);
        } catch {
          input = text;
        }
        const r = parseSchemaConfig(input);
        if (!r.ok) for (const i of r.issues) expectReadable(i.message);
        else {
          // A schema that parsed compiles (or says why not as a ConfigError).
          try {
            compileSchema(r.value);
          } catch (e) {
            expect(e).toBeInstanceOf(ConfigError);
          }
        }
      }),
      params(1000),
    );
  });
});
