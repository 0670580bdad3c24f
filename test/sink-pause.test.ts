// `retry.on_exhausted: pause` through the built CLI: a webhook endpoint answering 503 pauses the pipeline, the progress
// log shows `paused` with the reason, and once the endpoint recovers every record arrives exactly once.

import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { startCli, tempDir, waitFor } from './support/cli.js';

let tmp: ReturnType<typeof tempDir> | undefined;
let server: Server | undefined;
let stopCli: (() => void) | undefined;
afterEach(async () => {
  stopCli?.();
  stopCli = undefined;
  if (server) {
    server.closeAllConnections();
    await new Promise<void>((r) => server!.close(() => r()));
    server = undefined;
  }
  tmp?.cleanup();
});

describe('sink pause', () => {
  it('pauses while the endpoint is down, reports why in the progress log, and delivers everything once it is back', async () => {
    let up = false;
    let delivered = 0;
    let refused = 0;
    server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (d: string) => (body += d));
      req.on('end', () => {
        if (!up) {
          refused++;
          res.writeHead(503).end('maintenance');
          return;
        }
        delivered += body.split('\n').filter(Boolean).length;
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    tmp = tempDir();
    tmp.write('p.yaml', `
name: paused
source: { connector: generator, config: { template: iot, count: 2000, interval: 0, seed: 1, batch_size: 20 } }
sink:
  connector: webhook
  config: { url: 'http://127.0.0.1:${port}/in', batch_mode: ndjson, max_attempts: 1 }
batch: { max_records: 50, linger: 0ms }
buffer: { max_records: 100 }
retry: { max_attempts: 2, initial_backoff: 10ms, max_backoff: 200ms, on_exhausted: pause }
`);
    const { child, result } = startCli(['run', 'p.yaml', '--log-format', 'json', '--stats-interval', '100ms', '--data-dir', '.sluice'], { cwd: tmp.dir });
    stopCli = () => child.kill('SIGKILL');
    let stderr = '';
    child.stderr!.on('data', (d: string) => (stderr += d));
    const progress = () =>
      stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.msg === 'progress');
    await waitFor(() => progress().some((p) => p.state === 'paused'), 30_000, 'a progress line with state paused');
    const p = progress().find((x) => x.state === 'paused')!;
    expect(String(p.paused_reason)).toMatch(/sink 'webhook': POST http:\/\/127\.0\.0\.1:\d+\/in answered 503: maintenance/);
    // Backpressure: the generator was held at the queue bound instead of running ahead.
    expect(Number(p.records_in)).toBeLessThanOrEqual(200);
    expect(stderr).toMatch(/paused: the pipeline waits until the sink recovers/);
    // Paused, it keeps trying (every max_backoff): two more refusals after the two regular attempts.
    await waitFor(() => refused >= 4, 10_000, 'retries while paused');
    up = true;
    const r = await result;
    expect(r.code).toBe(0);
    expect(delivered).toBe(2000);
    expect(stderr).toMatch(/recovered; resuming/);
  });
});
