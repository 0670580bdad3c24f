// Option validation for the SQL connectors: seed spellings, did-you-mean, cross-option rules, secrets.

import { describe, expect, it } from 'vitest';
import { formatIssue } from '../../core/errors.js';
import { parseOptions } from '../../core/spec.js';
import { sinkOptions as mySink, sourceOptions as mySource } from '../mysql/index.js';
import { sinkOptions as pgSink, sourceOptions as pgSource } from '../postgres/index.js';

const messages = (r: ReturnType<typeof parseOptions>) => (r.ok ? [] : r.issues.map(formatIssue));

describe('SQL connector options', () => {
  it("accepts eKuiper's SQL source spellings", () => {
    const r = parseOptions(mySource(), {
      dburl: 'mysql://root@127.0.0.1/test',
      templateSqlQueryCfg: { templateSql: 'SELECT * FROM t WHERE id > {{ cursor }} ORDER BY id LIMIT {{ limit }}', indexField: 'id', indexValue: 10, limit: 50, indexFieldType: 'number' },
      interval: '5s',
    });
    expect(r.ok && r.value).toMatchObject({ url: 'mysql://root@127.0.0.1/test', incremental_column: 'id', start_value: 10, batch_size: 50, cursor_type: 'number', interval: 5000 });
    const dotted = parseOptions(pgSource(), { table: 't', 'templateSqlQueryCfg.indexField': 'ts', tiebreaker: 'id' });
    expect(dotted.ok && dotted.value).toMatchObject({ incremental_column: 'ts', tiebreaker_column: 'id', mode: 'snapshot_then_incremental', batch_size: 1000 });
  });

  it('suggests the option meant and explains what is missing', () => {
    expect(messages(parseOptions(pgSource(), { table: 't', incremental_colum: 'id' }))).toContain("incremental_colum: unknown option 'incremental_colum'; did you mean 'incremental_column'?");
    expect(messages(parseOptions(pgSource(), { table: 't' }))).toEqual([
      "incremental_column: mode 'snapshot_then_incremental' needs 'incremental_column' (the column whose last value is the position)",
    ]);
    expect(parseOptions(pgSource(), { table: 't', mode: 'snapshot' }).ok).toBe(true);
    expect(messages(parseOptions(mySource(), { query: 'SELECT 1', incremental_column: 'id' }))[0]).toContain("'{{ cursor }}' placeholder");
    expect(messages(parseOptions(mySource(), { incremental_column: 'id' }))).toContain("table: set 'table' or 'query'");
    expect(messages(parseOptions(pgSink(), { tabel: 'x' }))).toContain("tabel: unknown option 'tabel'; did you mean 'table'?");
    expect(messages(parseOptions(pgSink(), { table: 'x', mode: 'merge' }))[0]).toContain('must be one of "insert", "upsert"');
  });

  it('takes sink keys as a list or a comma-separated string; exactly_once only on postgres', () => {
    const r = parseOptions(pgSink(), { table: 'x', mode: 'upsert', primary_key: 'a, b', exactly_once: 'true', createTable: true });
    expect(r.ok && r.value).toMatchObject({ key_columns: ['a', 'b'], exactly_once: true, create_table: true });
    expect(messages(parseOptions(mySink(), { table: 'x', exactly_once: true }))[0]).toContain("unknown option 'exactly_once'");
  });

  it('never shows a password in an error', () => {
    const msgs = messages(parseOptions(pgSink(), { table: 'x', password: 12345 }));
    expect(msgs.join('\n')).not.toContain('12345');
  });
});
