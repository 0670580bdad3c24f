// End to end, the seed's use case: a WebSocket feed -> the websocket source -> the kafka sink -> read back. The
// pipeline is the YAML example of doc.md, compiled by the config layer, with only the addresses replaced.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import pino from 'pino';
import { compileDocument } from '../../config/compile.js';
import { parse } from 'yaml';
import { startPipeline } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import { findConnector } from '../index.js';
import { spec as kafka } from './index.js';
import { startTestBroker, uniqueName, type TestBroker } from './test-broker.js';

let broker: TestBroker;
let wss: WebSocketServer;
let dir: string;
beforeAll(async () => {
  broker = await startTestBroker();
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  dir = mkdtempSync(join(tmpdir(), 'sluice-ws-kafka-'));
}, 30_000);
afterAll(async () => {
  for (const c of wss?.clients ?? []) c.terminate();
  await new Promise<void>((r) => (wss ? wss.close(() => r()) : r()));
  await broker?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The first ```yaml block after a heading of doc.md. */
function docExample(heading: string): string {
  const doc = readFileSync(join(import.meta.dirname, 'doc.md'), 'utf8');
  const at = doc.indexOf(heading);
  const m = /```yaml\n([\s\S]*?)```/.exec(doc.slice(at));
  if (at < 0 || !m) throw new Error(`no yaml example under '${heading}' in doc.md`);
  return m[1]!;
}

it('WebSocket -> Kafka: every tick of the feed lands in the topic, keyed by symbol, with its trade time', async () => {
  const topic = uniqueName('ticks');
  await broker.createTopic(topic, 2);
  const N = 500;
  const T0 = Date.UTC(2025, 0, 1);
  wss.on('connection', (ws) => {
    ws.once('message', (m) => {
      // The subscription arrives first, as an exchange expects; then the feed starts.
      expect(JSON.parse(String(m))).toMatchObject({ method: 'SUBSCRIBE' });
      ws.send('{"result":null,"id":1}');
      for (let i = 0; i < N; i++) ws.send(JSON.stringify({ e: 'trade', s: i % 2 ? 'ETHUSDT' : 'BTCUSDT', p: String(100 + i), T: T0 + i, t: i }));
    });
  });
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/ws`;
  const doc = parse(docExample('## Example: WebSocket → Kafka'));
  doc.source.config.url = url;
  doc.sink.config.bootstrap_servers = broker.brokers;
  doc.sink.config.topic = topic;
  // The config layer resolves connectors through the registry (src/connectors/index.ts).
  expect(findConnector('kafka')).toBe(kafka);
  const compiled = compileDocument(doc, { defaultName: 'ticks' });
  expect(compiled.issues).toEqual([]);
  const def = compiled.value!.pipelines[0]!;
  const h = startPipeline(def, { log: pino({ level: 'silent' }), state: memoryStateStore(), dataDir: dir, connector: (n) => findConnector(n)! });
  try {
    const got = await broker.readTopic(topic, N, 30_000);
    expect(got).toHaveLength(N);
    const byT = new Map(got.map((m) => [JSON.parse(m.value).t as number, m]));
    for (let i = 0; i < N; i++) {
      const m = byT.get(i)!;
      expect(m.key).toBe(i % 2 ? 'ETHUSDT' : 'BTCUSDT');
      expect(m.timestamp).toBe(String(T0 + i));
    }
    // One symbol, one partition: per-symbol order is kept.
    for (const sym of ['BTCUSDT', 'ETHUSDT']) {
      const ts = got.filter((m) => m.key === sym).map((m) => JSON.parse(m.value).t as number);
      expect(ts).toEqual([...ts].sort((a, b) => a - b));
    }
    // The subscription reply does not fit the schema and is dropped (bad_data: drop), not written.
    expect(h.stats.dropped).toBe(1);
    expect(JSON.parse(byT.get(7)!.value)).toMatchObject({ s: 'ETHUSDT', p: 107, T: T0 + 7 });
  } finally {
    const r = await h.stop();
    expect(r.error?.message).toBeUndefined();
  }
}, 60_000);
