// Sink subjects and header values are data templates in field mode (src/core/data-template.ts):
// `orders.{{ region }}.{{ customer.id }}`, names starting with `_` read the record's metadata (`_key`, `_subject`,
// `_timestamp`, or any `_name` the source put in its meta), helpers such as `{{ lower region }}` work, and a record
// without a named field fails the write naming the option, template and field.

import { SluiceError } from '../../core/errors.js';
import { compileFieldTemplate, fieldTemplateProblem, type FieldTemplate } from '../../core/data-template.js';
import { z } from '../../core/spec.js';

export { compileFieldTemplate, type FieldTemplate };

/** A string option that must compile as a field template. */
export function fieldTemplateString(_what: string) {
  return z.string().min(1).superRefine((s, ctx) => {
    const problem = fieldTemplateProblem(s);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

/** A subject a message can be published to: tokens separated by dots, no wildcards, no whitespace. */
export function checkPublishSubject(subject: string, what: string, source: string): void {
  if (!subject || /[\s*>]/.test(subject) || subject.startsWith('.') || subject.endsWith('.') || subject.includes('..')) {
    throw new SluiceError('SINK', `${what} '${subject}' (from template '${source}') is not a valid subject to publish to: no wildcards, whitespace or empty tokens`);
  }
}
