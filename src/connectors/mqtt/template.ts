// Sink topic and user-property templates: literal text with `{{ dotted.path }}` placeholders read from the record.
//
// The websocket template language renders clock, environment and HMAC functions for handshakes and has no access to a
// record, so it does not fit a per-message topic. A name starting with `_` that the row does not have reads the record's
// metadata (`_topic`, `_qos`, ...) or `_key` / `_timestamp`. Parsed once; rendering a constant template costs nothing.

import { SluiceError } from '../../core/errors.js';
import type { SluiceRecord } from '../../core/types.js';

type Part = string | { path: string[]; text: string };

export interface FieldTemplate {
  readonly source: string;
  readonly constant: boolean;
  render(rec: SluiceRecord): string;
}

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
const NAME = /^[A-Za-z_$][\w$-]*(\.[\w$-]+)*$/;

/** What is wrong with a template, or undefined. */
export function checkTemplate(source: string): string | undefined {
  const stripped = source.replace(PLACEHOLDER, (_m, name: string) => (NAME.test(name) ? '' : `\u0000${name}`));
  const bad = /\u0000([^\u0000]*)/.exec(stripped);
  if (bad) return `'{{ ${bad[1]} }}' is not a field name (use {{ field }} or {{ nested.field }})`;
  if (stripped.includes('{{') || stripped.includes('}}')) return `unbalanced '{{' / '}}' in '${source}'`;
  return undefined;
}

function lookup(rec: SluiceRecord, path: string[]): unknown {
  const first = path[0]!;
  const row = rec.value;
  let cur: unknown;
  if (first.startsWith('_') && !(row !== null && typeof row === 'object' && first in (row as object))) {
    if (first === '_key') cur = rec.key == null ? undefined : typeof rec.key === 'string' ? rec.key : Buffer.from(rec.key).toString('utf8');
    else if (first === '_timestamp') cur = rec.timestamp;
    else cur = rec.meta?.[first];
  } else cur = row !== null && typeof row === 'object' ? (row as Record<string, unknown>)[first] : undefined;
  for (let i = 1; i < path.length && cur !== undefined && cur !== null; i++) {
    cur = typeof cur === 'object' ? (cur as Record<string, unknown>)[path[i]!] : undefined;
  }
  return cur;
}

/** `what` names the option in errors, e.g. `topic`. */
export function compileFieldTemplate(source: string, what: string): FieldTemplate {
  const problem = checkTemplate(source);
  if (problem) throw new SluiceError('CONFIG', `${what}: ${problem}`);
  const parts: Part[] = [];
  let last = 0;
  for (const m of source.matchAll(PLACEHOLDER)) {
    if (m.index! > last) parts.push(source.slice(last, m.index));
    parts.push({ path: m[1]!.split('.'), text: m[0] });
    last = m.index! + m[0].length;
  }
  if (last < source.length) parts.push(source.slice(last));
  const constant = parts.every((p) => typeof p === 'string');
  return {
    source,
    constant,
    render(rec: SluiceRecord): string {
      if (constant) return source;
      let out = '';
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!;
        if (typeof p === 'string') {
          out += p;
          continue;
        }
        const v = lookup(rec, p.path);
        if (v === undefined || v === null) {
          throw new SluiceError('SCHEMA', `${what} '${source}': the record has no value for ${p.text}`);
        }
        out += typeof v === 'object' ? (v instanceof Date ? v.toISOString() : JSON.stringify(v)) : String(v);
      }
      return out;
    },
  };
}
