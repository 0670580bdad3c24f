// The WebSocket source with `buffer: durable` in the real runtime: a burst is appended in bounded read turns.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { startPipeline } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import { endpointDef, newRecordingSink, pipelineDef, recordingEndpoint, recordingEnv } from '../../testing/harness.js';
import { DURABLE_TURN_FRAMES } from './source.js';
import { options, startServer, waitFor } from './testkit.js';

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

describe('websocket source with the durable buffer', () => {
  it('pauses reading after a turn of frames so the sink gets its turns, and delivers a burst in order', async () => {
    const s = await startServer();
    cleanup.push(() => s.close());
    const n = 20 * DURABLE_TURN_FRAMES;
    // The whole burst is queued on the server at once, so the client finds far more than one turn's worth to read.
    s.onConnection = (c) => {
      for (let i = 0; i < n; i++) c.ws.send(`{"n":${i},"pad":"${'x'.repeat(100)}"}`);
    };
    const pauses = vi.spyOn(WebSocket.prototype, 'pause');
    const dataDir = mkdtempSync(join(tmpdir(), 'sluice-ws-durable-'));
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const sinks = { main: newRecordingSink() };
    const source = endpointDef('websocket', options({ url: s.url, buffer: 'durable', buffer_fsync: 'never' }) as unknown as Record<string, unknown>);
    const h = startPipeline(pipelineDef('ws', source, recordingEndpoint('main'), { batch: { linger_ms: 0 } }), recordingEnv(sinks, { state: memoryStateStore(), dataDir }));
    cleanup.push(async () => void (await h.stop()));
    await waitFor(() => sinks.main.written.length === n, `all ${n} messages`, 20_000);
    expect(sinks.main.written.map((r) => (r.value as { n: number }).n)).toEqual(Array.from({ length: n }, (_, i) => i));
    // The sink never pushed back (the log takes everything), so every pause was the end of a read turn: at most a
    // turn's worth plus the rest of the socket chunk being parsed arrives between two of them.
    expect(pauses.mock.calls.length).toBeGreaterThanOrEqual(n / (2 * DURABLE_TURN_FRAMES) - 1);
  });
});
