// Key templates for the sink: literal text and `{{ dotted.path }}` over the record's row; names starting with `_`
// read the record's metadata (`_key`, `_timestamp`, `_channel`, ...) unless the row itself has such a field.
// Compiled once per sink; rendering is a loop over pre-split parts, with no closures per record.

import { SluiceError } from '../../core/errors.js';
import type { SluiceRecord } from '../../core/types.js';

export interface KeyTemplate {
  readonly source: string;
  readonly constant: boolean;
  /** Throws a SluiceError naming the option, the field and the template when the field is missing. */
  render(rec: SluiceRecord): string;
}

interface Ref {
  path: string[];
  name: string;
}

export function valueText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('utf8');
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
}

export function fieldOf(rec: SluiceRecord, path: string[]): unknown {
  const first = path[0]!;
  const row = rec.value !== null && typeof rec.value === 'object' && !(rec.value instanceof Uint8Array) ? (rec.value as Record<string, unknown>) : undefined;
  let cur: unknown;
  let i = 1;
  if (first.startsWith('_') && !(row && first in row)) {
    if (first === '_key') cur = rec.key == null ? undefined : typeof rec.key === 'string' ? rec.key : Buffer.from(rec.key).toString('utf8');
    else if (first === '_timestamp') cur = rec.timestamp;
    else cur = rec.meta?.[first];
  } else {
    cur = row;
    i = 0;
  }
  for (; i < path.length; i++) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[path[i]!];
  }
  return cur;
}

export function compileKeyTemplate(source: string, what: string): KeyTemplate {
  const parts: Array<string | Ref> = [];
  let i = 0;
  while (i < source.length) {
    const open = source.indexOf('{{', i);
    if (open < 0) {
      parts.push(source.slice(i));
      break;
    }
    if (open > i) parts.push(source.slice(i, open));
    const close = source.indexOf('}}', open + 2);
    if (close < 0) throw new SluiceError('CONFIG', `${what} '${source}': missing '}}' after column ${open + 1}`);
    const name = source.slice(open + 2, close).trim();
    if (!/^[A-Za-z_][\w-]*(\.[\w-]+)*$/.test(name)) {
      throw new SluiceError('CONFIG', `${what} '${source}': expected a field name such as {{ id }} or {{ device.site }} at column ${open + 3}, found '${name}'`);
    }
    parts.push({ path: name.split('.'), name });
    i = close + 2;
  }
  const constant = parts.every((p) => typeof p === 'string');
  const fixed = constant ? (parts as string[]).join('') : '';
  return {
    source,
    constant,
    render(rec) {
      if (constant) return fixed;
      let out = '';
      for (let k = 0; k < parts.length; k++) {
        const p = parts[k]!;
        if (typeof p === 'string') {
          out += p;
          continue;
        }
        const v = fieldOf(rec, p.path);
        if (v === undefined || v === null) {
          throw new SluiceError('CONFIG', `${what} '${source}': the record has no field '${p.name}' (or it is null)`, {
            hint: 'every record needs the fields the key template names',
          });
        }
        out += valueText(v);
      }
      return out;
    },
  };
}
