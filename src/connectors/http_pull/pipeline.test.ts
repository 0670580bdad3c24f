import { afterEach, describe, expect, it } from 'vitest';
import { startPipeline } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import { endpointDef, newRecordingSink, parsedOptions, pipelineDef, pipelineEnv, recordingEndpoint, recordingSinkSpec, waitFor } from '../../testing/harness.js';
import { spec } from './index.js';
import { pullOptions } from './options.js';
import { json, startServer, type TestServer } from './testkit.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('http_pull in a pipeline', () => {
  it('commits the cursor only after the sink accepted the records, and a restart resumes without loss or duplicates', async () => {
    const all = Array.from({ length: 30 }, (_, i) => ({ id: i + 1 }));
    server = await startServer((req, res) => {
      const after = Number(new URL(req.url, 'http://x').searchParams.get('after') || 0);
      json(res, { items: all.filter((r) => r.id > after).slice(0, 5) });
    });
    const state = memoryStateStore();
    const sinks = { out: newRecordingSink() };
    const env = pipelineEnv({ state, dataDir: '/tmp/sluice-http-pull-test', extra: [spec, recordingSinkSpec(sinks)] });
    const options = parsedOptions(pullOptions(), { url: `${server.url}/?after={{ cursor }}`, interval: '10ms', records_path: 'items', incremental: { path: 'id', initial: 0 } });
    const def = pipelineDef('hp', endpointDef('http_pull', options), recordingEndpoint('out'), { retry: { max_attempts: 1000 } });
    const scope = state.scope('hp', 'source');

    sinks.out.down = true;
    let h = startPipeline(def, env);
    await waitFor(() => sinks.out.writes >= 3, 'failing sink writes');
    expect(await scope.get('cursor')).toBeUndefined();

    sinks.out.down = false;
    await waitFor(() => sinks.out.written.length >= 10, 'ten records');
    await waitFor(async () => Number(await scope.get('cursor')) >= 10, 'cursor committed');
    await h.stop();
    const firstRun = sinks.out.written.length;
    const committed = Number(await scope.get('cursor'));
    expect(committed).toBe(firstRun);

    const before = server.requests.length;
    h = startPipeline(def, env);
    await waitFor(() => sinks.out.written.length >= 30, 'all records');
    // The restarted source's first request starts from the committed cursor.
    await waitFor(() => server!.requests.length > before, 'a request from the restarted pipeline');
    await h.stop();
    expect(server.requests[before]!.url).toBe(`/?after=${committed}`);
    expect(sinks.out.written.map((r) => (r.value as { id: number }).id)).toEqual(all.map((r) => r.id));
  });

  it('sends a body that is not JSON to the dead-letter sink and keeps polling', async () => {
    server = await startServer((_req, res, n) => void (n === 1 ? res.end('not json') : json(res, { items: [{ ok: n }] })));
    const sinks = { out: newRecordingSink(), dead: newRecordingSink() };
    const env = pipelineEnv({ dataDir: '/tmp/sluice-http-pull-test', extra: [spec, recordingSinkSpec(sinks)] });
    const options = parsedOptions(pullOptions(), { url: server.url, interval: '10ms', records_path: 'items' });
    const def = pipelineDef('hp-bad', endpointDef('http_pull', options, { bad_data: 'dlq' }), recordingEndpoint('out'), { dlq: recordingEndpoint('dead') });
    const h = startPipeline(def, env);
    await waitFor(() => sinks.out.written.length >= 1 && sinks.dead.written.length >= 1, 'a good and a dead-lettered record');
    await h.stop();
    expect(JSON.stringify(sinks.dead.written[0]!.value)).toContain('not JSON');
  });
});
