import { afterEach, describe, expect, it } from 'vitest';
import { collectSource, parsedOptions, testContext } from '../../testing/harness.js';
import { mapScope } from '../../core/state.js';
import { parseOptions } from '../../core/spec.js';
import { formatIssue } from '../../core/errors.js';
import { pullOptions } from './options.js';
import { HttpPullSource, nextLink } from './source.js';
import { json, startServer, type TestServer } from './testkit.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const source = (o: Record<string, unknown>, format = 'json') => new HttpPullSource(parsedOptions(pullOptions(), { interval: '20ms', retry: { initial_backoff: '10ms', max_backoff: '50ms' }, ...o }), { format });
const values = (r: { records: { value: unknown }[] }) => r.records.map((x) => x.value);

describe('http_pull options', () => {
  it('accepts the polling_http and eKuiper spellings and suggests the closest name for a typo', () => {
    const ok = parseOptions(pullOptions(), { endpoint: 'http://127.0.0.1/x', poll_interval: '2s', data_path: 'data', auth: { token: 't' } });
    expect(ok.ok && ok.value).toMatchObject({ url: 'http://127.0.0.1/x', interval: 2000, records_path: 'data', auth: { bearer: 't' } });
    const bad = parseOptions(pullOptions(), { url: 'http://h/', intreval: '1s' });
    expect(!bad.ok && bad.issues.map(formatIssue).join()).toContain("unknown option 'intreval'; did you mean 'interval'?");
    const mixed = parseOptions(pullOptions(), { url: 'http://h/', auth: { bearer: 'x', api_key: 'y' } });
    expect(!mixed.ok && mixed.issues.map(formatIssue).join()).toContain('choose one of');
    const cursor = parseOptions(pullOptions(), { url: 'http://h/', pagination: { type: 'cursor' } });
    expect(!cursor.ok && cursor.issues.map(formatIssue).join()).toContain('needs cursor_path');
    expect(parseOptions(pullOptions(), { url: 'ftp://h/' }).ok).toBe(false);
  });
});

describe('http_pull source', () => {
  it('emits the records under records_path as rows with metadata, sending the bearer token', async () => {
    server = await startServer((req, res) => json(res, req.headers.authorization === 'Bearer s3cret' ? { data: { items: [{ id: 1 }, { id: 2 }] } } : { error: 'no' }, req.headers.authorization ? 200 : 401));
    const r = await collectSource(source({ url: `${server.url}/v1?key=abc`, records_path: 'data.items', auth: { bearer: 's3cret' } }), { limit: 2, timeoutMs: 5000 });
    expect(values(r)).toEqual([{ id: 1 }, { id: 2 }]);
    expect(r.batches[0]!.decoded).toBe(true);
    expect(r.records[0]!.meta).toMatchObject({ _url: `${server.url}/v1?key=***`, _status: 200, _page: 1 });
    expect(typeof r.records[0]!.meta!._fetched_at).toBe('number');
  });

  it('hands the raw body to the format when records_path is unset', async () => {
    server = await startServer((_req, res) => json(res, [{ a: 1 }, { a: 2 }]));
    const r = await collectSource(source({ url: server.url }), { limit: 1, timeoutMs: 5000 });
    expect(r.records[0]!.value).toBe('[{"a":1},{"a":2}]');
    expect(r.batches[0]!.decoded).toBeFalsy();
  });

  it('fails on 401 naming the URL and status, without the credentials', async () => {
    server = await startServer((_req, res) => json(res, { message: 'invalid api key' }, 401));
    const err = await collectSource(source({ url: `${server.url}/private?token=zzz`, auth: { api_key: 'k-123' } }), { timeoutMs: 5000 }).catch((e) => e);
    expect(err.code).toBe('AUTH');
    expect(err.message).toContain(`GET ${server.url}/private?token=*** answered 401`);
    expect(err.message).toContain('invalid api key');
    expect(err.message).not.toContain('k-123');
    expect(err.message).not.toContain('zzz');
    expect(server.requests[0]!.headers['x-api-key']).toBe('k-123');
  });

  it('fails at once on other 4xx answers, but waits for Retry-After on 429', async () => {
    server = await startServer((_req, res, n) => (n === 1 ? json(res, {}, 429, { 'retry-after': '0' }) : n === 2 ? json(res, [{ ok: 1 }]) : json(res, { e: 'gone' }, 404)));
    const err = await collectSource(source({ url: server.url, interval: '10ms' }), { timeoutMs: 5000 }).catch((e) => e);
    expect(server.requests.length).toBe(3);
    expect(err.message).toContain('answered 404');
  });

  it('follows Link rel="next" headers', async () => {
    server = await startServer((req, res) => {
      const p = Number(new URL(req.url, 'http://x').searchParams.get('p') ?? 1);
      json(res, [{ p }], 200, p < 3 ? { link: `</items?p=${p + 1}>; rel="next", </items?p=1>; rel="first"` } : {});
    });
    const r = await collectSource(source({ url: `${server.url}/items`, pagination: { type: 'link' } }), { limit: 3, timeoutMs: 5000 });
    expect(values(r)).toEqual(['[{"p":1}]', '[{"p":2}]', '[{"p":3}]']);
    expect(r.records.map((x) => x.meta!._page)).toEqual([1, 2, 3]);
    expect(nextLink('<https://a/b?c=2>; rel="prev", <https://a/b?c=4>; rel="next"', 'https://a/')).toBe('https://a/b?c=4');
  });

  it('pages by a cursor taken from the body', async () => {
    server = await startServer((req, res) => {
      const c = new URL(req.url, 'http://x').searchParams.get('after');
      if (!c) json(res, { items: [{ id: 1 }], next: 'c2' });
      else if (c === 'c2') json(res, { items: [{ id: 2 }], next: 'c3' });
      else json(res, { items: [{ id: 3 }], next: null });
    });
    const r = await collectSource(source({ url: server.url, records_path: 'items', pagination: { type: 'cursor', cursor_path: 'next', param: 'after' } }), { limit: 3, timeoutMs: 5000 });
    expect(values(r)).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
    expect(server.requests.slice(0, 3).map((q) => q.url)).toEqual(['/', '/?after=c2', '/?after=c3']);
  });

  it('counts page numbers until a page is empty, then waits for the next poll', async () => {
    const ac = new AbortController();
    server = await startServer((req, res) => {
      const p = Number(new URL(req.url, 'http://x').searchParams.get('page'));
      json(res, { rows: p <= 2 ? [{ p }] : [] });
      // The empty page ends the poll; stop the source once it was asked for.
      if (p === 3) setImmediate(() => ac.abort());
    });
    const got: unknown[] = [];
    const src = source({ url: server.url, records_path: 'rows', interval: '1h', pagination: { type: 'page' } });
    await src.run({
      ...testContext('source', { signal: ac.signal }),
      emit: (b) => void got.push(...b.records.map((r) => r.value)),
      bad: () => {},
      decoder: () => {
        throw new Error('unused');
      },
    });
    expect(got).toEqual([{ p: 1 }, { p: 2 }]);
    expect(server.requests.map((q) => q.url)).toEqual(['/?page=1', '/?page=2', '/?page=3']);
  });

  it('retries 5xx answers with backoff and recovers', async () => {
    server = await startServer((_req, res, n) => (n <= 3 ? json(res, { e: 'overloaded' }, 503) : json(res, [{ ok: true }])));
    const r = await collectSource(source({ url: server.url }), { limit: 1, timeoutMs: 5000 });
    expect(values(r)).toEqual(['[{"ok":true}]']);
    expect(server.requests.length).toBe(4);
  });

  it('times out slow responses, retries them, and fails naming the timeout once attempts run out', async () => {
    server = await startServer(async (_req, res, n) => {
      // Far beyond the 100 ms timeout, so a loaded machine cannot make the first answer count.
      if (n === 1) await new Promise((r) => setTimeout(r, 1500));
      if (!res.destroyed) json(res, [{ n }]);
    });
    const r = await collectSource(source({ url: server.url, timeout: '100ms' }), { limit: 1, timeoutMs: 5000 });
    expect(values(r)).toEqual(['[{"n":2}]']);
    await server.close();
    server = await startServer(async (_req, res) => {
      await new Promise((r) => setTimeout(r, 400));
      json(res, []);
    });
    const err = await collectSource(source({ url: server.url, timeout: '100ms', retry: { max_attempts: 2, initial_backoff: '10ms' } }), { timeoutMs: 5000 }).catch((e) => e);
    expect(err.message).toMatch(/no complete answer within timeout \(100 ms\).*gave up after 2 attempts/);
  });

  it('refuses bodies larger than max_body_size', async () => {
    server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      for (let i = 0; i < 64; i++) res.write(chunk);
      res.end('[]');
    });
    const err = await collectSource(source({ url: server.url, max_body_size: '1MiB' }), { timeoutMs: 5000 }).catch((e) => e);
    expect(err.message).toContain('larger than max_body_size (1048576 bytes)');
  });

  it('with emit: changes, sends If-None-Match and emits nothing for 304 or an unchanged body', async () => {
    let version = 1;
    server = await startServer((req, res) => {
      const tag = `"v${version}"`;
      if (req.headers['if-none-match'] === tag) {
        res.writeHead(304);
        res.end();
      } else json(res, [{ version }], 200, { etag: tag });
    });
    const src = source({ url: server.url, emit: 'changes', interval: '10ms' });
    const seen: unknown[] = [];
    const r = collectSource(src, { limit: 2, timeoutMs: 5000 });
    const t = setInterval(() => {
      if (server!.requests.length >= 5) version = 2;
    }, 5);
    const out = await r;
    clearInterval(t);
    seen.push(...values(out));
    expect(seen).toEqual(['[{"version":1}]', '[{"version":2}]']);
    expect(server.requests.filter((q) => q.headers['if-none-match'] === '"v1"').length).toBeGreaterThanOrEqual(4);
  });

  it('with emit: changes and no validators, skips bodies whose hash did not change', async () => {
    server = await startServer((_req, res, n) => json(res, [{ v: n < 5 ? 'a' : 'b' }]));
    const r = await collectSource(source({ url: server.url, emit: 'changes', interval: '10ms' }), { limit: 2, timeoutMs: 5000 });
    expect(values(r)).toEqual(['[{"v":"a"}]', '[{"v":"b"}]']);
  });

  it('keeps the incremental cursor in the state on commit and resumes from it after a restart', async () => {
    const all = Array.from({ length: 10 }, (_, i) => ({ id: i + 1, ts: `2026-01-01T00:00:${String(i).padStart(2, '0')}Z` }));
    server = await startServer((req, res) => {
      const since = new URL(req.url, 'http://x').searchParams.get('since') ?? '';
      json(res, { data: all.filter((r) => r.ts > since).slice(0, 4) });
    });
    const state = mapScope(new Map());
    const opts = { url: `${server.url}/events?since={{ cursor }}`, records_path: 'data', incremental: { path: 'ts' } };
    const first = await collectSource(source(opts), { limit: 4, timeoutMs: 5000, state });
    expect(values(first).map((v: any) => v.id)).toEqual([1, 2, 3, 4]);
    expect(await state.get('cursor')).toBe('2026-01-01T00:00:03Z');
    const second = await collectSource(source(opts), { limit: 6, timeoutMs: 5000, state });
    expect(values(second).map((v: any) => v.id)).toEqual([5, 6, 7, 8, 9, 10]);
    expect(server.requests.find((q, i) => i > 0 && q.url.includes('since=2026-01-01T00%3A00%3A03Z'))).toBeDefined();
  });

  it('does not commit the cursor of records the sink has not accepted', async () => {
    server = await startServer((_req, res) => json(res, [{ id: 7 }]));
    const state = mapScope(new Map());
    await collectSource(source({ url: server.url, incremental: { path: 'id' } }), { limit: 1, timeoutMs: 5000, state, autoCommit: false });
    expect(await state.get('cursor')).toBeUndefined();
  });

  it('reports a body that is not JSON to bad_data when it must be parsed', async () => {
    server = await startServer((_req, res, n) => void (n === 1 ? res.end('<html>oops</html>') : json(res, { items: [{ ok: 1 }] })));
    const r = await collectSource(source({ url: server.url, records_path: 'items' }), { limit: 1, timeoutMs: 5000 });
    expect(r.bad).toHaveLength(1);
    expect(r.bad[0]!.raw).toBe('<html>oops</html>');
    expect(r.bad[0]!.error.message).toContain('is not JSON');
    expect(values(r)).toEqual([{ ok: 1 }]);
  });

  it('fetches an OAuth2 token, refreshes it before it expires and after a 401', async () => {
    let issued = 0;
    const valid = new Map<string, number>();
    server = await startServer((req, res) => {
      if (req.url === '/token') {
        const f = new URLSearchParams(req.body);
        if (f.get('client_secret') !== 'shh') return json(res, { error: 'invalid_client' }, 401);
        const t = `tok${++issued}`;
        valid.set(t, Date.now() + 1000);
        return json(res, { access_token: t, expires_in: 1, token_type: 'bearer' });
      }
      const t = (req.headers.authorization ?? '').replace('Bearer ', '');
      if (!((valid.get(t) ?? 0) > Date.now())) return json(res, { error: 'expired' }, 401);
      if (issued === 2 && t === 'tok2') valid.delete(t); // revoked early: the source must fetch tok3
      json(res, [{ t }]);
    });
    const auth = { oauth2: { token_url: `${server.url}/token`, client_id: 'c', client_secret: 'shh', refresh_before: '300ms' } };
    const r = await collectSource(source({ url: `${server.url}/data`, interval: '150ms', auth }), { limit: 8, timeoutMs: 8000 });
    expect(r.records).toHaveLength(8);
    expect(issued).toBeGreaterThanOrEqual(3);
    const bodyTokens = values(r).map((v) => JSON.parse(v as string)[0].t);
    expect(new Set(bodyTokens).size).toBeGreaterThanOrEqual(3);
    const bad = await collectSource(source({ url: `${server.url}/data`, auth: { oauth2: { ...auth.oauth2, client_secret: 'wrong' } } }), { timeoutMs: 5000 }).catch((e) => e);
    expect(bad.message).toContain(`OAuth2 token endpoint ${server.url}/token answered 401`);
    expect(bad.message).not.toContain('wrong');
  });
});

describe('http_pull test()', () => {
  it('reports the request and its answer step by step, and a 401 as an error', async () => {
    const { spec } = await import('./index.js');
    server = await startServer((req, res) => (req.headers.authorization === 'Bearer ok' ? json(res, [{ a: 1 }]) : json(res, { e: 'no' }, 401)));
    const steps: string[] = [];
    await spec.test!({ url: server.url, auth: { token: 'ok' } }, 'source', (s) => steps.push(s.message), AbortSignal.timeout(5000));
    expect(steps.at(-1)).toBe(`GET ${server.url}/ answered 200 with 9 bytes`);
    const failed: string[] = [];
    await expect(spec.test!({ url: server.url, auth: { token: 'bad' } }, 'source', (s) => failed.push(s.message), AbortSignal.timeout(5000))).rejects.toThrow('answered 401');
    expect(failed.at(-1)).toContain('answered 401');
    await expect(spec.test!({ url: server.url, intervl: '1s' }, 'source', () => {}, AbortSignal.timeout(5000))).rejects.toThrow("did you mean 'interval'?");
  });
});
