// YAML pipeline files: parse with positions, substitute ${ENV}, compile, and report every issue as file:line:col.

import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { LineCounter, parseDocument, isMap, isSeq, isScalar, isPair, visit, type Document, type Node } from 'yaml';
import { ConfigError, type ConfigIssue, type SourceLocation } from '../core/errors.js';
import { compileDocument, type CompiledDocument } from './compile.js';
import { substituteEnv } from './env.js';

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
}

/** Load and compile one YAML file; throws ConfigError listing every problem. */
export function loadConfigFile(file: string, o: LoadOptions = {}): CompiledDocument {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError([{ path: [], message: code === 'ENOENT' ? 'file not found' : `cannot read file (${code ?? String(e)})`, loc: { file, line: 1, col: 1 } }]);
  }
  return loadConfigText(text, file, o);
}

export function loadConfigText(text: string, file: string, o: LoadOptions = {}): CompiledDocument {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const issues: ConfigIssue[] = [];
  const at = (offset: number): SourceLocation => {
    const p = lc.linePos(offset);
    return { file, line: p.line, col: p.col };
  };
  for (const e of doc.errors) issues.push({ path: [], message: e.message.split('\n')[0]!, loc: at(e.pos[0]) });
  if (issues.length) throw new ConfigError(issues);
  const env = o.env ?? process.env;
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      const s = substituteEnv(node.value, env);
      for (const m of s.missing) issues.push({ path: [], message: `environment variable '${m}' is not set (write \${${m}:-default} to give a default)`, loc: at(node.range?.[0] ?? 0) });
      node.value = s.value;
    },
  });
  if (issues.length) throw new ConfigError(issues);
  const defaultName = basename(file, extname(file)).replace(/[^A-Za-z0-9_.-]/g, '_') || 'pipeline';
  const r = compileDocument(doc.toJS({ maxAliasCount: 100 }), { defaultName });
  if (r.issues.length || !r.value) {
    throw new ConfigError(r.issues.map((i) => ({ ...i, loc: i.loc ?? at(locate(doc, i.path)) })));
  }
  return r.value;
}

/** Offset of the node a path points at: the key of the deepest pair that exists (or the value for list items). */
export function locate(doc: Document, path: (string | number)[]): number {
  let node: unknown = doc.contents;
  let best: Node | null | undefined = doc.contents as Node | null;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      best = (pair.key as Node) ?? best;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (!item) break;
      best = item as Node;
      node = item;
    } else break;
  }
  return best?.range?.[0] ?? 0;
}
