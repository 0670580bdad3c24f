// The asynchronous entry for .sql documents: loads the connectors and formats the SQL names, then compiles it.

import { loadThenCompile } from '../config/preload.js';
import type { CompiledDocument } from '../config/compile.js';
import { compileSqlText, type SqlCompileOptions } from './compile.js';
import { tokenize } from './lexer.js';

/**
 * compileSqlText for an entry point: connectors and formats are named in string literals (`connector = 'kafka'`,
 * `format = 'csv'`), so those that are names load first; `whenLoaded` compiles again for any other the compiler
 * meets (a connector's default format). Throws ConfigError like compileSqlText.
 */
export async function loadSqlText(text: string, file: string, o: SqlCompileOptions = {}): Promise<CompiledDocument> {
  let strings: string[] = [];
  try {
    strings = tokenize(text, { file, env: o.env ?? process.env }).tokens.filter((t) => t.kind === 'string').map((t) => t.text);
  } catch {
    // A lexical error: compileSqlText reports it, with its position.
  }
  return loadThenCompile(strings, strings, () => compileSqlText(text, file, o));
}
