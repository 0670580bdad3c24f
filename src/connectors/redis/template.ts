// Key templates are data templates in field mode (src/core/data-template.ts): a bare `{{ dotted.path }}` reads the
// record's row (names starting with `_` that the row lacks read the metadata: `_key`, `_timestamp`, `_channel`, ...),
// helpers work, and a record without a named field is an error. This module keeps the names and messages the sink, its
// options and its tests use.

import { compileFieldTemplate, fieldTemplateProblem, textOf, type FieldTemplate } from '../../core/data-template.js';
import { SluiceError } from '../../core/errors.js';
import type { SluiceRecord } from '../../core/types.js';

export type KeyTemplate = FieldTemplate;

export const valueText = textOf;

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
  const problem = fieldTemplateProblem(source);
  if (problem) throw new SluiceError('CONFIG', `${what} '${source}': ${problem}`);
  return compileFieldTemplate(
    source,
    what,
    (field) =>
      new SluiceError('CONFIG', `${what} '${source}': the record has no field '${field}' (or it is null)`, {
        hint: 'every record needs the fields the key template names',
      }),
  );
}
