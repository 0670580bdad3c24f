// Routing-key, header and property templates: literal text with `{{ dotted.path }}` placeholders read from a record.
//
// The websocket template language evaluates functions (clock, env, HMAC) for handshakes and cannot read a record, so
// it does not fit a per-message routing key. A name starting with `_` that the row lacks reads the record's metadata
// (`_routing_key`, `_exchange`, ...) or `_key` / `_timestamp`. Parsed once; a constant template renders for free.

import { SluiceError } from '../../core/errors.js';
import type { SluiceRecord } from '../../core/types.js';

export interface FieldTemplate {
  readonly source: string;
  readonly constant: boolean;
  /** Throws a SluiceError naming the option and the missing field. */
  render(rec: SluiceRecord): string;
}

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
const NAME = /^[A-Za-z_$][\w$-]*(\.[\w$-]+)*$/;

/** What is wrong with a template, or undefined. */
export function checkTemplate(source: string): string | undefined {
  let bad: string | undefined;
  const rest = source.replace(PLACEHOLDER, (_m, name: string) => {
    if (!NAME.test(name)) bad ??= name;
    return '';
  });
  if (bad !== undefined) return `'{{ ${bad} }}' is not a field name (use {{ field }} or {{ nested.field }})`;
  if (rest.includes('{{') || rest.includes('}}')) return `unbalanced '{{' / '}}' in '${source}'`;
  return undefined;
}

function text(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  if (typeof v === 'object') return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
  return String(v);
}

function lookup(rec: SluiceRecord, path: readonly string[]): unknown {
  const first = path[0]!;
  const row = rec.value;
  const isRow = row !== null && typeof row === 'object';
  let cur: unknown;
  if (first.startsWith('_') && !(isRow && first in (row as object))) {
    if (first === '_key') cur = rec.key == null ? undefined : typeof rec.key === 'string' ? rec.key : Buffer.from(rec.key).toString('utf8');
    else if (first === '_timestamp') cur = rec.timestamp;
    else cur = rec.meta?.[first];
  } else cur = isRow ? (row as Record<string, unknown>)[first] : undefined;
  for (let i = 1; i < path.length && cur != null; i++) cur = typeof cur === 'object' ? (cur as Record<string, unknown>)[path[i]!] : undefined;
  return cur;
}

/** `what` names the option in errors, e.g. `routing_key`. */
export function compileTemplate(source: string, what: string): FieldTemplate {
  const problem = checkTemplate(source);
  if (problem) throw new SluiceError('CONFIG', `${what}: ${problem}`);
  const lits: string[] = [];
  const paths: string[][] = [];
  let last = 0;
  for (const m of source.matchAll(PLACEHOLDER)) {
    lits.push(source.slice(last, m.index));
    paths.push(m[1]!.split('.'));
    last = m.index! + m[0].length;
  }
  const tail = source.slice(last);
  if (paths.length === 0) return { source, constant: true, render: () => source };
  return {
    source,
    constant: false,
    render(rec) {
      let out = '';
      for (let i = 0; i < paths.length; i++) {
        const v = lookup(rec, paths[i]!);
        if (v == null) {
          throw new SluiceError('SCHEMA', `${what} '${source}': the record has no field '${paths[i]!.join('.')}'`);
        }
        out += lits[i]! + text(v);
      }
      return out + tail;
    },
  };
}
