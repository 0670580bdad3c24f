// The webhook sink against a local HTTP server: batching modes, templates, auth, retries and permanent failures.

import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { formatIssue } from '../../core/errors.js';
import { parseOptions, type ConnectorSpec } from '../../core/spec.js';
import type { SluiceRecord, SourceContext } from '../../core/types.js';
import { endpointDef, newRecordingSink, parsedOptions, pipelineDef, recordingEndpoint } from '../../testing/harness.js';
import { sinkOptions } from './options.js';
import { parseRetryAfter } from './sink.js';
import { Cleanup, start, target } from './testkit.js';
import { spec } from './index.js';

const c = new Cleanup();
afterEach(() => c.run());

interface Script {
  rows: Array<Record<string, unknown>>;
  committed: unknown[];
}

/** A source emitting `rows` in one batch (ack 'b1'), then ending. */
function scripted(s: Script): ConnectorSpec {
  return {
    name: 'scripted',
    title: '',
    description: '',
    source: {
      options: z.object({}),
      create: () => ({
        async run(ctx: SourceContext) {
          const records: SluiceRecord[] = s.rows.map((v, i) => ({ value: v, key: `k${i}` }));
          await ctx.emit({ records, decoded: true, ack: 'b1' });
        },
        commit(acks: unknown[]) {
          s.committed.push(...acks);
        },
      }),
    },
  };
}

function run(rows: Array<Record<string, unknown>>, sinkOpts: Record<string, unknown>, o: { attempts?: number; format?: string } = {}) {
  const s: Script = { rows, committed: [] };
  const sink = endpointDef('webhook', parsedOptions(sinkOptions(), sinkOpts) as unknown as Record<string, unknown>, o.format ? { format: { name: o.format, options: {} } } : {});
  const def = pipelineDef('whs', endpointDef('scripted', {}), sink, { retry: { max_attempts: o.attempts ?? 3 }, batch: { linger_ms: 0 } });
  const h = start(c, def, {}, { extra: [scripted(s)] });
  return { h, s };
}

const rows = [
  { id: 1, dev: 'a', name: 'x"y', tags: ['t1'] },
  { id: 2, dev: 'b', name: 'z', tags: [] },
  { id: 3, dev: 'a', name: 'w', tags: ['t2', 't3'] },
];

describe('webhook sink', () => {
  it('sends one request per record with templated method, URL, headers and body', async () => {
    const t = await target(c);
    const { h, s } = run(rows, {
      url: `${t.url}/devices/{{ dev }}?id={{ id }}`,
      method: '{{#if eq dev "a"}}PUT{{else}}POST{{/if}}',
      headers: { 'X-Device': '{{ upper dev }}', 'X-Key': '{{ _key }}' },
      dataTemplate: '{"n":"{{ name }}","tags":{{ json tags }},"first":"{{ tags[0] }}"}',
      concurrency: 1,
      auth: { bearer: 'tok' },
    });
    expect((await h.done).status).toBe('completed');
    expect(s.committed).toEqual(['b1']);
    expect(t.got.map((r) => `${r.method} ${r.url}`)).toEqual(['PUT /devices/a?id=1', 'POST /devices/b?id=2', 'PUT /devices/a?id=3']);
    expect(t.got.map((r) => r.headers['x-device'])).toEqual(['A', 'B', 'A']);
    expect(t.got.map((r) => r.headers['x-key'])).toEqual(['k0', 'k1', 'k2']);
    expect(t.got[0]!.headers.authorization).toBe('Bearer tok');
    expect(t.got[0]!.headers['content-type']).toBe('application/json');
    expect(JSON.parse(t.got[0]!.body)).toEqual({ n: 'x"y', tags: ['t1'], first: 't1' });
    expect(JSON.parse(t.got[1]!.body)).toEqual({ n: 'z', tags: [], first: '' });
  });

  it('sends a JSON array per write, split where the templated URL changes, with basic auth', async () => {
    const t = await target(c);
    const { h } = run(rows, { url: `${t.url}/d/{{ dev }}`, batch_mode: 'array', auth: { username: 'u', password: 'p' } });
    expect((await h.done).status).toBe('completed');
    expect(t.got.map((r) => r.url)).toEqual(['/d/a', '/d/b', '/d/a']);
    expect(JSON.parse(t.got[0]!.body)).toEqual([rows[0]]);
    expect(t.got[0]!.headers.authorization).toBe('Basic ' + Buffer.from('u:p').toString('base64'));
    const t2 = await target(c);
    const { h: h2 } = run(rows, { url: `${t2.url}/all`, sendSingle: false });
    expect((await h2.done).status).toBe('completed');
    expect(t2.got.length).toBe(1);
    expect(JSON.parse(t2.got[0]!.body)).toEqual(rows);
  });

  it('sends NDJSON per write with an API key header', async () => {
    const t = await target(c);
    const { h } = run(rows, { url: `${t.url}/bulk`, batch_mode: 'ndjson', auth: { api_key: 'k', api_key_header: 'X-Api' } });
    expect((await h.done).status).toBe('completed');
    expect(t.got.length).toBe(1);
    expect(t.got[0]!.headers['content-type']).toBe('application/x-ndjson');
    expect(t.got[0]!.headers['x-api']).toBe('k');
    expect(t.got[0]!.body.trim().split('\n').map((l) => JSON.parse(l))).toEqual(rows);
  });

  it('retries 503 answers and then succeeds, committing once', async () => {
    const t = await target(c, (_r, n) => (n <= 2 ? { status: 503, body: 'maintenance' } : { status: 204 }));
    const { h, s } = run([rows[0]!], { url: `${t.url}/x`, initial_backoff: '10ms' });
    expect((await h.done).status).toBe('completed');
    expect(t.got.length).toBe(3);
    expect(s.committed).toEqual(['b1']);
  });

  it('honours Retry-After on 429', async () => {
    const t = await target(c, (_r, n) => (n === 1 ? { status: 429, headers: { 'Retry-After': '1' } } : { status: 200 }));
    const { h } = run([rows[0]!], { url: `${t.url}/x`, initial_backoff: '10ms' });
    expect((await h.done).status).toBe('completed');
    expect(t.got.length).toBe(2);
    expect(t.got[1]!.at - t.got[0]!.at).toBeGreaterThanOrEqual(950);
    expect(parseRetryAfter(new Date(Date.now() + 5000).toUTCString())).toBeGreaterThan(3000);
  });

  it('fails at once on a permanent 400, naming the status and URL, and commits nothing', async () => {
    const t = await target(c, () => ({ status: 400, body: '{"error":"field temp is required"}' }));
    const { h, s } = run([rows[0]!], { url: `${t.url}/x?api_key=secret` }, { attempts: 5 });
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toContain('POST http://127.0.0.1:');
    expect(r.error?.message).toContain('/x?api_key=*** answered 400: {"error":"field temp is required"}');
    expect(r.error?.message).not.toContain('secret');
    expect(t.got.length).toBe(1);
    expect(s.committed).toEqual([]);
  });

  it('in single mode a permanent 4xx rejects only that record: it goes to the dead-letter sink, the others are delivered and committed', async () => {
    const t = await target(c, (r) => (JSON.parse(r.body).id === 2 ? { status: 422, body: 'name too short' } : { status: 201 }));
    const s: Script = { rows, committed: [] };
    const dead = newRecordingSink();
    const sink = endpointDef('webhook', parsedOptions(sinkOptions(), { url: `${t.url}/x`, concurrency: 2 }) as unknown as Record<string, unknown>);
    const def = pipelineDef('whs-dlq', endpointDef('scripted', {}, { bad_data: 'dlq' }), sink, { dlq: recordingEndpoint('dead'), batch: { linger_ms: 0 } });
    const h = start(c, def, { dead }, { extra: [scripted(s)] });
    const r = await h.done;
    expect(r.status).toBe('completed');
    expect(t.got.map((x) => JSON.parse(x.body).id).sort()).toEqual([1, 2, 3]);
    expect(dead.written.map((x) => x.value)).toEqual([
      expect.objectContaining({ stage: 'sink', output: 'sink', error_class: 'SCHEMA', raw_kind: 'row', raw: JSON.stringify(rows[1]), attempts: 1 }),
    ]);
    expect(String((dead.written[0]!.value as { error: string }).error)).toMatch(/answered 422: name too short/);
    expect(r.stats).toMatchObject({ records_out: 2, dlq: 1, sink_rejected: 1 });
    expect(s.committed).toEqual(['b1']);
  });

  it('gives up on persistent 5xx after max_attempts and the pipeline retry policy', async () => {
    const t = await target(c, () => ({ status: 502 }));
    const { h, s } = run([rows[0]!], { url: `${t.url}/x`, max_attempts: 2, initial_backoff: '5ms' }, { attempts: 2 });
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/answered 502 \(after 2 attempt\(s\)\)/);
    expect(t.got.length).toBe(4);
    expect(s.committed).toEqual([]);
  });

  it('test() reports whether the source can listen and the sink target answers', async () => {
    const t = await target(c);
    const steps: string[] = [];
    const report = (s: { message: string }) => void steps.push(s.message);
    await spec.test!({ url: `${t.url}/x` }, 'sink', report, new AbortController().signal);
    expect(steps[0]).toMatch(/^connected to 127\.0\.0\.1:\d+$/);
    await expect(spec.test!({ url: 'http://127.0.0.1:1/x' }, 'sink', report, new AbortController().signal)).rejects.toThrow(/cannot connect to http:\/\/127\.0\.0\.1:1\/x/);
    const port = Number(new URL(t.url).port);
    await expect(spec.test!({ port }, 'source', report, new AbortController().signal)).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
  });

  it('validates options with aliases and did-you-mean', () => {
    const ok = parseOptions(sinkOptions(), { endpoint: 'http://h/x', dataTemplate: '{{ a }}', sendSingle: true, request_timeout: '2s' });
    expect(ok.ok && ok.value).toMatchObject({ url: 'http://h/x', body_template: '{{ a }}', batch_mode: 'single', timeout: 2000, method: 'POST' });
    const bad = parseOptions(sinkOptions(), { url: 'ftp://x', body_templte: '{{ a }}' });
    const msgs = bad.ok ? [] : bad.issues.map(formatIssue);
    expect(msgs).toContain("body_templte: unknown option 'body_templte'; did you mean 'body_template'?");
    expect(msgs).toContain('url: must be an http:// or https:// URL');
    const tpl = parseOptions(sinkOptions(), { url: 'http://h/', body_template: '{\n  "a": {{ uper a }}\n}' });
    expect(tpl.ok ? [] : tpl.issues.map(formatIssue)).toEqual(["body_template: template 2:11: unknown helper 'uper'; did you mean 'upper'?"]);
    const auth = parseOptions(sinkOptions(), { url: 'http://h/', auth: { bearer: 'a', api_key: 'b' } });
    expect(auth.ok ? [] : auth.issues.map(formatIssue)).toEqual(['auth: use one of bearer, username/password or api_key']);
  });
});
