// Hand-written SQL tokenizer. Every token keeps its line and column so that parse and compile errors can point at it.

import { ConfigError } from '../core/errors.js';
import { substituteEnv } from '../config/env.js';

export type TokenKind = 'ident' | 'qident' | 'string' | 'number' | 'op' | 'eof';

export interface Token {
  kind: TokenKind;
  /** Identifier text as written (unquoted for quoted identifiers), the string's value, the number's text, or the operator. */
  text: string;
  /** Upper-cased text of a bare identifier, for keyword checks; '' otherwise. */
  upper: string;
  line: number;
  col: number;
  /** Offsets into the source text: [start, end). */
  start: number;
  end: number;
}

export interface LineComment {
  line: number;
  text: string;
}

export interface LexResult {
  tokens: Token[];
  /** `--` comments with their line, so a statement can read a `-- name: x` comment above it. */
  comments: LineComment[];
}

export interface LexOptions {
  file?: string;
  /** When set, `${VAR}` in string literals is replaced (a missing variable is an error at the literal). */
  env?: NodeJS.ProcessEnv;
  /** Line and column of the first character of `text` in its file (a transform string inside YAML). */
  line?: number;
  col?: number;
}

// Longest first, so `->>` wins over `->` and `<=` over `<`.
const OPS = ['->>', '::', '->', '<=', '>=', '<>', '!=', '||', '=', '<', '>', '+', '-', '*', '/', '%', '(', ')', ',', ';', '.', '[', ']'];

/** How a token reads in an error message. */
export function describeToken(t: Token): string {
  switch (t.kind) {
    case 'eof':
      return 'end of input';
    case 'string':
      return `'${t.text.length > 40 ? `${t.text.slice(0, 40)}...` : t.text}'`;
    case 'qident':
      return `"${t.text}"`;
    default:
      return `'${t.text}'`;
  }
}

export function tokenize(text: string, o: LexOptions = {}): LexResult {
  const file = o.file ?? '<sql>';
  const tokens: Token[] = [];
  const comments: LineComment[] = [];
  let i = 0;
  let line = o.line ?? 1;
  let lineStart = 0;
  // Column of offset 0 may be shifted when the SQL sits inside another file.
  const colShift = (o.col ?? 1) - 1;
  const colAt = (off: number, ln: number) => off - lineStart + 1 + (ln === (o.line ?? 1) ? colShift : 0);
  const fail = (message: string, ln: number, col: number): never => {
    throw new ConfigError([{ path: [], message, loc: { file, line: ln, col } }]);
  };
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 10) {
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (c === 32 || c === 9 || c === 13) {
      i++;
      continue;
    }
    if (c === 45 && text.charCodeAt(i + 1) === 45) {
      let j = i + 2;
      while (j < n && text.charCodeAt(j) !== 10) j++;
      comments.push({ line, text: text.slice(i + 2, j).trim() });
      i = j;
      continue;
    }
    if (c === 47 && text.charCodeAt(i + 1) === 42) {
      const sl = line;
      const sc = colAt(i, line);
      let j = i + 2;
      for (;;) {
        if (j >= n) fail('unterminated /* comment', sl, sc);
        const d = text.charCodeAt(j);
        if (d === 42 && text.charCodeAt(j + 1) === 47) break;
        if (d === 10) {
          line++;
          lineStart = j + 1;
        }
        j++;
      }
      i = j + 2;
      continue;
    }
    const startLine = line;
    const startCol = colAt(i, line);
    const push = (kind: TokenKind, t: string, end: number) => {
      tokens.push({ kind, text: t, upper: kind === 'ident' ? t.toUpperCase() : '', line: startLine, col: startCol, start: i, end });
      i = end;
    };
    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentPart(text.charCodeAt(j))) j++;
      push('ident', text.slice(i, j), j);
      continue;
    }
    if (c >= 48 && c <= 57) {
      let j = i;
      while (j < n && isDigit(text.charCodeAt(j))) j++;
      if (text.charCodeAt(j) === 46 && isDigit(text.charCodeAt(j + 1))) {
        j++;
        while (j < n && isDigit(text.charCodeAt(j))) j++;
      }
      if ((text.charCodeAt(j) | 32) === 101) {
        let k = j + 1;
        if (text[k] === '+' || text[k] === '-') k++;
        if (isDigit(text.charCodeAt(k))) {
          j = k;
          while (j < n && isDigit(text.charCodeAt(j))) j++;
        }
      }
      if (j < n && isIdentStart(text.charCodeAt(j))) fail(`invalid number '${text.slice(i, j + 1)}'`, startLine, startCol);
      push('number', text.slice(i, j), j);
      continue;
    }
    if (c === 46 && isDigit(text.charCodeAt(i + 1))) {
      let j = i + 1;
      while (j < n && isDigit(text.charCodeAt(j))) j++;
      push('number', `0${text.slice(i, j)}`, j);
      continue;
    }
    if (c === 39 || c === 34 || c === 96) {
      // '' inside a string, "" inside a quoted identifier and `` inside a backquoted one stand for the quote itself.
      const q = text[i]!;
      let j = i + 1;
      let out = '';
      for (;;) {
        if (j >= n) fail(q === "'" ? 'unterminated string literal' : 'unterminated quoted identifier', startLine, startCol);
        const ch = text[j]!;
        if (ch === q) {
          if (text[j + 1] === q) {
            out += q;
            j += 2;
            continue;
          }
          break;
        }
        if (ch === '\n') {
          line++;
          lineStart = j + 1;
        }
        out += ch;
        j++;
      }
      if (q === "'") {
        if (o.env && out.includes('${')) {
          const s = substituteEnv(out, o.env);
          if (s.missing.length) fail(`environment variable '${s.missing[0]}' is not set (write \${${s.missing[0]}:-default} to give a default)`, startLine, startCol);
          out = s.value;
        }
        push('string', out, j + 1);
      } else {
        if (out === '') fail('empty quoted identifier', startLine, startCol);
        push('qident', out, j + 1);
      }
      continue;
    }
    let op: string | undefined;
    for (const candidate of OPS) {
      if (text.startsWith(candidate, i)) {
        op = candidate;
        break;
      }
    }
    if (op === undefined) fail(`unexpected character '${text[i]}'`, startLine, startCol);
    push('op', op!, i + op!.length);
  }
  tokens.push({ kind: 'eof', text: '', upper: '', line, col: colAt(i, line), start: n, end: n });
  return { tokens, comments };
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isIdentStart(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c > 127;
}

function isIdentPart(c: number): boolean {
  return isIdentStart(c) || isDigit(c) || c === 36;
}
