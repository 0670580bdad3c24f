import { afterEach, describe, expect, it } from 'vitest';
import { startPipeline } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import { endpointDef, newRecordingSink, parsedOptions, pipelineDef, pipelineEnv, recordingEndpoint, recordingSinkSpec, waitFor } from '../../testing/harness.js';
import { startServer, type TestServer } from '../http_pull/testkit.js';
import { spec } from './index.js';
import { sseOptions } from './options.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('sse in a pipeline', () => {
  it('stores the event id only after the sink accepted the events, and a restart resumes from it without loss', async () => {
    // A server with replay: it sends every event after Last-Event-ID, then keeps the stream open.
    const total = 40;
    server = await startServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const after = Number(req.headers['last-event-id'] ?? 0);
      let out = '';
      for (let i = after + 1; i <= total; i++) out += `id: ${i}\ndata: {"n":${i}}\n\n`;
      res.write(out);
    });
    const state = memoryStateStore();
    const sinks = { out: newRecordingSink() };
    const env = pipelineEnv({ state, dataDir: '/tmp/sluice-sse-test', extra: [spec, recordingSinkSpec(sinks)] });
    const def = pipelineDef('sse-p', endpointDef('sse', parsedOptions(sseOptions(), { url: server.url })), recordingEndpoint('out'), { retry: { max_attempts: 4 } });
    const scope = state.scope('sse-p', 'source');

    sinks.out.down = true;
    let h = startPipeline(def, env);
    // The sink's retries run out and the pipeline fails: what was received but not written is gone from memory.
    const failed = await h.done;
    expect(failed.status).toBe('failed');
    expect(sinks.out.writes).toBeGreaterThanOrEqual(4);
    expect(await scope.get('last_event_id')).toBeUndefined();
    expect(sinks.out.written).toHaveLength(0);

    sinks.out.down = false;
    h = startPipeline(def, env);
    await waitFor(() => sinks.out.written.length >= total, 'every event');
    await waitFor(async () => (await scope.get('last_event_id')) === String(total), 'last id committed');
    await h.stop();
    expect(sinks.out.written.map((r) => (r.value as { n: number }).n)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(server.requests.every((q) => q.headers['last-event-id'] === undefined)).toBe(true);

    const before = server.requests.length;
    h = startPipeline(def, env);
    await waitFor(() => server!.requests.length > before, 'the restarted pipeline to connect');
    await h.stop();
    expect(server.requests[before]!.headers['last-event-id']).toBe(String(total));
    expect(sinks.out.written).toHaveLength(total);
  });
});
