import { describe, expect, it } from 'vitest';
import { createFormat } from './index.js';

function decode(name: string, payload: string | Uint8Array, options: Record<string, unknown> = {}) {
  const rows: unknown[] = [];
  const errors: { message: string; raw: string | Uint8Array }[] = [];
  createFormat({ name, options }).decoder().decode(payload, rows, (err, raw) => errors.push({ message: err.message, raw }));
  return { rows, errors };
}

describe('text', () => {
  it('decodes each payload as one row with a value column, newlines included', () => {
    expect(decode('text', 'hello\nworld').rows).toEqual([{ value: 'hello\nworld' }]);
    expect(decode('text', Buffer.from('héllo')).rows).toEqual([{ value: 'héllo' }]);
    expect(decode('text', '').rows).toEqual([{ value: '' }]);
  });

  it('renames the column', () => {
    expect(decode('text', 'x', { column: 'line' }).rows).toEqual([{ line: 'x' }]);
  });

  it('splits non-empty lines into rows with split_lines, dropping CR', () => {
    expect(decode('text', 'a\r\n\nb\n  \nc', { split_lines: true }).rows).toEqual([{ value: 'a' }, { value: 'b' }, { value: '  ' }, { value: 'c' }]);
  });

  it('rejects invalid UTF-8 naming the byte', () => {
    const bad = new Uint8Array([0x68, 0x69, 0xc0, 0xaf]);
    expect(decode('text', bad).errors).toEqual([{ message: 'invalid UTF-8 at byte 2', raw: bad }]);
  });

  it('encodes the value field when it is a string, else JSON', () => {
    const e = createFormat({ name: 'text', options: {} }).encoder();
    expect(e.encode({ value: 'hi', other: 1 })).toBe('hi');
    expect(e.encode({ value: { a: 1n } })).toBe('{"a":1}');
    expect(e.encode({ value: 42 })).toBe('42');
    expect(e.encode({ a: 1 })).toBe('{"a":1}');
    expect(e.encode('plain')).toBe('plain');
    expect(e.extension).toBe('txt');
  });

  it('encodes a stream as lines each ending in a newline', () => {
    const e = createFormat({ name: 'string', options: { column: 'msg' } }).encoder();
    expect(e.encodeStream([{ msg: 'a' }, { msg: 'b' }], true)).toBe('a\nb\n');
  });
});

describe('bytes', () => {
  it('passes the payload through as the value column', () => {
    const payload = new Uint8Array([0, 255, 10]);
    const [row] = decode('bytes', payload).rows as { value: Uint8Array }[];
    expect(row!.value).toBe(payload);
    const [fromText] = decode('raw', 'hé').rows as { value: Uint8Array }[];
    expect([...fromText!.value]).toEqual([0x68, 0xc3, 0xa9]);
  });

  it('decodes invalid UTF-8 without complaint: bytes are not text', () => {
    expect(decode('binary', new Uint8Array([0xff])).errors).toEqual([]);
  });

  it('encodes the value field as bytes: as-is, UTF-8 for strings, JSON otherwise', () => {
    const e = createFormat({ name: 'bytes', options: {} }).encoder();
    const b = new Uint8Array([1, 2]);
    expect(e.encode({ value: b })).toBe(b);
    expect(Buffer.from(e.encode({ value: 'é' })).toString('hex')).toBe('c3a9');
    expect(Buffer.from(e.encode({ value: { n: 1n } })).toString()).toBe('{"n":1}');
    expect(e.extension).toBe('bin');
  });

  it('concatenates a stream without separators', () => {
    const e = createFormat({ name: 'bytes', options: {} }).encoder();
    const out = e.encodeStream([{ value: new Uint8Array([1]) }, { value: 'ab' }, { value: new Uint8Array([2, 3]) }], true);
    expect([...(out as Uint8Array)]).toEqual([1, 0x61, 0x62, 2, 3]);
  });
});
