// Recursive-descent parser for the dialect: CREATE TABLE ... WITH (...), CREATE CONNECTION PROFILE, INSERT INTO ...
// SELECT, and the expression grammar. The first error stops parsing and names the offending token's position.

import { ConfigError } from '../core/errors.js';
import { describeToken, tokenize, type LexOptions, type LineComment, type Token } from './lexer.js';
import type {
  ColumnDef,
  CreateProfileStmt,
  CreateTableStmt,
  Expr,
  InsertStmt,
  JoinClause,
  OptionDef,
  SelectItem,
  SelectStmt,
  Statement,
  TableRef,
  TypeRef,
} from './ast.js';

// Words that end an expression or a select item, so they cannot be bare column names or implicit aliases. Other
// keywords (TIMESTAMP, KEY, TYPE, DATE, ...) stay usable as column names, as in the Laminar seed's `timestamp` column.
const RESERVED = new Set([
  'SELECT', 'FROM', 'WHERE', 'AND', 'OR', 'NOT', 'AS', 'JOIN', 'LEFT', 'INNER', 'ON', 'CASE', 'WHEN', 'THEN', 'ELSE',
  'END', 'IS', 'NULL', 'IN', 'BETWEEN', 'LIKE', 'ILIKE', 'TRUE', 'FALSE', 'INSERT', 'INTO', 'CREATE', 'WITH', 'OUTER',
  'GROUP', 'ORDER', 'LIMIT', 'HAVING', 'UNION', 'ESCAPE',
]);

const UNIT_MS: Record<string, number> = {
  millisecond: 1, milliseconds: 1, ms: 1, msec: 1, msecs: 1,
  second: 1000, seconds: 1000, s: 1000, sec: 1000, secs: 1000,
  minute: 60_000, minutes: 60_000, m: 60_000, min: 60_000, mins: 60_000,
  hour: 3_600_000, hours: 3_600_000, h: 3_600_000, hr: 3_600_000, hrs: 3_600_000,
  day: 86_400_000, days: 86_400_000, d: 86_400_000,
  week: 604_800_000, weeks: 604_800_000, w: 604_800_000,
};

/** Deepest expression accepted; far beyond any real query, well within the stack of every stage that walks it. */
export const MAX_EXPR_DEPTH = 256;

/** A node deeper than `max` in an expression tree (its token, where it has one), found without recursion. */
function deepestBeyond(root: Expr, max: number): { tok?: Token } | undefined {
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length) {
    const [n, d] = stack.pop()!;
    if (typeof n !== 'object' || n === null) continue;
    const node = n as Record<string, unknown>;
    // Arrays and helper objects (CASE branches) hold nodes at their parent's depth.
    const isNode = !Array.isArray(n) && typeof node.k === 'string';
    if (isNode && d > max) return { tok: node.tok as Token | undefined };
    for (const key in node) if (key !== 'tok') stack.push([node[key], isNode ? d + 1 : d]);
  }
  return undefined;
}

export class Parser {
  private pos = 0;
  readonly tokens: Token[];
  readonly comments: LineComment[];

  constructor(
    readonly text: string,
    private readonly file: string,
    lex: LexOptions = {},
  ) {
    const r = tokenize(text, { ...lex, file });
    this.tokens = r.tokens;
    this.comments = r.comments;
  }

  // ---- token helpers -----------------------------------------------------------------------------------------

  peek(ahead = 0): Token {
    return this.tokens[Math.min(this.pos + ahead, this.tokens.length - 1)]!;
  }

  private next(): Token {
    const t = this.peek();
    if (t.kind !== 'eof') this.pos++;
    return t;
  }

  fail(t: Token, message: string): never {
    throw new ConfigError([{ path: [], message, loc: { file: this.file, line: t.line, col: t.col } }]);
  }

  private isKw(word: string, ahead = 0): boolean {
    const t = this.peek(ahead);
    return t.kind === 'ident' && t.upper === word;
  }

  private isOp(op: string, ahead = 0): boolean {
    const t = this.peek(ahead);
    return t.kind === 'op' && t.text === op;
  }

  private acceptKw(word: string): Token | undefined {
    return this.isKw(word) ? this.next() : undefined;
  }

  private acceptOp(op: string): Token | undefined {
    return this.isOp(op) ? this.next() : undefined;
  }

  private expectKw(word: string): Token {
    if (!this.isKw(word)) this.fail(this.peek(), `expected ${word} but found ${describeToken(this.peek())}`);
    return this.next();
  }

  private expectOp(op: string): Token {
    if (!this.isOp(op)) this.fail(this.peek(), `expected '${op}' but found ${describeToken(this.peek())}`);
    return this.next();
  }

  /** A name: a bare identifier that is not reserved, or a quoted one. */
  private name(what: string): Token {
    const t = this.peek();
    if (t.kind === 'qident' || (t.kind === 'ident' && !RESERVED.has(t.upper))) return this.next();
    return this.fail(t, `expected ${what} but found ${describeToken(t)}`);
  }

  // ---- statements --------------------------------------------------------------------------------------------

  parseScript(): Statement[] {
    const out: Statement[] = [];
    for (;;) {
      while (this.acceptOp(';'));
      if (this.peek().kind === 'eof') return out;
      out.push(this.statement());
      if (this.peek().kind !== 'eof' && !this.isOp(';')) this.fail(this.peek(), `expected ';' but found ${describeToken(this.peek())}`);
    }
  }

  private statement(): Statement {
    const t = this.peek();
    if (this.isKw('CREATE')) {
      this.next();
      if (this.acceptKw('OR')) this.expectKw('REPLACE');
      if (this.isKw('CONNECTION') || this.isKw('PROFILE')) return this.createProfile(t);
      this.acceptKw('TEMPORARY');
      if (!this.isKw('TABLE') && !this.isKw('STREAM')) this.fail(this.peek(), `expected TABLE but found ${describeToken(this.peek())}`);
      this.next();
      return this.createTable(t);
    }
    if (this.isKw('INSERT')) return this.insert();
    if (this.isKw('SET')) {
      this.next();
      const keyTok = this.peek();
      const key = this.optionKey();
      if (!this.isOp('=')) this.fail(this.peek(), `expected '=' after '${key}' but found ${describeToken(this.peek())}`);
      this.next();
      const valueTok = this.peek();
      return { kind: 'set', tok: t, key, keyTok, value: this.optionValue(key), valueTok };
    }
    if (this.isKw('RESET')) {
      this.next();
      if (this.peek().kind === 'eof' || this.isOp(';')) return { kind: 'reset', tok: t };
      const keyTok = this.peek();
      return { kind: 'reset', tok: t, key: this.optionKey(), keyTok };
    }
    if (this.isKw('SELECT')) this.fail(t, 'a SELECT needs a destination: write INSERT INTO <sink table> SELECT ...');
    return this.fail(t, `expected CREATE TABLE, INSERT INTO or SET but found ${describeToken(t)}`);
  }

  private createProfile(tok: Token): CreateProfileStmt {
    if (this.acceptKw('CONNECTION')) this.expectKw('PROFILE');
    else this.expectKw('PROFILE');
    const nameTok = this.name('a profile name');
    const withTok = this.expectKw('WITH');
    return { kind: 'profile', tok, name: nameTok.text, nameTok, options: this.options(withTok) };
  }

  private createTable(tok: Token): CreateTableStmt {
    if (this.acceptKw('IF')) {
      this.expectKw('NOT');
      this.expectKw('EXISTS');
    }
    const nameTok = this.name('a table name');
    const stmt: CreateTableStmt = { kind: 'table', tok, name: nameTok.text, nameTok, columns: [], options: [] };
    if (this.acceptOp('(')) {
      if (!this.isOp(')')) {
        do {
          if (this.isKw('PRIMARY')) {
            const pt = this.next();
            this.expectKw('KEY');
            this.expectOp('(');
            const cols: Token[] = [];
            do cols.push(this.name('a column name'));
            while (this.acceptOp(','));
            this.expectOp(')');
            if (stmt.primaryKey) this.fail(pt, 'PRIMARY KEY is given twice');
            stmt.primaryKey = { cols, tok: pt };
          } else if (this.isKw('WATERMARK') && !this.isOp(',', 1) && !this.isOp(')', 1)) {
            const wt = this.next();
            this.expectKw('FOR');
            const col = this.name('a column name');
            this.expectKw('AS');
            if (stmt.watermark) this.fail(wt, 'WATERMARK is given twice');
            stmt.watermark = { col, expr: this.expr() };
          } else {
            stmt.columns.push(this.column());
          }
        } while (this.acceptOp(','));
      }
      this.expectOp(')');
    }
    if (this.isKw('WITH')) stmt.withTok = this.next();
    else this.fail(this.peek(), `expected WITH (...) but found ${describeToken(this.peek())}`);
    stmt.options = this.options(stmt.withTok);
    return stmt;
  }

  private column(): ColumnDef {
    const tok = this.name('a column name');
    const type = this.typeRef();
    const col: ColumnDef = { name: tok.text, tok, type, notNull: false };
    for (;;) {
      if (this.isKw('NOT')) {
        this.next();
        this.expectKw('NULL');
        col.notNull = true;
      } else if (this.isKw('NULL')) {
        this.next();
      } else if (this.isKw('METADATA')) {
        const mt = this.next();
        if (this.acceptKw('FROM')) {
          const k = this.peek();
          if (k.kind !== 'string') this.fail(k, `expected a metadata name such as '_offset' but found ${describeToken(k)}`);
          this.next();
          col.metadata = { key: k.text, tok: k };
        } else col.metadata = { key: tok.text, tok: mt };
        this.acceptKw('VIRTUAL');
      } else if (this.isKw('PRIMARY')) {
        this.next();
        this.expectKw('KEY');
        (col as ColumnDef & { pk?: boolean }).pk = true;
      } else return col;
    }
  }

  /** A type name as written: words, optional `(p, s)`, any number of `[]`; ARRAY<...> too. */
  typeRef(): TypeRef {
    const tok = this.peek();
    if (tok.kind !== 'ident') this.fail(tok, `expected a type name but found ${describeToken(tok)}`);
    let text = this.next().text;
    if (this.isOp('<')) {
      this.next();
      text += `<${this.typeRef().text}>`;
      this.expectOp('>');
    }
    // Multi-word names: DOUBLE PRECISION, CHARACTER VARYING, TIMESTAMP WITH[OUT] TIME ZONE, INT UNSIGNED.
    const up = tok.upper;
    if (up === 'DOUBLE' && this.isKw('PRECISION')) text += ` ${this.next().text}`;
    else if (up === 'CHARACTER' && this.isKw('VARYING')) text += ` ${this.next().text}`;
    else if (up === 'TIMESTAMP' && (this.isKw('WITH') || this.isKw('WITHOUT')) && this.isKw('TIME', 1)) {
      text += ` ${this.next().text} ${this.next().text}`;
      text += ` ${this.expectKw('ZONE').text}`;
    } else if (this.isKw('UNSIGNED')) text += ` ${this.next().text}`;
    if (this.isOp('(')) {
      this.next();
      const args: string[] = [];
      do {
        const a = this.peek();
        if (a.kind !== 'number') this.fail(a, `expected a number but found ${describeToken(a)}`);
        args.push(this.next().text);
      } while (this.acceptOp(','));
      this.expectOp(')');
      text += `(${args.join(',')})`;
    }
    while (this.isOp('[') && this.isOp(']', 1)) {
      this.next();
      this.next();
      text += '[]';
    }
    return { text, tok };
  }

  /** An option name: a quoted string or identifier, or a bare (dotted) word. */
  private optionKey(): string {
    const keyTok = this.peek();
    if (keyTok.kind === 'string' || keyTok.kind === 'qident') return this.next().text;
    if (keyTok.kind !== 'ident') return this.fail(keyTok, `expected an option name but found ${describeToken(keyTok)}`);
    let key = this.next().text;
    // Unquoted dotted keys (source.offset) read the same as quoted ones.
    while (this.isOp('.') && (this.peek(1).kind === 'ident' || this.peek(1).kind === 'number')) {
      this.next();
      key += `.${this.next().text}`;
    }
    return key;
  }

  /** An option value: a string, a (signed) number, TRUE/FALSE, or a bare word. */
  private optionValue(key: string): string | number | boolean {
    const vt = this.peek();
    if (vt.kind === 'string') return this.next().text;
    if (vt.kind === 'number') return Number(this.next().text);
    if (vt.kind === 'op' && vt.text === '-' && this.peek(1).kind === 'number') {
      this.next();
      return -Number(this.next().text);
    }
    if (vt.kind === 'ident' && (vt.upper === 'TRUE' || vt.upper === 'FALSE')) return this.next().upper === 'TRUE';
    if (vt.kind === 'ident' && !RESERVED.has(vt.upper)) return this.next().text;
    return this.fail(vt, `expected a value for '${key}' but found ${describeToken(vt)}`);
  }

  private options(withTok: Token): OptionDef[] {
    this.expectOp('(');
    const out: OptionDef[] = [];
    if (this.acceptOp(')')) return out;
    do {
      if (this.isOp(')')) break; // a trailing comma
      const keyTok = this.peek();
      const key = this.optionKey();
      this.expectOp('=');
      const vt = this.peek();
      const value = this.optionValue(key);
      if (out.some((o) => o.key === key)) this.fail(keyTok, `option '${key}' is given twice`);
      out.push({ key, keyTok, value, valueTok: vt });
    } while (this.acceptOp(','));
    if (!this.isOp(')')) this.fail(this.peek(), `expected ',' or ')' but found ${describeToken(this.peek())}`);
    this.next();
    void withTok;
    return out;
  }

  private insert(): InsertStmt {
    const tok = this.next();
    this.expectKw('INTO');
    const sinkTok = this.name('a sink table name');
    let columns: Token[] | undefined;
    if (this.acceptOp('(')) {
      columns = [];
      do columns.push(this.name('a column name'));
      while (this.acceptOp(','));
      this.expectOp(')');
    }
    if (!this.isKw('SELECT')) this.fail(this.peek(), `expected SELECT but found ${describeToken(this.peek())}`);
    const select = this.select(true);
    const stmt: InsertStmt = { kind: 'insert', tok, sink: sinkTok.text, sinkTok, columns, select };
    const c = this.comments.find((x) => x.line === tok.line - 1 && /^name\s*:/i.test(x.text));
    if (c) stmt.name = c.text.replace(/^name\s*:\s*/i, '').trim();
    return stmt;
  }

  /** `SELECT items [FROM t [JOIN ...]] [WHERE cond]`; FROM is required in INSERT, optional in a YAML transform. */
  select(requireFrom: boolean): SelectStmt {
    const tok = this.expectKw('SELECT');
    this.acceptKw('ALL');
    if (this.isKw('DISTINCT')) this.fail(this.peek(), 'SELECT DISTINCT needs state across records; the SQL layer is per record');
    const items: SelectItem[] = [];
    do items.push(this.selectItem());
    while (this.acceptOp(','));
    const stmt: SelectStmt = { tok, items, joins: [] };
    if (this.isKw('FROM')) {
      this.next();
      stmt.from = this.tableRef();
      for (;;) {
        const jt = this.peek();
        let left = false;
        if (this.isKw('LEFT')) {
          this.next();
          this.acceptKw('OUTER');
          left = true;
        } else if (this.isKw('INNER')) this.next();
        else if (!this.isKw('JOIN')) break;
        this.expectKw('JOIN');
        const table = this.tableRef();
        this.expectKw('ON');
        const join: JoinClause = { left, table, on: this.expr(), tok: jt };
        stmt.joins.push(join);
      }
      if (this.isOp(',')) this.fail(this.peek(), 'joining with a comma is not supported; write JOIN <lookup table> ON <key> = <column>');
    } else if (requireFrom) {
      this.fail(this.peek(), `expected FROM but found ${describeToken(this.peek())}`);
    }
    if (this.acceptKw('WHERE')) stmt.where = this.expr();
    const t = this.peek();
    if (t.kind === 'ident' && ['GROUP', 'ORDER', 'HAVING', 'LIMIT', 'UNION'].includes(t.upper)) {
      this.fail(t, `${t.upper} is not supported: the SQL layer works on one record at a time`);
    }
    return stmt;
  }

  private tableRef(): TableRef {
    const tok = this.name('a table name');
    const ref: TableRef = { name: tok.text, tok };
    if (this.acceptKw('AS')) ref.alias = this.name('an alias').text;
    else if (this.peek().kind === 'qident' || (this.peek().kind === 'ident' && !RESERVED.has(this.peek().upper))) ref.alias = this.next().text;
    return ref;
  }

  private selectItem(): SelectItem {
    const t = this.peek();
    if (this.isOp('*')) {
      this.next();
      return { star: { tok: t } };
    }
    if ((t.kind === 'ident' || t.kind === 'qident') && this.isOp('.', 1) && this.isOp('*', 2)) {
      this.next();
      this.next();
      this.next();
      return { star: { table: t.text, tok: t } };
    }
    const item: SelectItem = { expr: this.expr() };
    if (this.acceptKw('AS')) {
      const a = this.peek();
      if (a.kind === 'string') this.next();
      else this.name('an alias');
      item.alias = a.text;
      item.aliasTok = a;
    } else if (this.peek().kind === 'qident' || (this.peek().kind === 'ident' && !RESERVED.has(this.peek().upper))) {
      item.aliasTok = this.next();
      item.alias = item.aliasTok.text;
    }
    return item;
  }

  // ---- expressions -------------------------------------------------------------------------------------------

  /** Open expression levels (parentheses, NOT and sign chains), bounded so deep nesting is an error, not a stack overflow. */
  private depth = 0;

  private enter(): void {
    if (++this.depth > MAX_EXPR_DEPTH) this.fail(this.peek(), `expression nested more than ${MAX_EXPR_DEPTH} levels deep`);
  }

  expr(): Expr {
    this.enter();
    let e: Expr;
    try {
      e = this.or();
    } finally {
      this.depth--;
    }
    // Long operator chains (a + a + ... ) nest the tree without nesting the parser; later stages walk it recursively.
    if (this.depth === 0) {
      const deep = deepestBeyond(e, MAX_EXPR_DEPTH);
      if (deep) this.fail(deep.tok ?? this.peek(), `expression nested more than ${MAX_EXPR_DEPTH} levels deep`);
    }
    return e;
  }

  private or(): Expr {
    let l = this.and();
    while (this.isKw('OR')) {
      const tok = this.next();
      l = { k: 'bin', op: 'OR', l, r: this.and(), tok };
    }
    return l;
  }

  private and(): Expr {
    let l = this.not();
    while (this.isKw('AND')) {
      const tok = this.next();
      l = { k: 'bin', op: 'AND', l, r: this.not(), tok };
    }
    return l;
  }

  private not(): Expr {
    if (this.isKw('NOT')) {
      const tok = this.next();
      this.enter();
      try {
        return { k: 'unary', op: 'NOT', e: this.not(), tok };
      } finally {
        this.depth--;
      }
    }
    return this.comparison();
  }

  private comparison(): Expr {
    const l = this.concat();
    const t = this.peek();
    if (t.kind === 'op' && ['=', '!=', '<>', '<', '<=', '>', '>='].includes(t.text)) {
      this.next();
      return { k: 'bin', op: t.text === '<>' ? '!=' : t.text, l, r: this.concat(), tok: t };
    }
    if (this.isKw('IS')) {
      this.next();
      const not = !!this.acceptKw('NOT');
      if (this.acceptKw('NULL')) return { k: 'isnull', e: l, not, tok: t };
      if (this.acceptKw('TRUE')) return { k: 'isbool', e: l, not, v: true, tok: t };
      if (this.acceptKw('FALSE')) return { k: 'isbool', e: l, not, v: false, tok: t };
      if (this.acceptKw('DISTINCT')) {
        this.expectKw('FROM');
        return { k: 'distinct', l, r: this.concat(), not, tok: t };
      }
      return this.fail(this.peek(), `expected NULL, TRUE, FALSE or DISTINCT FROM but found ${describeToken(this.peek())}`);
    }
    let not = false;
    if (this.isKw('NOT') && (this.isKw('IN', 1) || this.isKw('BETWEEN', 1) || this.isKw('LIKE', 1) || this.isKw('ILIKE', 1))) {
      this.next();
      not = true;
    }
    if (this.acceptKw('IN')) {
      this.expectOp('(');
      const list: Expr[] = [];
      do list.push(this.expr());
      while (this.acceptOp(','));
      this.expectOp(')');
      return { k: 'in', e: l, list, not, tok: t };
    }
    if (this.acceptKw('BETWEEN')) {
      this.acceptKw('SYMMETRIC');
      const lo = this.concat();
      this.expectKw('AND');
      return { k: 'between', e: l, lo, hi: this.concat(), not, tok: t };
    }
    if (this.isKw('LIKE') || this.isKw('ILIKE')) {
      const ci = this.next().upper === 'ILIKE';
      const pat = this.concat();
      const node: Expr = { k: 'like', e: l, pat, not, ci, tok: t };
      if (this.acceptKw('ESCAPE')) node.esc = this.concat();
      return node;
    }
    return l;
  }

  private concat(): Expr {
    let l = this.additive();
    while (this.isOp('||')) {
      const tok = this.next();
      l = { k: 'bin', op: '||', l, r: this.additive(), tok };
    }
    return l;
  }

  private additive(): Expr {
    let l = this.multiplicative();
    while (this.isOp('+') || this.isOp('-')) {
      const tok = this.next();
      l = { k: 'bin', op: tok.text, l, r: this.multiplicative(), tok };
    }
    return l;
  }

  private multiplicative(): Expr {
    let l = this.unary();
    while (this.isOp('*') || this.isOp('/') || this.isOp('%')) {
      const tok = this.next();
      l = { k: 'bin', op: tok.text, l, r: this.unary(), tok };
    }
    return l;
  }

  private unary(): Expr {
    if (this.isOp('-') || this.isOp('+')) {
      const tok = this.next();
      this.enter();
      let e: Expr;
      try {
        e = this.unary();
      } finally {
        this.depth--;
      }
      // Fold negative number literals so `-5` is a constant.
      if (e.k === 'lit' && typeof e.v === 'number') return { k: 'lit', v: tok.text === '-' ? -e.v : e.v, tok };
      return { k: 'unary', op: tok.text as '-' | '+', e, tok };
    }
    return this.postfix();
  }

  private postfix(): Expr {
    let e = this.primary();
    for (;;) {
      const t = this.peek();
      if (this.isOp('::')) {
        this.next();
        e = { k: 'cast', e, type: this.typeRef(), try: false, tok: t };
      } else if (this.isOp('->') || this.isOp('->>')) {
        this.next();
        e = { k: 'json', e, key: this.primary(), text: t.text === '->>', tok: t };
      } else if (this.isOp('[')) {
        this.next();
        const key = this.expr();
        this.expectOp(']');
        e = { k: 'json', e, key, text: false, tok: t };
      } else return e;
    }
  }

  private primary(): Expr {
    const t = this.peek();
    if (t.kind === 'number') {
      this.next();
      return { k: 'lit', v: Number(t.text), tok: t };
    }
    if (t.kind === 'string') {
      this.next();
      return { k: 'lit', v: t.text, tok: t };
    }
    if (t.kind === 'op' && t.text === '(') {
      this.next();
      if (this.isKw('SELECT')) this.fail(this.peek(), 'subqueries are not supported');
      const e = this.expr();
      this.expectOp(')');
      return e;
    }
    if (t.kind === 'qident') return this.columnRef();
    if (t.kind !== 'ident') return this.fail(t, `expected an expression but found ${describeToken(t)}`);
    switch (t.upper) {
      case 'NULL':
        this.next();
        return { k: 'lit', v: null, tok: t };
      case 'TRUE':
      case 'FALSE':
        this.next();
        return { k: 'lit', v: t.upper === 'TRUE', tok: t };
      case 'CASE':
        return this.caseExpr();
      case 'CAST':
      case 'TRY_CAST':
        if (this.isOp('(', 1)) {
          this.next();
          this.expectOp('(');
          const e = this.expr();
          this.expectKw('AS');
          const type = this.typeRef();
          this.expectOp(')');
          return { k: 'cast', e, type, try: t.upper === 'TRY_CAST', tok: t };
        }
        break;
      case 'EXTRACT':
        if (this.isOp('(', 1)) {
          this.next();
          this.next();
          const f = this.peek();
          if (f.kind !== 'ident' && f.kind !== 'string') this.fail(f, `expected a field such as YEAR or EPOCH but found ${describeToken(f)}`);
          this.next();
          this.expectKw('FROM');
          const e = this.expr();
          this.expectOp(')');
          return { k: 'extract', field: f.text.toLowerCase(), e, tok: f };
        }
        break;
      case 'INTERVAL':
        if (this.peek(1).kind === 'string') {
          this.next();
          return this.interval(t, this.next());
        }
        break;
      case 'TIMESTAMP':
      case 'DATE':
        if (this.peek(1).kind === 'string') {
          this.next();
          const s = this.next();
          return { k: 'cast', e: { k: 'lit', v: s.text, tok: s }, type: { text: t.text, tok: t }, try: false, tok: t };
        }
        break;
      case 'CURRENT_TIMESTAMP':
      case 'CURRENT_DATE':
      case 'LOCALTIMESTAMP':
        if (!this.isOp('(', 1)) {
          this.next();
          return { k: 'call', name: t.upper === 'CURRENT_DATE' ? 'current_date' : 'now', args: [], tok: t };
        }
        break;
    }
    if (RESERVED.has(t.upper)) return this.fail(t, `expected an expression but found ${describeToken(t)}`);
    if (this.isOp('(', 1)) return this.call();
    return this.columnRef();
  }

  private columnRef(): Expr {
    const first = this.next();
    const parts = [first.text];
    while (this.isOp('.') && (this.peek(1).kind === 'ident' || this.peek(1).kind === 'qident')) {
      this.next();
      parts.push(this.next().text);
    }
    // `a.b.c`: which part is the table is settled at compile time, where the tables are known.
    return { k: 'col', name: parts[0]!, path: parts.length > 1 ? parts.slice(1) : undefined, tok: first };
  }

  private call(): Expr {
    const tok = this.next();
    const name = tok.text.toLowerCase();
    this.expectOp('(');
    const args: Expr[] = [];
    if (name === 'substring' || name === 'substr') {
      // substring(s FROM a [FOR b])
      const s = this.expr();
      args.push(s);
      if (this.acceptKw('FROM')) {
        args.push(this.expr());
        if (this.acceptKw('FOR')) args.push(this.expr());
        this.expectOp(')');
        return { k: 'call', name, args, tok };
      }
      while (this.acceptOp(',')) args.push(this.expr());
      this.expectOp(')');
      return { k: 'call', name, args, tok };
    }
    if (name === 'trim' && (this.isKw('BOTH') || this.isKw('LEADING') || this.isKw('TRAILING') || this.isKw('FROM'))) {
      // trim([BOTH|LEADING|TRAILING] [chars] FROM s)
      const mode = this.isKw('FROM') ? 'BOTH' : this.next().upper;
      let chars: Expr | undefined;
      if (!this.isKw('FROM')) chars = this.expr();
      this.expectKw('FROM');
      const s = this.expr();
      this.expectOp(')');
      const fn = mode === 'LEADING' ? 'ltrim' : mode === 'TRAILING' ? 'rtrim' : 'btrim';
      return { k: 'call', name: fn, args: chars ? [s, chars] : [s], tok };
    }
    if (name === 'position' && !this.isOp(')')) {
      const needle = this.concat();
      if (this.acceptKw('IN')) {
        const hay = this.expr();
        this.expectOp(')');
        return { k: 'call', name: 'strpos', args: [hay, needle], tok };
      }
      args.push(needle);
      while (this.acceptOp(',')) args.push(this.expr());
      this.expectOp(')');
      return { k: 'call', name, args, tok };
    }
    if (this.isOp('*') && name === 'count') this.fail(this.peek(), 'aggregates such as count(*) need state across records; the SQL layer is per record');
    if (!this.isOp(')')) {
      do args.push(this.expr());
      while (this.acceptOp(','));
    }
    if (!this.isOp(')')) this.fail(this.peek(), `expected ')' but found ${describeToken(this.peek())}`);
    this.next();
    return { k: 'call', name, args, tok };
  }

  private caseExpr(): Expr {
    const tok = this.next();
    let base: Expr | undefined;
    if (!this.isKw('WHEN')) base = this.expr();
    const whens: Array<[Expr, Expr]> = [];
    while (this.acceptKw('WHEN')) {
      const c = this.expr();
      this.expectKw('THEN');
      whens.push([c, this.expr()]);
    }
    if (!whens.length) this.fail(this.peek(), `expected WHEN but found ${describeToken(this.peek())}`);
    let els: Expr | undefined;
    if (this.acceptKw('ELSE')) els = this.expr();
    this.expectKw('END');
    return { k: 'case', base, whens, else: els, tok };
  }

  /** INTERVAL '5 seconds', INTERVAL '1 minute 30 seconds', INTERVAL '5' SECOND. */
  private interval(tok: Token, s: Token): Expr {
    let text = s.text.trim().toLowerCase();
    const unit = this.peek();
    if (unit.kind === 'ident' && UNIT_MS[unit.text.toLowerCase()] !== undefined && /^-?\d+(\.\d+)?$/.test(text)) {
      this.next();
      text += ` ${unit.text.toLowerCase()}`;
    }
    let ms = 0;
    const re = /(-?\d+(?:\.\d+)?)\s*([a-z]+)/g;
    let m: RegExpExecArray | null;
    let consumed = '';
    while ((m = re.exec(text))) {
      const u = UNIT_MS[m[2]!];
      if (u === undefined) this.fail(s, `unknown interval unit '${m[2]}' (use milliseconds, seconds, minutes, hours, days or weeks)`);
      ms += Number(m[1]) * u!;
      consumed += m[0];
    }
    if (!consumed || text.replace(/[\s,]/g, '') !== consumed.replace(/\s/g, '')) this.fail(s, `invalid interval '${s.text}' (write e.g. INTERVAL '5 seconds' or INTERVAL '5' SECOND)`);
    return { k: 'interval', ms, tok };
  }
}

/** Parse a whole script of `;`-separated statements. Throws ConfigError at the first problem. */
export function parseScript(text: string, file: string, lex: LexOptions = {}): Statement[] {
  return new Parser(text, file, lex).parseScript();
}

/** Parse a standalone SELECT (a YAML `transform:`); FROM is optional. */
export function parseSelect(text: string, file: string, lex: LexOptions = {}): SelectStmt {
  const p = new Parser(text, file, lex);
  const s = p.select(false);
  while (p.peek().kind === 'op' && p.peek().text === ';') (p as unknown as { next(): Token }).next();
  if (p.peek().kind !== 'eof') p.fail(p.peek(), `expected end of the query but found ${describeToken(p.peek())}`);
  return s;
}
