// End to end over HTTP against a real `sluice serve` process (the built CLI), with the SQLite store and again with
// PostgreSQL. Secrets are checked by scanning every response body and the process output.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request as httpRequest } from 'node:http';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ensureService } from '../testing/services.js';

const ROOT = resolve(import.meta.dirname, '../..');
// The main CLI gets `serve` through one registration line; until then the server's own entry runs the same command.
const ENTRY = readFileSync(join(ROOT, 'dist/cli/main.js'), 'utf8').includes('registerServeCommand') ? join(ROOT, 'bin/sluice.js') : join(ROOT, 'dist/server/main.js');
const SQL_AVAILABLE = existsSync(join(ROOT, 'dist/sql/index.js'));

const SECRET = 'hunter2-Sup3rSecret';
const TOKEN = 'tok-' + randomBytes(8).toString('hex');
const SECRET_KEY = 'k-' + randomBytes(8).toString('hex');

interface Server {
  child: ChildProcess;
  port: number;
  out: () => string;
  url: string;
}

const allText: string[] = [];

async function startServer(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const child = spawn(process.execPath, [ENTRY, '--log-format', 'json', 'serve', '--port', '0', ...args], {
    cwd,
    env: { ...process.env, NO_COLOR: '1', SLUICE_SECRET_KEY: SECRET_KEY, SLUICE_RESTART_BACKOFF_MS: '200', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const port = await new Promise<number>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`server did not start:\n${out}`)), 15_000);
    const check = () => {
      const m = /"port":(\d+)[^\n]*sluice server listening/.exec(out);
      if (m) {
        clearTimeout(t);
        res(Number(m[1]));
      }
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.on('exit', (code) => rej(new Error(`server exited with ${code}:\n${out}`)));
  });
  const s: Server = { child, port, out: () => out, url: `http://127.0.0.1:${port}` };
  await waitFor(async () => (await fetch(`${s.url}/readyz`)).status === 200);
  return s;
}

async function stopServer(s: Server, signal: NodeJS.Signals = 'SIGTERM') {
  if (s.child.exitCode !== null) return;
  const done = new Promise((r) => s.child.once('exit', r));
  s.child.kill(signal);
  await done;
  allText.push(s.out());
}

async function waitFor(fn: () => Promise<boolean> | boolean, timeoutMs = 15_000, what = 'condition') {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function client(s: () => Server, token?: string) {
  return async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any; text: string; headers: Headers }> => {
    const res = await fetch(`${s().url}${path}`, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    allText.push(text);
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text, headers: res.headers };
  };
}

function apiSuite(label: string, storeArgs: () => string[], setup?: () => Promise<void>, teardown?: () => Promise<void>) {
  describe(`control plane API (${label})`, () => {
    let dir: string;
    let server: Server;
    const api = client(() => server, TOKEN);
    const anon = client(() => server);
    const ids: Record<string, string> = {};

    beforeAll(async () => {
      await setup?.();
      dir = mkdtempSync(join(tmpdir(), 'sluice-serve-'));
      writeFileSync(join(dir, 'in.jsonl'), Array.from({ length: 50 }, (_, i) => JSON.stringify({ id: i, name: `n${i}` })).join('\n') + '\n');
      server = await startServer(['--data-dir', join(dir, 'data'), '--api-token', TOKEN, ...storeArgs()], dir);
    }, 60_000);
    afterAll(async () => {
      if (server) await stopServer(server);
      await teardown?.();
      rmSync(dir, { recursive: true, force: true });
    });

    it('health, readiness, docs and auth', async () => {
      expect((await anon('GET', '/healthz')).status).toBe(200);
      expect((await anon('GET', '/readyz')).json.status).toBe('ready');
      const denied = await anon('GET', '/v1/connectors');
      expect(denied.status).toBe(401);
      expect(denied.json.error.code).toBe('unauthorized');
      expect((await client(() => server, 'wrong')('GET', '/v1/connectors')).status).toBe(401);
      const c = await api('GET', '/v1/connectors');
      expect(c.status).toBe(200);
      const file = c.json.data.find((x: any) => x.name === 'file');
      expect(file).toMatchObject({ source: true, sink: true, testable: true });
      expect(file.sourceOptions.properties.path).toBeDefined();
      const openapi = await anon('GET', '/docs/json');
      expect(openapi.status).toBe(200);
      expect(Object.keys(openapi.json.paths)).toContain('/v1/pipelines/{id}/preview');
      expect((await anon('GET', '/docs/')).status).toBe(200);
      expect((await api('GET', '/v1/nope')).status).toBe(404);
    });

    it('connection profiles: create, validate, list, get, test, autocomplete', async () => {
      const r = await api('POST', '/v1/connection_profiles', { name: 'kafka_prod', connector: 'kafka', config: { bootstrapServers: 'localhost:1', username: 'app', password: SECRET } });
      expect(r.status).toBe(201);
      expect(r.json.config.password).toBe('********');
      expect(r.json.id).toMatch(/^prof_/);
      ids.kafka = r.json.id;
      const files = await api('POST', '/v1/connection_profiles', { name: 'local_files', connector: 'file', config: { fsync: false } });
      expect(files.status).toBe(201);
      ids.files = files.json.id;
      expect((await api('POST', '/v1/connection_profiles', { name: 'local_files', connector: 'file', config: {} })).status).toBe(409);
      const invalid = await api('POST', '/v1/connection_profiles', { name: 'x', connector: 'file', config: { fsink: true } });
      expect(invalid.status).toBe(400);
      expect(invalid.json.error.issues).toEqual([{ path: 'config.fsink', message: "unknown option 'fsink'; did you mean 'fsync'?" }]);
      expect(invalid.text).not.toMatch(/\bat .*\.js:\d+/);
      const unknown = await api('POST', '/v1/connection_profiles', { name: 'y', connector: 'kafak', config: {} });
      expect(unknown.json.error.issues[0].path).toBe('connector');
      const badName = await api('POST', '/v1/connection_profiles', { name: 'bad name', connector: 'file' });
      expect(badName.json.error.issues[0].path).toBe('name');
      expect((await api('POST', '/v1/connection_profiles', '{not json')).status).toBe(400);
      expect((await api('POST', '/v1/connection_profiles', { name: 'big', connector: 'file', config: { x: 'a'.repeat(2_000_000) } })).status).toBe(413);
      const list = await api('GET', '/v1/connection_profiles');
      expect(list.json.data.map((p: any) => p.name)).toEqual(['kafka_prod', 'local_files']);
      expect((await api('GET', `/v1/connection_profiles/${ids.kafka}`)).json.config.password).toBe('********');
      expect((await api('GET', '/v1/connection_profiles/prof_missing')).status).toBe(404);
      const t = await api('POST', '/v1/connection_profiles/test', { connector: 'file', config: {} });
      expect(t.status).toBe(200);
      expect(t.json.ok).toBe(true);
      const tk = await api('POST', '/v1/connection_profiles/test', { id: ids.kafka });
      expect(tk.json.ok).toBe(false);
      expect(tk.json.messages.at(-1).error).toBe(true);
      const ac = await api('GET', `/v1/connection_profiles/${ids.files}/autocomplete`);
      expect(ac.json).toEqual({ supported: false, values: {} });
      expect((await api('GET', '/v1/connection_profiles/nope/autocomplete')).status).toBe(404);
    });

    it('answers an oversized body with 413 after reading it, so a client still sending it gets no broken pipe', async () => {
      const size = 8 * 1024 * 1024;
      const chunk = Buffer.alloc(256 * 1024, 0x61);
      let sentAtAnswer = -1;
      const result = await new Promise<{ status: number; sent: number; error?: string }>((resolve) => {
        let sent = 0;
        let status = 0;
        let error: string | undefined;
        const req = httpRequest(`${server.url}/v1/connection_profiles`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': String(size), authorization: `Bearer ${TOKEN}` },
        });
        req.on('response', (res) => {
          status = res.statusCode ?? 0;
          // Answered only once the whole body was read: a client still sending would otherwise write into a socket
          // the server is closing (EPIPE, and fetch reports "fetch failed" instead of the 413).
          sentAtAnswer = sent;
          res.resume();
          res.on('end', () => resolve({ status, sent, error }));
        });
        req.on('error', (e) => resolve({ status, sent, error: e.message }));
        // The body goes out in pieces across event-loop turns, as a slow uploader's would, after the server has seen
        // the Content-Length and refused it.
        const next = () => {
          if (sent >= size) return void req.end();
          sent += chunk.length;
          req.write(chunk, () => setImmediate(next));
        };
        next();
      });
      expect(result).toEqual({ status: 413, sent: size, error: undefined });
      expect(sentAtAnswer).toBe(size);
    });

    it('connection tables: create, validate, test (NDJSON), schema test', async () => {
      const r = await api('POST', '/v1/connection_tables', {
        name: 'orders',
        connector: 'file',
        config: { path: join(dir, 'in.jsonl'), type: 'source' },
        schema: { format: { json: {} }, fields: [{ name: 'id', type: { primitive: 'Int64' } }, { name: 'name', type: 'string' }] },
      });
      expect(r.status).toBe(201);
      expect(r.json).toMatchObject({ name: 'orders', role: 'source' });
      ids.orders = r.json.id;
      const out = await api('POST', '/v1/connection_tables', { name: 'out', connector: 'file', connectionProfileId: ids.files, config: { path: join(dir, 'out.jsonl'), type: 'sink' }, schema: { format: 'json' } });
      expect(out.status).toBe(201);
      ids.out = out.json.id;
      const invalid = await api('POST', '/v1/connection_tables', { name: 'bad', connector: 'file', config: { pathh: 'x' }, schema: { format: 'jsn', fields: [{ name: 'a', type: 'nope' }] } });
      expect(invalid.status).toBe(400);
      const paths = invalid.json.error.issues.map((i: any) => i.path);
      expect(paths).toContain('config.pathh');
      expect(paths.some((p: string) => p.startsWith('schema.format'))).toBe(true);
      expect(paths.some((p: string) => p.startsWith('schema.fields[0]'))).toBe(true);
      expect((await api('POST', '/v1/connection_tables', { name: 'bad2', connector: 'file', connectionProfileId: 'prof_nope', config: { path: 'x' } })).json.error.issues[0].path).toBe('connectionProfileId');
      expect((await api('POST', '/v1/connection_tables', { name: 'orders', connector: 'file', config: { path: 'x' } })).status).toBe(409);
      expect((await api('GET', '/v1/connection_tables')).json.data).toHaveLength(2);
      expect((await api('GET', `/v1/connection_tables/${ids.orders}`)).json.schema.fields).toHaveLength(2);
      expect((await api('GET', '/v1/connection_tables/tbl_nope')).status).toBe(404);

      const test = await api('POST', '/v1/connection_tables/test', { connector: 'file', config: { path: join(dir, 'in.jsonl') } });
      expect(test.headers.get('content-type')).toMatch(/application\/x-ndjson/);
      const lines = test.text.trim().split('\n').map((l) => JSON.parse(l));
      expect(lines.length).toBeGreaterThan(2);
      expect(lines.at(-1)).toMatchObject({ done: true, ok: true });
      const failing = await api('POST', '/v1/connection_tables/test', { connector: 'file', config: { path: join(dir, 'missing.jsonl') } });
      expect(failing.text.trim().split('\n').map((l) => JSON.parse(l)).at(-1)).toMatchObject({ done: true, ok: false });
      expect((await api('POST', '/v1/connection_tables/test', { connector: 'file', config: {} })).status).toBe(400);

      const inferred = await api('POST', '/v1/connection_tables/schemas/test', { schema: { format: 'json' }, samples: ['{"a": 1, "b": "x"}', { a: 2, b: 'y' }] });
      expect(inferred.json).toMatchObject({ ok: true, inferred: true, sampled: 2 });
      const checked = await api('POST', '/v1/connection_tables/schemas/test', { schema: { format: 'json', fields: [{ name: 'a', type: 'int64', nullable: false }] }, samples: [{ a: 1 }, { a: 'abc' }] });
      expect(checked.json.ok).toBe(false);
      expect(checked.json.errors[0].path).toBe('samples[1]');
      const sampled = await api('POST', '/v1/connection_tables/schemas/test', { connector: 'file', config: { path: join(dir, 'in.jsonl') }, schema: { format: 'json' }, limit: 5 });
      expect(sampled.json).toMatchObject({ ok: true, sampled: 5, inferred: true });
      const badSchema = await api('POST', '/v1/connection_tables/schemas/test', { schema: { fields: [{ name: 'a', type: 'nope' }] } });
      expect(badSchema.status).toBe(400);
      expect(badSchema.json.error.issues[0].path).toMatch(/^schema\.fields\[0\]/);
    });

    it('pipelines: create, run, metrics, checkpoints, stop/start, preview, delete, 409s', async () => {
      const bad = await api('POST', '/v1/pipelines', { name: 'bad', source: 'orderz', sink: { connector: 'blackhole' } });
      expect(bad.status).toBe(400);
      expect(bad.json.error.issues[0]).toMatchObject({ path: 'source', message: expect.stringContaining("did you mean 'orders'") });
      const badOpt = await api('POST', '/v1/pipelines', { name: 'bad', source: { connector: 'generator', config: { cont: 1 } }, sink: { connector: 'blackhole' } });
      expect(badOpt.json.error.issues[0].path).toBe('source.config.cont');

      const r = await api('POST', '/v1/pipelines', { name: 'copy', source: 'orders', sink: 'out' });
      expect(r.status).toBe(201);
      ids.copy = r.json.id;
      expect((await api('POST', '/v1/pipelines', { name: 'copy', source: 'orders', sink: 'out' })).status).toBe(409);
      await waitFor(async () => (await api('GET', `/v1/pipelines/${ids.copy}`)).json.state === 'completed', 15_000, 'copy to complete');
      const one = await api('GET', `/v1/pipelines/${ids.copy}`);
      expect(one.json.stats.records_out).toBe(50);
      expect(one.json.outputs.sink.connector).toBe('file');
      expect(Object.keys(one.json.checkpoints.source ?? {}).length).toBeGreaterThan(0);
      expect(readFileSync(join(dir, 'out.jsonl'), 'utf8').trim().split('\n')).toHaveLength(50);
      // What the sink accepted, in bytes and in write durations and lag (file -> file: every byte of out.jsonl).
      const copyMetrics = (await api('GET', '/metrics')).text;
      expect(copyMetrics).toContain(`sluice_pipeline_bytes_out_total{pipeline="copy"} ${readFileSync(join(dir, 'out.jsonl')).byteLength}`);
      expect(copyMetrics).toMatch(/sluice_sink_write_duration_seconds_count\{pipeline="copy",endpoint="sink",connector="file"\} [1-9]/);
      expect(copyMetrics).toMatch(/sluice_sink_write_duration_seconds_bucket\{pipeline="copy",endpoint="sink",connector="file",le="\+Inf"\} [1-9]/);

      // In use: the profile by a table, the table by a pipeline.
      expect((await api('DELETE', `/v1/connection_profiles/${ids.files}`)).status).toBe(409);
      const inUse = await api('DELETE', `/v1/connection_tables/${ids.orders}`);
      expect(inUse.status).toBe(409);
      expect(inUse.json.error.message).toContain("pipeline 'copy'");

      const gen = await api('POST', '/v1/pipelines', { name: 'gen', source: { connector: 'generator', config: { interval: '20ms', template: 'sequence' } }, sink: { connector: 'blackhole' } });
      expect(gen.status).toBe(201);
      ids.gen = gen.json.id;
      await waitFor(async () => (await api('GET', `/v1/pipelines/${ids.gen}`)).json.stats?.records_out > 0);
      const preview = await api('GET', `/v1/pipelines/${ids.gen}/preview?limit=3&timeout=5000`);
      expect(preview.headers.get('content-type')).toMatch(/text\/event-stream/);
      const events = preview.text.split('\n\n').filter((e) => e.startsWith('event: record'));
      expect(events).toHaveLength(3);
      expect(JSON.parse(events[0]!.split('data: ')[1]!)).toMatchObject({ output: 'sink' });
      const list = await api('GET', '/v1/pipelines');
      expect(list.json.data.find((p: any) => p.name === 'gen')).toMatchObject({ state: 'running', desiredState: 'running' });
      expect(list.json.data[0].rates).toBeDefined();
      const metrics = await api('GET', '/metrics');
      expect(metrics.text).toMatch(/sluice_pipeline_records_out_total\{pipeline="gen"\} \d+/);
      expect(metrics.text).toMatch(/sluice_pipeline_state\{pipeline="gen",state="running"\} 1/);
      expect(metrics.text).toContain('sluice_process_cpu_user_seconds_total');

      const stopped = await api('POST', `/v1/pipelines/${ids.gen}/stop`);
      expect(stopped.json).toMatchObject({ state: 'stopped', desiredState: 'stopped' });
      expect((await api('GET', `/v1/pipelines/${ids.gen}/preview`)).status).toBe(409);
      const started = await api('POST', `/v1/pipelines/${ids.gen}/start`);
      expect(started.json.desiredState).toBe('running');
      await waitFor(async () => (await api('GET', `/v1/pipelines/${ids.gen}`)).json.state === 'running');
      expect((await api('DELETE', `/v1/pipelines/${ids.gen}`)).status).toBe(204);
      expect((await api('GET', `/v1/pipelines/${ids.gen}`)).status).toBe(404);
      expect((await api('POST', '/v1/pipelines/pl_nope/stop')).status).toBe(404);
      expect((await api('DELETE', '/v1/pipelines/pl_nope')).status).toBe(404);
    });

    it('a failing pipeline restarts with backoff and shows its error without affecting others', async () => {
      writeFileSync(join(dir, 'blocker'), 'a file, not a directory');
      const r = await api('POST', '/v1/pipelines', { name: 'broken', source: { connector: 'generator', config: { interval: '50ms' } }, sink: { connector: 'file', config: { path: join(dir, 'blocker', 'out.jsonl') } } });
      expect(r.status).toBe(201);
      await waitFor(async () => (await api('GET', `/v1/pipelines/${r.json.id}`)).json.restarts >= 2, 15_000, 'restarts');
      const one = await api('GET', `/v1/pipelines/${r.json.id}`);
      expect(one.json.lastErrors.length).toBeGreaterThan(0);
      expect(one.json.lastErrors[0].message).toMatch(/blocker/);
      expect((await anon('GET', '/healthz')).status).toBe(200);
      expect((await api('GET', `/v1/pipelines/${ids.copy}`)).json.state).toBe('completed');
      expect((await api('DELETE', `/v1/pipelines/${r.json.id}`)).status).toBe(204);
    });

    it.skipIf(SQL_AVAILABLE)('SQL bodies answer 501 until the SQL compiler is built in', async () => {
      const r = await api('POST', '/v1/pipelines', { name: 'sqlp', query: 'INSERT INTO out SELECT * FROM orders' });
      expect(r.status).toBe(501);
      expect(r.json.error.message).toMatch(/SQL/);
    });
    it.skipIf(!SQL_AVAILABLE)('SQL pipelines: {name, query} runs through the SQL compiler; parse errors carry line and column', async () => {
      const query = `CREATE TABLE sq_in (id BIGINT, name TEXT) WITH (connector = 'file', path = '${join(dir, 'in.jsonl')}', type = 'source', format = 'json');
CREATE TABLE sq_out (twice BIGINT, name TEXT) WITH (connector = 'file', path = '${join(dir, 'sql-out.jsonl')}', type = 'sink', format = 'json');
INSERT INTO sq_out SELECT id * 2 AS twice, name FROM sq_in WHERE id < 10;`;
      const r = await api('POST', '/v1/pipelines', { name: 'sqlp', query });
      expect(r.status).toBe(201);
      expect(r.json.kind).toBe('sql');
      await waitFor(() => existsSync(join(dir, 'sql-out.jsonl')) && readFileSync(join(dir, 'sql-out.jsonl'), 'utf8').trim().split('\n').length === 10, 15_000, 'SQL output');
      expect(JSON.parse(readFileSync(join(dir, 'sql-out.jsonl'), 'utf8').split('\n')[3]!)).toEqual({ twice: 6, name: 'n3' });
      const bad = await api('POST', '/v1/pipelines', { name: 'sqlbad', query: 'INSERT INTO x SELEC a FROM y' });
      expect(bad.status).toBe(400);
      expect(bad.json.error.issues[0].path).toMatch(/^query/);
      expect(bad.json.error.issues[0]).toMatchObject({ line: 1, col: expect.any(Number) });
      expect(bad.json.error.message).toMatch(/line 1, column \d+/);
      expect((await api('DELETE', `/v1/pipelines/${r.json.id}`)).status).toBe(204);
    });
    it.skipIf(!SQL_AVAILABLE)('SQL pipelines use stored tables by name, with SET pipeline settings; such a table is in use (409)', async () => {
      const t = await api('POST', '/v1/connection_tables', { name: 'sq_src', connector: 'file', config: { path: join(dir, 'in.jsonl'), type: 'source' }, schema: { format: 'json', fields: [{ name: 'id', type: 'int64' }, { name: 'name', type: 'string' }] } });
      expect(t.status).toBe(201);
      const out = join(dir, 'sql-cat.jsonl');
      const query = `SET 'pipeline.batch.max_records' = '3';
SET 'pipeline.retry.max_attempts' = '2';
CREATE TABLE sq_cat_out WITH (connector = 'file', path = '${out}', type = 'sink', format = 'json');
INSERT INTO sq_cat_out SELECT id, upper(name) AS name FROM SQ_SRC WHERE id < 5;`;
      const r = await api('POST', '/v1/pipelines', { name: 'sqlcat', query });
      expect(r.status).toBe(201);
      await waitFor(() => existsSync(out) && readFileSync(out, 'utf8').trim().split('\n').length === 5, 15_000, 'SQL output from a stored table');
      expect(JSON.parse(readFileSync(out, 'utf8').split('\n')[2]!)).toEqual({ id: 2, name: 'N2' });
      const inUse = await api('DELETE', `/v1/connection_tables/${t.json.id}`);
      expect(inUse.status).toBe(409);
      expect(inUse.json.error).toMatchObject({ code: 'in_use', message: "connection table 'sq_src' is used by pipeline 'sqlcat'" });
      // A column the stored table does not declare, and an unknown setting, are reported at their position.
      const badCol = await api('POST', '/v1/pipelines', { name: 'sqlbad2', query: 'INSERT INTO sq_cat_out SELECT idd FROM sq_src' });
      expect(badCol.status).toBe(400);
      const badSet = await api('POST', '/v1/pipelines', { name: 'sqlbad3', query: "SET 'pipeline.batch.max_recods' = '5';\nINSERT INTO out SELECT * FROM sq_src;" });
      expect(badSet.status).toBe(400);
      expect(badSet.json.error.issues[0]).toMatchObject({ path: 'query', line: 1, col: 5, message: expect.stringContaining("did you mean 'pipeline.batch.max_records'") });
      expect((await api('DELETE', `/v1/pipelines/${r.json.id}`)).status).toBe(204);
      expect((await api('DELETE', `/v1/connection_tables/${t.json.id}`)).status).toBe(204);
    });

    it('webhook sources mount under /v1/webhooks/<pipeline> with their own auth', async () => {
      const out = join(dir, 'hook.jsonl');
      const r = await api('POST', '/v1/pipelines', { name: 'hook', source: { connector: 'webhook', config: { path: '/in', bearer_token: 'wh-token' } }, sink: { connector: 'file', config: { path: out } } });
      expect(r.status).toBe(201);
      const post = (path: string, body: string, token?: string) =>
        fetch(`${server.url}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
      // The source mounts once the pipeline runs; until then the server answers 503 (retry later).
      await waitFor(async () => (await post('/v1/webhooks/hook/in', '{"id":1}', 'wh-token')).status === 200, 15_000, 'the mounted webhook');
      expect(readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l))).toEqual([{ id: 1 }]);
      expect((await api('GET', `/v1/pipelines/${r.json.id}`)).json.webhookPath).toBe('/v1/webhooks/hook/in');
      expect((await post('/v1/webhooks/hook/in', '[{"id":2},{"id":3}]', 'wh-token')).status).toBe(200);
      expect(readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(3);
      // The webhook's own token, not the API's.
      expect((await post('/v1/webhooks/hook/in', '{"id":9}')).status).toBe(401);
      expect((await post('/v1/webhooks/hook/in', '{"id":9}', TOKEN)).status).toBe(401);
      expect((await post('/v1/webhooks/hook/other', '{"id":9}', 'wh-token')).status).toBe(404);
      expect((await post('/v1/webhooks/nope/in', '{"id":9}', 'wh-token')).status).toBe(404);
      expect((await api('POST', `/v1/pipelines/${r.json.id}/stop`)).status).toBe(200);
      const stopped = await post('/v1/webhooks/hook/in', '{"id":9}', 'wh-token');
      expect(stopped.status).toBe(503);
      expect(stopped.headers.get('retry-after')).toBeTruthy();
      expect(readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(3);
      expect((await api('DELETE', `/v1/pipelines/${r.json.id}`)).status).toBe(204);
    });

    it('export and import: dry run, all-or-nothing, round trip', async () => {
      const exp = await api('GET', '/v1/export');
      expect(exp.status).toBe(200);
      expect(exp.json.connection_profiles.kafka_prod.config.password).toBe('********');
      expect(exp.json.tables.out.profile).toBe('local_files');
      expect(exp.json.pipelines.map((p: any) => p.name)).toEqual(['copy']);
      // Unchanged when re-imported: redacted secrets keep their stored values.
      const same = await api('POST', '/v1/import?dry_run=true', exp.json);
      expect(same.json.changes.connection_profiles).toEqual({ kafka_prod: 'unchanged', local_files: 'unchanged' });
      expect(same.json.changes.pipelines).toEqual({ copy: 'unchanged' });
      const doc = structuredClone(exp.json);
      doc.connection_profiles.more = { connector: 'file', config: { fsync: true } };
      doc.tables.gen_src = { connector: 'generator', config: { count: 5, interval: 0 }, format: 'json' };
      doc.pipelines.push({ name: 'imported', source: 'gen_src', sink: { connector: 'file', config: { path: join(dir, 'imported.jsonl') } }, enabled: true });
      const dry = await api('POST', '/v1/import?dry_run=true', doc);
      expect(dry.json).toMatchObject({ dryRun: true, changes: { connection_profiles: { more: 'created' }, tables: { gen_src: 'created' }, pipelines: { imported: 'created' } } });
      expect((await api('GET', '/v1/connection_profiles')).json.data).toHaveLength(2);
      const broken = structuredClone(doc);
      broken.tables.gen_src.config.cont = 3;
      const refused = await api('POST', '/v1/import', broken);
      expect(refused.status).toBe(400);
      expect(refused.json.error.issues[0].path).toBe('tables.gen_src.config.cont');
      expect((await api('GET', '/v1/connection_profiles')).json.data).toHaveLength(2);
      const missingSecret = structuredClone(doc);
      missingSecret.connection_profiles.other = { connector: 'kafka', config: { bootstrapServers: 'x:1', password: '********' } };
      expect((await api('POST', '/v1/import', missingSecret)).json.error.issues[0].path).toBe('connection_profiles.other.config.password');
      const done = await api('POST', '/v1/import', doc);
      expect(done.status).toBe(200);
      expect(done.json.dryRun).toBe(false);
      await waitFor(() => existsSync(join(dir, 'imported.jsonl')) && readFileSync(join(dir, 'imported.jsonl'), 'utf8').trim().split('\n').length === 5);
      const again = await api('GET', '/v1/export');
      const strip = (d: any) => ({ ...d, exported_at: undefined });
      expect(strip(again.json)).toEqual(strip(doc));
      // With a token, secrets can be exported in clear, and such a document imports unchanged.
      const full = await api('GET', '/v1/export?include_secrets=true');
      expect(full.json.connection_profiles.kafka_prod.config.password).toBe(SECRET);
      expect((await api('POST', '/v1/import?dry_run=true', full.json)).json.changes.connection_profiles.kafka_prod).toBe('unchanged');
      allText.pop(); // the include_secrets export above is the one place a secret may appear
      allText.pop();
      allText.pop();
      expect((await api('POST', '/v1/import', { bogus: 1 })).json.error.issues[0].path).toBe('');
    });

    it('deletes a profile and a table once nothing uses them', async () => {
      expect((await api('DELETE', `/v1/pipelines/${ids.copy}`)).status).toBe(204);
      expect((await api('DELETE', `/v1/connection_tables/${ids.out}`)).status).toBe(204);
      expect((await api('DELETE', `/v1/connection_tables/${ids.out}`)).status).toBe(404);
      expect((await api('DELETE', `/v1/connection_profiles/${ids.files}`)).status).toBe(204);
    });

    it('never shows a secret in a response or a log line', async () => {
      await stopServer(server);
      const everything = allText.join('\n');
      expect(everything.length).toBeGreaterThan(1000);
      expect(everything).not.toContain(SECRET);
      expect(everything).not.toContain(TOKEN);
      expect(everything).not.toContain(SECRET_KEY);
      expect(everything).not.toMatch(/\n\s+at .*\.(js|ts):\d+:\d+/);
    });
  });
}

apiSuite('sqlite', () => []);

const PG_SCHEMA = `sluice_test_${process.pid}_${randomBytes(3).toString('hex')}`;
apiSuite(
  'postgres',
  () => ['--store', `postgres://postgres@127.0.0.1:5432/test?schema=${PG_SCHEMA}`],
  () => ensureService('postgres'),
  async () => {
    const c = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS "${PG_SCHEMA}" CASCADE`);
    await c.end();
  },
);

describe('sluice serve: restarts and binding', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-serve-restart-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a non-loopback host without a token', async () => {
    const child = spawn(process.execPath, [ENTRY, 'serve', '--host', '0.0.0.0', '--port', '0', '--data-dir', join(dir, 'x')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code).toBe(2);
    expect(err).toContain('--insecure');
  });

  const RESTART_PG_SCHEMA = `sluice_restart_${process.pid}_${randomBytes(3).toString('hex')}`;
  const stores: Array<[string, (data: string) => string[], (() => Promise<void>)?, (() => Promise<void>)?]> = [
    ['sqlite', (data) => ['--data-dir', data]],
    [
      'postgres',
      // Checkpoints and the catalog live in PostgreSQL; the data dir only holds files of connectors.
      (data) => ['--data-dir', data, '--store', `postgres://postgres@127.0.0.1:5432/test?schema=${RESTART_PG_SCHEMA}`],
      () => ensureService('postgres'),
      async () => {
        const c = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
        await c.connect();
        await c.query(`DROP SCHEMA IF EXISTS "${RESTART_PG_SCHEMA}" CASCADE`);
        await c.end();
      },
    ],
  ];
  it.each(stores)('resumes running pipelines after kill -9 without loss, and does not rerun a finished generator (%s store)', async (label, storeArgs, setup, teardown) => {
    await setup?.();
    const data = join(dir, `data-${label}`);
    const input = join(dir, `follow-${label}.jsonl`);
    const output = join(dir, `follow-out-${label}.jsonl`);
    const genOut = join(dir, `gen-${label}.jsonl`);
    let s: Server | undefined;
    try {
      const write = (from: number, to: number) => appendFileSync(input, Array.from({ length: to - from }, (_, i) => JSON.stringify({ id: from + i }) + '\n').join(''));
      write(0, 1000);
      s = await startServer(storeArgs(data), dir);
      const api = client(() => s!);
      expect((await api('POST', '/v1/pipelines', { name: 'follow', source: { connector: 'file', config: { path: input, mode: 'follow', poll_interval: '50ms' } }, sink: { connector: 'file', config: { path: output } } })).status).toBe(201);
      expect((await api('POST', '/v1/pipelines', { name: 'gen5', source: { connector: 'generator', config: { count: 5, interval: 0 } }, sink: { connector: 'file', config: { path: genOut } } })).status).toBe(201);
      const ids = () => new Set(existsSync(output) ? readFileSync(output, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l).id as number) : []);
      await waitFor(() => ids().size === 1000, 15_000, 'first 1000 records');
      await waitFor(async () => (await api('GET', '/v1/pipelines')).json.data.find((p: any) => p.name === 'gen5').state === 'completed');
      write(1000, 1500);
      await stopServer(s, 'SIGKILL');
      write(1500, 2000);
      s = await startServer(storeArgs(data), dir);
      await waitFor(() => ids().size === 2000, 15_000, 'all 2000 records after the restart');
      const list = (await api('GET', '/v1/pipelines')).json.data;
      expect(list.find((p: any) => p.name === 'follow').state).toBe('running');
      expect(list.find((p: any) => p.name === 'gen5').state).toBe('completed');
      expect(readFileSync(genOut, 'utf8').trim().split('\n')).toHaveLength(5);
      // A graceful stop keeps the desired state: the pipeline runs again on the next start.
      await stopServer(s);
      write(2000, 2100);
      s = await startServer(storeArgs(data), dir);
      await waitFor(() => ids().size === 2100, 15_000, 'records after a graceful restart');
      await stopServer(s);
    } finally {
      if (s) await stopServer(s, 'SIGKILL');
      await teardown?.();
    }
  }, 90_000);
});
