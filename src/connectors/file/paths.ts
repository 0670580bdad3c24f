// Path patterns: literal paths, directories and globs, resolved to absolute file paths in a stable order.

import { stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';

// tinyglobby (with fdir and picomatch) loads on the first pattern that is not an existing file: a sink, or a source
// reading named files, never needs it, so it stays out of start-up (issue 9).
let tinyglobby: Promise<typeof import('tinyglobby')> | undefined;

export function toPatterns(path: string | string[]): string[] {
  return Array.isArray(path) ? path : [path];
}

/**
 * Files matching the patterns: per pattern sorted by path, patterns in the order given, each file once. A pattern that
 * names an existing file is taken literally, so file names containing glob characters (`report[1].csv`) work.
 */
export async function resolvePaths(patterns: string[], signal?: AbortSignal): Promise<string[]> {
  const seen = new Set<string>();
  const out: string[] = [];
  const add = (p: string) => {
    if (!seen.has(p)) {
      seen.add(p);
      out.push(p);
    }
  };
  for (const pattern of patterns) {
    const abs = resolve(pattern);
    const st = await stat(abs).catch(() => undefined);
    if (st?.isFile()) {
      add(abs);
      continue;
    }
    const { glob, isDynamicPattern } = await (tinyglobby ??= import('tinyglobby'));
    let globbed: string[] = [];
    if (st?.isDirectory()) {
      globbed = await glob('*', { cwd: abs, absolute: true, onlyFiles: true, expandDirectories: false, signal });
    } else if (isDynamicPattern(pattern)) {
      // tinyglobby wants `/` separators; on Windows a `\` in a user's path is a separator, not an escape.
      const pat = sep === '\\' ? pattern.replaceAll('\\', '/') : pattern;
      globbed = await glob(pat, { absolute: true, onlyFiles: true, expandDirectories: false, signal });
    }
    for (const f of globbed.map((g) => resolve(g)).sort()) add(f);
  }
  return out;
}

/** How a path appears in messages: relative to the working directory when inside it. */
export function displayPath(abs: string): string {
  const rel = relative(process.cwd(), abs);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : abs;
}

export function describePatterns(patterns: string[]): string {
  return patterns.map((p) => `'${p}'`).join(', ');
}
