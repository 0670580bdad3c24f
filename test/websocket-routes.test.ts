// The seed's motivating case end to end through the CLI: one WebSocket connection carrying Binance-style combined
// streams, split by `routes` into per-stream files with their own schemas.
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { startCli, tempDir, waitFor, logLines } from './support/cli.js';

let tmp: ReturnType<typeof tempDir>;
let wss: WebSocketServer | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (wss ? wss.close(() => r()) : r()));
  wss = undefined;
  tmp?.cleanup();
});

const count = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8').split('\n').filter(Boolean).length : 0);

describe('websocket -> routes -> files', () => {
  it('splits combined streams by stream name, unwraps data, validates each route and re-subscribes after a drop', async () => {
    tmp = tempDir();
    const subscriptions: string[] = [];
    let dropped = false;
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    wss.on('connection', (ws) => {
      ws.on('message', (m) => {
        subscriptions.push(m.toString());
        // The first connection is cut after 100 messages: the source must reconnect and subscribe again.
        const from = dropped ? 100 : 0;
        for (let i = from; i < (dropped ? 200 : 100); i++) {
          ws.send(JSON.stringify({ stream: 'btcusdt@trade', data: { s: 'BTCUSDT', p: String(100 + i), q: '0.5', t: i } }));
          if (i % 10 === 0) ws.send(JSON.stringify({ stream: 'btcusdt@depth', data: { bids: [[String(i), '1']] } }));
        }
        ws.send(JSON.stringify({ stream: 'btcusdt@trade', data: { s: 'BTCUSDT', p: 'not-a-price', q: '1', t: -1 } }));
        if (!dropped) {
          dropped = true;
          setTimeout(() => ws.terminate(), 50);
        }
      });
    });
    await new Promise((r) => wss!.once('listening', r));
    const port = (wss.address() as AddressInfo).port;
    tmp.write(
      'p.yaml',
      `
name: binance
source:
  connector: websocket
  config:
    url: ws://127.0.0.1:${port}/stream
    subscription_messages: ['{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@depth"],"id":1}']
    reconnect: { initial: 50ms, max: 200ms }
  format: json
  bad_data: dlq
routes:
  - name: trades
    when: { field: stream, matches: '@trade$' }
    payload_path: data
    schema: { fields: { s: string, p: float64, q: float64, t: int64 } }
    sink: { connector: file, config: { path: trades.jsonl, fsync: false } }
  - name: depth
    when: { field: stream, equals: btcusdt@depth }
    payload_path: data
    sink: { connector: file, config: { path: depth.jsonl, fsync: false } }
dlq: { connector: file, config: { path: dead.jsonl, fsync: false } }
`,
    );
    const run = startCli(['run', 'p.yaml', '--log-format', 'json', '--stats-interval', '0'], { cwd: tmp.dir });
    await waitFor(() => count(join(tmp.dir, 'trades.jsonl')) >= 200 && count(join(tmp.dir, 'dead.jsonl')) >= 2, 30_000, 'all trades');
    run.child.kill('SIGTERM');
    const r = await run.result;
    expect(r.code).toBe(0);
    expect(subscriptions).toHaveLength(2);
    const trades = readFileSync(join(tmp.dir, 'trades.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(trades.map((t) => t.t)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(trades[0]).toEqual({ s: 'BTCUSDT', p: 100, q: 0.5, t: 0 });
    expect(count(join(tmp.dir, 'depth.jsonl'))).toBe(20);
    const dead = readFileSync(join(tmp.dir, 'dead.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(dead[0]).toMatchObject({ field: 'p', error_class: 'SCHEMA' });
    expect(logLines(r.stderr).some((l) => /reconnect/i.test(String(l.msg)))).toBe(true);
  });
});
