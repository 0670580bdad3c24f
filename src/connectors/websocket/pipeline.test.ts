// The source inside the real runtime: bad-data policies, TLS, the durable buffer across a sink outage.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { startPipeline, type PipelineHandle } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import { DEFAULT_RETRY, type PipelineDef } from '../../core/model.js';
import type { BadDataPolicy } from '../../core/types.js';
import { endpointDef, newRecordingSink, pipelineDef, recordingEndpoint, recordingEnv, type RecordingSink } from '../../testing/harness.js';
import { options, startServer, waitFor, type TestServer } from './testkit.js';

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

function pipeline(wsOptions: Record<string, unknown>, o: { bad?: BadDataPolicy; dlq?: boolean; retry?: Partial<typeof DEFAULT_RETRY> } = {}): PipelineDef {
  const source = endpointDef('websocket', options(wsOptions) as unknown as Record<string, unknown>, { bad_data: o.bad ?? 'fail' });
  return pipelineDef('ws', source, recordingEndpoint('main'), {
    dlq: o.dlq ? recordingEndpoint('dlq') : undefined,
    batch: { linger_ms: 0 },
    retry: { ...DEFAULT_RETRY, ...o.retry },
  });
}

async function server(): Promise<TestServer> {
  const s = await startServer();
  cleanup.push(() => s.close());
  return s;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sluice-ws-'));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function start(def: PipelineDef, sinks: Record<string, RecordingSink>, state = memoryStateStore(), dataDir = tempDir()): PipelineHandle {
  const h = startPipeline(def, recordingEnv(sinks, { state, dataDir }));
  cleanup.push(async () => void (await h.stop()));
  return h;
}

describe('websocket source in a pipeline', () => {
  it('invalid JSON with bad_data: drop is counted and the rest goes on', async () => {
    const s = await server();
    s.onConnection = (c) => ['{"a":1}', '{oops', '{"a":2}'].forEach((m) => c.ws.send(m));
    const sinks = { main: newRecordingSink() };
    const h = start(pipeline({ url: s.url }, { bad: 'drop' }), sinks);
    await waitFor(() => sinks.main.written.length === 2, 'two good rows');
    expect(sinks.main.written.map((r) => r.value)).toEqual([{ a: 1 }, { a: 2 }]);
    expect(h.stats.dropped).toBe(1);
  });

  it('invalid JSON and invalid UTF-8 with bad_data: dlq reach the dead-letter sink with the source metadata', async () => {
    const s = await server();
    s.onConnection = (c) => {
      c.ws.send('{oops');
      (c.ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.from([0x81, 0x01, 0xff]));
      c.ws.send('{"a":3}');
    };
    const sinks = { main: newRecordingSink(), dlq: newRecordingSink() };
    start(pipeline({ url: s.url }, { bad: 'dlq', dlq: true }), sinks);
    await waitFor(() => sinks.main.written.length === 1 && sinks.dlq.written.length === 2, 'one good, two dead letters');
    const dead = sinks.dlq.written.map((r) => r.value as Record<string, unknown>);
    expect(dead.map((d) => d.raw_encoding).sort()).toEqual(['base64', 'utf8']);
    expect(dead.find((d) => d.raw_encoding === 'utf8')).toMatchObject({ raw: '{oops', source: 'websocket' });
    expect(dead.find((d) => d.raw_encoding === 'base64')).toMatchObject({ raw: '/w==', error: 'text frame is not valid UTF-8' });
    expect((dead[0]!.metadata as Record<string, unknown>)._url).toBe(s.url);
  });

  it('invalid JSON with bad_data: fail stops the pipeline naming the reason', async () => {
    const s = await server();
    s.onConnection = (c) => c.ws.send('{oops');
    const h = start(pipeline({ url: s.url }, { bad: 'fail' }), { main: newRecordingSink() });
    const r = await h.done;
    expect(r.status).toBe('failed');
    expect(r.error?.message).toMatch(/bad record at #0: .*JSON/i);
  });

  it('connects over TLS with a self-signed CA (and refuses it without the CA)', async () => {
    const dir = tempDir();
    const sh = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    sh('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=Test CA', '-keyout', 'ca.key', '-out', 'ca.pem');
    sh('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr');
    writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    sh('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf', '-out', 'server.pem');
    const { readFileSync } = await import('node:fs');
    const https = createHttpsServer({ cert: readFileSync(join(dir, 'server.pem')), key: readFileSync(join(dir, 'server.key')) });
    const wss = new WebSocketServer({ server: https });
    wss.on('connection', (ws) => ws.send('{"secure":true}'));
    await new Promise<void>((r) => https.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise<void>((r) => (wss.clients.forEach((c) => c.terminate()), wss.close(), https.close(() => r()))));
    const url = `wss://localhost:${(https.address() as AddressInfo).port}/`;

    const sinks = { main: newRecordingSink() };
    start(pipeline({ url, tls: { ca: join(dir, 'ca.pem') } }), sinks);
    await waitFor(() => sinks.main.written.length === 1, 'a message over TLS');
    expect(sinks.main.written[0]!.value).toEqual({ secure: true });

    const untrusted = start(pipeline({ url, reconnect: false }), { main: newRecordingSink() });
    const r = await untrusted.done;
    expect(r.error?.message).toMatch(/cannot connect to wss:\/\/localhost:\d+\/: TLS: .*(self.signed|unable to verify|local issuer).*set tls\.ca/i);

    const sinks2 = { main: newRecordingSink() };
    start(pipeline({ url, tls: { skip_verify: true } }), sinks2);
    await waitFor(() => sinks2.main.written.length === 1, 'a message with skip_verify');
  });

  it('durable buffer: a sink outage loses nothing; everything arrives once the sink is back', async () => {
    const s = await server();
    let n = 0;
    let live: TestServer['conns'][number] | undefined;
    s.onConnection = (c) => (live = c);
    const send = (k: number) => {
      for (let i = 0; i < k; i++) live!.ws.send(JSON.stringify({ n: n++ }));
    };
    const sinks = { main: newRecordingSink() };
    const state = memoryStateStore();
    const dataDir = tempDir();
    const h = start(pipeline({ url: s.url, buffer: 'durable', buffer_fsync: 'never' }, { retry: { max_attempts: 1000, initial_backoff_ms: 5, max_backoff_ms: 20 } }), sinks, state, dataDir);
    await waitFor(() => live !== undefined && h.metrics.source.snapshot().connection_state === 2, 'live');
    send(100);
    await waitFor(() => sinks.main.written.length === 100, 'first 100');
    sinks.main.down = true;
    send(500);
    await waitFor(() => (h.metrics.source.snapshot().buffer_appended ?? 0) >= 600, 'appended during the outage');
    // The server drops the connection meanwhile: received messages are on disk, not in a lost in-memory queue.
    live!.ws.terminate();
    await waitFor(() => h.metrics.source.snapshot().reconnects >= 1 && h.metrics.source.snapshot().connection_state === 2, 'reconnected');
    send(100);
    sinks.main.down = false;
    await waitFor(() => new Set(sinks.main.written.map((r) => (r.value as { n: number }).n)).size === 700, 'all 700 after the outage', 10_000);
  });
});
