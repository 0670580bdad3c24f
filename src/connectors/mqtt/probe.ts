// `test()` for the MQTT connector, in its own module so the registry does not load the mqtt client.

import pino from 'pino';
import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { parseOptions, type TestReporter } from '../../core/spec.js';
import { describeSchema, inferSchema } from '../../core/schema.js';
import { createFormat } from '../../formats/index.js';
import { MqttConnection, compileFilter } from './connection.js';
import { sinkOptions, sourceOptions, type MqttSinkOptions, type MqttSourceOptions } from './options.js';
import { compileFieldTemplate } from './template.js';

/** How long `test()` waits for a first message after subscribing. */
const SAMPLE_WAIT_MS = 10_000;
const SAMPLE_SIZE = 20;

export async function testMqtt(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  const parsed = role === 'source' ? parseOptions(sourceOptions(), options) : parseOptions(sinkOptions(), options);
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
