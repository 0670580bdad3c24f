// `test()` for the WebSocket connector, in its own module so the registry does not load ws.

import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { parseOptions, type TestReporter } from '../../core/spec.js';
import type { BadRecord, SluiceRecord, SourceBatch, SourceContext } from '../../core/types.js';
import { describeSchema, inferSchema } from '../../core/schema.js';
import { createFormat } from '../../formats/index.js';
import pino from 'pino';
import { mapScope } from '../../core/state.js';
import { MetricSet } from '../../core/metrics.js';
import { sourceOptions, type WebSocketSourceOptions } from './options.js';
import { WebSocketSource } from './source.js';
import { sinkOptions, testWebSocketSink } from './sink.js';

/** How long `test()` waits for the first messages after subscribing. */
const SAMPLE_WAIT_MS = 10_000;
const SAMPLE_SIZE = 20;

export async function testWebSocket(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  if (role === 'sink') {
    const p = parseOptions(sinkOptions(), options);
    if (!p.ok) throw new ConfigError(p.issues);
    return testWebSocketSink(p.value, report, signal);
  }
  const r = parseOptions(sourceOptions(), options);
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
