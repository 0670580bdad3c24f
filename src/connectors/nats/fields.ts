// Field templates for sink subjects and header values: `orders.{{ region }}.{{ customer.id }}`.
//
// The websocket template language (src/connectors/websocket/template.ts) renders clock, env and HMAC functions for
// handshakes; a sink subject needs the record's own fields instead, rendered once per message, so this is a separate
// and much smaller language: literal text and `{{ dotted.path }}`. Names starting with `_` read the record's metadata
// (`_key`, `_subject`, `_timestamp`, or any `_name` the source put in its meta).

import { SluiceError } from '../../core/errors.js';
import type { SluiceRecord } from '../../core/types.js';
import { z } from '../../core/spec.js';

export interface FieldTemplate {
  readonly source: string;
  readonly constant: boolean;
  /** The rendered text; throws a SluiceError naming `what`, the field and the template when a field is missing. */
  render(rec: SluiceRecord): string;
}

type Part = string | { path: string[]; name: string };

function lookup(rec: SluiceRecord, p: { path: string[]; name: string }): unknown {
  const first = p.path[0]!;
  let cur: unknown;
  let i = 1;
  if (first.startsWith('_') && !(rec.value !== null && typeof rec.value === 'object' && first in (rec.value as object))) {
    if (first === '_key') cur = rec.key == null ? undefined : typeof rec.key === 'string' ? rec.key : Buffer.from(rec.key).toString('utf8');
    else if (first === '_timestamp') cur = rec.timestamp;
    else cur = rec.meta?.[first];
  } else {
    cur = rec.value;
    i = 0;
  }
  for (; i < p.path.length; i++) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p.path[i]!];
  }
  return cur;
}

function text(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  return JSON.stringify(v);
}

/** Parse a template; a syntax error names the column. `what` names the option in render errors (`subject`). */
export function compileFieldTemplate(source: string, what: string): FieldTemplate {
  const parts: Part[] = [];
  let i = 0;
  while (i < source.length) {
    const open = source.indexOf('{{', i);
    if (open < 0) {
      parts.push(source.slice(i));
      break;
    }
    if (open > i) parts.push(source.slice(i, open));
    const close = source.indexOf('}}', open + 2);
    if (close < 0) throw new SluiceError('CONFIG', `${what}: template column ${open + 1}: missing '}}'`);
    const name = source.slice(open + 2, close).trim();
    if (!/^[A-Za-z_][\w-]*(\.[\w-]+)*$/.test(name)) {
      throw new SluiceError('CONFIG', `${what}: template column ${open + 3}: expected a field name such as {{ region }} or {{ customer.id }}, found '${name}'`);
    }
    parts.push({ path: name.split('.'), name });
    i = close + 2;
  }
  const constant = parts.every((p) => typeof p === 'string');
  const fixed = constant ? (parts as string[]).join('') : '';
  return {
    source,
    constant,
    render(rec: SluiceRecord): string {
      if (constant) return fixed;
      let out = '';
      for (let k = 0; k < parts.length; k++) {
        const p = parts[k]!;
        if (typeof p === 'string') out += p;
        else {
          const v = lookup(rec, p);
          if (v === undefined || v === null) {
            throw new SluiceError('SINK', `${what} template '${source}': field '${p.name}' is missing or null in the record`, {
              hint: 'every record needs the fields the template names; filter or default them upstream',
            });
          }
          out += text(v);
        }
      }
      return out;
    },
  };
}

/** A string option that must compile as a field template. */
export function fieldTemplateString(what: string) {
  return z.string().min(1).superRefine((s, ctx) => {
    try {
      compileFieldTemplate(s, what);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message.replace(`${what}: `, '') });
    }
  });
}

/** A subject a message can be published to: tokens separated by dots, no wildcards, no whitespace. */
export function checkPublishSubject(subject: string, what: string, source: string): void {
  if (!subject || /[\s*>]/.test(subject) || subject.startsWith('.') || subject.endsWith('.') || subject.includes('..')) {
    throw new SluiceError('SINK', `${what} '${subject}' (from template '${source}') is not a valid subject to publish to: no wildcards, whitespace or empty tokens`);
  }
}
