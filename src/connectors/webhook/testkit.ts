// Test helpers: free ports, pipelines with the webhook connector and a recording sink, and an HTTP target double.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPipeline, type PipelineHandle } from '../../core/runtime.js';
import { memoryStateStore, type StateStore } from '../../core/state.js';
import type { PipelineDef } from '../../core/model.js';
import type { ConnectorSpec } from '../../core/spec.js';
import { pipelineEnv, recordingSinkSpec, type RecordingSink } from '../../testing/harness.js';
import { spec } from './index.js';

export { freePort } from '../../testing/ports.js';

export class Cleanup {
  private fns: Array<() => unknown> = [];
  add(fn: () => unknown) {
    this.fns.push(fn);
  }
  async run() {
    const fns = this.fns.reverse();
    this.fns = [];
    for (const f of fns) await f();
  }
  tempDir(): string {
    const d = mkdtempSync(join(tmpdir(), 'sluice-webhook-'));
    this.add(() => rmSync(d, { recursive: true, force: true }));
    return d;
  }
}

export function start(c: Cleanup, def: PipelineDef, sinks: Record<string, RecordingSink>, o: { state?: StateStore; dataDir?: string; extra?: ConnectorSpec[] } = {}): PipelineHandle {
  const env = pipelineEnv({ state: o.state ?? memoryStateStore(), dataDir: o.dataDir ?? c.tempDir(), extra: [spec, recordingSinkSpec(sinks), ...(o.extra ?? [])] });
  const h = startPipeline(def, env);
  c.add(async () => void (await h.stop()));
  return h;
}

/** POSTs until the source listens (it starts asynchronously with the pipeline). */
export async function post(url: string, body: string | Buffer, headers: Record<string, string> = {}, method = 'POST'): Promise<{ status: number; text: string; headers: Headers }> {
  const end = Date.now() + 10_000;
  for (;;) {
    try {
      const r = await fetch(url, { method, body, headers });
      return { status: r.status, text: await r.text(), headers: r.headers };
    } catch (e) {
      const code = ((e as { cause?: { code?: string } }).cause ?? {}).code;
      if (code !== 'ECONNREFUSED' || Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

export interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  at: number;
}

/** An HTTP server recording requests; `reply` decides each answer (default 200). */
export async function target(c: Cleanup, reply: (r: Received, n: number) => { status: number; headers?: Record<string, string>; body?: string } = () => ({ status: 200 })) {
  const got: Received[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (b: Buffer) => chunks.push(b));
    req.on('end', () => {
      const r: Received = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
      got.push(r);
      const a = reply(r, got.length);
      res.writeHead(a.status, a.headers ?? {});
      res.end(a.body ?? '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  c.add(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  return { got, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}
