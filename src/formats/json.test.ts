import { describe, expect, it } from 'vitest';
import { createFormat } from './index.js';
import { RecordError } from '../core/errors.js';
import { jsonPassThrough, jsonPlainRows, keptUnquoter, scanJsonError } from './json.js';
import type { SluiceRecord } from '../core/types.js';

function decode(payload: string | Uint8Array, options: Record<string, unknown> = {}) {
  const dec = createFormat({ name: 'json', options }).decoder();
  const rows: unknown[] = [];
  const errors: { message: string; raw: string | Uint8Array; err: Error }[] = [];
  dec.decode(payload, rows, (err, raw) => errors.push({ message: err.message, raw, err }));
  return { rows, errors };
}

const enc = (options: Record<string, unknown> = {}) => createFormat({ name: 'json', options }).encoder();

describe('json decode', () => {
  it('decodes one object per payload, from a string or UTF-8 bytes', () => {
    expect(decode('{"a":1,"b":"x"}').rows).toEqual([{ a: 1, b: 'x' }]);
    expect(decode(Buffer.from('{"name":"Zoë ☃"}')).rows).toEqual([{ name: 'Zoë ☃' }]);
    expect(decode(new TextEncoder().encode('{"a":true}')).rows).toEqual([{ a: true }]);
  });

  it('decodes an array of objects as one row each', () => {
    expect(decode('[{"a":1},{"a":2},{"a":3}]').rows).toEqual([{ a: 1 }, { a: 2 }, { a: 3 }]);
  });

  it('reports non-object array elements one by one and keeps the rest', () => {
    const r = decode('[{"a":1},7,{"a":2}]');
    expect(r.rows).toEqual([{ a: 1 }, { a: 2 }]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toMatch(/expected a JSON object, got number 7 at array index 1/);
    expect(r.errors[0]!.raw).toBe('7');
  });

  it('treats an array as a scalar when unwrap_arrays is false', () => {
    expect(decode('[1,2]', { unwrap_arrays: false, wrap_scalars: true }).rows).toEqual([{ value: [1, 2] }]);
    expect(decode('[{"a":1}]', { unwrap_arrays: false }).errors[0]!.message).toMatch(/expected a JSON object, got an array/);
  });

  it('decodes newline-delimited JSON, skipping blank lines and CRLF endings', () => {
    const r = decode('{"a":1}\n\n   \n{"a":2}\r\n{"a":3}\n');
    expect(r.rows).toEqual([{ a: 1 }, { a: 2 }, { a: 3 }]);
    expect(r.errors).toEqual([]);
  });

  it('reports a bad NDJSON line with its own text and line number, and decodes the others', () => {
    const r = decode('{"a":1}\n{"a":}\n{"a":3}');
    expect(r.rows).toEqual([{ a: 1 }, { a: 3 }]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.raw).toBe('{"a":}');
    expect(r.errors[0]!.message).toBe("invalid JSON on line 2 at position 5: Unexpected token '}'");
    expect(r.errors[0]!.err).toBeInstanceOf(RecordError);
    expect((r.errors[0]!.err as RecordError).code).toBe('DECODE');
  });

  it('reports a bad first NDJSON line without losing the following lines', () => {
    const r = decode('not json\n{"a":2}\n{"a":3}');
    expect(r.rows).toEqual([{ a: 2 }, { a: 3 }]);
    expect(r.errors.map((e) => e.raw)).toEqual(['not json']);
  });

  it('reads a pretty-printed document spanning several lines as one payload', () => {
    expect(decode('{\n  "a": 1,\n  "b": [1, 2]\n}\n').rows).toEqual([{ a: 1, b: [1, 2] }]);
    expect(decode('[\n {"a": 1},\n {"a": 2}\n]').rows).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it('reports a broken pretty-printed document once, with line and column', () => {
    const r = decode('{\n  "a": 1,\n  "b" 2\n}');
    expect(r.rows).toEqual([]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toBe('invalid JSON at position 18 (line 3, column 7): Unexpected number');
  });

  it('names the position JSON.parse reports for a single invalid payload', () => {
    expect(decode('{"a":1').errors[0]!.message).toBe("invalid JSON at position 6: Expected ',' or '}' after property value");
    expect(decode('{a:1}').errors[0]!.message).toBe("invalid JSON at position 1: Expected property name or '}'");
    expect(decode('{"a":1} x').errors[0]!.message).toBe('invalid JSON at position 8: Unexpected non-whitespace character after the JSON value');
  });

  it('finds the position itself when JSON.parse does not give one', () => {
    const e = decode('{"price": 12, "qty": tru}').errors[0]!;
    expect(e.message).toMatch(/^invalid JSON at position 24: /);
    expect(e.raw).toBe('{"price": 12, "qty": tru}');
  });

  it('rejects a top-level scalar unless wrap_scalars is set', () => {
    const r = decode('42');
    expect(r.rows).toEqual([]);
    expect(r.errors[0]!.message).toMatch(/^expected a JSON object, got number 42/);
    expect(decode('42', { wrap_scalars: true }).rows).toEqual([{ value: 42 }]);
    expect(decode('"hi"\nnull', { wrap_scalars: true }).rows).toEqual([{ value: 'hi' }, { value: null }]);
  });

  it('reports invalid UTF-8 with the offset of the bad byte and the whole payload as raw', () => {
    const bytes = new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]);
    const r = decode(bytes);
    expect(r.rows).toEqual([]);
    expect(r.errors[0]!.message).toBe('invalid UTF-8 at byte 6');
    expect(r.errors[0]!.raw).toBe(bytes);
    // A truncated multi-byte sequence at the end.
    expect(decode(new Uint8Array([0x7b, 0x7d, 0x0a, 0xe2, 0x82])).errors[0]!.message).toBe('invalid UTF-8 at byte 3');
  });

  it('ignores empty payloads and a leading byte-order mark', () => {
    expect(decode('').rows).toEqual([]);
    expect(decode('  \n ').errors).toEqual([]);
    expect(decode('\ufeff{"a":1}').rows).toEqual([{ a: 1 }]);
    expect(decode(Buffer.from('\ufeff{"a":1}')).rows).toEqual([{ a: 1 }]);
  });

  it('appends to the rows already in the output array', () => {
    const dec = createFormat({ name: 'json', options: {} }).decoder();
    const out: unknown[] = ['earlier'];
    dec.decode('{"a":1}', out, () => {});
    expect(out).toEqual(['earlier', { a: 1 }]);
  });
});

describe('json encode', () => {
  it('encodes one row as compact JSON without a newline', () => {
    expect(enc().encode({ a: 1, b: 'x', c: null })).toBe('{"a":1,"b":"x","c":null}');
  });

  it('writes BigInt as an exact bare number', () => {
    expect(enc().encode({ id: 12345678901234567890n, n: 1 })).toBe('{"id":12345678901234567890,"n":1}');
    expect(enc().encode({ nested: { list: [1n, -2n] } })).toBe('{"nested":{"list":[1,-2]}}');
  });

  it('writes Date as its ISO string and bytes as base64', () => {
    const d = new Date('2024-03-01T12:00:00.000Z');
    expect(enc().encode({ ts: d })).toBe('{"ts":"2024-03-01T12:00:00.000Z"}');
    expect(enc().encode({ b: new Uint8Array([1, 2, 3]), ts: d, n: 5n })).toBe('{"b":"AQID","ts":"2024-03-01T12:00:00.000Z","n":5}');
    expect(enc().encode({ b: Buffer.from('hi') })).toBe('{"b":"aGk="}');
  });

  it('drops undefined fields like JSON.stringify does, also on the BigInt path', () => {
    expect(enc().encode({ a: undefined, b: 1 })).toBe('{"b":1}');
    expect(enc().encode({ a: undefined, b: 1n, c: [undefined] })).toBe('{"b":1,"c":[null]}');
  });

  it('indents with pretty, including rows with BigInt', () => {
    expect(enc({ pretty: true }).encode({ a: 1, b: [1, 2] })).toBe(JSON.stringify({ a: 1, b: [1, 2] }, null, 2));
    expect(enc({ pretty: true }).encode({ a: 1n, b: { c: [2] }, d: {} })).toBe('{\n  "a": 1,\n  "b": {\n    "c": [\n      2\n    ]\n  },\n  "d": {}\n}');
  });

  it('encodes a stream as JSON lines, each ending in a newline, never pretty', () => {
    const e = enc({ pretty: true });
    expect(e.encodeStream([{ a: 1 }, { a: 2n }], true)).toBe('{"a":1}\n{"a":2}\n');
    expect(e.encodeStream([], false)).toBe('');
    expect(e.extension).toBe('jsonl');
  });

  it('round-trips through the decoder', () => {
    const rows = [{ a: 1, s: 'x\ny' }, { a: 2, s: '"' }];
    const text = enc().encodeStream(rows, true) as string;
    expect(decode(text).rows).toEqual(rows);
  });
});

describe('json byte pass-through', () => {
  const rec = (raw: string | Uint8Array | undefined, value: unknown): SluiceRecord => ({ value, raw });

  it("writes a record's original text when it is one JSON object on one line, and encodes everything else", () => {
    const e = jsonPassThrough(enc(), () => true);
    const out = e.encodeRecords!(
      [
        rec('{"n": 12345678901234567890, "s":"\\u00e9"}', { n: 12345678901234567000, s: 'é' }),
        rec(Buffer.from('{"b":1}'), { b: 1 }),
        rec(' {"lead":1}', { lead: 1 }),
        rec('{"a":\r1}', { a: 1 }),
        rec('[{"arr":1}]', { arr: 1 }),
        rec('42', { value: 42 }),
        rec(Buffer.from('{"x":\n1}'), { x: 1 }),
        rec(undefined, { none: 1n }),
      ],
      true,
    );
    expect(out).toBe('{"n": 12345678901234567890, "s":"\\u00e9"}\n{"b":1}\n{"lead":1}\n{"a":1}\n{"arr":1}\n{"value":42}\n{"x":1}\n{"none":1}\n');
  });

  it('sends a record as its original message, bytes as the same bytes, and encodes the rest', () => {
    const b = Buffer.from('{"p":"1.50"}');
    const e = jsonPassThrough(enc(), () => true);
    expect(e.encodeRecord!(rec(b, { p: '1.50' }))).toBe(b);
    expect(e.encodeRecord!(rec('{"a": 1}', { a: 1 }))).toBe('{"a": 1}');
    expect(e.encodeRecord!(rec('{"a":\n1}', { a: 1 }))).toBe('{"a":1}');
    expect(e.encodeRecord!(rec(undefined, { a: 1 }))).toBe('{"a":1}');
    expect(jsonPassThrough(enc(), () => false).encodeRecord!(rec('{"a": 1}', { a: 2 }))).toBe('{"a":2}');
    expect(jsonPassThrough(enc(), () => true, true).encodeRecord).toBeUndefined();
  });

  it('encodes the rows when the runtime says they may have changed since decoding', () => {
    const e = jsonPassThrough(enc(), () => false);
    expect(e.encodeRecords!([rec('{"a": 1}', { a: 2 })], true)).toBe('{"a":2}\n');
    expect(e.encode({ a: 1 })).toBe('{"a":1}');
    expect(e.encodeStream([{ a: 1 }], true)).toBe('{"a":1}\n');
    expect(e.extension).toBe('jsonl');
  });
});

describe('json plain rows', () => {
  it('encodes rows with JSON.stringify, and a row with a BigInt with the full encoder', () => {
    const e = jsonPlainRows(enc(), () => true);
    expect(e.encodeStream([{ a: 1, d: new Date(0) }, { n: 2n ** 64n, s: 'x' }, { u: undefined }], true)).toBe(
      '{"a":1,"d":"1970-01-01T00:00:00.000Z"}\n{"n":18446744073709551616,"s":"x"}\n{}\n',
    );
  });

  it('uses the full encoder while the runtime says rows may hold bytes', () => {
    const e = jsonPlainRows(enc(), () => false);
    expect(e.encodeStream([{ b: Buffer.from('hi') }], true)).toBe('{"b":"aGk="}\n');
    expect(e.encode({ b: new Uint8Array([104, 105]) })).toBe('{"b":"aGk="}');
  });
});

describe('keptUnquoter (received text with numeric strings unquoted)', () => {
  const unquote = keptUnquoter(['e', 'p', 'q']);
  const P = 0b010;
  const Q = 0b100;

  it('unquotes the marked fields wherever they stand, and leaves the rest of the text as received', () => {
    const raw = '{"e":"trade","q":"0.50","p":"43249.00938070","m":true}';
    expect(unquote(raw, P | Q)).toBe('{"e":"trade","q":0.50,"p":43249.00938070,"m":true}');
    expect(unquote(raw, P)).toBe('{"e":"trade","q":"0.50","p":43249.00938070,"m":true}');
    expect(unquote('{"p":"-1.5"}', P)).toBe('{"p":-1.5}');
    expect(unquote(raw, 0)).toBe(raw);
  });

  it('gives up (the row is encoded instead) wherever the field cannot be found for certain', () => {
    expect(unquote('{"p": "1.5"}', P)).toBeUndefined(); // other spacing
    expect(unquote('{"x":{"p":"1.5"},"p":"1.5"}', P)).toBeUndefined(); // a nested object could hold the key
    expect(unquote('{"p":"1.5","p":"1.5"}', P)).toBeUndefined(); // duplicate key
    expect(unquote('{"p":"\\u0031"}', P)).toBeUndefined(); // an escape in the number
    expect(unquote('{"a":"x\\"p":"1"}', P)).toBeUndefined(); // "p":" inside another key
    expect(unquote('{"\\u0070":"1.5"}', P)).toBeUndefined(); // the name escaped
  });

  it('is what jsonPassThrough writes for records marked kept, and the row encoded for the others', () => {
    const e = jsonPassThrough(enc(), () => false, false, ['e', 'p', 'q']);
    const recs = [
      { value: { p: 1.5 }, raw: '{"p":"1.50"}', kept: P },
      { value: { p: 2 }, raw: '{"p":"2.0"}' },
      { value: { p: 3 }, raw: Buffer.from('{"p": 3}'), kept: 0 },
    ];
    expect(e.encodeRecords!(recs, true)).toBe('{"p":1.50}\n{"p":2}\n{"p": 3}\n');
    expect(recs.map((r) => e.encodeRecord!(r))).toEqual(['{"p":1.50}', '{"p":2}', '{"p": 3}']);
  });
});

describe('scanJsonError', () => {
  it('returns -1 for valid JSON and the offending offset otherwise', () => {
    expect(scanJsonError('{"a":[1,2,{"b":null}],"c":"\\u00e9"}')).toBe(-1);
    expect(scanJsonError('[1,2,]')).toBe(5);
    expect(scanJsonError('{"a":1,}')).toBe(7);
    expect(scanJsonError('{"a" 1}')).toBe(5);
    expect(scanJsonError('"abc')).toBe(4);
    expect(scanJsonError('[01]')).toBe(2);
    expect(scanJsonError('{"a":1} {')).toBe(8);
  });
});
