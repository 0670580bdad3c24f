// Option shapes shared by the postgres and mysql connectors; each adds its own connection defaults.

import { bool, duration, list, num, opt, z } from '../../core/spec.js';

export function connectionOptions(defaultPort: number, defaultUser: string) {
  return {
    url: opt(z.string().min(1).optional(), {
      description:
        'Connection URL, e.g. `postgres://user:pass@127.0.0.1:5432/db` or `mysql://root@127.0.0.1:3306/db`. The separate options below fill in what the URL leaves out. It may hold a password, so it is redacted like one.',
      aliases: ['dburl', 'connection_string', 'uri', 'dsn'],
      secret: true,
    }),
    host: opt(z.string().min(1).optional(), { description: 'Server host name or address (default `127.0.0.1`, or the URL\'s).' }),
    port: num({ int: true, min: 1, max: 65535, description: `Server port (default ${defaultPort}, or the URL's).` }).optional(),
    user: opt(z.string().min(1).optional(), { description: `User name (default \`${defaultUser}\`, or the URL's).`, aliases: ['username'] }),
    password: opt(z.string().optional(), { description: 'Password.', secret: true }),
    database: opt(z.string().optional(), { description: 'Database name.', aliases: ['db', 'dbname'] }),
    connect_timeout: duration({ default: '10s', description: 'How long connecting may take.', advanced: true }),
  };
}

export function sourceOptionShape(defaultPort: number, defaultUser: string) {
  return {
    ...connectionOptions(defaultPort, defaultUser),
    table: opt(z.string().min(1).optional(), {
      description: 'Table to read (`schema.table` allowed). Either `table` or `query` is required.',
      aliases: ['table_name', 'tablename'],
    }),
    query: opt(z.string().min(1).optional(), {
      description:
        'A query to poll instead of a table. `{{ cursor }}` stands for the last committed cursor value and is sent as a bound parameter, never pasted into the SQL text; the query should order by the incremental column and may use `{{ limit }}` for `batch_size`.',
      aliases: ['templateSqlQueryCfg.templateSql', 'template_sql', 'sql'],
      examples: ['SELECT * FROM orders WHERE id > {{ cursor }} ORDER BY id LIMIT {{ limit }}'],
    }),
    incremental_column: opt(z.string().min(1).optional(), {
      description:
        'Column whose value only grows (an id or a timestamp): rows are read in its order and the last committed value is the resume position. Without it a table can only be read in `snapshot` mode.',
      aliases: ['templateSqlQueryCfg.indexField', 'index_field', 'indexField', 'cursor_column'],
    }),
    tiebreaker_column: opt(z.string().min(1).optional(), {
      description:
        'A unique column (usually the primary key) making the cursor `(incremental_column, tiebreaker_column)`, so rows sharing a timestamp are never skipped at a batch boundary. Table mode only.',
      aliases: ['tiebreaker'],
    }),
    start_value: opt(z.union([z.string(), z.number()]).optional(), {
      description:
        'Cursor value to start after when no position is committed yet (required with `query` and `incremental` mode on a query). With a table, `snapshot_then_incremental` starts from the first row and `incremental` from the current maximum.',
      aliases: ['templateSqlQueryCfg.indexValue', 'index_value', 'indexValue'],
    }),
    cursor_type: opt(z.enum(['auto', 'number', 'timestamp', 'string']).default('auto'), {
      description: 'How the cursor value is sent in query mode (`auto`: as read from the row). Kept for eKuiper `indexFieldType`.',
      aliases: ['templateSqlQueryCfg.indexFieldType', 'index_field_type', 'indexFieldType'],
      advanced: true,
    }),
    date_time_format: opt(z.string().optional(), {
      description: 'Accepted for eKuiper `dateTimeFormat`; timestamps are always read as Date and compared by the database.',
      aliases: ['templateSqlQueryCfg.dateTimeFormat', 'dateTimeFormat'],
      advanced: true,
    }),
    mode: opt(z.enum(['snapshot_then_incremental', 'incremental', 'snapshot']).default('snapshot_then_incremental'), {
      description:
        '`snapshot_then_incremental`: read every existing row, then poll for new ones. `incremental`: only rows after `start_value` (or after the current maximum). `snapshot`: read the rows once and finish.',
    }),
    interval: duration({
      default: '1s',
      description: 'How long to wait between polls once the reader has caught up.',
      aliases: ['poll_interval'],
    }),
    batch_size: num({
      default: 1000,
      int: true,
      min: 1,
      description: 'Rows fetched per query (LIMIT).',
      aliases: ['templateSqlQueryCfg.limit', 'limit'],
    }),
  };
}

export function sinkOptionShape(defaultPort: number, defaultUser: string) {
  return {
    ...connectionOptions(defaultPort, defaultUser),
    table: opt(z.string().min(1), { description: 'Table to write (`schema.table` allowed).', aliases: ['table_name', 'tablename'] }),
    mode: opt(z.enum(['insert', 'upsert']).default('insert'), {
      description:
        '`insert`: plain multi-row INSERT. `upsert`: insert or update on the key columns. In both modes a row with `__op: "d"` or `__deleted: true` (Debezium delete markers) deletes by key.',
      aliases: ['write_mode', 'insert_mode'],
    }),
    key_columns: list(z.string().min(1), {
      description: "Key columns for upserts and deletes; default: the schema's primary key, then the table's primary key.",
      aliases: ['primary_key', 'keys', 'key_fields'],
    }).optional(),
    columns: list(z.string().min(1), {
      description: "Columns to write; default: the pipeline schema's fields, or each batch's row keys (fields starting with `__` are never written).",
      aliases: ['fields'],
    }).optional(),
    create_table: bool({
      default: false,
      description: "Create the table from the pipeline schema (types mapped, primary key from the schema or `key_columns`) if it does not exist.",
      aliases: ['auto_create', 'createTable'],
    }),
  };
}

export type ConnectionOpts = z.output<z.ZodObject<ReturnType<typeof connectionOptions>>>;
export type SourceOpts = z.output<z.ZodObject<ReturnType<typeof sourceOptionShape>>>;
export type SinkOpts = z.output<z.ZodObject<ReturnType<typeof sinkOptionShape>>> & { exactly_once?: boolean };

/** Cross-option checks: a table or a query; incremental reading needs a column. */
export function checkSource(o: SourceOpts, ctx: z.RefinementCtx): void {
  if (!o.table && !o.query) ctx.addIssue({ code: 'custom', message: "set 'table' or 'query'", path: ['table'] });
  if (o.table && o.query) ctx.addIssue({ code: 'custom', message: "set either 'table' or 'query', not both", path: ['query'] });
  if (o.query && !/\{\{\s*cursor\s*\}\}/.test(o.query) && o.mode !== 'snapshot') {
    ctx.addIssue({ code: 'custom', message: "a polled query needs a '{{ cursor }}' placeholder (or use mode: snapshot)", path: ['query'] });
  }
  if (o.mode !== 'snapshot' && !o.incremental_column) {
    ctx.addIssue({ code: 'custom', message: `mode '${o.mode}' needs 'incremental_column' (the column whose last value is the position)`, path: ['incremental_column'] });
  }
  if (o.query && o.mode !== 'snapshot' && o.start_value === undefined) {
    ctx.addIssue({ code: 'custom', message: "a polled query needs 'start_value', the cursor value for the first poll", path: ['start_value'] });
  }
  if (o.tiebreaker_column && o.query) ctx.addIssue({ code: 'custom', message: "'tiebreaker_column' works with 'table' only", path: ['tiebreaker_column'] });
}
