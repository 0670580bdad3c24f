// The sink's topic, key and header templates are data templates in field mode (src/core/data-template.ts): a bare
// `{{ field }}` that a record lacks is an error naming the field, helpers (`{{ lower region }}`) are available.
// This module keeps the names the sink and its tests use.

import { compileFieldTemplate as compileCore, textOf } from '../../core/data-template.js';

export interface FieldTemplate {
  readonly source: string;
  /** The text when the template has no `{{ }}`. */
  readonly constant?: string;
  /** Render for one record; throws a SluiceError naming the missing field. */
  render(rec: import('../../core/types.js').SluiceRecord): string;
}

/** Text of a value for a topic, key or header. */
export const valueText = textOf;

/** The value at a dotted path of a row, or undefined. */
export function fieldAt(row: unknown, path: readonly string[]): unknown {
  let cur = row;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

export function compileFieldTemplate(source: string, what = 'template'): FieldTemplate {
  const t = compileCore(source, what);
  return t.constant ? { source, constant: source, render: t.render } : { source, render: t.render };
}
