// The small template language of handshake steps, subscription messages and app-level pings.
//
//   {{ now_ms }}   {{ uuid }}   {{ env "API_KEY" }}   {{ hmac_sha256 (env "SECRET") (concat "GET/realtime" now_ms) }}
//
// Text outside `{{ }}` is literal. Inside, an expression is a function name followed by arguments (Go-template style);
// an argument is a "string" (JSON escapes), a number, a bare name (a variable or a function without arguments) or a
// parenthesised call. Templates are parsed once, when the source is created, so a typo fails the config check with the
// column where it is, never a live connection.

import { createHmac, randomUUID } from 'node:crypto';
import { SluiceError } from '../../core/errors.js';

/** A value inside a template: text, or a list (subscription channels). Lists render as JSON arrays. */
export type TemplateValue = string | readonly string[];

/** What a template can read besides the clock and the environment. */
export interface TemplateVars {
  /** All channels of the connection (`{{ channels }}`). */
  channels?: readonly string[];
  /** The current channel (`{{ channel }}`), for per-channel subscription messages. */
  channel?: string;
  /** Index of the connection within the source (0-based). */
  connection?: number;
}

/** One rendering's fixed inputs: every `now_*` in a template sees the same instant, so a signature matches its body. */
interface Scope {
  vars: TemplateVars;
  now: number;
  env: NodeJS.ProcessEnv;
}

type Node =
  | { k: 'lit'; v: string; pos: number }
  | { k: 'call'; fn: FnDef; name: string; args: Node[]; pos: number };

interface FnDef {
  min: number;
  max: number;
  run(args: TemplateValue[], scope: Scope, pos: number): TemplateValue;
}

const str = (v: TemplateValue): string => (typeof v === 'string' ? v : JSON.stringify(v));

const FUNCTIONS: Record<string, FnDef> = {
  now_ms: { min: 0, max: 0, run: (_a, s) => String(s.now) },
  now_s: { min: 0, max: 0, run: (_a, s) => String(Math.floor(s.now / 1000)) },
  now_iso: { min: 0, max: 0, run: (_a, s) => new Date(s.now).toISOString() },
  uuid: { min: 0, max: 0, run: () => randomUUID() },
  env: {
    min: 1,
    max: 1,
    run: (a, s, pos) => {
      const name = str(a[0]!);
      const v = s.env[name];
      if (v === undefined) throw new TemplateError(`environment variable '${name}' is not set`, pos);
      return v;
    },
  },
  hmac_sha256: {
    min: 2,
    max: 3,
    run: (a, _s, pos) => {
      const enc = a[2] === undefined ? 'hex' : str(a[2]);
      if (enc !== 'hex' && enc !== 'base64') throw new TemplateError(`hmac_sha256 encoding must be "hex" or "base64", got "${enc}"`, pos);
      return createHmac('sha256', str(a[0]!)).update(str(a[1]!)).digest(enc);
    },
  },
  concat: { min: 1, max: Infinity, run: (a) => a.map(str).join('') },
  json: { min: 1, max: 1, run: (a) => JSON.stringify(a[0]) },
  join: { min: 2, max: 2, run: (a) => (typeof a[0] === 'string' ? a[0] : a[0]!.join(str(a[1]!))) },
  base64: { min: 1, max: 1, run: (a) => Buffer.from(str(a[0]!)).toString('base64') },
  channels: { min: 0, max: 0, run: (_a, s) => s.vars.channels ?? [] },
  channel: {
    min: 0,
    max: 0,
    run: (_a, s, pos) => {
      if (s.vars.channel === undefined) throw new TemplateError('{{ channel }} is only set in a per-channel subscription message', pos);
      return s.vars.channel;
    },
  },
  connection: { min: 0, max: 0, run: (_a, s) => String(s.vars.connection ?? 0) },
};

export const TEMPLATE_FUNCTIONS = Object.keys(FUNCTIONS);

export class TemplateError extends SluiceError {
  /** 0-based offset in the template text. */
  readonly pos: number;
  constructor(message: string, pos: number) {
    super('CONFIG', message);
    this.pos = pos;
  }
}

export interface Template {
  readonly source: string;
  /** True when the text has no `{{ }}` at all (rendering is then free). */
  readonly constant: boolean;
  /** Names of the functions it uses (`channel`, `channels`, ...). */
  readonly uses: ReadonlySet<string>;
  render(vars?: TemplateVars, now?: number, env?: NodeJS.ProcessEnv): string;
}

/** Parse a template; a syntax error names the column (1-based) and what was expected. */
export function compileTemplate(source: string): Template {
  const parts: Node[] = [];
  const uses = new Set<string>();
  let i = 0;
  while (i < source.length) {
    const open = source.indexOf('{{', i);
    if (open < 0) {
      parts.push({ k: 'lit', v: source.slice(i), pos: i });
      break;
    }
    if (open > i) parts.push({ k: 'lit', v: source.slice(i, open), pos: i });
    const p = new Parser(source, open + 2, uses);
    const node = p.expression();
    p.skipSpace();
    if (!source.startsWith('}}', p.i)) throw p.error(p.i >= source.length ? "missing '}}'" : `expected '}}', found '${source[p.i]}'`);
    parts.push(node);
    i = p.i + 2;
  }
  const constant = parts.every((n) => n.k === 'lit');
  const text = constant ? parts.map((n) => (n as { v: string }).v).join('') : '';
  return {
    source,
    constant,
    uses,
    render(vars: TemplateVars = {}, now = Date.now(), env = process.env) {
      if (constant) return text;
      const scope: Scope = { vars, now, env };
      let out = '';
      for (const n of parts) out += str(evaluate(n, scope));
      return out;
    },
  };
}

function evaluate(n: Node, s: Scope): TemplateValue {
  if (n.k === 'lit') return n.v;
  const args = n.args.map((a) => evaluate(a, s));
  return n.fn.run(args, s, n.pos);
}

class Parser {
  constructor(
    readonly src: string,
    public i: number,
    private readonly uses: Set<string>,
  ) {}

  error(msg: string, at = this.i): TemplateError {
    return new TemplateError(`template column ${at + 1}: ${msg}`, at);
  }

  skipSpace() {
    while (this.i < this.src.length && /\s/.test(this.src[this.i]!)) this.i++;
  }

  /** A call with arguments, up to `}}` or `)`; a lone literal is allowed too. */
  expression(): Node {
    this.skipSpace();
    const head = this.atom();
    if (head.k !== 'name') {
      this.skipSpace();
      if (!this.atEnd()) throw this.error('only a function name can take arguments');
      return head;
    }
    const args: Node[] = [];
    for (;;) {
      this.skipSpace();
      if (this.atEnd()) break;
      const a = this.atom();
      // A bare name among the arguments is a call without arguments (`now_ms`, `uuid`).
      args.push(a.k === 'name' ? this.call(a.name, [], a.pos) : a);
    }
    return this.call(head.name, args, head.pos);
  }

  private atEnd(): boolean {
    return this.i >= this.src.length || this.src.startsWith('}}', this.i) || this.src[this.i] === ')';
  }

  private call(name: string, args: Node[], pos: number): Node {
    const fn = FUNCTIONS[name];
    if (!fn) throw this.error(`unknown function '${name}' (known: ${TEMPLATE_FUNCTIONS.join(', ')})`, pos);
    if (args.length < fn.min || args.length > fn.max) {
      const want = fn.min === fn.max ? `${fn.min}` : fn.max === Infinity ? `at least ${fn.min}` : `${fn.min} to ${fn.max}`;
      throw this.error(`'${name}' takes ${want} argument(s), got ${args.length}`, pos);
    }
    this.uses.add(name);
    return { k: 'call', fn, name, args, pos };
  }

  private atom(): Node | { k: 'name'; name: string; pos: number } {
    this.skipSpace();
    const c = this.src[this.i];
    const pos = this.i;
    if (c === undefined) throw this.error("missing '}}'");
    if (c === '"') return { k: 'lit', v: this.string(), pos };
    if (c === '(') {
      this.i++;
      const inner = this.expression();
      this.skipSpace();
      if (this.src[this.i] !== ')') throw this.error("expected ')'");
      this.i++;
      return inner;
    }
    const num = /^-?\d+(\.\d+)?/.exec(this.src.slice(this.i, this.i + 64));
    if (num) {
      this.i += num[0].length;
      return { k: 'lit', v: num[0], pos };
    }
    const id = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.src.slice(this.i, this.i + 64));
    if (!id) throw this.error(`unexpected '${c}'`);
    this.i += id[0].length;
    return { k: 'name', name: id[0], pos };
  }

  private string(): string {
    const start = this.i;
    let j = this.i + 1;
    while (j < this.src.length && this.src[j] !== '"') j += this.src[j] === '\\' ? 2 : 1;
    if (j >= this.src.length) throw this.error('unterminated string', start);
    this.i = j + 1;
    try {
      return JSON.parse(this.src.slice(start, j + 1)) as string;
    } catch {
      throw this.error('invalid escape in string', start);
    }
  }
}
