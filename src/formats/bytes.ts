// Raw bytes: the payload passes through untouched as one binary column.

import { z, opt } from '../core/spec.js';
import type { Decoder, Encoder, Format } from '../core/types.js';
import { stringifyJson } from './json.js';
import { singleColumnRow } from './text.js';

export const bytesOptions = z.strictObject({
  column: opt(z.string().min(1).default('value'), { description: 'Name of the column that holds the bytes.' }),
});

export interface BytesOptions {
  column: string;
}

export function bytesFormat(o: BytesOptions): Format {
  return {
    name: 'bytes',
    decoder: () => new BytesDecoder(o.column),
    encoder: () => new BytesEncoder(o.column),
  };
}

class BytesDecoder implements Decoder {
  private readonly row: (v: unknown) => Record<string, unknown>;
  constructor(column: string) {
    this.row = singleColumnRow(column);
  }

  decode(payload: string | Uint8Array, out: unknown[]): void {
    out.push(this.row(typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload));
  }
}

class BytesEncoder implements Encoder {
  readonly extension = 'bin';
  constructor(private readonly column: string) {}

  encode(value: unknown): Uint8Array {
    let v = value;
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value) && this.column in value) {
      v = (value as Record<string, unknown>)[this.column];
    }
    if (v instanceof Uint8Array) return v;
    if (typeof v === 'string') return Buffer.from(v, 'utf8');
    return Buffer.from(stringifyJson(v), 'utf8');
  }

  encodeStream(values: unknown[], _first: boolean): Uint8Array {
    if (values.length === 1) return this.encode(values[0]);
    const parts = new Array<Uint8Array>(values.length);
    for (let i = 0; i < values.length; i++) parts[i] = this.encode(values[i]);
    return Buffer.concat(parts);
  }
}
