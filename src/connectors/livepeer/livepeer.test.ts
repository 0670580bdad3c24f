import { afterEach, describe, expect, it } from 'vitest';
import { collectSource, parsedOptions } from '../../testing/harness.js';
import { parseOptions } from '../../core/spec.js';
import { formatIssue } from '../../core/errors.js';
import { json, startServer, type TestServer } from '../http_pull/testkit.js';
import { livepeerOptions, spec } from './index.js';
import { createFormat } from '../../formats/index.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const DATA: Record<string, unknown[]> = {
  '/api/stream': [{ id: 's1', name: 'cam', isActive: true }],
  '/api/session': [{ id: 'x1', parentId: 's1', recordingStatus: 'ready' }, { id: 'x2', parentId: 's1', recordingStatus: 'waiting' }],
  '/api/asset': [{ id: 'a1', status: { phase: 'ready' } }],
};

async function livepeerServer() {
  return startServer((req, res) => {
    if (req.headers.authorization !== 'Bearer lp-key') return json(res, { errors: ['invalid API key'] }, 401);
    const d = DATA[req.url];
    return d ? json(res, d) : json(res, { errors: ['not found'] }, 404);
  });
}

describe('livepeer', () => {
  it('reads streams, sessions and assets from the API with the key as a bearer token', async () => {
    server = await livepeerServer();
    for (const [endpoint, path] of [['streams', '/api/stream'], ['sessions', '/api/session'], ['assets', '/api/asset']] as const) {
      const o = parsedOptions(livepeerOptions(), { api_key: 'lp-key', interval: '1h', endpoint, base_url: `${server.url}/api` });
      const src = spec.source!.create(o, { format: 'json' });
      const r = await collectSource(src, { limit: 1, timeoutMs: 5000 });
      const rows: unknown[] = [];
      createFormat({ name: 'json', options: {} }).decoder().decode(r.records[0]!.value as string, rows, (e) => {
        throw e;
      });
      expect(rows).toEqual(DATA[path]);
      expect(r.records[0]!.meta).toMatchObject({ _status: 200, _url: `${server.url}${path}` });
    }
  });

  it('fails with the 401 answer when the key is wrong, without showing the key', async () => {
    server = await livepeerServer();
    const o = parsedOptions(livepeerOptions(), { api_key: 'wrong-key', base_url: `${server.url}/api` });
    const err = await collectSource(spec.source!.create(o, { format: 'json' }), { timeoutMs: 5000 }).catch((e) => e);
    expect(err.message).toContain(`GET ${server.url}/api/stream answered 401 (authentication failed)`);
    expect(err.message).not.toContain('wrong-key');
  });

  it('takes the Timeplus options and names a missing key', () => {
    const ok = parseOptions(livepeerOptions(), { apiKey: 'k', interval: '300s', data_type: 'json' });
    expect(ok.ok && ok.value).toMatchObject({ api_key: 'k', interval: 300_000, endpoint: 'streams', base_url: 'https://livepeer.studio/api' });
    const missing = parseOptions(livepeerOptions(), { interval: '300s', endpont: 'assets' });
    const msg = !missing.ok && missing.issues.map(formatIssue).join('\n');
    expect(msg).toContain("missing required option 'api_key'");
    expect(msg).toContain("did you mean 'endpoint'?");
  });
});
