import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../core/errors.js';
import type { LookupTable } from '../core/spec.js';
import type { SchemaSpec, SluiceRecord } from '../core/types.js';
import { loadConfigText } from '../config/load.js';
import { compileSelect, compileSqlText, createTransform, sqlReferences, tokenize } from './index.js';

function issuesOf(f: () => unknown): Array<{ message: string; at: string }> {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e.issues.map((i) => ({ message: i.message, at: i.loc ? `${i.loc.line}:${i.loc.col}` : '' }));
    throw e;
  }
  throw new Error('expected a ConfigError');
}

const recs = (...rows: unknown[]): SluiceRecord[] => rows.map((value) => ({ value }));
const run = (sql: string, rows: unknown[], schema?: SchemaSpec) => (compileSelect(sql, schema).transform(recs(...rows)) as SluiceRecord[]).map((r) => r.value);
/** One expression over one row. */
const ev = (expr: string, row: Record<string, unknown> = {}, schema?: SchemaSpec) => (run(`SELECT ${expr} AS x`, [row], schema)[0] as { x: unknown }).x;

describe('tokenizer and parser errors', () => {
  it('tokenizes with positions, comments and escapes', () => {
    const { tokens } = tokenize("SELECT 'it''s' -- c\n /* b\n */ a->>'k'");
    expect(tokens.map((t) => [t.kind, t.text, t.line, t.col])).toEqual([
      ['ident', 'SELECT', 1, 1],
      ['string', "it's", 1, 8],
      ['ident', 'a', 3, 5],
      ['op', '->>', 3, 6],
      ['string', 'k', 3, 9],
      ['eof', '', 3, 12],
    ]);
  });

  it('points at the offending token', () => {
    expect(issuesOf(() => compileSqlText("CREATE TABLE t (a BIGINT\nWITH (connector = 'generator')", 'p.sql'))).toEqual([
      { message: "expected ')' but found 'WITH'", at: '2:1' },
    ]);
    expect(issuesOf(() => compileSqlText('INSERT INTO s SELECT a b c FROM t', 'p.sql'))[0]).toEqual({ message: "expected FROM but found 'c'", at: '1:26' });
    expect(issuesOf(() => compileSqlText("CREATE TABLE t () WITH (x = 'unterminated)", 'p.sql'))[0]).toEqual({ message: 'unterminated string literal', at: '1:29' });
    expect(issuesOf(() => compileSqlText('/* open', 'p.sql'))[0]).toEqual({ message: 'unterminated /* comment', at: '1:1' });
    expect(issuesOf(() => compileSelect('SELECT a +', undefined))[0]!.message).toBe('expected an expression but found end of input');
    expect(issuesOf(() => compileSelect('SELECT count(*) FROM t'))[0]!.message).toMatch(/aggregates/);
    expect(issuesOf(() => compileSelect('SELECT a FROM t GROUP BY a'))[0]).toEqual({ message: 'GROUP is not supported: the SQL layer works on one record at a time', at: '1:17' });
  });

  it('reports unknown columns and functions with suggestions', () => {
    const schema: SchemaSpec = { fields: [{ name: 'price', type: 'float64' }, { name: 'sym', type: 'string' }] };
    expect(issuesOf(() => compileSelect('SELECT sym,\n  pricee * 2 AS p', schema))).toEqual([{ message: "unknown column 'pricee'; did you mean 'price'?", at: '2:3' }]);
    expect(issuesOf(() => compileSelect('SELECT lowerr(sym)', schema))).toEqual([{ message: "unknown function 'lowerr'; did you mean 'lower'?", at: '1:8' }]);
    expect(issuesOf(() => compileSelect("SELECT sym + 1", schema))[0]!.message).toBe("operator '+' cannot be applied to string and int (use || to concatenate text)");
    expect(issuesOf(() => compileSelect('SELECT price WHERE price', schema))[0]!.message).toBe('WHERE needs a boolean condition, got float');
    expect(issuesOf(() => compileSelect('SELECT upper(price)', schema))[0]!.message).toMatch(/argument 1 must be text, got float/);
    expect(issuesOf(() => compileSelect('SELECT round(price, 1, 2)', schema))[0]!.message).toBe('function round takes 1 to 2 arguments, got 3');
    expect(issuesOf(() => compileSelect("SELECT CAST('abc' AS BIGINT)"))[0]!.message).toBe("expected a number, got 'abc'");
    expect(issuesOf(() => compileSelect('SELECT CAST(price AS BIGINTT)', schema))[0]!.message).toMatch(/unknown type 'BIGINTT'; did you mean 'bigint'/);
    expect(issuesOf(() => compileSelect("SELECT date_trunc('minit', now())"))[0]!.message).toMatch(/did you mean 'minute'/);
  });
});

describe('expressions', () => {
  it('literals, arithmetic and precedence', () => {
    expect(ev('1 + 2 * 3')).toBe(7);
    expect(ev('(1 + 2) * 3')).toBe(9);
    expect(ev('7 / 2')).toBe(3);
    expect(ev('7.0 / 2')).toBe(3.5);
    expect(ev('7 % 3')).toBe(1);
    expect(ev('-a', { a: 4 })).toBe(-4);
    expect(ev("'a' || 'b' || 1")).toBe('ab1');
    expect(ev('TRUE AND NOT FALSE')).toBe(true);
    expect(() => ev('a / b', { a: 1, b: 0 })).toThrow('division by zero');
    expect(ev('a / NULLIF(b, 0)', { a: 1, b: 0 })).toBe(null);
  });

  it('three-valued logic and NULL propagation', () => {
    expect(ev('NULL + 1')).toBe(null);
    expect(ev('a > 1', { a: null })).toBe(null);
    expect(ev('NULL AND FALSE')).toBe(false);
    expect(ev('NULL AND TRUE')).toBe(null);
    expect(ev('NULL OR TRUE')).toBe(true);
    expect(ev('NULL OR FALSE')).toBe(null);
    expect(ev('NOT a', { a: null })).toBe(null);
    expect(ev('a IS NULL', { a: null })).toBe(true);
    expect(ev('a IS NOT NULL', {})).toBe(false);
    expect(ev('a IS NOT DISTINCT FROM b', { a: null, b: null })).toBe(true);
    expect(ev('a IS DISTINCT FROM 1', { a: null })).toBe(true);
    expect(ev('1 IN (2, NULL)')).toBe(null);
    expect(ev('1 NOT IN (2, 3)')).toBe(true);
    expect(ev("a IN ('x', 'y')", { a: 'y' })).toBe(true);
    expect(ev('a BETWEEN 1 AND 3', { a: 2 })).toBe(true);
    expect(ev('a NOT BETWEEN 1 AND 3', { a: 5 })).toBe(true);
    expect(ev('a BETWEEN NULL AND 3', { a: 5 })).toBe(false);
    expect(ev("NULL || 'x'")).toBe(null);
    expect(ev("concat(NULL, 'x', 1)")).toBe('x1');
    expect(ev('a = b', { a: null, b: null })).toBe(null);
    // WHERE keeps only true
    expect(run('SELECT * WHERE a > 1', [{ a: 2 }, { a: null }, { a: 0 }])).toEqual([{ a: 2 }]);
  });

  it('comparisons, LIKE and CASE', () => {
    expect(ev("'abc' < 'abd'")).toBe(true);
    expect(ev("a = '5'", { a: 5 })).toBe(true);
    expect(ev('a <> 5', { a: 5 })).toBe(false);
    expect(ev("s LIKE 'ab%'", { s: 'abc' })).toBe(true);
    expect(ev("s LIKE 'a_c'", { s: 'abc' })).toBe(true);
    expect(ev("s NOT LIKE '%z%'", { s: 'abc' })).toBe(true);
    expect(ev("s ILIKE 'ABC'", { s: 'abc' })).toBe(true);
    expect(ev("s LIKE '50!%' ESCAPE '!'", { s: '50%' })).toBe(true);
    expect(ev("CASE WHEN a > 10 THEN 'big' WHEN a > 5 THEN 'mid' ELSE 'small' END", { a: 7 })).toBe('mid');
    expect(ev("CASE a WHEN 1 THEN 'one' WHEN 2 THEN 'two' END", { a: 3 })).toBe(null);
    expect(ev("CASE a WHEN 1 THEN 'one' END", { a: null })).toBe(null);
    expect(issuesOf(() => compileSelect("SELECT CASE WHEN TRUE THEN 1 ELSE 'x' END"))[0]!.message).toBe('CASE branches have different types: int and string');
  });

  it('CAST, ::, TRY_CAST, COALESCE, NULLIF', () => {
    expect(ev("CAST('42' AS BIGINT)")).toBe(42);
    expect(ev('3.7::INT')).toBe(4);
    expect(ev('a::TEXT', { a: 12 })).toBe('12');
    expect(ev("CAST(a AS DECIMAL(10,2))", { a: 1.5 })).toBe('1.50');
    expect(ev("'true'::BOOLEAN")).toBe(true);
    expect((ev("CAST('2024-01-02T03:04:05Z' AS TIMESTAMP)") as Date).toISOString()).toBe('2024-01-02T03:04:05.000Z');
    expect(ev("CAST(a AS DATE)", { a: '2024-05-06T10:00:00Z' })).toBe('2024-05-06');
    expect(ev("CAST(a AS TEXT[])", { a: [1, 2] })).toEqual(['1', '2']);
    expect(ev("CAST(a AS JSON)", { a: '{"k":1}' })).toEqual({ k: 1 });
    expect(ev('TRY_CAST(a AS BIGINT)', { a: 'x' })).toBe(null);
    expect(() => run('SELECT CAST(a AS BIGINT) AS x', [{ a: 'x' }])).toThrow("expected a number, got 'x'");
    expect(ev('COALESCE(a, b, 3)', { a: null, b: null })).toBe(3);
    expect(ev('NULLIF(a, 0)', { a: 0 })).toBe(null);
    expect(ev('NULLIF(a, 0)', { a: 2 })).toBe(2);
  });

  it('string functions', () => {
    const s = { s: '  Hello World  ', p: 'a,b,c' };
    expect(ev('lower(trim(s))', s)).toBe('hello world');
    expect(ev('upper(s)', s)).toBe('  HELLO WORLD  ');
    expect(ev('length(trim(s))', s)).toBe(11);
    expect(ev('char_length(p)', s)).toBe(5);
    expect(ev('substr(p, 3)', s)).toBe('b,c');
    expect(ev('substring(p FROM 1 FOR 3)', s)).toBe('a,b');
    expect(ev("trim(BOTH 'x' FROM 'xxaxx')")).toBe('a');
    expect(ev("replace(p, ',', ';')", s)).toBe('a;b;c');
    expect(ev("split_part(p, ',', 2)", s)).toBe('b');
    expect(ev("split_part(p, ',', -1)", s)).toBe('c');
    expect(ev("starts_with(p, 'a,')", s)).toBe(true);
    expect(ev("regexp_like(p, '^A', 'i')", s)).toBe(true);
    expect(ev("regexp_replace(p, '([a-z])', '<\\1>', 'g')", s)).toBe('<a>,<b>,<c>');
    expect(ev("position('b' IN p)", s)).toBe(3);
    expect(ev("concat_ws('-', 'a', NULL, 'b')")).toBe('a-b');
    expect(ev("lpad('7', 3, '0')")).toBe('007');
  });

  it('math functions', () => {
    expect(ev('abs(-2)')).toBe(2);
    expect(ev('round(2.5)')).toBe(3);
    expect(ev('round(-2.5)')).toBe(-3);
    expect(ev('round(3.14159, 2)')).toBe(3.14);
    expect(ev('floor(2.7)')).toBe(2);
    expect(ev('ceil(2.1)')).toBe(3);
    expect(ev('power(2, 10)')).toBe(1024);
    expect(ev('sqrt(16)')).toBe(4);
    expect(ev('greatest(1, 5, NULL, 3)')).toBe(5);
  });

  it('time functions and intervals', () => {
    const row = { ts: new Date('2024-03-10T12:34:56.789Z'), epoch: 1710074096 };
    expect((ev("date_trunc('minute', ts)", row) as Date).toISOString()).toBe('2024-03-10T12:34:00.000Z');
    expect((ev("date_trunc('month', ts)", row) as Date).toISOString()).toBe('2024-03-01T00:00:00.000Z');
    expect(ev('extract(year FROM ts)', row)).toBe(2024);
    expect(ev('EXTRACT(EPOCH FROM ts)', row)).toBe(1710074096.789);
    expect(ev("date_part('hour', ts)", row)).toBe(12);
    expect((ev('to_timestamp(epoch)', row) as Date).toISOString()).toBe('2024-03-10T12:34:56.000Z');
    expect(ev("to_char(ts, 'YYYY-MM-DD HH24:MI:SS.MS')", row)).toBe('2024-03-10 12:34:56.789');
    expect((ev("ts + INTERVAL '5 seconds'", row) as Date).toISOString()).toBe('2024-03-10T12:35:01.789Z');
    expect((ev("ts - INTERVAL '1' HOUR", row) as Date).toISOString()).toBe('2024-03-10T11:34:56.789Z');
    expect(ev("TIMESTAMP '2024-03-10T12:35:00Z' - ts", row)).toBe(3211);
    expect(ev('now() > ts', row)).toBe(true);
    expect(ev("ts > '2024-01-01T00:00:00Z'", row)).toBe(true);
  });

  it('JSON access', () => {
    const row = { p: { user: { name: 'ann', tags: ['x', 'y'] }, n: 3 }, t: '{"a":{"b":2}}' };
    expect(ev("p->'user'->>'name'", row)).toBe('ann');
    expect(ev("p->'user'->'tags'->1", row)).toBe('y');
    expect(ev("p['user']['name']", row)).toBe('ann');
    expect(ev("json_get(p, 'user', 'tags', 0)", row)).toBe('x');
    expect(ev("p->>'n'", row)).toBe('3');
    expect(ev("p->'missing'->>'x'", row)).toBe(null);
    expect(ev("t->'a'->>'b'", row)).toBe('2');
    expect(ev('p.user.name', row)).toBe('ann');
    const schema: SchemaSpec = { fields: [{ name: 'n', type: 'int64' }] };
    expect(issuesOf(() => compileSelect("SELECT n->'a'", schema))[0]!.message).toBe('-> needs a json value, got int');
  });

  it('metadata columns read the record', () => {
    const t = compileSelect('SELECT _key AS k, _offset AS o, _timestamp AS ts, a', { fields: [{ name: 'a', type: 'int64' }] }, { metadata: ['_offset'] });
    const out = t.transform([{ value: { a: 1 }, key: 'K', timestamp: 0, meta: { _offset: 7 } }]) as SluiceRecord[];
    expect(out[0]!.value).toEqual({ k: 'K', o: 7, ts: new Date(0), a: 1 });
    expect(issuesOf(() => compileSelect('SELECT _ofset', { fields: [{ name: 'a', type: 'int64' }] }, { metadata: ['_offset'] }))[0]!.message).toBe(
      "unknown column '_ofset'; did you mean '_offset'?",
    );
  });
});

describe('transforms on records', () => {
  const schema: SchemaSpec = {
    fields: [
      { name: 'id', type: 'int64' },
      { name: 'price', type: 'float64' },
      { name: 'sym', type: 'string' },
      { name: 'payload', type: 'json' },
    ],
  };

  it('projects, filters, keeps record metadata and gives the output schema', () => {
    const c = compileSelect(
      "SELECT id, price * 2 AS double_price, CASE WHEN price > 10 THEN 'high' ELSE 'low' END AS band, CAST(id AS TEXT) AS sid, payload->>'src' AS src WHERE price IS NOT NULL AND sym <> 'skip'",
      schema,
    );
    const input: SluiceRecord[] = [
      { value: { id: 1, price: 5, sym: 'a', payload: { src: 'x' } }, key: 'k1', timestamp: 5 },
      { value: { id: 2, price: null, sym: 'b', payload: null } },
      { value: { id: 3, price: 20, sym: 'skip', payload: null } },
      { value: { id: 4, price: 11, sym: 'c', payload: { src: 'y' } } },
    ];
    const out = c.transform(input) as SluiceRecord[];
    expect(out.map((r) => r.value)).toEqual([
      { id: 1, double_price: 10, band: 'low', sid: '1', src: 'x' },
      { id: 4, double_price: 22, band: 'high', sid: '4', src: 'y' },
    ]);
    expect(out[0]!.key).toBe('k1');
    expect(out[0]!.timestamp).toBe(5);
    expect(c.outputSchema).toEqual({
      fields: [
        { name: 'id', type: 'int64' },
        { name: 'double_price', type: 'float64' },
        { name: 'band', type: 'string' },
        { name: 'sid', type: 'string' },
        { name: 'src', type: 'string' },
      ],
    });
  });

  it('SELECT * passes rows through; *, expr adds columns', () => {
    expect(run('SELECT *', [{ a: 1 }])).toEqual([{ a: 1 }]);
    expect(run('SELECT *, a + 1 AS b FROM anything WHERE a = 1', [{ a: 1 }, { a: 2 }])).toEqual([{ a: 1, b: 2 }]);
  });

  it('a failing record goes to onError; the rest go on', () => {
    const bad: unknown[] = [];
    const c = compileSelect('SELECT CAST(a AS BIGINT) AS n', undefined, { onError: (r, e) => bad.push([r.value, e.message]) });
    expect((c.transform(recs({ a: '1' }, { a: 'x' }, { a: 3 })) as SluiceRecord[]).map((r) => r.value)).toEqual([{ n: 1 }, { n: 3 }]);
    expect(bad).toEqual([[{ a: 'x' }, "field 'undefined': expected a number, got 'x'".replace("field 'undefined': ", '')]]);
  });

  it('performance: 1M records through a projection and filter', () => {
    const rows: SluiceRecord[] = [];
    for (let i = 0; i < 1_000_000; i++) rows.push({ value: { id: i, price: i % 100, sym: i % 2 ? 'a' : 'b', payload: null } });
    const c = compileSelect("SELECT id, price * 1.1 AS p, upper(sym) AS s WHERE price > 50 AND sym = 'a'", schema);
    const t0 = performance.now();
    const out = c.transform(rows) as SluiceRecord[];
    const ms = performance.now() - t0;
    console.log(`sql bench: 1M records projection+filter in ${ms.toFixed(0)} ms (${((1e6 / ms) * 1000).toFixed(0)} records/s), ${out.length} kept`);
    expect(out.length).toBe(250_000);
  });
});

describe('lookup joins', () => {
  const users: Record<string, Record<string, unknown>> = { '1': { name: 'ann', tier: 'gold' }, '2': { name: 'bob', tier: 'free' } };
  const calls: string[][] = [];
  const fake: LookupTable = {
    get: async (k) => users[k],
    getMany: async (keys) => {
      calls.push(keys);
      return keys.map((k) => users[k]);
    },
    close: async () => undefined,
  };
  const schema: SchemaSpec = { fields: [{ name: 'uid', type: 'int64' }, { name: 'amount', type: 'float64' }] };

  it('inner join batches distinct keys into one getMany and drops misses', async () => {
    calls.length = 0;
    const c = compileSelect('SELECT o.amount, u.name, u.id FROM orders o JOIN users u ON o.uid = u.id WHERE o.amount > 0', schema, { lookups: { users: { table: fake } } });
    expect(c.async).toBe(true);
    const out = await c.transform(recs({ uid: 1, amount: 5 }, { uid: 3, amount: 1 }, { uid: 1, amount: 2 }, { uid: 2, amount: -1 }));
    expect(out.map((r) => r.value)).toEqual([
      { amount: 5, name: 'ann', id: '1' },
      { amount: 2, name: 'ann', id: '1' },
    ]);
    // the record the WHERE rejects is filtered before the lookup
    expect(calls).toEqual([['1', '3']]);
  });

  it('LEFT JOIN keeps misses with NULLs; extra ON conditions filter the looked-up row', async () => {
    const c = compileSelect("SELECT uid, users.name FROM orders LEFT JOIN users ON users.id = uid AND users.tier = 'gold'", schema, { lookups: { users: { table: fake } } });
    const out = await c.transform(recs({ uid: 1, amount: 1 }, { uid: 2, amount: 1 }, { uid: 9, amount: 1 }));
    expect(out.map((r) => r.value)).toEqual([
      { uid: 1, name: 'ann' },
      { uid: 2, name: null },
      { uid: 9, name: null },
    ]);
  });

  it('checks the join at compile time', () => {
    expect(issuesOf(() => compileSelect('SELECT * FROM o JOIN userz ON o.uid = userz.id', schema, { lookups: { users: {} } }))[0]!.message).toMatch(/'userz' is not a lookup table/);
    expect(issuesOf(() => compileSelect('SELECT * FROM o JOIN users ON o.uid > users.id', schema, { lookups: { users: {} } }))[0]!.message).toMatch(/needs an equality/);
    expect(issuesOf(() => compileSelect('SELECT users.nme FROM o JOIN users ON o.uid = users.id', schema, { lookups: { users: { schema: { fields: [{ name: 'id', type: 'string' }, { name: 'name', type: 'string' }] } } } }))[0]!.message).toBe(
      "unknown column 'nme' in users; did you mean 'name'?",
    );
  });
});

describe('SQL documents compile to the same model as YAML', () => {
  const strip = (d: { pipelines: Array<Record<string, unknown>> }) => d.pipelines.map(({ transform: _t, ...p }) => p);

  it('Kafka source (the Laminar seed) to a file sink, generator to stdout', () => {
    const sql = `
      CREATE TABLE events (
          id BIGINT,
          timestamp TIMESTAMP,
          user_id TEXT,
          event_type TEXT,
          off BIGINT METADATA FROM '_offset',
          _partition INT
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
      INSERT INTO archive SELECT * FROM events;

      CREATE TABLE ticks (n BIGINT NOT NULL, PRIMARY KEY (n)) WITH (connector = 'generator', count = 10, template = 'sequence');
      CREATE TABLE console WITH (connector = 'stdout');
      INSERT INTO console SELECT * FROM ticks;
    `;
    const yaml = `
tables:
  events:
    connector: kafka
    config: { bootstrap_servers: 'localhost:9092', topic: events, source.offset: earliest }
    format: json
    schema:
      fields:
        - { name: id, type: BIGINT }
        - { name: timestamp, type: TIMESTAMP }
        - { name: user_id, type: TEXT }
        - { name: event_type, type: TEXT }
    metadata_fields: { off: _offset, _partition: _partition }
  archive: { connector: file, config: { path: out/events.jsonl } }
  ticks:
    connector: generator
    config: { count: 10, template: sequence }
    schema: { fields: [{ name: n, type: BIGINT, nullable: false }], primary_key: [n] }
  console: { connector: stdout }
pipelines:
  - { name: archive-events, source: events, sink: archive }
  - { name: console, source: ticks, sink: console }
`;
    const a = compileSqlText(sql, 'p.sql', { env: {} });
    const b = loadConfigText(yaml, 'p.yaml', { env: {} });
    expect(a.pipelines).toEqual(b.pipelines);
    expect(a.pipelines[0]!.source.metadata_fields).toEqual({ off: '_offset', _partition: '_partition' });
    expect(a.pipelines[0]!.transform).toBeUndefined();
  });

  it('INSERT ... SELECT becomes a transform the runtime hook compiles', async () => {
    const sql = `
      CREATE TABLE src (id BIGINT, price DOUBLE, tags TEXT[], amount DECIMAL(10,2)) WITH (connector = 'memory', topic = 'in', type = 'source');
      CREATE TABLE dst (id BIGINT, band TEXT) WITH (connector = 'memory', topic = 'out', type = 'sink');
      INSERT INTO dst SELECT id, CASE WHEN price > '\${LIMIT}' THEN 'hi' ELSE 'lo' END FROM src WHERE id % 2 = 0;
    `;
    const d = compileSqlText(sql, 'p.sql', { env: { LIMIT: '10' } });
    const p = d.pipelines[0]!;
    expect(p.name).toBe('dst');
    expect(p.source.schema!.fields.map((f) => f.type)).toEqual(['int64', 'float64', 'array', 'decimal']);
    expect(p.transform).toBe("SELECT id AS id, CASE WHEN (price > '10') THEN 'hi' ELSE 'lo' END AS band FROM src WHERE ((id % 2) = 0)");
    const t = createTransform(p, { tables: d.tables, profiles: d.profiles })!;
    expect(t.async).toBe(false);
    expect((t.transform(recs({ id: 2, price: 11 }, { id: 3, price: 1 }, { id: 4, price: 1 })) as SluiceRecord[]).map((r) => r.value)).toEqual([
      { id: 2, band: 'hi' },
      { id: 4, band: 'lo' },
    ]);
  });

  it('aliases, profiles and did-you-mean go through the YAML path, at the SQL position', () => {
    expect(issuesOf(() => compileSqlText("CREATE TABLE g WITH (connector = 'generator',\n  templte = 'counter');", 'p.sql'))).toEqual([
      { message: "unknown option 'templte'; did you mean 'template'?", at: '2:3' },
    ]);
    expect(issuesOf(() => compileSqlText("CREATE TABLE g WITH (connector = 'generatr');", 'p.sql'))[0]).toEqual({ message: "unknown connector 'generatr'; did you mean 'generator'?", at: '1:22' });
    const d = compileSqlText(
      `CREATE CONNECTION PROFILE files WITH (connector = 'file', fsync = 'false');
       CREATE TABLE g WITH (connector = 'generator', message_count = 3);
       CREATE TABLE f WITH (connection_profile = 'files', path = 'o.jsonl');
       INSERT INTO f SELECT * FROM g;`,
      'p.sql',
    );
    expect(d.pipelines[0]!.source.options.count).toBe(3);
    expect(d.pipelines[0]!.sink!.profile).toBe('files');
    expect(d.pipelines[0]!.sink!.options.fsync).toBe(false);
    expect(issuesOf(() => compileSqlText("CREATE TABLE f WITH (connection_profile = 'fils', path = 'o');", 'p.sql', { profiles: { files: { connector: 'file', config: {} } } }))[0]).toEqual({
      message: "unknown connection profile 'fils'; did you mean 'files'?",
      at: '1:22',
    });
  });

  it('reports SQL-level mistakes at their tokens', () => {
    const base = "CREATE TABLE s (price DOUBLE) WITH (connector = 'generator');\nCREATE TABLE k WITH (connector = 'stdout');\n";
    expect(issuesOf(() => compileSqlText(`${base}INSERT INTO k SELECT pricee FROM s;`, 'p.sql'))).toEqual([{ message: "unknown column 'pricee'; did you mean 'price'?", at: '3:22' }]);
    expect(issuesOf(() => compileSqlText(`${base}INSERT INTO k SELECT * FROM ss;`, 'p.sql'))).toEqual([{ message: "unknown table 'ss'; did you mean 's'? (define it with CREATE TABLE ... WITH (...))", at: '3:29' }]);
    expect(issuesOf(() => compileSqlText(`${base}INSERT INTO k SELECT * FROM s JOIN k ON s.price = k.id;`, 'p.sql'))[0]!.message).toMatch(/connector 'stdout' cannot look rows up by key/);
    expect(issuesOf(() => compileSqlText("CREATE TABLE s (price DOUBLE) WITH (connector = 'generator', type = 'sink');", 'p.sql'))[0]!.message).toMatch(/cannot be used as a sink/);
    expect(issuesOf(() => compileSqlText("CREATE TABLE s (price DOUBL) WITH (connector = 'generator');", 'p.sql'))[0]).toMatchObject({ at: '1:23' });
    expect(issuesOf(() => compileSqlText("CREATE TABLE s (a TEXT) WITH (connector = 'generator', x = '${NOPE}');", 'p.sql', { env: {} }))[0]).toEqual({
      message: "environment variable 'NOPE' is not set (write ${NOPE:-default} to give a default)",
      at: '1:60',
    });
  });

  it('joins a redis lookup table declared in SQL', async () => {
    const sql = `
      CREATE TABLE orders (uid BIGINT, amount DOUBLE) WITH (connector = 'memory', topic = 'o');
      CREATE TABLE users (id TEXT, name TEXT) WITH (connector = 'redis', url = 'redis://localhost:6379', key_prefix = 'user:', type = 'lookup');
      CREATE TABLE out WITH (connector = 'memory', topic = 'x');
      INSERT INTO out SELECT o.amount, u.name FROM orders o JOIN users u ON o.uid = u.id;
    `;
    const d = compileSqlText(sql, 'p.sql');
    const p = d.pipelines[0]!;
    expect(p.transform).toBe('SELECT o.amount AS amount, u.name AS name FROM orders AS o JOIN users AS u ON (o.uid = u.id)');
    const t = createTransform(p, { tables: d.tables, lookups: { users: { get: async () => undefined, getMany: async (k) => k.map((x) => ({ name: `n${x}` })), close: async () => undefined } } })!;
    expect(t.async).toBe(true);
    expect((await t.transform(recs({ uid: 5, amount: 1 }))).map((r) => r.value)).toEqual([{ amount: 1, name: 'n5' }]);
    expect(issuesOf(() => compileSqlText(sql.replace("key_prefix = 'user:'", "key_prefx = 'user:'"), 'p.sql'))[0]).toMatchObject({
      message: "unknown option 'key_prefx'; did you mean 'key_prefix'?",
      at: '3:106',
    });
  });

  it('the docs/sql.md example equals its YAML twin', () => {
    const doc = readFileSync(new URL('../../docs/sql.md', import.meta.url), 'utf8');
    const sql = /```sql\n(-- trades\.sql[\s\S]*?)```/.exec(doc)![1]!;
    const yaml = /```yaml\n(# trades\.yaml[\s\S]*?)```/.exec(doc)![1]!;
    const a = compileSqlText(sql, 'trades.sql', { env: {} });
    const b = loadConfigText(yaml, 'trades.yaml', { env: {} });
    expect(strip(a as never)).toEqual(strip(b as never));
    expect(a.pipelines[0]!.transform).toBe('SELECT id AS id, upper(sym) AS sym, (price * qty) AS notional, file AS file FROM trades WHERE (price > 0)');
    expect(createTransform(b.pipelines[0]!, b)!.outputSchema).toEqual(createTransform(a.pipelines[0]!, a)!.outputSchema);
  });
});

describe('pipeline settings (SET) and tables defined elsewhere', () => {
  const tables = `CREATE TABLE g WITH (connector = 'generator', count = 5, interval = 0, type = 'source');
CREATE TABLE o WITH (connector = 'file', path = 'o.jsonl', type = 'sink', format = 'json');
CREATE TABLE bad WITH (connector = 'file', path = 'bad.jsonl', type = 'sink', format = 'json');
`;

  it("SET 'pipeline.*' gives batch, buffer, retry and dlq to the INSERTs after it, as YAML names them", () => {
    const doc = compileSqlText(
      `${tables}INSERT INTO o SELECT * FROM g;
SET 'pipeline.batch.max_records' = '500';
SET pipeline.batch.linger = '20ms';
SET 'pipeline.buffer.max_records' = 2000;
SET 'pipeline.retry.max_attempts' = '3';
SET 'pipeline.retry.initial_backoff' = '50ms';
SET 'pipeline.dlq' = 'bad';
-- name: second
INSERT INTO o SELECT * FROM g;
RESET 'pipeline.batch.max_records';
-- name: third
INSERT INTO o SELECT * FROM g;
RESET;
-- name: fourth
INSERT INTO o SELECT * FROM g;`,
      'p.sql',
    );
    const [first, second, third, fourth] = doc.pipelines;
    expect(first!.batch.max_records).toBe(1000);
    expect(first!.dlq).toBeUndefined();
    expect(second!.batch).toMatchObject({ max_records: 500, linger_ms: 20 });
    expect(second!.buffer.max_records).toBe(2000);
    expect(second!.retry).toMatchObject({ max_attempts: 3, initial_backoff_ms: 50 });
    expect(second!.dlq).toMatchObject({ connector: 'file', table: 'bad' });
    // A dead-letter queue makes dlq the source's default bad_data policy, as in YAML.
    expect(second!.source.bad_data).toBe('dlq');
    expect(third!.batch.max_records).toBe(1000);
    expect(third!.batch.linger_ms).toBe(20);
    expect(fourth!.batch.linger_ms).toBe(5);
    expect(fourth!.dlq).toBeUndefined();
  });

  it('reports unknown settings, bad values and wrong dlq tables at their tokens', () => {
    expect(issuesOf(() => compileSqlText(`${tables}SET 'pipeline.batch.max_recrods' = '5';\nINSERT INTO o SELECT * FROM g;`, 'p.sql'))).toEqual([
      { message: expect.stringContaining("unknown setting 'pipeline.batch.max_recrods'; did you mean 'pipeline.batch.max_records'?"), at: '4:5' },
    ]);
    const bad = issuesOf(() => compileSqlText(`${tables}SET 'pipeline.batch.max_records' = 'lots';\nINSERT INTO o SELECT * FROM g;`, 'p.sql'));
    expect(bad).toHaveLength(1);
    expect(bad[0]!.at).toBe('4:36');
    expect(issuesOf(() => compileSqlText(`${tables}SET 'pipeline.dlq' = 'g';\nINSERT INTO o SELECT * FROM g;`, 'p.sql'))).toEqual([
      { message: "table 'g' is declared type = 'source'; the dead-letter queue needs a sink table", at: '4:22' },
    ]);
    expect(issuesOf(() => compileSqlText(`${tables}SET 'pipeline.dlq' = 'nope';\nINSERT INTO o SELECT * FROM g;`, 'p.sql'))[0]!.at).toBe('4:22');
    expect(issuesOf(() => compileSqlText(`SET 'pipeline.batch.max_records' 5;`, 'p.sql'))).toEqual([{ message: "expected '=' after 'pipeline.batch.max_records' but found '5'", at: '1:34' }]);
  });

  it('reads and writes tables given by the caller (the control plane catalog) by name', () => {
    const catalog = {
      orders: { connector: 'generator', config: { count: 3, interval: 0, template: 'sequence', type: 'source' }, schema: { fields: [{ name: 'id', type: 'int64' }] } },
      out: { connector: 'file', config: { path: 'x.jsonl', type: 'sink' }, format: 'json' },
    };
    const doc = compileSqlText('INSERT INTO OUT SELECT id * 2 AS twice FROM orders WHERE id > 0;', 'p.sql', { tables: catalog });
    expect(doc.pipelines[0]).toMatchObject({ source: { connector: 'generator', table: 'orders' }, sink: { connector: 'file', table: 'out' } });
    expect(doc.pipelines[0]!.transform).toContain('(id * 2) AS twice');
    // The catalog's declared columns type the query.
    expect(issuesOf(() => compileSqlText('INSERT INTO out SELECT idd FROM orders;', 'p.sql', { tables: catalog }))).toEqual([
      { message: "unknown column 'idd'; did you mean 'id'?", at: '1:24' },
    ]);
    expect(issuesOf(() => compileSqlText('INSERT INTO orders SELECT * FROM out;', 'p.sql', { tables: catalog }))[0]!.message).toMatch(/type = 'source'/);
    expect(issuesOf(() => compileSqlText('INSERT INTO out SELECT * FROM ordrs;', 'p.sql', { tables: catalog }))[0]!.message).toMatch(/did you mean 'orders'/);
  });

  it('lists the tables and profiles a query uses without defining them', () => {
    const refs = sqlReferences(`CREATE TABLE local WITH (connector = 'file', path = 'a', connection_profile = 'files');
SET 'pipeline.dlq' = 'dead';
INSERT INTO local SELECT o.id FROM Orders o JOIN users u ON u.id = o.uid;`);
    expect([...refs.tables].sort()).toEqual(['Orders', 'dead', 'users']);
    expect([...refs.profiles]).toEqual(['files']);
    expect(sqlReferences('INSERT INTO').tables.size).toBe(0);
  });
});
