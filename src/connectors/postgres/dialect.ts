// PostgreSQL spelling of identifiers, parameters, upserts and column types.

import type { FieldSpec } from '../../core/types.js';
import { errorMessage } from '../../core/errors.js';
import { qualified, type Dialect } from '../sqldb/dialect.js';

export const pgDialect: Dialect = {
  name: 'postgres',
  ident: (n) => `"${n.replace(/"/g, '""')}"`,
  param: (n) => `$${n}`,
  maxParams: 65535,
  asText: (e) => `(${e})::text`,
  upsertSuffix(keys, cols) {
    const set = cols.filter((c) => !keys.includes(c)).map((c) => `${pgDialect.ident(c)} = EXCLUDED.${pgDialect.ident(c)}`);
    const target = keys.map((k) => pgDialect.ident(k)).join(', ');
    return set.length ? ` ON CONFLICT (${target}) DO UPDATE SET ${set.join(', ')}` : ` ON CONFLICT (${target}) DO NOTHING`;
  },
  columnType: pgType,
  primaryKeyQuery(table) {
    return {
      sql: `SELECT a.attname AS column_name FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`,
      params: [qualified(pgDialect, table)],
    };
  },
  columnWise: {
    // A domain's typcategory is its base type's, so a domain over an array counts as an array too.
    typesQuery(table) {
      return {
        sql: `SELECT a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS type, t.typcategory = 'A' AS is_array
              FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
              WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
        params: [qualified(pgDialect, table)],
      };
    },
    // unnest() of several arrays yields one row per index (all have the batch's length here).
    insert(table, cols, types) {
      const list = cols.map((c) => pgDialect.ident(c)).join(', ');
      return `INSERT INTO ${table} (${list}) SELECT * FROM unnest(${types.map((t, i) => `$${i + 1}::${t}[]`).join(', ')})`;
    },
  },
  describeError(e, table) {
    const pe = e as { code?: string; column?: string; table?: string; constraint?: string; detail?: string };
    const code = pe.code ?? '';
    const col = pe.column ? ` column '${pe.column}'` : '';
    const t = pe.table ?? table;
    if (code === '23502') return { message: `table '${t}'${col}: null value is not allowed (NOT NULL)`, data: true };
    if (code.startsWith('23')) {
      return { message: `table '${t}'${col}: ${errorMessage(e)}${pe.detail ? ` (${pe.detail})` : ''}`, data: true };
    }
    // Class 22 is bad data (a value out of range, invalid text for a type); 42 is a schema mismatch (unknown column).
    if (code.startsWith('22') || code.startsWith('42')) return { message: `table '${t}': ${errorMessage(e)}`, data: true };
    return { message: `${errorMessage(e)}${code ? ` (${code})` : ''}`, data: false };
  },
};

function pgType(f: FieldSpec): string {
  switch (f.type) {
    case 'string':
      return 'text';
    case 'int32':
      return 'integer';
    case 'int64':
      return 'bigint';
    case 'float32':
      return 'real';
    case 'float64':
      return 'double precision';
    case 'decimal':
      return f.precision ? `numeric(${f.precision}, ${f.scale ?? 0})` : 'numeric';
    case 'boolean':
      return 'boolean';
    case 'timestamp':
      return 'timestamptz';
    case 'date':
      return 'date';
    case 'bytes':
      return 'bytea';
    case 'json':
    case 'array':
    case 'object':
      return 'jsonb';
  }
}
