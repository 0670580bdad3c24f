import { describe, expect, it } from 'vitest';
import { compileDataTemplate, compileFieldTemplate, DataTemplateError, fieldTemplateProblem, payloadTemplate } from './data-template.js';

const r = (t: string, row: unknown, escape: 'json' | 'none' = 'json') => compileDataTemplate(t, { escape }).render(row);

describe('data templates', () => {
  it('reads dotted paths, indexes and metadata, and renders missing fields as empty', () => {
    const row = { a: { b: 1 }, items: [{ sku: 'x' }, { sku: 'y' }], s: 'hi' };
    expect(r('{{ a.b }}/{{ items[1].sku }}/{{ s }}/{{ nope.deeper }}|', row)).toBe('1/y/hi/|');
    const t = compileDataTemplate('{{ _key }}@{{ _topic }}', { escape: 'none' });
    expect(t.render({}, { value: {}, key: 'k1', meta: { _topic: 't' } })).toBe('k1@t');
    expect(r('{{ json missing }}', {})).toBe('null');
  });

  it('escapes values for JSON strings by default; json and raw opt out', () => {
    const row = { name: 'a "quoted"\nline\\', obj: { x: [1, 2] } };
    const out = r('{"name":"{{ name }}","obj":{{ json obj }},"raw":"{{ raw name }}"}', { ...row, name: 'a "q"' });
    expect(out).toBe('{"name":"a \\"q\\"","obj":{"x":[1,2]},"raw":"a "q""}');
    expect(JSON.parse(r('{"n":"{{ name }}"}', row))).toEqual({ n: row.name });
    expect(r('{{ name }}', row, 'none')).toBe(row.name);
  });

  it('supports if/else/unless with comparison helpers', () => {
    const t = '{{#if gt price 100}}big{{else}}small{{/if}}-{{#unless ok}}bad{{/unless}}';
    expect(r(t, { price: 150, ok: true })).toBe('big-');
    expect(r(t, { price: '50', ok: false })).toBe('small-bad');
    expect(r('{{#if eq side "buy"}}B{{else}}S{{/if}}', { side: 'buy' })).toBe('B');
    expect(r('{{#if items}}some{{else}}none{{/if}}', { items: [] })).toBe('none');
  });

  it('loops over arrays with this, @index, @first/@last and outer fields', () => {
    const row = { user: 'u', items: [{ sku: 'a', q: 1 }, { sku: 'b', q: 2 }], tags: ['x', 'y'] };
    expect(r('[{{#each items}}{{#unless @first}},{{/unless}}{"i":{{ @index }},"sku":"{{ sku }}","u":"{{ user }}"}{{/each}}]', row)).toBe(
      '[{"i":0,"sku":"a","u":"u"},{"i":1,"sku":"b","u":"u"}]',
    );
    expect(r('{{#each tags}}{{ this }}{{#unless @last}};{{/unless}}{{/each}}', row)).toBe('x;y');
    expect(r('{{#each none}}x{{else}}empty{{/each}}', row)).toBe('empty');
    expect(r('{{#each m}}{{ @key }}={{ this }};{{/each}}{{! ignored }}', { m: { a: 1, b: 'x' } })).toBe('a=1;b=x;');
    expect(r('{{#if eq id "7"}}seven{{/if}}|{{ @root.user }}', { id: 7, user: 'u' })).toBe('seven|u');
  });

  it('formats with helpers and never throws on odd values', () => {
    const ts = Date.UTC(2024, 0, 2, 3, 4, 5, 6);
    expect(r('{{ upper s }} {{ lower s }} {{ default missing "n/a" }} {{ number p 2 }} {{ len items }}', { s: 'Ab', p: 3.14159, items: [1, 2] })).toBe('AB ab n/a 3.14 2');
    expect(r('{{ date ts "YYYY-MM-DD HH:mm:ss.SSS" }}|{{ date ts }}|{{ date ts "unix" }}', { ts })).toBe('2024-01-02 03:04:05.006|2024-01-02T03:04:05.006Z|1704164645');
    expect(r('{{ date bad "YYYY" }}|{{ number bad 2 }}|{{ upper (default x "d") }}', { bad: 'nope' })).toBe('||D');
  });

  it('reports compile errors with line:col and suggestions', () => {
    const err = (t: string) => {
      try {
        compileDataTemplate(t);
      } catch (e) {
        expect(e).toBeInstanceOf(DataTemplateError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(err('ok\n  {{ uper name }}')).toBe("template 2:6: unknown helper 'uper'; did you mean 'upper'?");
    expect(err('{{#if a}}x')).toBe("template 1:3: '{{#if}}' is never closed with '{{/if}}'");
    expect(err('{{#each a}}{{/if}}')).toMatch(/^template 1:14: '\{\{\/if\}\}' closes '\{\{#each\}\}' opened at 1:3/);
    expect(err('a }} b')).toBe("template 1:3: '}}' without a matching '{{'");
    expect(err('{{ default x "open }}')).toMatch(/^template 1:14: unterminated string/);
    expect(err('{{else}}')).toMatch(/^template 1:3: '\{\{else\}\}' outside/);
    expect(err('a {{ b')).toBe("template 1:3: '{{' is never closed with '}}'");
    expect(err('{{ @index }}')).toMatch(/^template 1:4: '@index' is only defined inside/);
    expect(err('{{ date }} {{ number a 1 2 }}')).toMatch(/^template 1:15: 'number' takes 1 to 2 argument/);
  });
});

describe('field templates (topics, keys, subjects)', () => {
  it('render fields, metadata and helpers, and name the option and field when a bare field is missing', () => {
    const t = compileFieldTemplate('orders.{{ lower region }}.{{ dev.id }}.{{ _topic }}', 'subject');
    expect(t.constant).toBe(false);
    expect(t.render({ value: { region: 'EU', dev: { id: 7 } }, meta: { _topic: 'in' } })).toBe('orders.eu.7.in');
    expect(() => t.render({ value: { region: 'EU' }, meta: { _topic: 'in' } })).toThrow("subject template 'orders.{{ lower region }}.{{ dev.id }}.{{ _topic }}': field 'dev.id' is missing or null");
    // A helper decides for itself: `default` fills in, a missing field inside a helper is not an error.
    expect(compileFieldTemplate('{{ default region "xx" }}', 'topic').render({ value: {} })).toBe('xx');
    expect(compileFieldTemplate('fixed', 'topic')).toMatchObject({ constant: true });
  });

  it('compile errors name the option and the position, in field words', () => {
    expect(() => compileFieldTemplate('a.{{ b c }}', 'topic')).toThrow("topic: template 1:6: '{{ b c }}' is not a field name (write e.g. {{ region }} or {{ customer.id }}) and 'b' is not a helper");
    expect(() => compileFieldTemplate('a.{{ 1x }}', 'topic')).toThrow("topic: template 1:6: '{{ 1x }}' is not a field name");
    expect(() => compileFieldTemplate('a.{{ b', 'key')).toThrow("key: template 1:3: unbalanced '{{': missing '}}'");
    expect(fieldTemplateProblem('{{ uper x }}')).toBe("template 1:4: '{{ uper x }}' is not a field name (write e.g. {{ region }} or {{ customer.id }}) and 'uper' is not a helper; did you mean 'upper'?");
  });

  it('payload templates render records with metadata; compile errors name the template option', () => {
    const p = payloadTemplate({ template: '{"k":"{{ _key }}","v":{{ json v }}}' })!;
    expect(p({ value: { v: [1] }, key: 'a"b' })).toBe('{"k":"a\\"b","v":[1]}');
    expect(payloadTemplate({})).toBeUndefined();
    expect(() => payloadTemplate({ template: '{{#each}}' })).toThrow(/^template: template 1:3: \{\{#each\}\} needs a value/);
  });
});
