import { describe, expect, it } from 'vitest';
import { parse as parseSync } from 'csv-parse/sync';
import { createFormat, parseFormatConfig } from './index.js';
import type { Decoder, SchemaSpec } from '../core/types.js';

function csv(options: Record<string, unknown> = {}, schema?: SchemaSpec) {
  const r = parseFormatConfig({ name: 'csv', ...options });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return createFormat(r.value, schema);
}

function run(dec: Decoder, ...payloads: (string | Uint8Array)[]) {
  const rows: unknown[] = [];
  const errors: { message: string; raw: string | Uint8Array }[] = [];
  for (const p of payloads) dec.decode(p, rows, (err, raw) => errors.push({ message: err.message, raw }));
  return { rows, errors };
}

describe('csv decode', () => {
  it('takes column names from the first row and keeps every value a string', () => {
    const r = run(csv().decoder(), 'id,name,price\n1,apple,1.50\n2,pear,\n');
    expect(r.rows).toEqual([
      { id: '1', name: 'apple', price: '1.50' },
      { id: '2', name: 'pear', price: '' },
    ]);
    expect(r.errors).toEqual([]);
  });

  it('remembers the header across payloads of one decoder, and each decoder reads its own', () => {
    const fmt = csv();
    const a = fmt.decoder();
    expect(run(a, 'id,name\n', '1,x', '2,y\n3,z').rows).toEqual([
      { id: '1', name: 'x' },
      { id: '2', name: 'y' },
      { id: '3', name: 'z' },
    ]);
    expect(run(fmt.decoder(), 'k,v\n1,2').rows).toEqual([{ k: '1', v: '2' }]);
  });

  it('keeps quoted fields with the delimiter, quotes and newlines inside', () => {
    const r = run(csv().decoder(), 'a,b,c\n"x, y","say ""hi""","line1\nline2"\r\n');
    expect(r.rows).toEqual([{ a: 'x, y', b: 'say "hi"', c: 'line1\nline2' }]);
  });

  it('reports a row with the wrong number of fields with its raw line and goes on', () => {
    const r = run(csv().decoder(), 'a,b,c,d\n1,2,3,4\n5,6,7\n8,9,10,11\n');
    expect(r.rows).toEqual([
      { a: '1', b: '2', c: '3', d: '4' },
      { a: '8', b: '9', c: '10', d: '11' },
    ]);
    expect(r.errors).toEqual([{ message: 'row has 3 fields, header has 4', raw: '5,6,7' }]);
  });

  it('still knows the header after a payload with a bad row', () => {
    const dec = csv().decoder();
    const r = run(dec, 'a,b\n1\n', '2,3');
    expect(r.rows).toEqual([{ a: '2', b: '3' }]);
    expect(r.errors.map((e) => e.message)).toEqual(['row has 1 field, header has 2']);
  });

  it('reports a malformed quoted record and keeps the rows before it', () => {
    const r = run(csv().decoder(), 'a,b\n1,2\n"open,3\n');
    expect(r.rows).toEqual([{ a: '1', b: '2' }]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toMatch(/^invalid CSV: Quote Not Closed/);
  });

  it('uses configured columns, skipping the file header when header is true', () => {
    expect(run(csv({ columns: ['x', 'y'] }).decoder(), 'a,b\n1,2').rows).toEqual([{ x: '1', y: '2' }]);
    expect(run(csv({ columns: 'x, y', header: false }).decoder(), '1,2\n3,4').rows).toEqual([
      { x: '1', y: '2' },
      { x: '3', y: '4' },
    ]);
    expect(run(csv({ columns: ['x', 'y'], header: false }).decoder(), '1,2,3').errors[0]!.message).toBe('row has 3 fields, `columns` has 2');
  });

  it('names headerless columns after the schema fields (not metadata ones)', () => {
    const schema: SchemaSpec = {
      fields: [
        { name: 'id', type: 'int64' },
        { name: 'offset', type: 'int64', metadata: '_offset' },
        { name: 'name', type: 'string' },
      ],
    };
    expect(run(csv({ header: false }, schema).decoder(), '1,a').rows).toEqual([{ id: '1', name: 'a' }]);
    // With a header row present the file's names win.
    expect(run(csv({}, schema).decoder(), 'name,id\na,1').rows).toEqual([{ name: 'a', id: '1' }]);
  });

  it('numbers columns when there is no header, no columns and no schema', () => {
    expect(run(csv({ header: false }).decoder(), '1,2\n3,4').rows).toEqual([
      { column1: '1', column2: '2' },
      { column1: '3', column2: '4' },
    ]);
  });

  it('honours delimiter, quote, escape, trim and null_value', () => {
    expect(run(csv({ delimiter: ';' }).decoder(), 'a;b\n"1;2";3').rows).toEqual([{ a: '1;2', b: '3' }]);
    expect(run(csv({ quote: "'", escape: '\\' }).decoder(), "a,b\n'x,\\'y',z").rows).toEqual([{ a: "x,'y", b: 'z' }]);
    expect(run(csv({ trim: true }).decoder(), ' a , b \n 1 ,  2 ').rows).toEqual([{ a: '1', b: '2' }]);
    expect(run(csv({ null_value: 'NULL' }).decoder(), 'a,b,c\nNULL,,x').rows).toEqual([{ a: null, b: '', c: 'x' }]);
  });

  it('skips empty lines by default and decodes them as rows when asked not to', () => {
    expect(run(csv().decoder(), 'a\n1\n\n2\n').rows).toEqual([{ a: '1' }, { a: '2' }]);
    expect(run(csv({ skip_empty_lines: false }).decoder(), 'a\n1\n\n2').rows).toEqual([{ a: '1' }, { a: '' }, { a: '2' }]);
  });

  it('accepts bytes, strips a BOM, and rejects invalid UTF-8 naming the byte', () => {
    expect(run(csv().decoder(), Buffer.from('\ufeffa,b\n1,é')).rows).toEqual([{ a: '1', b: 'é' }]);
    const bad = new Uint8Array([0x61, 0x0a, 0x62, 0xc3]);
    const r = run(csv().decoder(), bad);
    expect(r.errors).toEqual([{ message: 'invalid UTF-8 at byte 3', raw: bad }]);
  });

  it('creates real own properties for hostile header names', () => {
    const [row] = run(csv().decoder(), '__proto__,constructor\n1,2').rows as Record<string, unknown>[];
    expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
    expect(Object.keys(row!)).toEqual(['__proto__', 'constructor']);
    expect(row!['constructor']).toBe('2');
  });
});

describe('csv decode: plain and RFC 4180 quoted text read in JS, the rest through csv-parse', () => {
  // The file source hands the decoder one record per payload, quoted newlines included.
  const lines = (text: string) => text.split(/(?<=^(?:[^"]*"[^"]*")*[^"]*)\n/);

  it('reads a file line by line the same whether a line has quotes or not', () => {
    const dec = csv().decoder();
    const r = run(dec, 'id,note,n', '1,plain,2', '2,"a, b",3', '3,"say ""hi""\nthere",4', '4,,', '5,é,6');
    expect(r.rows).toEqual([
      { id: '1', note: 'plain', n: '2' },
      { id: '2', note: 'a, b', n: '3' },
      { id: '3', note: 'say "hi"\nthere', n: '4' },
      { id: '4', note: '', n: '' },
      { id: '5', note: 'é', n: '6' },
    ]);
    expect(r.errors).toEqual([]);
  });

  it('agrees with csv-parse on generated tables, fed whole and one record at a time', () => {
    const values = ['', 'x', 'a b', 'é', '1.5', 'has,comma', 'say "hi"', 'two\nlines', 'cr\r\nlf', ' pad ', 'NULL'];
    let seed = 42;
    const next = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const field = (v: string) => (/[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);
    for (let t = 0; t < 50; t++) {
      const rows = Array.from({ length: 1 + next(6) }, () => ['a', 'b', 'c'].map(() => values[next(values.length)]!));
      const text = ['a,b,c', ...rows.map((r) => r.map(field).join(','))].join(next(2) ? '\r\n' : '\n');
      const want = parseSync(text, { columns: true, skip_empty_lines: true, record_delimiter: ['\r\n', '\n'] });
      expect(run(csv().decoder(), text).rows).toEqual(want);
      expect(run(csv().decoder(), ...lines(text).map((l) => l.replace(/\r$/, ''))).rows).toEqual(want);
    }
  });

  it('reads wide rows (past the compiled line parser) the same way', () => {
    const names = Array.from({ length: 300 }, (_, i) => `c${i}`);
    const values = names.map((_, i) => String(i));
    const r = run(csv().decoder(), names.join(','), values.join(','), values.slice(1).join(','));
    expect(r.rows).toEqual([Object.fromEntries(names.map((n, i) => [n, values[i]]))]);
    expect(r.errors.map((e) => e.message)).toEqual(['row has 299 fields, header has 300']);
  });

  it('reads CRLF and lone-CR line ends, and strips a BOM from a text payload', () => {
    expect(run(csv().decoder(), 'a,b\r\n1,2\r\n3,4').rows).toEqual([
      { a: '1', b: '2' },
      { a: '3', b: '4' },
    ]);
    expect(run(csv().decoder(), 'a,b\r1,2').rows).toEqual([{ a: '1', b: '2' }]);
    expect(run(csv().decoder(), '\ufeffa,b', '1,2').rows).toEqual([{ a: '1', b: '2' }]);
    // Only the stream's start carries a byte order mark; later it is text like any other.
    expect(run(csv().decoder(), 'a,b', '\ufeff1,2', '\ufeff"3",4').rows).toEqual([{ a: '\ufeff1', b: '2' }]);
  });

  it('reads quoted fields, quoted header names and quoted empty lines, and reports broken quoting like csv-parse', () => {
    const r = run(csv().decoder(), '"id","a,b"\n"1",""\n""\n\n"2","x\n""y"""', '3,"tail"');
    expect(r.rows).toEqual([
      { id: '1', 'a,b': '' },
      { id: '2', 'a,b': 'x\n"y"' },
      { id: '3', 'a,b': 'tail' },
    ]);
    expect(r.errors).toEqual([{ message: 'row has 1 field, header has 2', raw: '""' }]);
    for (const bad of ['"4"x,5', '6,a"b', '7,"open']) {
      const b = run(csv().decoder(), 'id,v', bad, '8,9');
      expect(b.rows).toEqual([{ id: '8', v: '9' }]);
      expect(b.errors.length).toBeGreaterThan(0);
      for (const e of b.errors) expect(e.message).toMatch(/^invalid CSV: /);
    }
  });

  it('keeps empty fields, names empty header cells by position, and honours a multi-character delimiter', () => {
    expect(run(csv().decoder(), 'a,,c', ',,', 'x,y,').rows).toEqual([
      { a: '', column2: '', c: '' },
      { a: 'x', column2: 'y', c: '' },
    ]);
    expect(run(csv({ delimiter: '::' }).decoder(), 'a::b', '1::2:3', '4::').rows).toEqual([
      { a: '1', b: '2:3' },
      { a: '4', b: '' },
    ]);
    expect(run(csv({ null_value: '' }).decoder(), 'a,b', ',1').rows).toEqual([{ a: null, b: '1' }]);
  });

  it('reports ragged quote-free lines with their own text, in a multi-line payload and line by line', () => {
    const want = [
      { message: 'row has 2 fields, header has 3', raw: '4,5' },
      { message: 'row has 4 fields, header has 3', raw: '6,7,8,9' },
    ];
    const whole = run(csv().decoder(), 'a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n');
    expect(whole.rows).toEqual([
      { a: '1', b: '2', c: '3' },
      { a: '10', b: '11', c: '12' },
    ]);
    expect(whole.errors).toEqual(want);
    const byLine = run(csv().decoder(), 'a,b,c', '1,2,3', '4,5', '6,7,8,9', '10,11,12');
    expect(byLine.rows).toEqual(whole.rows);
    expect(byLine.errors).toEqual(want);
  });

  it('numbers columns from the first row even when a later row of the same payload is bad', () => {
    const dec = csv({ header: false }).decoder();
    const r = run(dec, '1,2\n3', '4,5');
    expect(r.rows).toEqual([
      { column1: '1', column2: '2' },
      { column1: '4', column2: '5' },
    ]);
    expect(r.errors).toEqual([{ message: 'row has 1 field, the first row has 2', raw: '3' }]);
  });

  it('skips empty lines inside a payload unless told not to; an empty payload is never a row', () => {
    expect(run(csv().decoder(), 'a', '', '1', '').rows).toEqual([{ a: '1' }]);
    expect(run(csv({ skip_empty_lines: false }).decoder(), 'a\n\n1\n').rows).toEqual([{ a: '' }, { a: '1' }]);
    expect(run(csv({ skip_empty_lines: false }).decoder(), 'a', '', '1').rows).toEqual([{ a: '1' }]);
  });

  it('decodes valid UTF-8 bytes on the quote-free path and rejects invalid ones whole', () => {
    const dec = csv().decoder();
    expect(run(dec, Buffer.from('a,b'), Buffer.from('1,ü'), new Uint8Array([0x32, 0x2c, 0xff])).rows).toEqual([{ a: '1', b: 'ü' }]);
    const bad = new Uint8Array([0x32, 0x2c, 0xff]);
    expect(run(csv().decoder(), 'a,b', bad).errors).toEqual([{ message: 'invalid UTF-8 at byte 2', raw: bad }]);
  });
});

describe('csv encode', () => {
  it('encodes one row as one line without a newline, quoting where needed', () => {
    const e = csv().encoder();
    expect(e.encode({ a: 'x', b: 'has,comma', c: 'say "hi"', d: 'two\nlines' })).toBe('x,"has,comma","say ""hi""","two\nlines"');
    expect(e.extension).toBe('csv');
  });

  it('writes the header only on the first piece of a stream', () => {
    const e = csv().encoder();
    expect(e.encodeStream([{ id: 1, name: 'a' }], true)).toBe('id,name\n1,a\n');
    expect(e.encodeStream([{ id: 2, name: 'b' }], false)).toBe('2,b\n');
    expect(csv({ header: false }).encoder().encodeStream([{ id: 1 }], true)).toBe('1\n');
  });

  it('orders columns by the schema, else by the first row the encoder saw', () => {
    const schema: SchemaSpec = { fields: [{ name: 'b', type: 'string' }, { name: 'a', type: 'int64' }] };
    expect(csv({}, schema).encoder().encodeStream([{ a: 1, b: 'x', extra: 'dropped' }], true)).toBe('b,a\nx,1\n');
    const e = csv().encoder();
    e.encode({ a: 1, b: 2 });
    expect(e.encode({ b: 3, a: 4, c: 5 })).toBe('4,3');
    expect(csv({ columns: ['b'] }).encoder().encodeStream([{ a: 1, b: 2 }], true)).toBe('b\n2\n');
  });

  it('writes null as empty, Date as ISO, objects as JSON, booleans as words, BigInt exactly', () => {
    const e = csv().encoder();
    const row = { n: null, u: undefined, d: new Date('2024-01-02T03:04:05Z'), o: { k: [1, 2] }, t: true, f: false, big: 2n ** 70n, b: new Uint8Array([255]) };
    expect(e.encode(row)).toBe(',,2024-01-02T03:04:05.000Z,"{""k"":[1,2]}",true,false,1180591620717411303424,/w==');
  });

  it('uses the configured delimiter and writes a header even for an empty first piece when columns are known', () => {
    expect(csv({ delimiter: ';' }).encoder().encodeStream([{ a: 'x;y', b: 1 }], true)).toBe('a;b\n"x;y";1\n');
    expect(csv({ columns: ['a', 'b'] }).encoder().encodeStream([], true)).toBe('a,b\n');
    expect(csv().encoder().encodeStream([], true)).toBe('');
  });

  it('round-trips through the decoder', () => {
    const rows = [
      { id: '1', text: 'a, "quoted"\nvalue' },
      { id: '2', text: '' },
    ];
    const text = csv().encoder().encodeStream(rows, true) as string;
    expect(run(csv().decoder(), text).rows).toEqual(rows);
  });
});
