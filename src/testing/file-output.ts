// Reading what a file sink wrote into an output directory with rotation (out.jsonl, out.1.jsonl, ...), for tests.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
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
