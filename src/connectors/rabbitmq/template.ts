// Routing-key, header and property templates are data templates in field mode (src/core/data-template.ts): a bare
// `{{ dotted.path }}` reads the record (a name starting with `_` that the row lacks reads the metadata:
// `_routing_key`, `_exchange`, `_key`, `_timestamp`), helpers work, and a record without a named field is an error.
// This module keeps the names and messages the sink, its options and its tests use.

import { compileFieldTemplate, fieldTemplateProblem, type FieldTemplate } from '../../core/data-template.js';
import { SluiceError } from '../../core/errors.js';

export type { FieldTemplate };

/** What is wrong with a template, or undefined. */
export function checkTemplate(source: string): string | undefined {
  // The option's message reads `routing_key: '{{ 1x }}' is not a field name ...`: the position goes last.
  return fieldTemplateProblem(source)?.replace(/^template (\d+:\d+): ([\s\S]*)$/, '$2 (template $1)');
}

/** `what` names the option in errors, e.g. `routing_key`. */
export function compileTemplate(source: string, what: string): FieldTemplate {
  return compileFieldTemplate(source, what, (field) => new SluiceError('SCHEMA', `${what} '${source}': the record has no field '${field}'`));
}
