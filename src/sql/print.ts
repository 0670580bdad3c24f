// Prints a parsed SELECT back as SQL: a pipeline compiled from a .sql file stores its transform as this text (with
// ${ENV} already substituted and literals re-quoted), which compileSelect reads again at run time.

import type { Expr, SelectStmt } from './ast.js';

const quoteString = (s: string) => `'${s.replace(/'/g, "''")}'`;
const quoteIdent = (s: string) => (/^[A-Za-z_][A-Za-z0-9_$]*$/.test(s) ? s : `"${s.replace(/"/g, '""')}"`);

export function printExpr(e: Expr): string {
  switch (e.k) {
    case 'lit':
      return e.v === null ? 'NULL' : typeof e.v === 'string' ? quoteString(e.v) : typeof e.v === 'boolean' ? (e.v ? 'TRUE' : 'FALSE') : String(e.v);
    case 'interval':
      return `INTERVAL '${e.ms} milliseconds'`;
    case 'col':
      return [e.name, ...(e.path ?? [])].map(quoteIdent).join('.');
    case 'unary':
      return e.op === 'NOT' ? `(NOT ${printExpr(e.e)})` : `(${e.op}${printExpr(e.e)})`;
    case 'bin':
      return `(${printExpr(e.l)} ${e.op} ${printExpr(e.r)})`;
    case 'isnull':
      return `(${printExpr(e.e)} IS ${e.not ? 'NOT ' : ''}NULL)`;
    case 'isbool':
      return `(${printExpr(e.e)} IS ${e.not ? 'NOT ' : ''}${e.v ? 'TRUE' : 'FALSE'})`;
    case 'distinct':
      return `(${printExpr(e.l)} IS ${e.not ? 'NOT ' : ''}DISTINCT FROM ${printExpr(e.r)})`;
    case 'in':
      return `(${printExpr(e.e)} ${e.not ? 'NOT ' : ''}IN (${e.list.map(printExpr).join(', ')}))`;
    case 'between':
      return `(${printExpr(e.e)} ${e.not ? 'NOT ' : ''}BETWEEN ${printExpr(e.lo)} AND ${printExpr(e.hi)})`;
    case 'like':
      return `(${printExpr(e.e)} ${e.not ? 'NOT ' : ''}${e.ci ? 'ILIKE' : 'LIKE'} ${printExpr(e.pat)}${e.esc ? ` ESCAPE ${printExpr(e.esc)}` : ''})`;
    case 'case':
      return `CASE${e.base ? ` ${printExpr(e.base)}` : ''}${e.whens.map(([w, t]) => ` WHEN ${printExpr(w)} THEN ${printExpr(t)}`).join('')}${e.else ? ` ELSE ${printExpr(e.else)}` : ''} END`;
    case 'cast':
      return `${e.try ? 'TRY_CAST' : 'CAST'}(${printExpr(e.e)} AS ${e.type.text})`;
    case 'call':
      return `${e.name}(${e.args.map(printExpr).join(', ')})`;
    case 'extract':
      return `EXTRACT(${e.field.toUpperCase()} FROM ${printExpr(e.e)})`;
    case 'json':
      return e.text ? `(${printExpr(e.e)} ->> ${printExpr(e.key)})` : `(${printExpr(e.e)} -> ${printExpr(e.key)})`;
  }
}

export function printSelect(s: SelectStmt): string {
  const items = s.items.map((i) => {
    if (i.star) return i.star.table ? `${quoteIdent(i.star.table)}.*` : '*';
    return i.alias !== undefined ? `${printExpr(i.expr!)} AS ${quoteIdent(i.alias)}` : printExpr(i.expr!);
  });
  let out = `SELECT ${items.join(', ')}`;
  if (s.from) out += ` FROM ${quoteIdent(s.from.name)}${s.from.alias ? ` AS ${quoteIdent(s.from.alias)}` : ''}`;
  for (const j of s.joins) {
    out += ` ${j.left ? 'LEFT JOIN' : 'JOIN'} ${quoteIdent(j.table.name)}${j.table.alias ? ` AS ${quoteIdent(j.table.alias)}` : ''} ON ${printExpr(j.on)}`;
  }
  if (s.where) out += ` WHERE ${printExpr(s.where)}`;
  return out;
}
