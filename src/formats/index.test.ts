import { describe, expect, it } from 'vitest';
import { FORMATS, allFormats, createFormat, findFormat, parseFormatConfig } from './index.js';
import { ConfigError } from '../core/errors.js';
import { describeOptions } from '../core/spec.js';

describe('parseFormatConfig', () => {
  it('accepts a bare name and fills in default options', () => {
    expect(parseFormatConfig('json')).toEqual({ ok: true, value: { name: 'json', options: { wrap_scalars: false, unwrap_arrays: true, pretty: false } } });
  });

  it('resolves aliases and case to the canonical name', () => {
    for (const [alias, name] of [['ndjson', 'json'], ['JSONL', 'json'], ['json_lines', 'json'], ['json-lines', 'json'], ['string', 'text'], ['raw', 'bytes'], ['binary', 'bytes'], ['CSV', 'csv']]) {
      const r = parseFormatConfig(alias);
      expect(r.ok && r.value.name).toBe(name);
    }
  });

  it('accepts {name, ...options}', () => {
    const r = parseFormatConfig({ name: 'csv', delimiter: ';', header: 'false' });
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.value).toMatchObject({ name: 'csv', options: { delimiter: ';', header: false, quote: '"', skip_empty_lines: true } });
  });

  it("accepts Arroyo/Laminar's single-key shape", () => {
    const r = parseFormatConfig({ csv: { delimiter: ';' } });
    expect(r.ok && r.value).toMatchObject({ name: 'csv', options: { delimiter: ';' } });
    expect(parseFormatConfig({ json: {} })).toMatchObject({ ok: true, value: { name: 'json' } });
    expect(parseFormatConfig({ json: null })).toMatchObject({ ok: true, value: { name: 'json' } });
  });

  it('reports an unknown option with a suggestion and its path', () => {
    expect(parseFormatConfig({ name: 'csv', delimeter: ';' }, ['source', 'format'])).toEqual({
      ok: false,
      issues: [{ path: ['source', 'format', 'delimeter'], message: "unknown option 'delimeter'; did you mean 'delimiter'?" }],
    });
    const r = parseFormatConfig({ csv: { headr: true } });
    expect(!r.ok && r.issues[0]).toEqual({ path: ['csv', 'headr'], message: "unknown option 'headr'; did you mean 'header'?" });
  });

  it('reports a wrongly typed option', () => {
    const r = parseFormatConfig({ name: 'json', wrap_scalars: 'maybe' });
    expect(!r.ok && r.issues[0]!.path).toEqual(['wrap_scalars']);
  });

  it('reports an unknown format naming the known ones and the nearest', () => {
    const r = parseFormatConfig('jsn');
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.issues[0]!.message).toBe("unknown format 'jsn'; did you mean 'json'? (known formats: json, text, bytes, csv, avro, protobuf, parquet, debezium-json, debezium-json-upsert)");
    }
    const r2 = parseFormatConfig({ name: 'orc' });
    expect(!r2.ok && r2.issues[0]!.path).toEqual(['name']);
  });

  it('explains shapes it cannot read', () => {
    expect(parseFormatConfig({ delimiter: ';' }).ok).toBe(false);
    expect(parseFormatConfig({ a: {}, b: {} }).ok).toBe(false);
    expect(parseFormatConfig(42).ok).toBe(false);
    expect(parseFormatConfig({ name: 3 }).ok).toBe(false);
  });

  it('accepts aliases of options (separator for delimiter)', () => {
    const r = parseFormatConfig({ name: 'csv', separator: '|' });
    expect(r.ok && r.value.options.delimiter).toBe('|');
  });
});

describe('createFormat', () => {
  it('fills defaults for a hand-built spec and rejects bad options', () => {
    const f = createFormat({ name: 'ndjson', options: {} });
    expect(f.name).toBe('json');
    expect(() => createFormat({ name: 'csv', options: { nope: 1 } })).toThrow(ConfigError);
    expect(() => createFormat({ name: 'xml', options: {} })).toThrow(/unknown format 'xml'/);
  });
});

describe('FORMATS registry', () => {
  it('lists every format with a description and describable options', async () => {
    expect(FORMATS.map((f) => f.name)).toEqual(['json', 'text', 'bytes', 'csv', 'avro', 'protobuf', 'parquet', 'debezium-json', 'debezium-json-upsert']);
    for (const f of await allFormats()) {
      expect(f.description).not.toBe('');
      for (const o of describeOptions(f.options)) expect(o.description, `${f.name}.${o.name}`).not.toBe('');
    }
    expect(describeOptions(findFormat('csv')!.options).map((o) => o.name)).toEqual(['delimiter', 'header', 'columns', 'quote', 'escape', 'skip_empty_lines', 'trim', 'null_value']);
  });
});
