// Random and mutated JSON bodies against the control plane's create endpoints, in-process (fastify inject): every
// answer is a success or a 4xx with a JSON error naming the paths at fault; never a 500, never a stack trace.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/server/app.js';
import { openStore, type ControlStore } from '../../src/server/store.js';
import { Scrubber, SecretBox } from '../../src/server/secrets.js';
import type { PipelineManager } from '../../src/server/manager.js';
import { silentLog } from '../../src/testing/harness.js';
import { expectReadable, mutatedText, params, STACK_LINE } from './support.js';

let dir: string;
let store: ControlStore;
let app: FastifyInstance;
let manager: PipelineManager;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-bad-api-'));
  store = await openStore(`sqlite:${join(dir, 'sluice.db')}`);
  const built = await buildApp({ store, box: new SecretBox(undefined), scrubber: new Scrubber(), log: silentLog, dataDir: dir, tokens: [] });
  app = built.app;
  manager = built.manager;
  await built.ready();
});
afterAll(async () => {
  await app?.close();
  await manager?.shutdown();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const VALID: Record<string, unknown> = {
  '/v1/connection_profiles': { name: 'local', connector: 'file', config: { fsync: false }, description: 'local files' },
  '/v1/connection_tables': {
    name: 'orders',
    connector: 'file',
    config: { path: 'in/orders.csv', type: 'source' },
    schema: { format: { csv: { delimiter: ';' } }, fields: [{ name: 'id', type: 'int64', nullable: false }, { name: 'amount', type: 'decimal', precision: 10, scale: 2 }], bad_data: 'drop' },
  },
  // Created stopped: a pipeline that happens to be valid must not start running in the test.
  '/v1/pipelines?start=false': {
    name: 'p1',
    source: { connector: 'generator', config: { template: 'iot', count: 5 }, schema: { fields: [{ name: 'device', type: 'string' }] } },
    sink: { connector: 'file', config: { path: 'out/x.jsonl' }, format: 'json' },
    batch: { max_records: 100 },
    transform: 'SELECT device FROM source WHERE device IS NOT NULL',
  },
};
const SQL_BODY = {
  name: 'sqlp',
  query: "CREATE TABLE t (n BIGINT) WITH (connector = 'generator', count = 3, template = 'sequence'); CREATE TABLE o WITH (connector = 'blackhole'); INSERT INTO o SELECT n FROM t;",
};

let n = 0;
/** Posts a body (an object, or raw text as JSON) and checks the answer's shape. */
async function post(url: string, body: unknown, raw = false, onError?: (issues: Array<{ path: string; message: string; line?: number; col?: number }>) => void): Promise<number> {
  const res = await app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json' },
    payload: raw ? (body as string) : JSON.stringify(body),
  });
  const text = res.body;
  expect(res.statusCode, `${url} answered ${res.statusCode}: ${text.slice(0, 500)}`).toBeLessThan(500);
  expect(text).not.toMatch(STACK_LINE);
  if (res.statusCode >= 400) {
    const json = JSON.parse(text) as { error: { status: number; code: string; message: string; issues?: Array<{ path: string; message: string; line?: number; col?: number }> } };
    onError?.(json.error.issues ?? []);
    expect(json.error.status).toBe(res.statusCode);
    expectReadable(json.error.message);
    for (const i of json.error.issues ?? []) {
      expect(typeof i.path).toBe('string');
      expectReadable(i.message);
    }
  } else {
    // A body that was accepted is removed again so names stay free for the next run.
    const id = (JSON.parse(text) as { id: string }).id;
    const base = url.split('?')[0]!;
    const del = await app.inject({ method: 'DELETE', url: `${base}/${id}` });
    expect(del.statusCode).toBeLessThan(300);
  }
  n++;
  return res.statusCode;
}

/** The valid body with one value somewhere replaced by a random JSON value (or removed). */
function structural(valid: unknown): fc.Arbitrary<unknown> {
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, p: (string | number)[]) => {
    paths.push(p);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...p, i]));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...p, k]);
  };
  walk(valid, []);
  const wild = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.constantFrom('', ' ', '../../etc/passwd', '${HOME}', '\u0000', 'x'.repeat(10_000), -1, 1e308, 2 ** 53 + 1, [], {}, null, true),
    fc.constant(undefined),
  );
  return fc.tuple(fc.constantFrom(...paths.filter((p) => p.length)), wild, fc.string({ maxLength: 12 })).map(([path, value, extraKey]) => {
    const copy = structuredClone(valid) as Record<string | number, unknown>;
    let cur = copy;
    for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
    const last = path[path.length - 1]!;
    if (value === undefined && !Array.isArray(cur)) delete cur[last];
    else if (typeof last === 'string' && extraKey && value === null) cur[extraKey] = 'unexpected';
    else cur[last] = value;
    return copy;
  });
}

describe('control plane create endpoints with bad bodies', () => {
  it('the valid bodies are accepted', async () => {
    for (const [url, body] of Object.entries(VALID)) expect(await post(url, body)).toBe(201);
  });

  for (const [url, valid] of Object.entries(VALID)) {
    it(`POST ${url}: random JSON values, mutated bodies and broken JSON text are 4xx with JSON errors`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.jsonValue({ maxDepth: 4 }).map((b) => ({ b, raw: false })), structural(valid).map((b) => ({ b, raw: false })), mutatedText(JSON.stringify(valid)).map((b) => ({ b, raw: true }))), async ({ b, raw }) => {
          await post(url, b, raw);
        }),
        params(150),
      );
    });
  }

  it('POST /v1/pipelines with mutated SQL queries: 4xx naming line and column, never 500', async () => {
    await fc.assert(
      fc.asyncProperty(mutatedText(SQL_BODY.query), async (query) => {
        await post('/v1/pipelines?start=false', { ...SQL_BODY, query }, false, (issues) => {
          expect(issues.length).toBeGreaterThan(0);
          for (const i of issues) {
            expect(i.line, i.message).toBeGreaterThanOrEqual(1);
            expect(i.col, i.message).toBeGreaterThanOrEqual(1);
          }
        });
      }),
      params(100),
    );
  });

  it('oversized and deeply nested bodies', async () => {
    expect(await post('/v1/connection_profiles', `{"name":"a","connector":"file","config":{"x":"${'y'.repeat(2 * 1024 * 1024)}"}}`, true)).toBe(413);
    const deep = `{"name":"a","connector":"file","config":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`;
    expect(await post('/v1/connection_profiles', deep, true)).toBeGreaterThanOrEqual(400);
    const deepPipeline = `{"name":"d","source":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`;
    expect(await post('/v1/pipelines?start=false', deepPipeline, true)).toBeGreaterThanOrEqual(400);
    const deepArr = `{"name":"t","connector":"file","config":{"path":"x"},"schema":{"fields":${'['.repeat(50_000)}${']'.repeat(50_000)}}}`;
    expect(await post('/v1/connection_tables', deepArr, true)).toBeGreaterThanOrEqual(400);
  });
});
