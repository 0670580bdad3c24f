// What differs between PostgreSQL and MySQL/MariaDB for the shared SQL source and sink.

import type { FieldSpec } from '../../core/types.js';

/** One connection (or a pooled one held for a transaction). */
export interface SqlConn {
  query(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  release(): void;
}

export interface SqlClient {
  /** A connection for a statement sequence (a transaction). */
  acquire(): Promise<SqlConn>;
  /** One statement on any pooled connection. */
  query(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  end(): Promise<void>;
}

export interface Dialect {
  /** `postgres` or `mysql`, for messages. */
  name: string;
  ident(name: string): string;
  /** The n-th (1-based) parameter placeholder. */
  param(n: number): string;
  /** Most parameters one statement may carry. */
  maxParams: number;
  /** An expression giving the column's value as text at full precision (microsecond timestamps). */
  asText(expr: string): string;
  /** `INSERT ... ` suffix for an upsert on `keys` updating `cols`. */
  upsertSuffix(keys: string[], cols: string[]): string;
  /** Column type for create_table. */
  columnType(f: FieldSpec, key: boolean): string;
  /** Primary key columns of `table` (schema-qualified names allowed). */
  primaryKeyQuery(table: string): { sql: string; params: unknown[] };
  /**
   * An INSERT taking one array parameter per column, whatever the row count: a 1000-row batch of 10 columns is 10
   * parameters, not 10,000, and the server parses and plans far less (docs/benchmarks.md, file-jsonl->postgres).
   * Absent: the dialect has none, and every INSERT carries a parameter per value.
   */
  columnWise?: {
    /** Column types of `table` (rows: column_name, type, is_array), read once when the sink opens. */
    typesQuery(table: string): { sql: string; params: unknown[] };
    /** `INSERT INTO table (cols) ...` with the arrays as parameters in `cols` order; `types` as `typesQuery` gave them. */
    insert(table: string, cols: string[], types: string[]): string;
  };
  /** A driver error as a Sluice error naming the table and column. */
  describeError(e: unknown, table: string): { message: string; data: boolean };
}

/** Splits `schema.table` and quotes both parts. */
export function qualified(d: Dialect, table: string): string {
  return table
    .split('.')
    .map((p) => d.ident(p))
    .join('.');
}
