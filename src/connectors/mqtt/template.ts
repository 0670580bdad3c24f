// Sink topic and user-property templates are data templates in field mode (src/core/data-template.ts): a bare
// `{{ dotted.path }}` reads the record (a name starting with `_` that the row lacks reads the metadata: `_topic`,
// `_qos`, `_key`, `_timestamp`), helpers such as `{{ lower site }}` work, and a record without a named field is an
// error. This module keeps the names and messages the sink, its options and its tests use.

import { compileFieldTemplate as compileCore, fieldTemplateProblem, type FieldTemplate } from '../../core/data-template.js';
import { SluiceError } from '../../core/errors.js';

export type { FieldTemplate };

/** What is wrong with a template, or undefined. */
export function checkTemplate(source: string): string | undefined {
  return fieldTemplateProblem(source);
}

/** `what` names the option in errors, e.g. `topic`. */
export function compileFieldTemplate(source: string, what: string): FieldTemplate {
  return compileCore(source, what, (_field, tag) => new SluiceError('SCHEMA', `${what} '${source}': the record has no value for ${tag}`));
}
