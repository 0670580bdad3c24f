// `mqtt`: subscribes to topic filters (QoS 0/1/2, shared subscriptions, persistent sessions, broker acknowledgement
// only after the sink) and publishes records (templated topics, QoS, retain, MQTT 5 user properties). Endpoints naming
// the same connection profile share one client connection.

import pino from 'pino';
import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { defineConnector, parseOptions, type TestReporter } from '../../core/spec.js';
import { describeSchema, inferSchema } from '../../core/schema.js';
import { createFormat } from '../../formats/index.js';
import { MqttConnection, compileFilter } from './connection.js';
import { sinkOptions, sourceOptions, type MqttSinkOptions, type MqttSourceOptions } from './options.js';
import { MqttSink } from './sink.js';
import { MqttSource, SOURCE_METADATA } from './source.js';
import { compileFieldTemplate } from './template.js';

export { MqttSource, MqttSink, SOURCE_METADATA };
export { acquireConnection, releaseConnection, clientsOpened, compileFilter, type MqttConnection } from './connection.js';
export { sourceOptions, sinkOptions, type MqttSourceOptions, type MqttSinkOptions } from './options.js';

export const spec = defineConnector({
  name: 'mqtt',
  aliases: ['MQTT', 'mqtt5', 'mosquitto'],
  title: 'MQTT',
  description:
    'Subscribes to MQTT topics (wildcards, shared subscriptions, QoS 0/1/2, persistent sessions) and publishes records to templated topics with QoS, retain and MQTT 5 user properties. With QoS 1/2 the broker gets its acknowledgement only after the sink accepted the message; QoS 0 can be protected by an on-disk buffer. Endpoints naming the same connection profile share one connection.',
  source: {
    options: sourceOptions,
    create: (o: MqttSourceOptions, info) => new MqttSource(o, info),
    defaultFormat: 'json',
    // A persistent session replays unacknowledged messages after a restart; the runtime keeps no position for it.
    replayable: false,
    metadata: SOURCE_METADATA,
  },
  sink: {
    options: sinkOptions,
    create: (o: MqttSinkOptions, info) => new MqttSink(o, info),
    defaultFormat: 'json',
  },
  test: testMqtt,
});

export default spec;

/** How long `test()` waits for a first message after subscribing. */
const SAMPLE_WAIT_MS = 10_000;
const SAMPLE_SIZE = 20;

async function testMqtt(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  const parsed = role === 'source' ? parseOptions(sourceOptions, options) : parseOptions(sinkOptions, options);
  if (!parsed.ok) throw new ConfigError(parsed.issues);
  const o = parsed.value as MqttSourceOptions | MqttSinkOptions;
  const step = (message: string, done = false) => report({ message, done });
  const failStep = (message: string, cause?: unknown): never => {
    report({ message, error: true });
    throw cause instanceof SluiceError ? cause : new SluiceError('CONNECT', message, { cause });
  };
  // A test never joins or changes a persistent session (it would steal or acknowledge the pipeline's messages).
  const conn = new MqttConnection('', { ...o, clean_session: true, client_id: undefined }, pino({ level: 'silent' }), { reconnect: false });
  step(`connecting to ${conn.shown} (MQTT ${o.protocol_version})`);
  try {
    try {
      await conn.whenConnected(o.connect_timeout, signal);
    } catch (e) {
      failStep(errorMessage(e), e);
    }
    step(`connected to ${conn.shown}`, true);
    if (role === 'sink') {
      const so = o as MqttSinkOptions;
      const t = compileFieldTemplate(so.topic, 'topic');
      step(t.constant ? `will publish to '${so.topic}' with QoS ${so.qos}` : `will publish to topics from the template '${so.topic}' with QoS ${so.qos}`, true);
      return;
    }
    const so = o as MqttSourceOptions;
    const matchers = so.topic.map(compileFilter);
    const payloads: Buffer[] = [];
    let firstAt = 0;
    let resolveWait!: () => void;
    const waited = new Promise<void>((r) => (resolveWait = r));
    const timer = setTimeout(resolveWait, SAMPLE_WAIT_MS);
    let after: NodeJS.Timeout | undefined;
    const onAbort = () => resolveWait();
    signal.addEventListener('abort', onAbort, { once: true });
    const sub = {
      matches: (topic: string) => matchers.some((m) => m(topic)),
      deliver: (p: { payload: Buffer | string }) => {
        if (payloads.length < SAMPLE_SIZE) payloads.push(Buffer.from(p.payload));
        if (!firstAt) {
          firstAt = Date.now();
          // A little more time after the first message gathers a sample without making the test slow.
          after = setTimeout(resolveWait, 1000);
        }
        if (payloads.length >= SAMPLE_SIZE) resolveWait();
      },
      fail: () => resolveWait(),
    };
    try {
      // QoS 0: a test must not hold acknowledgements of a shared subscription's messages.
      await conn.subscribe(sub as never, so.topic, 0, signal);
    } catch (e) {
      failStep(errorMessage(e), e);
    }
    step(`subscribed to ${so.topic.map((t) => `'${t}'`).join(', ')}; waiting up to ${SAMPLE_WAIT_MS / 1000} s for a message`, true);
    await waited;
    clearTimeout(timer);
    if (after) clearTimeout(after);
    signal.removeEventListener('abort', onAbort);
    if (signal.aborted) return;
    if (!payloads.length) failStep(`subscribed, but no message arrived within ${SAMPLE_WAIT_MS / 1000} s on ${so.topic.join(', ')}; check the topic and that something publishes`);
    step(`received ${payloads.length} message(s)`, true);
    const rows: unknown[] = [];
    let undecodable = 0;
    const decoder = createFormat({ name: 'json', options: {} }).decoder();
    for (const p of payloads) {
      try {
        decoder.decode(p, rows, () => void undecodable++);
      } catch {
        undecodable++;
      }
    }
    if (!rows.length) {
      step('the messages are not JSON; use format text or bytes', true);
      return;
    }
    step(`proposed schema (from ${rows.length} row(s)${undecodable ? `, ${undecodable} not JSON` : ''}): ${describeSchema(inferSchema(rows))}`, true);
  } finally {
    await conn.end();
  }
}
