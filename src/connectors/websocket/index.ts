// `websocket`: a WebSocket client source (subscriptions, handshake scripts, reconnects, liveness watchdogs,
// backpressure, an optional durable buffer) and a client or broadcast-server sink (sink.ts, server.ts).

import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { defineConnector, parseOptions, type TestReporter } from '../../core/spec.js';
import type { BadRecord, SluiceRecord, SourceBatch, SourceContext } from '../../core/types.js';
import { describeSchema, inferSchema } from '../../core/schema.js';
import { createFormat } from '../../formats/index.js';
import pino from 'pino';
import { mapScope } from '../../core/state.js';
import { MetricSet } from '../../core/metrics.js';
import { sourceOptions, type WebSocketSourceOptions } from './options.js';
import { WebSocketSource } from './source.js';
import { createWebSocketSink, sinkOptions, testWebSocketSink, type WebSocketSinkOptions } from './sink.js';

export { WebSocketSource, ConnState, type SourceObserver } from './source.js';
export { sourceOptions, connectionOptionShape, sourceOptionShape, templateString } from './options.js';
export type { ConnectionOptions, WebSocketSourceOptions, HandshakeStep } from './options.js';
export { openWebSocket, Backoff, redactUrl, describeClose, upgradeHeaders, tlsOptions, effectiveUrl, sleep } from './connect.js';
export { compileTemplate, TemplateError, TEMPLATE_FUNCTIONS, type Template, type TemplateVars } from './template.js';

export const SOURCE_METADATA = {
  _received_at: 'when the message arrived (milliseconds since the epoch); also the record timestamp',
  _connection_id: 'which socket and session delivered it: `<connection>.<attempt>`, e.g. `0.3` for the third connect of the first connection',
  _url: 'the server URL, without credentials and with query values masked',
  _message_type: '`text` or `binary` (the WebSocket frame type)',
};

export const spec = defineConnector({
  name: 'websocket',
  aliases: ['ws', 'WebSocket', 'websockets'],
  title: 'WebSocket',
  description:
    'Reads a WebSocket feed: ordered subscription messages and a templated handshake (auth, HMAC signatures) on every reconnect, reconnect with backoff on any close, protocol and app-level heartbeats, a data-staleness watchdog, TCP backpressure or counted drops, an optional on-disk buffer that survives sink outages and restarts, and subscriptions sharded over several sockets. Writes records as frames to a server (client mode) or serves them to connected clients (server mode).',
  source: {
    options: sourceOptions,
    create: (o: WebSocketSourceOptions, info) => new WebSocketSource(o, info),
    defaultFormat: 'json',
    replayable: false,
    metadata: SOURCE_METADATA,
  },
  sink: {
    options: sinkOptions,
    create: (o: WebSocketSinkOptions, info) => createWebSocketSink(o, info),
    defaultFormat: 'json',
  },
  test: testWebSocket,
});

export default spec;

/** How long `test()` waits for the first messages after subscribing. */
const SAMPLE_WAIT_MS = 10_000;
const SAMPLE_SIZE = 20;

async function testWebSocket(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  if (role === 'sink') {
    const p = parseOptions(sinkOptions, options);
    if (!p.ok) throw new ConfigError(p.issues);
    return testWebSocketSink(p.value, report, signal);
  }
  const r = parseOptions(sourceOptions, options);
  if (!r.ok) throw new ConfigError(r.issues);
  // One attempt, no retries, no buffer: a test reports what is wrong instead of hiding it behind reconnects.
  const o: WebSocketSourceOptions = { ...r.value, buffer: 'memory', reconnect: { ...r.value.reconnect, enabled: false } };
  let failure: string | undefined;
  const source = new WebSocketSource(o, { format: 'json' }, {
    step(message, kind) {
      if (kind === 'error') failure ??= message;
      else report({ message, done: kind === 'done' });
    },
  });
  const ac = new AbortController();
  const onAbort = () => ac.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  const records: SluiceRecord[] = [];
  const bad: BadRecord[] = [];
  let firstAt = 0;
  const timer = setTimeout(() => ac.abort(), SAMPLE_WAIT_MS);
  let waited: NodeJS.Timeout | undefined;
  const ctx: SourceContext = {
    pipeline: 'test',
    role: 'source',
    log: pino({ level: 'silent' }),
    state: mapScope(new Map()),
    metrics: new MetricSet(),
    signal: ac.signal,
    dataDir: '',
    emit(b: SourceBatch) {
      for (const rec of b.records) records.push(rec);
      if (!firstAt) {
        firstAt = Date.now();
        // A little more time after the first message gathers a sample without making the test slow.
        waited = setTimeout(() => ac.abort(), 1000);
      }
      if (records.length >= SAMPLE_SIZE) ac.abort();
      return undefined;
    },
    bad(rs: BadRecord[]) {
      bad.push(...rs);
    },
    decoder: () => createFormat({ name: 'json', options: {} }).decoder(),
  };
  try {
    await source.run(ctx);
  } catch (e) {
    report({ message: failure ?? errorMessage(e), error: true });
    throw e;
  } finally {
    clearTimeout(timer);
    if (waited) clearTimeout(waited);
    signal.removeEventListener('abort', onAbort);
  }
  if (signal.aborted) return;
  if (!records.length && !bad.length) {
    const msg = `connected, but no message arrived within ${SAMPLE_WAIT_MS / 1000} s; check the subscription messages`;
    report({ message: msg, error: true });
    throw new SluiceError('CONNECT', msg);
  }
  report({ message: `received ${records.length + bad.length} message(s)${bad.length ? ` (${bad.length} not decodable)` : ''}`, done: true });
  const rows: unknown[] = [];
  const decoder = createFormat({ name: 'json', options: {} }).decoder();
  let undecodable = 0;
  for (const rec of records) {
    if (source.selfDecode) {
      rows.push(rec.value);
      continue;
    }
    try {
      decoder.decode(rec.value as string | Uint8Array, rows, () => void undecodable++);
    } catch {
      undecodable++;
    }
  }
  if (!rows.length) {
    report({ message: 'the messages are not JSON; use format text or bytes', done: true });
    return;
  }
  const schema = inferSchema(rows);
  report({ message: `proposed schema (from ${rows.length} row(s)${undecodable ? `, ${undecodable} not JSON` : ''}): ${describeSchema(schema)}`, done: true });
}
