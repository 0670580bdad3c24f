import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { collectSource, parsedOptions, waitFor } from '../../testing/harness.js';
import { mapScope } from '../../core/state.js';
import { parseOptions } from '../../core/spec.js';
import { formatIssue } from '../../core/errors.js';
import { startServer, json, type TestServer } from '../http_pull/testkit.js';
import { sseOptions } from './options.js';
import { SseSource } from './source.js';

let server: TestServer | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const source = (o: Record<string, unknown>) => new SseSource(parsedOptions(sseOptions(), { reconnect: { initial: '20ms', max: '100ms' }, ...o }));
const open = (res: ServerResponse) => res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
const values = (r: { records: { value: unknown }[] }) => r.records.map((x) => x.value);

describe('sse options', () => {
  it('accepts aliases and comma lists, and suggests names for typos', () => {
    const ok = parseOptions(sseOptions(), { endpoint: 'http://127.0.0.1/s', event_types: 'trade, quote', auth: { token: 't' } });
    expect(ok.ok && ok.value).toMatchObject({ url: 'http://127.0.0.1/s', events: ['trade', 'quote'], auth: { bearer: 't' }, buffer: 'memory' });
    const bad = parseOptions(sseOptions(), { url: 'http://h/', evnets: ['a'] });
    expect(!bad.ok && bad.issues.map(formatIssue).join()).toContain("did you mean 'events'?");
    expect(parseOptions(sseOptions(), { url: 'ws://h/' }).ok).toBe(false);
  });
});

describe('sse source', () => {
  it('emits the data of the chosen event types raw, with the event type and id as metadata', async () => {
    server = await startServer((_req, res) => {
      open(res);
      res.write(': keep-alive\n\n');
      res.write('event: trade\nid: 1\ndata: {"p":1}\n\n');
      res.write('event: heartbeat\nid: 2\ndata: {}\n\n');
      res.write('id: 3\ndata: {"plain":true}\n\n');
      res.write('event: trade\nid: 4\ndata: {"p":\ndata: 2}\n\n');
    });
    const r = await collectSource(source({ url: server.url, events: ['trade', 'message'] }), { limit: 3, timeoutMs: 5000 });
    expect(values(r)).toEqual(['{"p":1}', '{"plain":true}', '{"p":\n2}']);
    expect(r.records.map((x) => [x.meta!._event, x.meta!._id])).toEqual([['trade', '1'], ['message', '3'], ['trade', '4']]);
    expect(server.requests[0]!.headers.accept).toBe('text/event-stream');
  });

  it('reconnects with Last-Event-ID after the stream drops, waiting the retry interval the server asked for', async () => {
    const connectedAt: number[] = [];
    server = await startServer((req, res) => {
      connectedAt.push(Date.now());
      open(res);
      if (!req.headers['last-event-id']) {
        res.write('retry: 150\n\n');
        res.end('id: a1\ndata: one\n\nid: a2\ndata: two\n\n');
      } else if (req.headers['last-event-id'] === 'a2') res.write('id: a3\ndata: three\n\n');
      else res.end(`data: wrong id ${req.headers['last-event-id']}\n\n`);
    });
    // reconnect.initial of 10 s: a reconnect within about 150 ms can only come from the server's retry.
    const src = source({ url: server.url, reconnect: { initial: '10s', max: '20s' } });
    const r = await collectSource(src, { limit: 3, timeoutMs: 5000 });
    expect(values(r)).toEqual(['one', 'two', 'three']);
    expect(src.retryMs).toBe(150);
    const gap = connectedAt[1]! - connectedAt[0]!;
    expect(gap).toBeGreaterThanOrEqual(100);
    expect(gap).toBeLessThan(2000);
  });

  it('resumes from the committed event id after a restart', async () => {
    server = await startServer((req, res) => {
      open(res);
      const after = Number(req.headers['last-event-id'] ?? 0);
      for (let i = after + 1; i <= after + 3; i++) res.write(`id: ${i}\ndata: {"n":${i}}\n\n`);
    });
    const state = mapScope(new Map());
    const first = await collectSource(source({ url: server.url }), { limit: 3, timeoutMs: 5000, state });
    expect(values(first)).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
    expect(await state.get('last_event_id')).toBe('3');
    const second = await collectSource(source({ url: server.url }), { limit: 3, timeoutMs: 5000, state });
    expect(values(second)).toEqual(['{"n":4}', '{"n":5}', '{"n":6}']);
    expect(server.requests[1]!.headers['last-event-id']).toBe('3');
  });

  it('does not store the event id of events the sink has not accepted', async () => {
    server = await startServer((_req, res) => {
      open(res);
      res.write('id: 9\ndata: x\n\n');
    });
    const state = mapScope(new Map());
    await collectSource(source({ url: server.url }), { limit: 1, timeoutMs: 5000, state, autoCommit: false });
    expect(await state.get('last_event_id')).toBeUndefined();
  });

  it('retries 5xx answers and recovers; fails on 401 naming the URL and status', async () => {
    server = await startServer((_req, res, n) => {
      if (n <= 2) return json(res, { e: 'busy' }, 503);
      open(res);
      res.write('data: ok\n\n');
    });
    const r = await collectSource(source({ url: server.url }), { limit: 1, timeoutMs: 5000 });
    expect(values(r)).toEqual(['ok']);
    expect(server.requests.length).toBe(3);
    await server.close();
    server = await startServer((_req, res) => json(res, { error: 'bad token' }, 401));
    const err = await collectSource(source({ url: `${server.url}/s?k=1`, auth: { bearer: 'tok-secret' } }), { timeoutMs: 5000 }).catch((e) => e);
    expect(err.message).toContain(`event stream ${server.url}/s?k=*** answered 401 (authentication failed): {"error":"bad token"}`);
    expect(err.message).not.toContain('tok-secret');
    expect(server.requests[0]!.headers.authorization).toBe('Bearer tok-secret');
  });

  it('survives a server restart mid-stream: reconnects with Last-Event-ID and loses nothing', async () => {
    // The server's history; it replays everything after Last-Event-ID, like a broker with retention.
    const history = Array.from({ length: 200 }, (_, i) => i + 1);
    let published = 100;
    const handler = (req: { headers: Record<string, unknown> }, res: ServerResponse) => {
      open(res);
      const after = Number(req.headers['last-event-id'] ?? 0);
      res.write(history.slice(after, published).map((i) => `id: ${i}\ndata: ${i}\n\n`).join(''));
    };
    server = await startServer(handler);
    const port = Number(new URL(server.url).port);
    const got: unknown[] = [];
    const src = source({ url: server.url, reconnect: { initial: '20ms', max: '100ms' } });
    const run = collectSource(src, { limit: 200, timeoutMs: 15000 });
    // The first 100 arrived; take the server down while the stream is open.
    await waitFor(() => src.lastEventId === '100', 'the first 100 events');
    await server.close();
    published = 200;
    await waitFor(() => src.connections >= 3, 'failed reconnect attempts while the server is down');
    server = await startServer(handler, port);
    const r = await run;
    got.push(...values(r));
    expect(got).toEqual(history.map(String));
    expect(server.requests[0]!.headers['last-event-id']).toBe('100');
  });

  it('gives up after reconnect.max_retries failed attempts', async () => {
    server = await startServer((_req, res) => json(res, {}, 502));
    const err = await collectSource(source({ url: server.url, reconnect: { initial: '5ms', max: '10ms', max_retries: 2 } }), { timeoutMs: 5000 }).catch((e) => e);
    expect(err.message).toContain('gave up after 3 consecutive failed attempts');
  });

  it('with buffer: durable, replays received events the sink did not acknowledge after a restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sluice-sse-'));
    dirs.push(dataDir);
    server = await startServer((req, res) => {
      open(res);
      if (!req.headers['last-event-id']) res.write('id: 1\ndata: a\n\nid: 2\ndata: b\n\n');
    });
    const state = mapScope(new Map());
    const first = await collectSource(source({ url: server.url, buffer: 'durable', buffer_fsync: 'never' }), { limit: 2, timeoutMs: 5000, state, dataDir, autoCommit: false });
    expect(values(first)).toEqual(['a', 'b']);
    // On disk means safe: the next connect resumes after these events.
    expect(await state.get('last_event_id')).toBe('2');
    const second = await collectSource(source({ url: server.url, buffer: 'durable', buffer_fsync: 'never' }), { limit: 2, timeoutMs: 5000, state, dataDir });
    expect(values(second)).toEqual(['a', 'b']);
  });
});

describe('sse test()', () => {
  it('connects and reports the first data', async () => {
    const { spec } = await import('./index.js');
    server = await startServer((_req, res) => {
      open(res);
      res.write('data: hi\n\n');
    });
    const steps: string[] = [];
    await spec.test!({ url: server.url }, 'source', (s) => steps.push(s.message), AbortSignal.timeout(5000));
    expect(steps.at(-1)).toBe(`received data from ${server.url}/`);
  });
});
