// Field templates for the sink's topic, key and headers: `orders-{{ region }}`, `{{ customer.id }}`, `{{ _topic }}`.
//
// The WebSocket connector's template language is made of functions (now_ms, hmac_sha256, env ...) and has no record
// fields, so it does not fit here; this one only substitutes fields. A name starting with `_` reads the record's
// metadata (`_topic`, `_partition`, `_key`, ...). Templates are parsed once; rendering walks a precompiled part list.

import { SluiceError } from '../../core/errors.js';
import type { SluiceRecord } from '../../core/types.js';

export interface FieldTemplate {
  readonly source: string;
  /** The text when the template has no `{{ }}`. */
  readonly constant?: string;
  /** Render for one record; throws a SluiceError naming the missing field. */
  render(rec: SluiceRecord): string;
}

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
const NAME = /^[A-Za-z_][\w-]*(\.[A-Za-z_0-9][\w-]*)*$/;

/** Text of a value for a topic, key or header. */
export function valueText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  if (typeof v === 'object') return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
  return String(v);
}

/** The value at a dotted path of a row, or undefined. */
export function fieldAt(row: unknown, path: readonly string[]): unknown {
  let cur = row;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

/** A record's metadata value by name (`_key`, `_timestamp`, `_headers` or connector metadata). */
export function metaAt(rec: SluiceRecord, name: string): unknown {
  switch (name) {
    case '_key':
      return rec.key ?? undefined;
    case '_timestamp':
      return rec.timestamp;
    case '_headers':
      return rec.headers;
    default:
      return rec.meta?.[name];
  }
}

export function compileFieldTemplate(source: string): FieldTemplate {
  const lits: string[] = [];
  const paths: string[][] = [];
  let last = 0;
  for (const m of source.matchAll(PLACEHOLDER)) {
    const name = m[1]!;
    if (!NAME.test(name)) {
      throw new SluiceError('CONFIG', `template '${source}': '{{ ${name} }}' is not a field name (write e.g. {{ region }} or {{ customer.id }})`);
    }
    lits.push(source.slice(last, m.index));
    paths.push(name.split('.'));
    last = m.index! + m[0].length;
  }
  const tail = source.slice(last);
  if (/\{\{|\}\}/.test(tail) || lits.some((l) => /\{\{|\}\}/.test(l))) throw new SluiceError('CONFIG', `template '${source}': unbalanced '{{' or '}}'`);
  if (!paths.length) return { source, constant: source, render: () => source };
  const value = (rec: SluiceRecord, path: string[]): string => {
    const v = path[0]!.startsWith('_') && path.length === 1 ? metaAt(rec, path[0]!) : fieldAt(rec.value, path);
    if (v === undefined || v === null) {
      throw new SluiceError('CONFIG', `template '${source}': field '${path.join('.')}' is missing in a record`, {
        hint: 'every record needs the fields its topic/key/header templates use',
      });
    }
    return valueText(v);
  };
  return {
    source,
    render(rec) {
      let out = lits[0]! + value(rec, paths[0]!);
      for (let i = 1; i < paths.length; i++) out += lits[i]! + value(rec, paths[i]!);
      return out + tail;
    },
  };
}
