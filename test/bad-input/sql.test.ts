// Random mutations and truncations of valid SQL documents (CREATE TABLE / INSERT INTO) and transforms: compiling
// gives a document or a ConfigError whose issues carry line:col and a readable message, in bounded time.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileSelect, compileSqlText } from '../../src/sql/index.js';
import { ConfigError } from '../../src/core/errors.js';
import { bounded, expectReadable, mutatedText, params } from './support.js';

const DOC = `-- events from Kafka to a file, typed
CREATE TABLE events (
    id BIGINT NOT NULL,
    ts TIMESTAMP,
    user_id TEXT,
    price DECIMAL(10, 2),
    tags TEXT[],
    off BIGINT METADATA FROM '_offset',
    PRIMARY KEY (id)
) WITH (
    connector = 'kafka',
    bootstrap_servers = 'localhost:9092',
    topic = 'events',
    type = 'source',
    format = 'json',
    'source.offset' = 'earliest'
);
CREATE TABLE archive WITH (connector = 'file', path = 'out/events.jsonl', type = 'sink');
-- name: archive-events
INSERT INTO archive
SELECT id, upper(user_id) AS who, price * 2 AS doubled, CAST(ts AS TEXT) AS at, tags[1] AS first_tag
FROM events
WHERE price > 10.5 AND user_id LIKE 'u%' AND id IN (1, 2, 3) OR ts IS NOT NULL;
CREATE TABLE ticks (n BIGINT NOT NULL) WITH (connector = 'generator', count = 10, template = 'sequence');
CREATE TABLE console WITH (connector = 'stdout');
INSERT INTO console SELECT n, n % 3 AS r, CASE WHEN n > 5 THEN 'big' ELSE 'small' END AS size FROM ticks;
`;

const SELECT = `SELECT id, upper(name) AS n, coalesce(price, 0) * 1.5 AS p, payload->>'k' AS k, CASE WHEN id > 3 THEN 'x' ELSE 'y' END AS c
FROM t WHERE name LIKE 'a%' AND id BETWEEN 1 AND 10 AND tags IS NOT NULL`;

/** Pieces that matter to the lexer and parser. */
const sqlPiece = fc.oneof(
  fc.constantFrom('(', ')', ',', ';', "'", '"', '--', '/*', '*/', '\n', ' ', '.', '*', '[', ']', '::', '->>', '=', '<>', '!', '$1', '?', '\\', '`', '\u0000', '1e999', '99999999999999999999999', 'NULL', 'SELECT', 'FROM', 'WHERE', 'CREATE', 'TABLE', 'INSERT', 'INTO', 'WITH', 'CAST(', 'AS', 'CASE', 'END', 'NOT', 'IN ('),
  fc.string({ maxLength: 6 }),
);

function compileDoc(text: string) {
  bounded(3_000, `compiling ${text.length} characters of SQL`, () => {
    try {
      compileSqlText(text, 'p.sql');
    } catch (e) {
      if (!(e instanceof ConfigError)) throw new Error(`compiling threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.stack ?? String(e)}`);
      expect(e.issues.length).toBeGreaterThan(0);
      for (const i of e.issues) {
        expect(i.loc, `issue without line:col: ${i.message}`).toBeDefined();
        expect(i.loc!.line).toBeGreaterThanOrEqual(1);
        expect(i.loc!.col).toBeGreaterThanOrEqual(1);
        expectReadable(i.message);
      }
    }
  });
}

describe('mutated SQL documents', () => {
  it('the base document compiles', () => {
    expect(compileSqlText(DOC, 'p.sql').pipelines).toHaveLength(2);
  });

  it('every truncation gives a document or located errors', () => {
    for (let i = 0; i < DOC.length; i += 3) compileDoc(DOC.slice(0, i));
  });

  it('random edits give a document or located errors', () => {
    fc.assert(fc.property(mutatedText(DOC, sqlPiece), compileDoc), params(600));
  });

  it('pathological input: deep parentheses, long literals, many statements, unterminated comments', () => {
    const cases = [
      `INSERT INTO console SELECT ${'('.repeat(50_000)}1${')'.repeat(50_000)} AS x FROM ticks;`,
      `INSERT INTO console SELECT ${'-'.repeat(100_000)}1 AS x FROM ticks;`,
      `INSERT INTO console SELECT ${'NOT '.repeat(50_000)}true AS x FROM ticks;`,
      `INSERT INTO console SELECT 1 ${'+ 1 '.repeat(100_000)} AS x FROM ticks;`,
      `CREATE TABLE t (${Array.from({ length: 5_000 }, (_, i) => `c${i} BIGINT`).join(', ')}) WITH (connector = 'generator');`,
      `CREATE TABLE t WITH (connector = '${'x'.repeat(300_000)}');`,
      'CREATE TABLE t /* never closed',
      ';'.repeat(100_000),
      `SELECT ${'a.'.repeat(50_000)}b FROM t`,
    ];
    for (const c of cases) compileDoc(c);
    // These overflowed the parser's (or a later stage's) stack with a RangeError before the depth limit.
    for (const c of [cases[0]!, cases[2]!, cases[3]!]) {
      expect(() => compileSqlText(`CREATE TABLE ticks (n BIGINT) WITH (connector = 'generator');\nCREATE TABLE console WITH (connector = 'stdout');\n${c}`, 'p.sql')).toThrow(
        /^p\.sql:3:\d+: expression nested more than 256 levels deep$/,
      );
    }
  });
});

describe('mutated SELECT transforms', () => {
  it('compile or throw a located ConfigError', () => {
    const check = (sql: string) =>
      bounded(2_000, 'compiling a transform', () => {
        try {
          compileSelect(sql);
        } catch (e) {
          if (!(e instanceof ConfigError)) throw new Error(`compileSelect threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.stack ?? String(e)}`);
          for (const i of e.issues) expectReadable(i.message);
        }
      });
    check(SELECT);
    fc.assert(fc.property(mutatedText(SELECT, sqlPiece), check), params(600));
  });
});
