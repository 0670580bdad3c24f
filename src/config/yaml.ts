// YAML pipeline files: parse with positions, substitute ${ENV}, compile, and report every issue as file:line:col.
// The SQL of `transform:` keys is checked by a function the caller passes in, so that this module does not load the
// SQL compiler: `sluice run` of a pipeline without a transform never needs it (load.ts is the synchronous entry).

import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { LineCounter, parseDocument, isMap, isSeq, isScalar, isPair, visit, type Document, type Node, type Scalar } from 'yaml';
import { ConfigError, errorMessage, type ConfigIssue, type SourceLocation } from '../core/errors.js';
import { compileDocument, type CompiledDocument } from './compile.js';
import { substituteEnv } from './env.js';
import { compileWhenLoaded } from './preload.js';
import type { PipelineDef } from '../core/model.js';
import type { TransformOptions } from '../sql/runtime.js';

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
}

/** Checks one pipeline's transform (sql/runtime's checkTransform). */
export type TransformCheck = (def: PipelineDef, o: TransformOptions) => ConfigIssue[];

/** A compiled file whose transforms are not checked yet. */
export interface ParsedConfig {
  doc: CompiledDocument;
  /** Whether any pipeline has a `transform:`, i.e. whether `checkTransforms` needs the SQL compiler. */
  hasTransforms: boolean;
  /** Throws a ConfigError locating every transform problem in the file. */
  checkTransforms(check: TransformCheck): void;
}

/** Read one YAML file as text; a missing or unreadable file is a ConfigError at its first line. */
export function readConfigFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError([{ path: [], message: code === 'ENOENT' ? 'file not found' : `cannot read file (${code ?? String(e)})`, loc: { file, line: 1, col: 1 } }]);
  }
  return text;
}

/**
 * Parse and compile one YAML text; throws ConfigError listing every problem outside the transforms. Loads the
 * connectors and formats the text names first (the CLI's entry; `parseConfigText` is the synchronous one).
 */
export async function loadConfigTextAsync(text: string, file: string, o: LoadOptions = {}): Promise<ParsedConfig> {
  const y = readYaml(text, file, o);
  return compileWhenLoaded(y.js, () => compileYaml(y, text, file));
}

/**
 * Parse and compile one YAML text; throws ConfigError listing every problem outside the transforms. Every connector
 * and format it names must be loaded already (`loadConnectors()`, `loadFormats()`), else it throws a NotLoadedError.
 */
export function parseConfigText(text: string, file: string, o: LoadOptions = {}): ParsedConfig {
  return compileYaml(readYaml(text, file, o), text, file);
}

interface YamlRead {
  doc: Document;
  js: unknown;
  defaultName: string;
  at: (offset: number) => SourceLocation;
}

/** The YAML parsed, with ${ENV} substituted (once: it rewrites the nodes), as JavaScript values. */
function readYaml(text: string, file: string, o: LoadOptions): YamlRead {
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
  let js: unknown;
  try {
    js = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // Aliases are resolved only here: one whose anchor is missing, or an alias bomb, throws a plain ReferenceError.
    throw new ConfigError([{ path: [], message: errorMessage(e), loc: at(aliasOffset(doc)) }]);
  }
  return { doc, js, defaultName, at };
}

function compileYaml({ doc, js, defaultName, at }: YamlRead, text: string, file: string): ParsedConfig {
  const r = compileDocument(js, { defaultName });
  if (r.issues.length || !r.value) {
    throw new ConfigError(r.issues.map((i) => ({ ...i, loc: i.loc ?? at(locate(doc, i.path)) })));
  }
  const compiled = r.value;
  return {
    doc: compiled,
    hasTransforms: compiled.pipelines.some((p) => p.transform),
    checkTransforms(check) {
      const tIssues = transformIssues(doc, compiled, text, file, defaultName, at, check);
      if (tIssues.length) throw new ConfigError(tIssues);
    },
  };
}

/**
 * Checks each pipeline's `transform:` and reports its errors at the offending token's place in the YAML file: the SQL
 * error's line and column inside the transform text are mapped through the scalar's source (its quotes, escapes,
 * folded lines and block indentation).
 */
function transformIssues(
  doc: Document,
  compiled: CompiledDocument,
  text: string,
  file: string,
  defaultName: string,
  at: (offset: number) => SourceLocation,
  checkTransform: TransformCheck,
): ConfigIssue[] {
  const nodes: Array<{ name?: string; node: Scalar; path: (string | number)[] }> = [];
  const pick = (m: unknown, path: (string | number)[], fallbackName?: string) => {
    if (!isMap(m)) return;
    const t = m.get('transform', true);
    if (!isScalar(t) || typeof t.value !== 'string') return;
    const n = m.get('name');
    nodes.push({ name: typeof n === 'string' ? n : fallbackName, node: t, path: [...path, 'transform'] });
  };
  const root = doc.contents;
  pick(root, [], defaultName);
  const list = isMap(root) ? root.get('pipelines', true) : undefined;
  if (isSeq(list)) list.items.forEach((item, i) => pick(item, ['pipelines', i]));
  const out: ConfigIssue[] = [];
  for (const p of compiled.pipelines) {
    if (!p.transform) continue;
    const n = nodes.find((x) => x.name === p.name && x.node.value === p.transform) ?? nodes.find((x) => x.node.value === p.transform);
    for (const i of checkTransform(p, { tables: compiled.tables, profiles: compiled.profiles, file })) {
      if (!n) {
        out.push(i);
        continue;
      }
      const start = n.node.range?.[0] ?? 0;
      const offset = i.loc && i.loc.file === file ? scalarOffset(text, n.node, valueIndex(n.node.value as string, i.loc.line, i.loc.col)) : start;
      out.push({ ...i, path: i.path.length ? i.path : n.path, loc: at(offset) });
    }
  }
  return out;
}

/** Index in `value` of a 1-based line and column. */
function valueIndex(value: string, line: number, col: number): number {
  let idx = 0;
  for (let l = 1; l < line; l++) {
    const nl = value.indexOf('\n', idx);
    if (nl < 0) return value.length;
    idx = nl + 1;
  }
  return Math.min(value.length, idx + col - 1);
}

/**
 * Offset in the file of the character at `index` of a scalar's value. Exact for plain and quoted scalars on one line
 * and for block scalars; folded line breaks and escapes are followed character by character.
 */
export function scalarOffset(src: string, node: Scalar, index: number): number {
  const value = String(node.value);
  const [start, end] = [node.range?.[0] ?? 0, node.range?.[1] ?? src.length];
  const block = node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED';
  let i = start;
  let indent = 0;
  const skipIndent = () => {
    for (let n = 0; n < indent && src[i] === ' '; n++) i++;
  };
  if (block) {
    i = src.indexOf('\n', start) + 1;
    // The block's indentation is that of its first non-empty line.
    for (let j = i; j > 0 && j < end; ) {
      let k = j;
      while (src[k] === ' ') k++;
      if (src[k] !== '\n' && src[k] !== '\r') {
        indent = k - j;
        break;
      }
      j = src.indexOf('\n', k) + 1;
    }
    skipIndent();
  } else if (node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE') i++;
  for (let k = 0; k < index && i < end; k++) {
    const v = value[k];
    if (block) {
      if (src[i] === '\r') i++;
      if (src[i] === '\n' && (v === '\n' || v === ' ')) {
        i++;
        skipIndent();
      } else i++;
      continue;
    }
    if (node.type === 'QUOTE_DOUBLE' && src[i] === '\\' && src[i + 1] !== '\n') {
      const c = src[i + 1];
      i += c === 'x' ? 4 : c === 'u' ? 6 : c === 'U' ? 10 : 2;
      continue;
    }
    if (node.type === 'QUOTE_SINGLE' && src[i] === "'") {
      i += 2;
      continue;
    }
    if (src[i] === v) {
      i++;
      continue;
    }
    // A folded line break: the value's one space stands for the break and the next line's indentation.
    while (i < end && /\s/.test(src[i]!) && src[i] !== v) i++;
    if (src[i] === v) i++;
  }
  if (!block) while (i < end && /\s/.test(src[i]!) && index < value.length && !/\s/.test(value[index]!)) i++;
  return i;
}

/** Offset of the first alias without an anchor before it, else of the first alias. */
function aliasOffset(doc: Document): number {
  let first: number | undefined;
  let unresolved: number | undefined;
  visit(doc, {
    Alias(_key, node) {
      const at = node.range?.[0] ?? 0;
      first ??= at;
      if (node.resolve(doc) === undefined) {
        unresolved = at;
        return visit.BREAK;
      }
    },
  });
  return unresolved ?? first ?? 0;
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
