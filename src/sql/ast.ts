// The parsed form of the SQL dialect. Every node keeps the token it started at, for error positions.

import type { Token } from './lexer.js';

export interface TypeRef {
  /** As parseTypeName reads it: `BIGINT`, `DECIMAL(10,2)`, `TEXT[]`, `DOUBLE PRECISION`. */
  text: string;
  tok: Token;
}

export type Expr =
  | { k: 'lit'; v: unknown; tok: Token }
  | { k: 'col'; table?: string; name: string; tok: Token; path?: string[] }
  | { k: 'unary'; op: '-' | '+' | 'NOT'; e: Expr; tok: Token }
  | { k: 'bin'; op: string; l: Expr; r: Expr; tok: Token }
  | { k: 'isnull'; e: Expr; not: boolean; tok: Token }
  | { k: 'isbool'; e: Expr; not: boolean; v: boolean; tok: Token }
  | { k: 'distinct'; l: Expr; r: Expr; not: boolean; tok: Token }
  | { k: 'in'; e: Expr; list: Expr[]; not: boolean; tok: Token }
  | { k: 'between'; e: Expr; lo: Expr; hi: Expr; not: boolean; tok: Token }
  | { k: 'like'; e: Expr; pat: Expr; not: boolean; ci: boolean; esc?: Expr; tok: Token }
  | { k: 'case'; base?: Expr; whens: Array<[Expr, Expr]>; else?: Expr; tok: Token }
  | { k: 'cast'; e: Expr; type: TypeRef; try: boolean; tok: Token }
  | { k: 'call'; name: string; args: Expr[]; tok: Token }
  | { k: 'extract'; field: string; e: Expr; tok: Token }
  /** `->`, `->>` and `[...]` on a json value; `text` for `->>`. */
  | { k: 'json'; e: Expr; key: Expr; text: boolean; tok: Token }
  | { k: 'interval'; ms: number; tok: Token };

export interface SelectItem {
  /** Undefined for `*` / `t.*`. */
  expr?: Expr;
  star?: { table?: string; tok: Token };
  alias?: string;
  aliasTok?: Token;
}

export interface TableRef {
  name: string;
  tok: Token;
  alias?: string;
}

export interface JoinClause {
  left: boolean;
  table: TableRef;
  on: Expr;
  tok: Token;
}

export interface SelectStmt {
  tok: Token;
  items: SelectItem[];
  from?: TableRef;
  joins: JoinClause[];
  where?: Expr;
}

export interface ColumnDef {
  name: string;
  tok: Token;
  type: TypeRef;
  notNull: boolean;
  /** `METADATA FROM '_offset'` (key), `METADATA` / `METADATA VIRTUAL` (key = column name). */
  metadata?: { key: string; tok: Token };
}

export interface OptionDef {
  key: string;
  keyTok: Token;
  value: string | number | boolean;
  valueTok: Token;
}

export interface CreateTableStmt {
  kind: 'table';
  tok: Token;
  name: string;
  nameTok: Token;
  columns: ColumnDef[];
  primaryKey?: { cols: Token[]; tok: Token };
  watermark?: { col: Token; expr: Expr };
  options: OptionDef[];
  withTok?: Token;
}

export interface CreateProfileStmt {
  kind: 'profile';
  tok: Token;
  name: string;
  nameTok: Token;
  options: OptionDef[];
}

export interface InsertStmt {
  kind: 'insert';
  tok: Token;
  sink: string;
  sinkTok: Token;
  columns?: Token[];
  select: SelectStmt;
  /** From a `-- name: x` comment right above the statement. */
  name?: string;
}

/** `SET 'pipeline.batch.max_records' = '500'` (Flink's convention): applies to the INSERTs after it. */
export interface SetStmt {
  kind: 'set';
  tok: Token;
  key: string;
  keyTok: Token;
  value: string | number | boolean;
  valueTok: Token;
}

/** `RESET 'key'` drops one setting for the INSERTs after it; `RESET` alone drops them all. */
export interface ResetStmt {
  kind: 'reset';
  tok: Token;
  key?: string;
  keyTok?: Token;
}

export type Statement = CreateTableStmt | CreateProfileStmt | InsertStmt | SetStmt | ResetStmt;
