// Random mutations of valid YAML pipeline files: loading gives a valid document or a ConfigError whose every issue
// has a file:line:col and a readable message; `sluice check` on a sample exits 2 without a stack trace.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import { parse, stringify } from 'yaml';
import { loadConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/core/errors.js';
import { runCli, tempDir } from '../support/cli.js';
import { bounded, expectReadable, mutatedText, params, STACK_LINE } from './support.js';

const FILES: Record<string, string> = {
  'orders.yaml': `# CSV to JSON lines with a schema and a dead-letter file
name: orders
source:
  connector: file
  config: { path: 'data/orders-*.csv', mode: follow, poll_interval: 500ms }
  format: { name: csv, delimiter: ';', null_value: 'NULL' }
  schema:
    fields:
      - { name: order_id, type: int64, nullable: false }
      - { name: customer, type: string }
      - { name: amount, type: decimal, precision: 12, scale: 2 }
      - { name: placed_at, type: timestamp, format: 'YYYY-MM-DD HH:mm:ss' }
      - { name: tags, type: 'array<string>' }
    primary_key: [order_id]
    unknown_fields: drop
  bad_data: dlq
  metadata_fields: { line: _line }
sink:
  connector: file
  config: { path: 'out/orders-{date}.jsonl', rotate_size: 100MB }
dlq:
  connector: file
  config: { path: out/orders-dead-letters.jsonl }
batch: { max_records: 500, linger: 10ms }
transform: SELECT order_id, upper(customer) AS customer, amount * 2 AS doubled FROM orders WHERE amount > 10
`,
  'multi.yaml': `connection_profiles:
  local: { connector: file, config: { fsync: false } }
tables:
  events: { connector: generator, config: { template: user_logins, count: 10 }, format: json }
  out: { profile: local, config: { path: out.jsonl, type: sink } }
pipelines:
  - name: p
    source: { table: events, config: { count: 3 } }
    sink: out
  - name: routed
    source: { connector: file, config: { path: feed.jsonl } }
    routes:
      - name: trades
        when: { field: stream, matches: '@trade$' }
        payload_path: data
        schema: { fields: { p: float64, q: float64 } }
        sink: { connector: file, config: { path: trades.jsonl } }
      - name: depth
        when: { field: stream, in: [btcusdt@depth, ethusdt@depth] }
        sink: { connector: blackhole }
  - name: chained
    source: { connector: memory, config: { topic: 'auth/#' } }
    sink: { connector: file, config: { path: logins.jsonl }, format: { avro: { schema: '{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}', confluent_wire_format: false } } }
`,
};

function load(text: string, file: string): void {
  bounded(3_000, `loading ${text.length} bytes of YAML`, () => {
    try {
      loadConfigText(text, file, { env: { HOME: '/home/u' } });
    } catch (e) {
      // The documented error type, and nothing else.
      if (!(e instanceof ConfigError)) throw new Error(`loading threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.stack ?? String(e)}`);
      expect(e.issues.length).toBeGreaterThan(0);
      for (const i of e.issues) {
        expect(i.loc, `issue without a location: ${i.message}`).toBeDefined();
        expect(i.loc!.file).toBe(file);
        expect(i.loc!.line).toBeGreaterThanOrEqual(1);
        expect(i.loc!.col).toBeGreaterThanOrEqual(1);
        expectReadable(i.message);
      }
    }
  });
}

/** YAML-significant pieces and values of the wrong kind. */
const yamlPiece = fc.oneof(
  fc.constantFrom(':', ' ', '\n', '  ', '- ', '{', '}', '[', ']', ',', '#', '&a ', '*a', '!!str ', '!!binary ', '|', '>', "'", '"', '\t', '${X}', '${', '%YAML 1.2\n---\n', '<<: *a\n', '? ', '@', '`'),
  fc.string({ maxLength: 8 }),
  fc.constantFrom('-1', '0', '1e999', 'null', '~', 'true', '[]', '{}', '0x1F', '.inf', '99999999999999999999', '1h', '5 MB', 'NaN'),
);

/** Structure-level changes: a value somewhere in the document replaced by a random JSON value, or a key removed. */
function structuralMutation(text: string) {
  const doc = parse(text) as unknown;
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, p: (string | number)[]) => {
    paths.push(p);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...p, i]));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...p, k]);
  };
  walk(doc, []);
  return fc.tuple(fc.constantFrom(...paths.filter((p) => p.length)), fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant(undefined))).map(([path, value]) => {
    const copy = structuredClone(doc) as Record<string | number, unknown>;
    let cur = copy;
    for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
    const last = path[path.length - 1]!;
    if (value === undefined && !Array.isArray(cur)) delete cur[last];
    else cur[last] = value;
    return stringify(copy);
  });
}

describe('mutated YAML pipeline files', () => {
  it('the base files are valid', () => {
    for (const [file, text] of Object.entries(FILES)) expect(() => loadConfigText(text, file, { env: {} })).not.toThrow();
  });

  for (const [file, text] of Object.entries(FILES)) {
    it(`${file}: text mutations give a valid config or located ConfigError issues`, () => {
      fc.assert(
        fc.property(mutatedText(text, yamlPiece), (t) => load(t, file)),
        params(120),
      );
    });

    it(`${file}: values replaced by random JSON values, keys removed`, () => {
      fc.assert(
        fc.property(structuralMutation(text), (t) => load(t, file)),
        params(120),
      );
    });
  }

  it('pathological YAML: alias bombs, deep nesting, huge scalars, binary, invalid UTF-16 surrogates', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 12; i++) bomb.push(`${'abcdefghijklm'[i]}: &${'abcdefghijklm'[i]} [${Array(9).fill(`*${'abcdefghijklm'[i - 1]}`).join(', ')}]`);
    const cases = [
      bomb.join('\n') + '\nsource: { connector: generator }\nsink: { connector: blackhole }\n',
      `source: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`,
      `source: ${'{a: '.repeat(5_000)}1${'}'.repeat(5_000)}\n`,
      `source: { connector: generator, config: { template: ${'x'.repeat(1_000_000)} } }\nsink: { connector: blackhole }\n`,
      `source: { connector: generator }\nsink: { connector: "\\ud800" }\n`,
      '\u0000\u0001\u0002',
      '---\n---\n---\n',
      `source: !!binary aGVsbG8=\nsink: { connector: blackhole }\n`,
      `source: { connector: generator, config: { count: !!float .nan } }\nsink: { connector: blackhole }\n`,
    ];
    for (const c of cases) load(c, 'x.yaml');
  });
});

describe('sluice check on mutated files', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeAll(() => {
    tmp = tempDir();
  });
  afterAll(() => tmp.cleanup());

  it('exits 2 with file:line:col errors and no stack trace, for a sample of invalid mutations', async () => {
    const text = FILES['orders.yaml']!;
    // Only mutations that are invalid (checked in-process first), a few of them: each check is a process start.
    const invalid = fc
      .sample(fc.oneof(mutatedText(text, yamlPiece), structuralMutation(text)), { seed: 7, numRuns: 40 })
      .filter((t) => {
        try {
          loadConfigText(t, 'm.yaml', { env: process.env });
          return false;
        } catch {
          return true;
        }
      })
      .slice(0, 3);
    expect(invalid.length).toBe(3);
    // An alias without its anchor threw a ReferenceError out of the loader (a stack trace from `check`).
    invalid.push('source: { connector: generator, config: *nowhere }\nsink: { connector: blackhole }\n');
    for (const [i, t] of invalid.entries()) {
      tmp.write(`m${i}.yaml`, t);
      const r = await runCli(['check', `m${i}.yaml`], { cwd: tmp.dir, timeoutMs: 20_000 });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`m${i}\\.yaml:\\d+:\\d+: `));
      expect(r.stderr + r.stdout).not.toMatch(STACK_LINE);
    }
  });
});
