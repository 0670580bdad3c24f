// Input files for file-source tests, and reading what a file sink wrote into an output directory with rotation
// (out.jsonl, out.1.jsonl, ...).

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Lines in the output directory, in-progress and hidden files included (committed or not). */
export function linesWritten(out: string): number {
  if (!existsSync(out)) return 0;
  let n = 0;
  for (const f of readdirSync(out)) {
    const b = readFileSync(join(out, f));
    for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) n++;
  }
  return n;
}

/** The final (not hidden) files of the series `out.jsonl`, `out.1.jsonl`, ... in series order; none without the directory. */
export function finals(out: string): string[] {
  const num = (f: string) => (f === 'out.jsonl' ? 0 : Number(/^out\.(\d+)\.jsonl$/.exec(f)![1]));
  return existsSync(out) ? readdirSync(out).filter((f) => !f.startsWith('.')).sort((a, b) => num(a) - num(b)) : [];
}

/**
 * `n` JSON lines `{"id":i,"v":"value i"}` split over `in-a.jsonl` and `in-b.jsonl` in `dir` (two files, so a stored
 * position holds one entry per file); returns the glob that reads both.
 */
export function writeIdInputs(dir: string, n: number): string {
  let a = '';
  let b = '';
  for (let i = 0; i < n / 2; i++) a += `{"id":${i},"v":"value ${i}"}\n`;
  for (let i = n / 2; i < n; i++) b += `{"id":${i},"v":"value ${i}"}\n`;
  writeFileSync(join(dir, 'in-a.jsonl'), a);
  writeFileSync(join(dir, 'in-b.jsonl'), b);
  return join(dir, 'in-*.jsonl');
}
