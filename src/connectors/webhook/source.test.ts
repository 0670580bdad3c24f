// The webhook source inside the real runtime: body shapes, auth, limits, answers tied to the sink's acknowledgement,
// backpressure, bad data and the durable buffer across a restart.

import { createHmac } from 'node:crypto';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { memoryStateStore } from '../../core/state.js';
import { formatIssue } from '../../core/errors.js';
import { parseOptions } from '../../core/spec.js';
import type { BadDataPolicy } from '../../core/types.js';
import { endpointDef, newRecordingSink, parsedOptions, pipelineDef, recordingEndpoint, waitFor } from '../../testing/harness.js';
import { sourceOptions } from './options.js';
import { Cleanup, freePort, post, start } from './testkit.js';

const c = new Cleanup();
afterEach(() => c.run());

async function setup(opts: Record<string, unknown> = {}, p: { bad?: BadDataPolicy; dlq?: boolean; buffer?: { max_records: number; max_bytes: number }; attempts?: number } = {}) {
  const port = await freePort();
  const o = parsedOptions(sourceOptions(), { port, path: '/hook', ...opts }) as unknown as Record<string, unknown>;
  const def = pipelineDef('wh', endpointDef('webhook', o, { bad_data: p.bad ?? 'fail' }), recordingEndpoint('main'), {
    dlq: p.dlq ? recordingEndpoint('dlq') : undefined,
    buffer: p.buffer,
    retry: p.attempts ? { max_attempts: p.attempts } : undefined,
  });
  return { url: `http://127.0.0.1:${port}/hook`, def };
}

describe('webhook source', () => {
  it('accepts a single record, an array and NDJSON, with request metadata', async () => {
    const { url, def } = await setup();
    def.source.metadata_fields = { path: '_path', ip: '_remote_addr' };
    const sinks = { main: newRecordingSink() };
    start(c, def, sinks);
    expect((await post(url + '?x=1', '{"id":1}', { authorization: 'Bearer nope', 'x-req': 'a' })).status).toBe(200);
    expect((await post(url, '[{"id":2},{"id":3}]')).status).toBe(200);
    expect((await post(url, '{"id":4}\n{"id":5}\n')).status).toBe(200);
    expect(sinks.main.written.map((r) => (r.value as { id: number }).id)).toEqual([1, 2, 3, 4, 5]);
    const first = sinks.main.written[0]!;
    expect(first.value).toMatchObject({ path: '/hook?x=1', ip: '127.0.0.1' });
    expect(first.headers?.['x-req']).toBe('a');
    expect(first.headers?.authorization).toBeUndefined();
    expect(typeof first.meta?._received_at).toBe('number');
    expect((await post(url.replace('/hook', '/other'), '{}')).status).toBe(404);
    expect((await post(url, '{}', {}, 'PUT')).status).toBe(405);
  });

  it('refuses a missing or wrong bearer token with 401', async () => {
    const { url, def } = await setup({ bearer_token: 's3cret' });
    const sinks = { main: newRecordingSink() };
    start(c, def, sinks);
    expect((await post(url, '{"id":1}')).status).toBe(401);
    expect((await post(url, '{"id":1}', { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await post(url, '{"id":2}', { authorization: 'Bearer s3cret' })).status).toBe(200);
    expect(sinks.main.written.map((r) => r.value)).toEqual([{ id: 2 }]);
  });

  it('verifies GitHub-style HMAC signatures', async () => {
    const { url, def } = await setup({ signature: { secret: 'gh', style: 'github' } });
    const sinks = { main: newRecordingSink() };
    start(c, def, sinks);
    const body = '{"action":"opened"}';
    const good = 'sha256=' + createHmac('sha256', 'gh').update(body).digest('hex');
    const bad = 'sha256=' + createHmac('sha256', 'other').update(body).digest('hex');
    expect((await post(url, body, { 'x-hub-signature-256': bad })).status).toBe(401);
    expect((await post(url, body)).status).toBe(401);
    expect((await post(url, body + ' ', { 'x-hub-signature-256': good })).status).toBe(401);
    expect((await post(url, body, { 'x-hub-signature-256': good })).status).toBe(200);
    expect(sinks.main.written.map((r) => r.value)).toEqual([{ action: 'opened' }]);
  });

  it('verifies Stripe-style signatures with a timestamp tolerance', async () => {
    const { url, def } = await setup({ hmac: { secret: 'whsec', style: 'stripe', tolerance: '1m' } });
    const sinks = { main: newRecordingSink() };
    start(c, def, sinks);
    const body = '{"type":"charge.succeeded"}';
    const sign = (t: number, secret = 'whsec') => `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
    const now = Math.floor(Date.now() / 1000);
    expect((await post(url, body, { 'stripe-signature': sign(now, 'nope') })).status).toBe(401);
    expect((await post(url, body, { 'stripe-signature': sign(now - 600) })).status).toBe(401);
    expect((await post(url, body, { 'stripe-signature': `${sign(now)},v0=zz` })).status).toBe(200);
    expect(sinks.main.written.length).toBe(1);
  });

  it('answers 413 for a body over max_body_size', async () => {
    const { url, def } = await setup({ max_body_size: '1KiB' });
    const sinks = { main: newRecordingSink() };
    start(c, def, sinks);
    const big = JSON.stringify({ pad: 'x'.repeat(4096) });
    expect((await post(url, big)).status).toBe(413);
    expect((await post(url, '{"ok":1}')).status).toBe(200);
    expect(sinks.main.written.map((r) => r.value)).toEqual([{ ok: 1 }]);
  });

  it('answers 413 for a chunked body that grows past the limit without buffering it', async () => {
    const { url, def } = await setup({ max_body_size: '1KiB' });
    const sinks = { main: newRecordingSink() };
    start(c, def, sinks);
    await post(url, '{"warm":1}');
    const chunks = Array.from({ length: 64 }, () => Buffer.alloc(1024, 0x20));
    const r = await request(url, { method: 'POST', body: Readable.from(chunks) }).catch((e: Error) => e);
    // The answer is 413; a client still writing may instead see the connection closed under it.
    if (!(r instanceof Error)) expect(r.statusCode).toBe(413);
    expect(sinks.main.written.length).toBe(1);
  });

  it('answers 503 with Retry-After when the sink does not acknowledge within ack_timeout', async () => {
    const { url, def } = await setup({ ack_timeout: '200ms' });
    const sinks = { main: newRecordingSink() };
    sinks.main.delayMs = 1500;
    start(c, def, sinks);
    const r = await post(url, '{"id":1}');
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('1');
    expect(r.text).toMatch(/did not acknowledge within 200 ms/);
  });

  it('refuses requests that waited out ack_timeout under backpressure without letting them into the pipeline', async () => {
    const { url, def } = await setup({ ack_timeout: '300ms', backpressure_status: 429 }, { buffer: { max_records: 1, max_bytes: 1e9 } });
    const sinks = { main: newRecordingSink() };
    sinks.main.delayMs = 1500;
    const h = start(c, def, sinks);
    const first = post(url, '{"id":1}');
    await waitFor(() => h.stats.records_in === 1, 'the first request in the pipeline');
    const second = await post(url, '{"id":2}');
    expect(second.status).toBe(429);
    expect(second.text).toMatch(/stayed full for 300 ms/);
    expect((await first).status).toBe(503);
    await waitFor(() => sinks.main.written.length === 1, 'the first record written');
    await h.stop();
    expect(sinks.main.written.map((r) => r.value)).toEqual([{ id: 1 }]);
  });

  it('ack: immediate answers at once, before the sink', async () => {
    const { url, def } = await setup({ ack: 'immediate' });
    const sinks = { main: newRecordingSink() };
    sinks.main.delayMs = 500;
    start(c, def, sinks);
    expect((await post(url, '{"id":1}')).status).toBe(200);
    expect(sinks.main.written.length).toBe(0);
    await waitFor(() => sinks.main.written.length === 1, 'the record');
  });

  it('answers 2xx only after the sink accepted the records', async () => {
    const { url, def } = await setup();
    const sinks = { main: newRecordingSink() };
    sinks.main.delayMs = 300;
    start(c, def, sinks);
    const t0 = Date.now();
    const r = await post(url, '[{"id":1},{"id":2}]');
    expect(r.status).toBe(200);
    // The answer came only once the slow sink had written the request's records.
    expect(sinks.main.written.length).toBe(2);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });

  it('answers 5xx and commits nothing when the sink fails', async () => {
    const { url, def } = await setup({}, { attempts: 2 });
    const sinks = { main: newRecordingSink() };
    sinks.main.down = true;
    const h = start(c, def, sinks);
    const r = await post(url, '{"id":1}');
    expect(r.status).toBe(503);
    const result = await h.done;
    expect(result.status).toBe('failed');
    expect(result.error?.message).toMatch(/sink is down/);
    expect(sinks.main.written.length).toBe(0);
  });

  it('answers 503 with Retry-After once more than max_pending_requests wait under backpressure', async () => {
    const { url, def } = await setup({ max_pending_requests: 2, retry_after: '2s', ack_timeout: '20s' }, { buffer: { max_records: 1, max_bytes: 1e9 } });
    const sinks = { main: newRecordingSink() };
    sinks.main.delayMs = 1000;
    start(c, def, sinks);
    expect((await post(url, '{"warm":1}')).status).toBe(200);
    const all = await Promise.all(Array.from({ length: 8 }, (_, i) => post(url, `{"id":${i}}`)));
    const busy = all.filter((r) => r.status === 503);
    const ok = all.filter((r) => r.status === 200);
    expect(busy.length).toBeGreaterThan(0);
    expect(busy[0]!.headers.get('retry-after')).toBe('2');
    // Whatever got a 200 was written; whatever was refused was not.
    expect(sinks.main.written.length).toBe(1 + ok.length);
  });

  it('sends bad payloads to the dead-letter sink and still acknowledges them', async () => {
    const { url, def } = await setup({}, { bad: 'dlq', dlq: true });
    const sinks = { main: newRecordingSink(), dlq: newRecordingSink() };
    start(c, def, sinks);
    expect((await post(url, '{"id":1}\n{oops\n{"id":2}')).status).toBe(200);
    expect(sinks.main.written.map((r) => r.value)).toEqual([{ id: 1 }, { id: 2 }]);
    expect(sinks.dlq.written.length).toBe(1);
    expect(sinks.dlq.written[0]!.value).toMatchObject({ raw: '{oops', source: 'webhook' });
  });

  it('fails the request with 503 when bad_data is fail', async () => {
    const { url, def } = await setup();
    const sinks = { main: newRecordingSink() };
    const h = start(c, def, sinks);
    expect((await post(url, '{oops')).status).toBe(503);
    expect((await h.done).status).toBe('failed');
  });

  it('ack: buffer answers before the sink and loses nothing across a restart', async () => {
    const { url, def } = await setup({ ack: 'buffer', buffer_fsync: 'never' });
    const state = memoryStateStore();
    const dataDir = c.tempDir();
    const down = { main: newRecordingSink() };
    down.main.down = true;
    const h1 = start(c, def, down, { state, dataDir });
    for (let i = 0; i < 5; i++) expect((await post(url, `{"id":${i}}`)).status).toBe(200);
    await h1.stop();
    expect(down.main.written.length).toBe(0);
    const up = { main: newRecordingSink() };
    start(c, def, up, { state, dataDir });
    expect((await post(url, '{"id":5}')).status).toBe(200);
    await waitFor(() => up.main.written.length === 6, 'six records after the restart');
    expect(up.main.written.map((r) => (r.value as { id: number }).id)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('validates options with aliases and did-you-mean', () => {
    const ok = parseOptions(sourceOptions(), { httpServerPort: 9000, datasource: '/in', token: 't', acknowledge: 'immediate' });
    expect(ok.ok && ok.value).toMatchObject({ port: 9000, path: '/in', bearer_token: 't', ack: 'immediate', mount: 'auto' });
    const bad = parseOptions(sourceOptions(), { prot: 1, path: 'no-slash', backpressure_status: 500 });
    expect(bad.ok).toBe(false);
    const msgs = bad.ok ? [] : bad.issues.map(formatIssue);
    expect(msgs).toContain("prot: unknown option 'prot'; did you mean 'port'?");
    expect(msgs).toContain("path: must start with '/'");
    expect(msgs).toContain('backpressure_status: must be 429 or 503');
    const both = parseOptions(sourceOptions(), { bearer_token: 'a', signature: { secret: 'b' } });
    expect(both.ok ? [] : both.issues.map(formatIssue)).toEqual(['signature: use either `bearer_token` or `signature`, not both']);
  });
});

describe('webhook source mounted on a host server (sluice serve)', () => {
  /** A stand-in for the control plane: routes /v1/webhooks/<pipeline><path> to the mounted handler. */
  async function host() {
    const { createServer } = await import('node:http');
    const { findMount, installMountHost } = await import('./mount.js');
    const uninstall = installMountHost({ urlFor: (p, path) => `/v1/webhooks/${p}${path}` });
    const server = createServer((req, res) => {
      const m = /^\/v1\/webhooks\/([^/?]+)(\/[^?]*)?/.exec(req.url ?? '');
      const h = m ? findMount(m[1]!) : undefined;
      if (!h) {
        res.statusCode = 404;
        res.end();
        return;
      }
      h(req, res, m![2] ?? '/');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    c.add(async () => {
      uninstall();
      await new Promise<void>((r) => server.close(() => r()));
    });
    return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  }

  const mountedDef = (opts: Record<string, unknown>) =>
    pipelineDef('wh', endpointDef('webhook', parsedOptions(sourceOptions(), { path: '/hook', ...opts }) as unknown as Record<string, unknown>, { bad_data: 'fail' }), recordingEndpoint('main'));

  it('without host and port, serves under the host at /v1/webhooks/<pipeline><path>, answering after the sink', async () => {
    const base = await host();
    const sinks = { main: newRecordingSink() };
    const h = start(c, mountedDef({ bearer_token: 'tok' }), sinks);
    const { findMount } = await import('./mount.js');
    await waitFor(() => findMount('wh') !== undefined, 'the webhook to mount');
    const url = `${base}/v1/webhooks/wh/hook`;
    expect((await post(url, '{"id":1}', { authorization: 'Bearer tok' })).status).toBe(200);
    expect(sinks.main.written.map((x) => x.value)).toEqual([{ id: 1 }]);
    expect((await post(url, '{"id":2}')).status).toBe(401);
    expect((await post(`${base}/v1/webhooks/wh/other`, '{"id":3}', { authorization: 'Bearer tok' })).status).toBe(404);
    await h.stop();
    expect((await post(url, '{"id":4}', { authorization: 'Bearer tok' })).status).toBe(404);
    expect(sinks.main.written).toHaveLength(1);
  });

  it('with a port (or mount: false) listens on its own port even under a host', async () => {
    await host();
    const port = await freePort();
    const sinks = { main: newRecordingSink() };
    start(c, mountedDef({ port }), sinks);
    expect((await post(`http://127.0.0.1:${port}/hook`, '{"id":1}')).status).toBe(200);
    expect(sinks.main.written).toHaveLength(1);
  });

  it('mount: true outside sluice serve fails the pipeline with a clear error', async () => {
    const h = start(c, mountedDef({ mount: true }), { main: newRecordingSink() });
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/mount: true needs `sluice serve`/);
  });
});
