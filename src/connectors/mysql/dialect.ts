// MySQL/MariaDB spelling of identifiers, parameters, upserts and column types.

import type { FieldSpec } from '../../core/types.js';
import { errorMessage } from '../../core/errors.js';
import type { Dialect } from '../sqldb/dialect.js';

const ident = (n: string) => `\`${n.replace(/`/g, '``')}\``;

// Errors that the same rows will hit again on every retry (NOT NULL, duplicates, bad values, unknown columns).
const DATA_ERRNOS = new Set([1048, 1054, 1062, 1136, 1146, 1264, 1292, 1364, 1366, 1406, 1451, 1452, 3140, 4025]);

export const mysqlDialect: Dialect = {
  name: 'mysql',
  ident,
  param: () => '?',
  maxParams: 65535,
  asText: (e) => `CAST(${e} AS CHAR)`,
  upsertSuffix(keys, cols) {
    const set = cols.filter((c) => !keys.includes(c)).map((c) => `${ident(c)} = VALUES(${ident(c)})`);
    // A key-only row still has to be accepted when it exists: updating a key column to itself is a no-op.
    return ` ON DUPLICATE KEY UPDATE ${set.length ? set.join(', ') : `${ident(keys[0]!)} = ${ident(keys[0]!)}`}`;
  },
  columnType: mysqlType,
  primaryKeyQuery(table) {
    const parts = table.split('.');
    const name = parts.pop()!;
    return {
      sql: `SELECT COLUMN_NAME AS column_name FROM information_schema.KEY_COLUMN_USAGE
            WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION`,
      params: [parts[0] ?? null, name],
    };
  },
  describeError(e, table) {
    const me = e as { errno?: number; sqlState?: string; code?: string };
    const msg = errorMessage(e);
    if (me.errno === 1048 || me.errno === 1364) {
      const col = /(?:Column|Field) '([^']+)'/.exec(msg)?.[1];
      return { message: `table '${table}'${col ? ` column '${col}'` : ''}: null value is not allowed (NOT NULL): ${msg}`, data: true };
    }
    const data = (me.errno !== undefined && DATA_ERRNOS.has(me.errno)) || /^(22|23|42)/.test(me.sqlState ?? '');
    if (data) return { message: `table '${table}': ${msg}`, data: true };
    return { message: `${msg}${me.code ? ` (${me.code})` : ''}`, data: false };
  },
};

function mysqlType(f: FieldSpec, key: boolean): string {
  switch (f.type) {
    case 'string':
      // An index on TEXT needs a prefix length; 191 characters is what utf8mb4 fits into the index limit.
      return key ? 'VARCHAR(191)' : 'LONGTEXT';
    case 'int32':
      return 'INT';
    case 'int64':
      return 'BIGINT';
    case 'float32':
      return 'FLOAT';
    case 'float64':
      return 'DOUBLE';
    case 'decimal':
      return `DECIMAL(${f.precision ?? 38}, ${f.scale ?? (f.precision ? 0 : 9)})`;
    case 'boolean':
      return 'BOOLEAN';
    case 'timestamp':
      return 'DATETIME(6)';
    case 'date':
      return 'DATE';
    case 'bytes':
      return key ? 'VARBINARY(255)' : 'LONGBLOB';
    case 'json':
    case 'array':
    case 'object':
      return 'JSON';
  }
}
