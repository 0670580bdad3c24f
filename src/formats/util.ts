// Helpers shared by the built-in formats: strict UTF-8, byte views, line walking.

import { RecordError } from '../core/errors.js';

// `fatal` makes a bad byte an error instead of a silent U+FFFD, which would corrupt data without anyone noticing.
// Without `stream` every call stands alone, so one instance serves every decoder.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The payload as text; invalid UTF-8 becomes a DECODE error naming the first bad byte. */
export function payloadText(payload: string | Uint8Array): string | RecordError {
  if (typeof payload === 'string') return payload;
  try {
    return strictUtf8.decode(payload);
  } catch {
    return new RecordError('DECODE', `invalid UTF-8 at byte ${invalidUtf8Offset(payload)}`);
  }
}

/** Offset of the first byte that does not start a well-formed UTF-8 sequence, or -1 when all of it is valid. */
export function invalidUtf8Offset(b: Uint8Array): number {
  const n = b.length;
  let i = 0;
  while (i < n) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      // Overlong forms (E0 80..9F) and UTF-16 surrogates (ED A0..BF) are not valid UTF-8.
      if (c === 0xe0) lo = 0xa0;
      else if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90;
      else if (c === 0xf4) hi = 0x8f;
    } else return i;
    if (i + need >= n) return i;
    const second = b[i + 1]!;
    if (second < lo || second > hi) return i;
    for (let k = 2; k <= need; k++) {
      const x = b[i + k]!;
      if (x < 0x80 || x > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** A Buffer over the same memory (no copy) — csv-parse and base64 want Buffer methods. */
export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** UTF-8 text of bytes (no copy of the bytes first). */
export function utf8Of(b: Uint8Array): string {
  return asBuffer(b).toString('utf8');
}

export function toBase64(b: ArrayBufferView): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}

/** True when s[start, end) holds only JSON whitespace. */
export function isBlank(s: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13 && c !== 10) return false;
  }
  return true;
}

/** Short, quoted rendering of a value for error messages. */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return `string '${v.length > 40 ? v.slice(0, 40) + '…' : v}'`;
  if (typeof v === 'bigint') return `bigint ${v}`;
  if (typeof v !== 'object') return `${typeof v} ${String(v)}`;
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a Date';
  if (ArrayBuffer.isView(v)) return 'bytes';
  return 'an object';
}

/**
 * Whether a decoded value nests arrays and objects more than `max` levels deep; walked without recursion, so it is
 * safe on any depth. Formats whose schemas can recurse (Avro) check rows with it, like JSON text (MAX_JSON_DEPTH).
 */
export function nestedDeeperThan(v: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[v, 0]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (typeof x !== 'object' || x === null || ArrayBuffer.isView(x) || x instanceof Date) continue;
    if (d >= max) return true;
    if (Array.isArray(x)) for (const y of x) stack.push([y, d + 1]);
    else for (const k in x) stack.push([(x as Record<string, unknown>)[k], d + 1]);
  }
  return false;
}
