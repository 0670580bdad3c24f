// Plain text: each payload (or each line of it) is one row with a single string column.

import { z, bool, opt } from '../core/spec.js';
import type { Decoder, Encoder, Format } from '../core/types.js';
import { stringifyJson } from './json.js';
import { payloadText, utf8Of } from './util.js';

export const textOptions = z.strictObject({
  column: opt(z.string().min(1).default('value'), { description: 'Name of the column that holds the text.' }),
  split_lines: bool({
    default: false,
    description: 'Decode each non-empty line of a payload as its own row (a trailing \\r is removed).',
  }),
});

export interface TextOptions {
  column: string;
  split_lines: boolean;
}

export function textFormat(o: TextOptions): Format {
  return {
    name: 'text',
    decoder: () => new TextDecoderImpl(o),
    encoder: () => new TextEncoderImpl(o.column),
  };
}

/** Builds `{ [column]: v }`; the literal for the usual `value` column keeps rows on one fast hidden class. */
export function singleColumnRow(column: string): (v: unknown) => Record<string, unknown> {
  if (column === 'value') return (v) => ({ value: v });
  // A plain assignment to `__proto__` would replace the prototype instead of adding a column.
  return (v) => {
    const o: Record<string, unknown> = {};
    Object.defineProperty(o, column, { value: v, enumerable: true, writable: true, configurable: true });
    return o;
  };
}

class TextDecoderImpl implements Decoder {
  private readonly row: (v: unknown) => Record<string, unknown>;
  private readonly split: boolean;

  constructor(o: TextOptions) {
    this.row = singleColumnRow(o.column);
    this.split = o.split_lines;
  }

  decode(payload: string | Uint8Array, out: unknown[], onError: (err: Error, raw: string | Uint8Array) => void): void {
    const text = payloadText(payload);
    if (typeof text !== 'string') {
      onError(text, payload);
      return;
    }
    if (!this.split) {
      out.push(this.row(text));
      return;
    }
    const n = text.length;
    let start = 0;
    while (start < n) {
      let end = text.indexOf('\n', start);
      if (end === -1) end = n;
      const stop = end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end;
      if (stop > start) out.push(this.row(text.slice(start, stop)));
      start = end + 1;
    }
  }
}

class TextEncoderImpl implements Encoder {
  readonly extension = 'txt';
  constructor(private readonly column: string) {}

  encode(value: unknown): string {
    return this.text(value);
  }

  encodeStream(values: unknown[], _first: boolean): string {
    let s = '';
    for (let i = 0; i < values.length; i++) {
      s += this.text(values[i]);
      s += '\n';
    }
    return s;
  }

  private text(row: unknown): string {
    let v = row;
    if (typeof row === 'object' && row !== null && !Array.isArray(row) && !ArrayBuffer.isView(row) && this.column in row) {
      v = (row as Record<string, unknown>)[this.column];
    }
    if (typeof v === 'string') return v;
    if (v instanceof Uint8Array) return utf8Of(v);
    return stringifyJson(v);
  }
}
