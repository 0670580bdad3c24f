import { describe, expect, it } from 'vitest';
import { compileSchema, describeSchema, inferSchema, parseSchemaConfig, parseTypeName, schemaToJson } from './schema.js';
import { ConfigError, RecordError } from './errors.js';
import type { FieldSpec, SchemaSpec } from './types.js';

function parsed(input: unknown): SchemaSpec {
  const r = parseSchemaConfig(input);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.value;
}

function issues(input: unknown, path?: (string | number)[]) {
  const r = parseSchemaConfig(input, path);
  if (r.ok) throw new Error('expected issues');
  return r.issues;
}

/** Coerce one value through a single-field schema. */
function one(field: Omit<FieldSpec, 'name'>, value: unknown): unknown {
  return compileSchema({ fields: [{ name: 'f', ...field }] })({ f: value }).f;
}

function failure(field: Omit<FieldSpec, 'name'>, value: unknown): string {
  try {
    one(field, value);
  } catch (e) {
    expect(e).toBeInstanceOf(RecordError);
    return (e as RecordError).message;
  }
  throw new Error(`no error for ${String(value)}`);
}

describe('parseSchemaConfig: our shape', () => {
  it('reads a field list with every option', () => {
    const s = parsed({
      fields: [
        { name: 'id', type: 'int64', nullable: false, primary_key: true },
        { name: 'price', type: 'decimal', precision: 10, scale: 2, default: '0' },
        { name: 'ts', type: 'timestamp', format: 'YYYY-MM-DD HH:mm:ss' },
        { name: 'epoch', type: 'timestamp', unit: 's' },
        { name: 'tags', type: 'array', items: { type: 'string', nullable: false } },
        { name: 'pos', type: 'object', fields: [{ name: 'x', type: 'float64' }] },
        { name: 'offset', type: 'int64', metadata: '_offset' },
      ],
      unknown_fields: 'drop',
    });
    expect(s).toEqual({
      fields: [
        { name: 'id', type: 'int64', nullable: false },
        { name: 'price', type: 'decimal', precision: 10, scale: 2, default: '0' },
        { name: 'ts', type: 'timestamp', format: 'YYYY-MM-DD HH:mm:ss' },
        { name: 'epoch', type: 'timestamp', unit: 's' },
        { name: 'tags', type: 'array', items: { type: 'string', nullable: false } },
        { name: 'pos', type: 'object', fields: [{ name: 'x', type: 'float64' }] },
        { name: 'offset', type: 'int64', metadata: '_offset' },
      ],
      primary_key: ['id'],
      unknown_fields: 'drop',
    });
  });

  it('reads the name: type shorthand, with full specs as values too', () => {
    expect(parsed({ fields: { id: 'BIGINT', name: 'varchar(20)', score: { type: 'double', nullable: false } } })).toEqual({
      fields: [
        { name: 'id', type: 'int64' },
        { name: 'name', type: 'string' },
        { name: 'score', type: 'float64', nullable: false },
      ],
    });
  });

  it('reads a bare list of fields and a comma-separated primary key', () => {
    expect(parsed([{ name: 'a', type: 'int' }])).toEqual({ fields: [{ name: 'a', type: 'int32' }] });
    expect(parsed({ fields: { a: 'int', b: 'text' }, primary_key: 'a, b' }).primary_key).toEqual(['a', 'b']);
  });

  it('turns object/json with fields into object, and without into json', () => {
    expect(parsed({ fields: { a: 'object', b: 'map', c: 'struct' } }).fields.map((f) => f.type)).toEqual(['json', 'json', 'json']);
    expect(parsed({ fields: [{ name: 'a', type: 'json', fields: { x: 'int' } }] }).fields[0]).toEqual({
      name: 'a',
      type: 'object',
      fields: [{ name: 'x', type: 'int32' }],
    });
  });

  it('reports unknown field options with a suggestion at their path', () => {
    expect(issues({ fields: [{ name: 'a', type: 'int', nulable: true }] }, ['schema'])).toEqual([
      { path: ['schema', 'fields', 0, 'nulable'], message: "unknown field option 'nulable'; did you mean 'nullable'?" },
    ]);
    expect(issues({ feilds: [] })[0]).toEqual({ path: ['feilds'], message: "unknown schema key 'feilds'; did you mean 'fields'?" });
  });

  it('reports an unknown type at the field path, suggesting the closest and listing known ones', () => {
    const [i] = issues({ fields: [{ name: 'a', type: 'int' }, { name: 'b', type: 'strng' }] }, ['src', 'schema']);
    expect(i!.path).toEqual(['src', 'schema', 'fields', 1, 'type']);
    expect(i!.message).toMatch(/^unknown type 'strng'; did you mean 'string'\? \(known types: string, int32, int64, /);
    expect(issues({ fields: { a: 'timestampz9' } })[0]!.path).toEqual(['fields', 'a']);
  });

  it('reports duplicate fields, bad primary keys and bad unknown_fields', () => {
    expect(issues({ fields: [{ name: 'a', type: 'int' }, { name: 'a', type: 'text' }] })).toEqual([
      { path: ['fields', 1], message: "duplicate field 'a' (first defined at fields[0])" },
    ]);
    expect(issues({ fields: { id: 'int' }, primary_key: ['ib'] })[0]!.message).toBe("primary key 'ib' is not a field; did you mean 'id'?");
    expect(issues({ fields: [{ name: 'id', type: 'int', nullable: true, primary_key: true }] })[0]!.message).toBe("primary key 'id' cannot be nullable");
    expect(issues({ fields: { a: 'int' }, unknown_fields: 'ignore' })[0]).toEqual({ path: ['unknown_fields'], message: 'unknown_fields must be one of keep, drop, error' });
  });

  it('reports missing names and types, misplaced options and defaults that do not fit', () => {
    expect(issues({ fields: [{ type: 'int' }] })[0]).toEqual({ path: ['fields', 0, 'name'], message: 'field needs a name' });
    expect(issues({ fields: [{ name: 'a' }] })[0]).toEqual({ path: ['fields', 0, 'type'], message: "field 'a' needs a type" });
    expect(issues({ fields: [{ name: 'a', type: 'int', scale: 2 }] })[0]!.message).toBe('scale applies to decimal fields only');
    expect(issues({ fields: [{ name: 'a', type: 'string', unit: 's' }] })[0]!.message).toBe('unit applies to timestamp fields only');
    expect(issues({ fields: [{ name: 'a', type: 'timestamp', format: 'HH:mm' }] })[0]!.message).toMatch(/needs at least YYYY/);
    expect(issues({ fields: [{ name: 'a', type: 'decimal(4,6)' }] })[0]!.message).toBe('scale 6 is larger than precision 4');
    expect(issues({ fields: [{ name: 'n', type: 'int', default: 'abc' }] })[0]).toEqual({
      path: ['fields', 0, 'default'],
      message: "default does not fit: expected int32, got string 'abc'",
    });
    expect(issues({}) [0]!.message).toMatch(/schema needs fields/);
    expect(issues('id int')[0]!.message).toMatch(/schema must be a map/);
  });
});

describe('parseSchemaConfig: DataBrew shape', () => {
  const databrew = {
    stream_schema: [
      {
        stream: 'taxi_rides',
        columns: [
          { name: 'log_id', databrewType: 'Int32', nativeConnectorType: 'integer', pk: true, nullable: false },
          { name: 'fare', databrewType: 'Float64', nativeConnectorType: 'double precision', pk: false, nullable: true },
          { name: 'points', databrewType: 'List<Int64>' },
          {
            name: 'market',
            databrewType: 'JSON',
            columns: [{ name: 'size', databrewType: 'Float64' }],
          },
          { name: 'markets', databrewType: 'List<JSON>', columns: [{ name: 'name', databrewType: 'String' }] },
          { name: 'vendor', nativeConnectorType: 'varchar' },
        ],
      },
    ],
  };

  it('reads stream_schema columns, pk flags and nested columns', () => {
    expect(parsed(databrew)).toEqual({
      fields: [
        { name: 'log_id', type: 'int32', nullable: false },
        { name: 'fare', type: 'float64', nullable: true },
        { name: 'points', type: 'array', items: { type: 'int64' } },
        { name: 'market', type: 'object', fields: [{ name: 'size', type: 'float64' }] },
        { name: 'markets', type: 'array', items: { type: 'object', fields: [{ name: 'name', type: 'string' }] } },
        { name: 'vendor', type: 'string' },
      ],
      primary_key: ['log_id'],
    });
  });

  it('reads a bare columns list', () => {
    expect(parsed({ columns: [{ name: 'id', databrewType: 'Int64', pk: true }] })).toEqual({
      fields: [{ name: 'id', type: 'int64' }],
      primary_key: ['id'],
    });
  });

  it('points issues into the stream', () => {
    const [i] = issues({ stream_schema: [{ stream: 's', columns: [{ name: 'a', databrewType: 'Int99' }] }] });
    expect(i!.path).toEqual(['stream_schema', 0, 'columns', 0, 'databrewType']);
    expect(issues({ stream_schema: [{ stream: 'a', columns: [] }, { stream: 'b', columns: [] }] })[0]!.message).toMatch(/lists 2 streams/);
  });
});

describe('parseSchemaConfig: Laminar/Arroyo shape', () => {
  it('reads {primitive} types, struct and list', () => {
    expect(
      parsed({
        fields: [
          { name: 'id', type: { primitive: 'Int64' }, nullable: false },
          { name: 'price', type: { primitive: 'Float64' } },
          { name: 'sym', type: { primitive: 'Utf8' } },
          { name: 'at', type: { primitive: 'UnixMillis' } },
          { name: 'ok', type: { primitive: 'Boolean' } },
          { name: 'n', type: { primitive: 'UInt32' } },
          { name: 'pos', type: { struct: { fields: [{ name: 'x', type: { primitive: 'F64' } }] } } },
          { name: 'tags', type: { list: { primitive: 'Utf8' } } },
        ],
      }).fields,
    ).toEqual([
      { name: 'id', type: 'int64', nullable: false },
      { name: 'price', type: 'float64' },
      { name: 'sym', type: 'string' },
      { name: 'at', type: 'timestamp', unit: 'ms' },
      { name: 'ok', type: 'boolean' },
      { name: 'n', type: 'int64' },
      { name: 'pos', type: 'object', fields: [{ name: 'x', type: 'float64' }] },
      { name: 'tags', type: 'array', items: { type: 'string' } },
    ]);
  });

  it("reads Arroyo's field_name/field_type, required, metadataKey and primaryKeys", () => {
    expect(
      parsed({
        fields: [
          { fieldName: 'id', fieldType: { type: { primitive: 'Int64' } }, nullable: false },
          { name: 'ts', type: 'timestamp', unit: 'millisecond', required: true },
          { name: 'items', type: 'list', items: { name: 'item', type: 'f32', required: false } },
          { name: 'part', type: 'int32', required: false, metadataKey: '_partition', sqlName: 'INTEGER' },
        ],
        primaryKeys: ['id'],
      }),
    ).toEqual({
      fields: [
        { name: 'id', type: 'int64', nullable: false },
        { name: 'ts', type: 'timestamp', unit: 'ms', nullable: false },
        { name: 'items', type: 'array', items: { type: 'float32', nullable: true } },
        { name: 'part', type: 'int32', nullable: true, metadata: '_partition' },
      ],
      primary_key: ['id'],
    });
  });
});

describe('type names', () => {
  it.each([
    ['INT', 'int32'], ['integer', 'int32'], ['INT4', 'int32'], ['Int32', 'int32'], ['smallint', 'int32'],
    ['BIGINT', 'int64'], ['int8', 'int64'], ['LONG', 'int64'], ['Int64', 'int64'], ['int unsigned', 'int64'],
    ['FLOAT', 'float32'], ['real', 'float32'], ['Float32', 'float32'], ['float(53)', 'float64'],
    ['DOUBLE', 'float64'], ['double precision', 'float64'], ['FLOAT8', 'float64'], ['Float64', 'float64'], ['number', 'float64'],
    ['TEXT', 'string'], ['VARCHAR(255)', 'string'], ['string', 'string'], ['Utf8', 'string'], ['CHAR', 'string'],
    ['BOOL', 'boolean'], ['boolean', 'boolean'],
    ['TIMESTAMP', 'timestamp'], ['datetime', 'timestamp'], ['timestamp with time zone', 'timestamp'], ['TIMESTAMP(3)', 'timestamp'],
    ['DATE', 'date'], ['JSON', 'json'], ['jsonb', 'json'], ['BYTES', 'bytes'], ['bytea', 'bytes'], ['BINARY', 'bytes'], ['blob', 'bytes'],
  ])('%s is %s', (name, type) => {
    const r = parseTypeName(name);
    expect(typeof r === 'object' && r.type).toBe(type);
  });

  it('reads decimal precision and scale, and array element types', () => {
    expect(parseTypeName('NUMERIC(12, 3)')).toMatchObject({ type: 'decimal', precision: 12, scale: 3 });
    expect(parseTypeName('decimal(5)')).toMatchObject({ type: 'decimal', precision: 5, scale: 0 });
    expect(parseTypeName('array<int64>')).toEqual({ type: 'array', items: { type: 'int64' } });
    expect(parseTypeName('int64[]')).toEqual({ type: 'array', items: { type: 'int64' } });
    expect(parseTypeName('ARRAY<ARRAY<TEXT>>')).toEqual({ type: 'array', items: { type: 'array', items: { type: 'string' } } });
    expect(parseTypeName('int(3, 4)')).toBe("type 'int(3, 4)' takes no arguments");
  });
});

describe('compileSchema coercion', () => {
  it('leaves values that already fit untouched and returns the same row object', () => {
    const row = { id: 1, name: 'x', ok: true, ts: new Date(0), tags: ['a'], meta: { any: 1 } };
    const fn = compileSchema(parsed({ fields: { id: 'int64', name: 'string', ok: 'bool', ts: 'timestamp', tags: 'array<string>', meta: 'json' } }));
    const out = fn(row);
    expect(out).toBe(row);
    expect(out).toEqual({ id: 1, name: 'x', ok: true, ts: new Date(0), tags: ['a'], meta: { any: 1 } });
  });

  it('int32: numeric strings, integral and in range', () => {
    expect(one({ type: 'int32' }, '42')).toBe(42);
    expect(one({ type: 'int32' }, ' -7 ')).toBe(-7);
    expect(one({ type: 'int32' }, '1e3')).toBe(1000);
    expect(one({ type: 'int32' }, 5n)).toBe(5);
    expect(failure({ type: 'int32' }, '12abc')).toBe("field 'f': expected int32, got string '12abc'");
    expect(failure({ type: 'int32' }, 1.5)).toBe("field 'f': expected int32, got number 1.5 (not an integer)");
    expect(failure({ type: 'int32' }, 2147483648)).toBe("field 'f': expected int32, got number 2147483648 (out of range)");
    expect(failure({ type: 'int32' }, true)).toBe("field 'f': expected int32, got boolean true");
  });

  it('int64: safe integers as numbers, larger ones as BigInt, range-checked', () => {
    expect(one({ type: 'int64' }, '9007199254740991')).toBe(9007199254740991);
    expect(one({ type: 'int64' }, '9007199254740993')).toBe(9007199254740993n);
    expect(one({ type: 'int64' }, 9223372036854775807n)).toBe(9223372036854775807n);
    expect(one({ type: 'int64' }, 12n)).toBe(12);
    expect(one({ type: 'int64' }, 2 ** 60)).toBe(2n ** 60n);
    expect(one({ type: 'int64' }, '-0012')).toBe(-12);
    expect(failure({ type: 'int64' }, '9223372036854775808')).toMatch(/\(out of range\)$/);
    expect(failure({ type: 'int64' }, '3.5')).toBe("field 'f': expected int64, got string '3.5' (not an integer)");
    expect(failure({ type: 'int64' }, 'NaN')).toBe("field 'f': expected int64, got string 'NaN'");
  });

  it('float: accepts integers and numeric strings, rejects partial numbers', () => {
    expect(one({ type: 'float64' }, 3)).toBe(3);
    expect(one({ type: 'float64' }, '2.5e-3')).toBe(0.0025);
    expect(one({ type: 'float32' }, '.5')).toBe(0.5);
    expect(failure({ type: 'float64' }, 'abc')).toBe("field 'f': expected float64, got string 'abc'");
    expect(failure({ type: 'float64' }, '1.2.3')).toBe("field 'f': expected float64, got string '1.2.3'");
    expect(failure({ type: 'float64' }, '0x10')).toBe("field 'f': expected float64, got string '0x10'");
    expect(failure({ type: 'float32' }, 1e39)).toMatch(/out of range/);
    // Plain decimals take a fast path; the edge cases around it must agree with the full check.
    expect(one({ type: 'float64' }, '0.01234000')).toBe(0.01234);
    expect(one({ type: 'float64' }, '7.')).toBe(7);
    expect(one({ type: 'float64' }, ' -1.5 ')).toBe(-1.5);
    expect(failure({ type: 'float64' }, '.')).toBe("field 'f': expected float64, got string '.'");
    expect(failure({ type: 'float64' }, '1..2')).toBe("field 'f': expected float64, got string '1..2'");
  });

  it('decimal: normalised to the scale as a string, rounded half away from zero', () => {
    const d = { type: 'decimal', precision: 6, scale: 2 } as const;
    expect(one(d, '12.5')).toBe('12.50');
    expect(one(d, 3)).toBe('3.00');
    expect(one(d, '0.005')).toBe('0.01');
    expect(one(d, '-0.004')).toBe('0.00');
    expect(one(d, '-1.995')).toBe('-2.00');
    expect(one(d, '9999.994')).toBe('9999.99');
    expect(one(d, '1.5e2')).toBe('150.00');
    expect(one(d, '007.1')).toBe('7.10');
    expect(one({ type: 'decimal' }, '1.2300')).toBe('1.2300');
    expect(one({ type: 'decimal' }, 1e-7)).toBe('0.0000001');
    expect(failure(d, '9999.995')).toBe("field 'f': expected decimal(6,2), got string '9999.995' (out of range)");
    expect(failure(d, 'ten')).toBe("field 'f': expected decimal(6,2), got string 'ten'");
  });

  it('boolean: words, 1/0 and their strings', () => {
    for (const t of [true, 'true', 'TRUE', 1, '1', 'yes', 't']) expect(one({ type: 'boolean' }, t)).toBe(true);
    for (const f of [false, 'false', 0, '0', 'no', 'No', 'f']) expect(one({ type: 'boolean' }, f)).toBe(false);
    expect(failure({ type: 'boolean' }, 2)).toBe("field 'f': expected boolean, got number 2");
    expect(failure({ type: 'boolean' }, 'maybe')).toBe("field 'f': expected boolean, got string 'maybe'");
  });

  it('timestamp: ISO-8601 strings (zone-less is UTC) to Date', () => {
    expect(one({ type: 'timestamp' }, '2024-03-01T12:30:00Z')).toEqual(new Date('2024-03-01T12:30:00Z'));
    expect(one({ type: 'timestamp' }, '2024-03-01 12:30:00.123456')).toEqual(new Date('2024-03-01T12:30:00.123Z'));
    expect(one({ type: 'timestamp' }, '2024-03-01T12:30:00+02:00')).toEqual(new Date('2024-03-01T10:30:00Z'));
    expect(one({ type: 'timestamp' }, '2024-03-01')).toEqual(new Date('2024-03-01T00:00:00Z'));
    expect(one({ type: 'timestamp' }, '0099-01-01T00:00:00Z')).toEqual(new Date('0099-01-01T00:00:00Z'));
    expect(failure({ type: 'timestamp' }, '2024-02-30T00:00:00Z')).toBe("field 'f': expected timestamp (ISO-8601 or epoch ms), got string '2024-02-30T00:00:00Z'");
    expect(failure({ type: 'timestamp' }, 'March 1, 2024')).toMatch(/expected timestamp/);
  });

  it('timestamp: epoch numbers and numeric strings in the field unit', () => {
    expect(one({ type: 'timestamp' }, 1700000000000)).toEqual(new Date(1700000000000));
    expect(one({ type: 'timestamp' }, '1700000000000')).toEqual(new Date(1700000000000));
    expect(one({ type: 'timestamp', unit: 's' }, 1700000000)).toEqual(new Date(1700000000000));
    expect(one({ type: 'timestamp', unit: 'us' }, 1700000000123456)).toEqual(new Date(1700000000123));
    expect(one({ type: 'timestamp', unit: 'ns' }, 1700000000123456789n)).toEqual(new Date(1700000000123));
    expect(one({ type: 'timestamp', format: 'epoch', unit: 's' }, '1700000000')).toEqual(new Date(1700000000000));
    expect(failure({ type: 'timestamp', format: 'epoch' }, '2024-01-01')).toBe("field 'f': expected timestamp (epoch ms), got string '2024-01-01'");
    expect(failure({ type: 'timestamp' }, 1e20)).toMatch(/\(out of range\)$/);
  });

  it('timestamp: a format pattern, read as UTC', () => {
    const f = { type: 'timestamp', format: 'DD/MM/YYYY HH:mm:ss.SSS' } as const;
    expect(one(f, '05/02/2024 07:08:09.010')).toEqual(new Date('2024-02-05T07:08:09.010Z'));
    expect(one({ type: 'timestamp', format: 'YYYY-MM-DD HH:mm' }, '2024-02-05 07:08')).toEqual(new Date('2024-02-05T07:08:00Z'));
    expect(failure(f, '2024-02-05T07:08:09Z')).toBe("field 'f': expected timestamp ('DD/MM/YYYY HH:mm:ss.SSS' or epoch ms), got string '2024-02-05T07:08:09Z'");
  });

  it('date: YYYY-MM-DD kept, loose forms normalised, impossible days rejected', () => {
    expect(one({ type: 'date' }, '2024-02-29')).toBe('2024-02-29');
    expect(one({ type: 'date' }, '2024-2-3')).toBe('2024-02-03');
    expect(one({ type: 'date' }, new Date('2024-05-06T23:00:00Z'))).toBe('2024-05-06');
    expect(one({ type: 'date', format: 'DD.MM.YYYY' }, '06.05.2024')).toBe('2024-05-06');
    expect(failure({ type: 'date' }, '2023-02-29')).toBe("field 'f': expected date (YYYY-MM-DD), got string '2023-02-29' (no such day)");
    expect(failure({ type: 'date' }, '2024-01-01T10:00:00Z')).toMatch(/a timestamp; use type timestamp/);
  });

  it('json: accepts anything, strings stay strings', () => {
    expect(one({ type: 'json' }, '{"a":1}')).toBe('{"a":1}');
    expect(one({ type: 'json' }, [1, { b: 2 }])).toEqual([1, { b: 2 }]);
    expect(one({ type: 'json' }, '')).toBe('');
  });

  it('string: scalars become text, objects are rejected', () => {
    expect(one({ type: 'string' }, 12)).toBe('12');
    expect(one({ type: 'string' }, false)).toBe('false');
    expect(one({ type: 'string' }, '')).toBe('');
    expect(failure({ type: 'string' }, { a: 1 })).toBe("field 'f': expected string, got an object");
  });

  it('bytes: base64 strings decoded, bytes kept', () => {
    expect([...(one({ type: 'bytes' }, 'AQID') as Uint8Array)]).toEqual([1, 2, 3]);
    expect([...(one({ type: 'bytes' }, '-_8') as Uint8Array)]).toEqual([251, 255]);
    const b = new Uint8Array([9]);
    expect(one({ type: 'bytes' }, b)).toBe(b);
    expect(failure({ type: 'bytes' }, 'not base64!')).toBe("field 'f': expected bytes (base64), got string 'not base64!'");
  });

  it('array: each element coerced, with the index in the error path', () => {
    expect(one({ type: 'array', items: { type: 'int64' } }, ['1', 2, '3'])).toEqual([1, 2, 3]);
    expect(one({ type: 'array', items: { type: 'int32' } }, '[1, "2"]')).toEqual([1, 2]);
    const fn = compileSchema(parsed({ fields: { tags: 'array<int32>' } }));
    expect(() => fn({ tags: [1, 2, 'x'] })).toThrow("field 'tags[2]': expected int32, got string 'x'");
    expect(() => fn({ tags: 'a,b' })).toThrow("field 'tags': expected array, got string 'a,b'");
    const strict = compileSchema({ fields: [{ name: 'v', type: 'array', items: { type: 'string', nullable: false } }] });
    expect(() => strict({ v: ['a', null] })).toThrow("field 'v[1]': null (not nullable)");
  });

  it('object: nested fields with dotted error paths, through arrays too', () => {
    const fn = compileSchema(
      parsed({
        fields: [
          { name: 'trade', type: 'object', fields: [{ name: 'price', type: 'float64' }, { name: 'qty', type: 'int32', nullable: false }] },
          { name: 'legs', type: 'array', items: { type: 'object', fields: [{ name: 'px', type: 'float64' }] } },
        ],
      }),
    );
    expect(fn({ trade: { price: '1.5', qty: '2' }, legs: [{ px: '3' }] })).toEqual({ trade: { price: 1.5, qty: 2 }, legs: [{ px: 3 }] });
    expect(fn({ trade: '{"price": 2, "qty": 1}' })).toEqual({ trade: { price: 2, qty: 1 }, legs: null });
    expect(() => fn({ trade: { price: 'abc', qty: 1 } })).toThrow("field 'trade.price': expected float64, got string 'abc'");
    expect(() => fn({ trade: { price: 1 } })).toThrow("field 'trade.qty': missing (not nullable)");
    expect(() => fn({ trade: { qty: 1 }, legs: [{ px: 1 }, { px: 'x' }] })).toThrow("field 'legs[1].px': expected float64, got string 'x'");
  });

  it('errors are RecordError with code SCHEMA and the field path', () => {
    const fn = compileSchema({ fields: [{ name: 'price', type: 'float64' }] });
    try {
      fn({ price: 'abc' });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(RecordError);
      expect((e as RecordError).code).toBe('SCHEMA');
      expect((e as RecordError).field).toBe('price');
      expect((e as RecordError).message).toBe("field 'price': expected float64, got string 'abc'");
    }
    expect(() => fn('just text')).toThrow("expected a row (an object), got string 'just text'");
  });
});

describe('compileSchema nullability, defaults and unknown fields', () => {
  it('fields are nullable by default; missing ones become null', () => {
    const out = compileSchema({ fields: [{ name: 'a', type: 'int64' }, { name: 'b', type: 'string' }] })({ b: null });
    expect(out).toEqual({ a: null, b: null });
  });

  it('nullable: false and primary key fields reject missing and null values', () => {
    const fn = compileSchema({ fields: [{ name: 'id', type: 'int64' }, { name: 'n', type: 'int32', nullable: false }], primary_key: ['id'] });
    expect(() => fn({ n: 1 })).toThrow("field 'id': missing (not nullable)");
    expect(() => fn({ id: null, n: 1 })).toThrow("field 'id': null (not nullable)");
    expect(() => fn({ id: 1, n: '' })).toThrow("field 'n': empty (not nullable)");
  });

  it("treats '' as missing for typed fields (empty CSV cells) but not for string and json", () => {
    const fn = compileSchema(parsed({ fields: { n: 'int', s: 'string', j: 'json', t: 'timestamp' } }));
    expect(fn({ n: '', s: '', j: '', t: '' })).toEqual({ n: null, s: '', j: '', t: null });
  });

  it('uses defaults for missing and null values, coerced to the type, copied per row', () => {
    const fn = compileSchema({
      fields: [
        { name: 'n', type: 'int64', default: '5', nullable: false },
        { name: 'o', type: 'json', default: { k: 1 } },
      ],
    });
    const a = fn({});
    const b = fn({ n: null });
    expect(a).toEqual({ n: 5, o: { k: 1 } });
    (a.o as { k: number }).k = 2;
    expect(b.o).toEqual({ k: 1 });
    expect(() => compileSchema({ fields: [{ name: 'n', type: 'int32', default: 'x' }] })).toThrow(ConfigError);
  });

  it('unknown_fields keep (default), drop and error', () => {
    const fields: FieldSpec[] = [{ name: 'a', type: 'int32' }, { name: 'off', type: 'int64', metadata: '_offset' }];
    expect(compileSchema({ fields })({ a: 1, x: 2 })).toEqual({ a: 1, x: 2 });
    const dropped = compileSchema({ fields, unknown_fields: 'drop' })({ a: '1', x: 2, off: 7 });
    expect(dropped).toEqual({ a: 1, off: 7 });
    expect(() => compileSchema({ fields, unknown_fields: 'error' })({ a: 1, x: 2 })).toThrow("field 'x': not in the schema (unknown_fields: error)");
    expect(compileSchema({ fields, unknown_fields: 'error' })({ a: 1, off: 3 })).toEqual({ a: 1, off: 3 });
    expect(compileSchema({ fields, unknown_fields: 'error' }, { allow: ['_key'] })({ a: 1, _key: 'k' })).toEqual({ a: 1, _key: 'k' });
  });

  it('skips metadata fields: the runtime fills them', () => {
    const fn = compileSchema({ fields: [{ name: 'off', type: 'int64', metadata: '_offset', nullable: false }] });
    expect(fn({})).toEqual({});
  });

  it('handles field names that exist on Object.prototype', () => {
    const fn = compileSchema({ fields: [{ name: 'constructor', type: 'int32', nullable: false }, { name: 'toString', type: 'string' }] });
    expect(() => fn({})).toThrow("field 'constructor': missing (not nullable)");
    expect(fn({ constructor: '3' })).toEqual({ constructor: 3, toString: null });
  });

  it('takes any field name, quotes, backslashes and line breaks included, as data (validators are generated code)', () => {
    const names = ['a"b', "c'd", 'e\\', 'f\ng', '`${h}`', '*/ i', '\u2028j', '0'];
    const fn = compileSchema({ fields: names.map((name) => ({ name, type: 'int32' as const, nullable: false })) });
    const row = Object.fromEntries(names.map((n, i) => [n, String(i)]));
    expect(fn(row)).toEqual(Object.fromEntries(names.map((n, i) => [n, i])));
    expect(() => fn({ ...row, 'f\ng': 'x' })).toThrow(/field 'f\ng': expected int32/);
    expect(() => fn(Object.fromEntries(names.slice(0, 4).map((n) => [n, 1])))).toThrow(/missing \(not nullable\)/);
  });

  it('coerces the same with every coercer fast path: values that stay, values that change, values that fail', () => {
    const fn = compileSchema({
      fields: [
        { name: 's', type: 'string' },
        { name: 'i', type: 'int32' },
        { name: 'l', type: 'int64' },
        { name: 'f', type: 'float64' },
        { name: 'g', type: 'float32' },
        { name: 'b', type: 'boolean' },
      ],
    });
    expect(fn({ s: 'x', i: 1, l: 2, f: 1.5, g: 2.5, b: true })).toEqual({ s: 'x', i: 1, l: 2, f: 1.5, g: 2.5, b: true });
    expect(fn({ s: 5, i: '7', l: '9007199254740993', f: '1e3', g: '3', b: 'yes' })).toEqual({ s: '5', i: 7, l: 9007199254740993n, f: 1000, g: 3, b: true });
    expect(fn({ i: '' })).toEqual({ s: null, i: null, l: null, f: null, g: null, b: null });
    expect(() => fn({ i: 1.5 })).toThrow("field 'i': expected int32, got number 1.5 (not an integer)");
    expect(() => fn({ l: 2 ** 64 })).toThrow(/field 'l': expected int64/);
    expect(() => fn({ g: 1e300 })).toThrow(/field 'g': expected float32, got .* \(out of range\)/);
  });

  it('rejects an invalid programmatic schema', () => {
    expect(() => compileSchema({ fields: [{ name: 'a', type: 'nope' as never }] })).toThrow(ConfigError);
  });
});

describe('inferSchema', () => {
  it('infers types, nullability and order of first appearance', () => {
    const s = inferSchema([
      { id: 1, price: 1.5, name: 'a', ok: true, ts: '2024-01-01T00:00:00Z', day: '2024-01-01', meta: { a: 1 } },
      { id: 2, price: 2, name: 'b', ok: false, ts: '2024-01-02T00:00:00.5+01:00', day: '2024-01-02', meta: null, extra: 1 },
    ]);
    expect(s.fields).toEqual([
      { name: 'id', type: 'int64', nullable: false },
      { name: 'price', type: 'float64', nullable: false },
      { name: 'name', type: 'string', nullable: false },
      { name: 'ok', type: 'boolean', nullable: false },
      { name: 'ts', type: 'timestamp', nullable: false },
      { name: 'day', type: 'date', nullable: false },
      { name: 'meta', type: 'json', nullable: true },
      { name: 'extra', type: 'int64', nullable: true },
    ]);
  });

  it('widens mixed types: int+float to float64, primitives to string, others to json', () => {
    const s = inferSchema([
      { a: 1, b: 1, c: 1, d: '2024-01-01', e: new Date(0) },
      { a: 2.5, b: 'x', c: { o: 1 }, d: '2024-01-01T10:00:00Z', e: 5n },
    ]);
    expect(s.fields.map((f) => [f.name, f.type])).toEqual([['a', 'float64'], ['b', 'string'], ['c', 'json'], ['d', 'timestamp'], ['e', 'string']]);
  });

  it('infers arrays with uniform items, else json', () => {
    const s = inferSchema([{ t: ['a', 'b'], n: [1, 2.5], m: [1, 'a'], e: [], o: [{ a: 1 }] }, { t: [], n: [3], m: [2], e: [], o: [] }]);
    expect(s.fields.map((f) => ({ name: f.name, type: f.type, items: f.items }))).toEqual([
      { name: 't', type: 'array', items: { type: 'string' } },
      { name: 'n', type: 'array', items: { type: 'float64' } },
      { name: 'm', type: 'json', items: undefined },
      { name: 'e', type: 'array', items: { type: 'json' } },
      { name: 'o', type: 'array', items: { type: 'json' } },
    ]);
  });

  it('respects maxRows and can read numbers out of strings (CSV samples)', () => {
    expect(inferSchema([{ a: 1 }, { a: 'x' }], { maxRows: 1 }).fields[0]!.type).toBe('int64');
    const csv = inferSchema([{ n: '1', f: '2.5', b: 'true', s: 'x' }, { n: '', f: '3', b: 'false', s: '7' }], { parseStrings: true });
    expect(csv.fields).toEqual([
      { name: 'n', type: 'int64', nullable: true },
      { name: 'f', type: 'float64', nullable: false },
      { name: 'b', type: 'boolean', nullable: false },
      { name: 's', type: 'string', nullable: false },
    ]);
  });

  it('produces a schema that accepts the sample it came from', () => {
    const rows = [{ id: 1, ts: '2024-01-01T00:00:00Z', tags: ['a'] }, { id: 2, ts: '2024-01-02T00:00:00Z', tags: [] }];
    const fn = compileSchema(inferSchema(rows));
    for (const r of structuredClone(rows)) expect(() => fn(r)).not.toThrow();
  });
});

describe('schemaToJson and describeSchema', () => {
  const spec = parsed({
    fields: [
      { name: 'id', type: 'bigint', primary_key: true },
      { name: 'price', type: 'decimal(10,2)', nullable: false },
      { name: 'tags', type: 'array<string>' },
      { name: 'pos', type: 'object', fields: { x: 'double' } },
      { name: 'off', type: 'int64', metadata: '_offset' },
    ],
  });

  it('describes a schema on one line', () => {
    expect(describeSchema(spec)).toBe(
      "id int64 NOT NULL, price decimal(10,2) NOT NULL, tags array<string>, pos object<x float64>, off int64 METADATA FROM '_offset', PRIMARY KEY (id)",
    );
    expect(describeSchema({ fields: [{ name: 'id', type: 'int64', nullable: false }, { name: 'name', type: 'string' }, { name: 'ts', type: 'timestamp' }] })).toBe(
      'id int64 NOT NULL, name string, ts timestamp',
    );
  });

  it('serialises to plain JSON that parses back to the same schema', () => {
    const json = schemaToJson(spec);
    expect(JSON.parse(JSON.stringify(json))).toEqual(json);
    expect(parsed(json)).toEqual(spec);
    expect(schemaToJson({ fields: [{ name: 'n', type: 'int64', default: 10n }] })).toEqual({ fields: [{ name: 'n', type: 'int64', default: '10' }] });
  });
});

describe('compileSchema trace (what JSON output may keep of the received text)', () => {
  const fit = compileSchema({
    fields: [
      { name: 'p', type: 'float64' },
      { name: 'n', type: 'int64' },
      { name: 's', type: 'string' },
      { name: 'b', type: 'boolean' },
    ],
  });
  const traced = (row: Record<string, unknown>) => {
    const t = { changed: false, kept: 0 };
    const out = fit(row, t);
    return { t, out };
  };
  const bit = (name: string) => 1 << fit.keptFields.indexOf(name);

  it('reports a row that fits as it is as unchanged', () => {
    expect(traced({ p: 1.5, n: 2, s: 'x', b: true }).t).toEqual({ changed: false, kept: 0 });
  });

  it('marks numeric strings whose unquoted text is the same JSON number', () => {
    const { t, out } = traced({ p: '43249.00938070', n: '9007199254740993', s: 'x', b: false });
    expect(t).toEqual({ changed: false, kept: bit('p') | bit('n') });
    expect(out).toEqual({ p: 43249.0093807, n: 9007199254740993n, s: 'x', b: false });
  });

  it('calls any other change a change', () => {
    const changed = (row: Record<string, unknown>) => traced(row).t.changed;
    expect(changed({ p: '1e5', n: 1, s: 'x', b: true })).toBe(true); // exponent: not plain decimal text
    expect(changed({ p: '1.2345678901234567', n: 1, s: 'x', b: true })).toBe(true); // more digits than a float64 holds
    expect(changed({ p: '01.5', n: 1, s: 'x', b: true })).toBe(true); // not JSON number syntax
    expect(changed({ p: ' 1.5', n: 1, s: 'x', b: true })).toBe(true);
    expect(changed({ p: 1, n: '12.0', s: 'x', b: true })).toBe(true); // a fraction for an integer field
    expect(changed({ p: 1, n: 1, s: 7, b: true })).toBe(true); // number to string
    expect(changed({ p: 1, n: 1, s: 'x', b: 'true' })).toBe(true);
    expect(changed({ p: 1, n: 1, s: 'x' })).toBe(true); // a missing nullable field becomes null
  });

  it('calls defaults, nested coercions, dropped unknown fields and names JSON escapes changes', () => {
    const changedBy = (spec: SchemaSpec, row: Record<string, unknown>) => {
      const t = { changed: false, kept: 0 };
      compileSchema(spec)(row, t);
      return t.changed;
    };
    expect(changedBy({ fields: [{ name: 'a', type: 'int64', default: 1 }] }, {})).toBe(true);
    expect(changedBy({ fields: [{ name: 'o', type: 'object', fields: [{ name: 'x', type: 'float64' }] }] }, { o: { x: '1.5' } })).toBe(true);
    expect(changedBy({ fields: [{ name: 'a', type: 'int64' }], unknown_fields: 'drop' }, { a: 1, z: 2 })).toBe(true);
    expect(changedBy({ fields: [{ name: 'a"b', type: 'float64' }] }, { 'a"b': '1.5' })).toBe(true);
  });
});
