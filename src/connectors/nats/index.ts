// `nats`: core NATS publish/subscribe. The source subscribes to a subject (wildcards, queue groups) and is
// at-most-once unless `buffer: durable`; the sink publishes to a fixed or templated subject, optionally as
// request-reply. JetStream lives in ../nats_jetstream and shares connection.ts.

import type { Msg } from '@nats-io/transport-node';
import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { defineConnector, parseOptions, type TestReporter } from '../../core/spec.js';
import { describeServers, openNats } from './connection.js';
import { sinkOptions, sourceOptions, type NatsSinkOptions, type NatsSourceOptions } from './options.js';
import { NatsSink, flushWithin } from './sink.js';
import { NatsSource } from './source.js';

export { NatsSource, NatsSink, sourceOptions, sinkOptions };
export type { NatsSourceOptions, NatsSinkOptions };

export const SOURCE_METADATA = {
  _subject: 'the subject the message was published to (useful with wildcards)',
  _reply: 'the reply subject of a request, or null',
  _headers: 'the message headers (a map; a header with several values is comma-joined)',
  _timestamp: 'when the message was received (NATS core messages carry no time)',
};

export const spec = defineConnector({
  name: 'nats',
  aliases: ['nats_core', 'NATS'],
  title: 'NATS',
  description:
    'Subscribes to a core NATS subject (wildcards, queue groups) and publishes to a fixed or templated subject, with user/password, token, NKey or credentials-file auth and TLS. Core NATS is at-most-once; `buffer: durable` keeps every received message on disk until the sink acknowledged it. For acknowledged, replayable delivery use `nats_jetstream`.',
  source: {
    options: sourceOptions,
    create: (o: NatsSourceOptions, info) => new NatsSource(o, info),
    defaultFormat: 'json',
    replayable: false,
    metadata: SOURCE_METADATA,
  },
  sink: {
    options: sinkOptions,
    create: (o: NatsSinkOptions) => new NatsSink(o),
    defaultFormat: 'json',
  },
  test: testNats,
});

export default spec;

/** How long `test()` listens for a sample message on the source subject. */
const SAMPLE_WAIT_MS = 3000;

async function testNats(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  const r = role === 'source' ? parseOptions(sourceOptions, options) : parseOptions(sinkOptions, options);
  if (!r.ok) throw new ConfigError(r.issues);
  const o = r.value as NatsSourceOptions | NatsSinkOptions;
  report({ message: `connecting to ${describeServers(o)}` });
  let nc;
  try {
    nc = await openNats(o, 'sluice:test');
  } catch (e) {
    report({ message: errorMessage(e), error: true });
    throw e;
  }
  try {
    const info = nc.info;
    report({ message: `connected to ${info?.server_name ?? 'server'} (NATS ${info?.version ?? '?'})${info?.tls_required ? ' over TLS' : ''}`, done: true });
    if (role === 'sink') {
      await flushWithin(nc, 5000, o);
      report({ message: 'the server answers (flush round trip)', done: true });
      return;
    }
    const so = o as NatsSourceOptions;
    let count = 0;
    let first: Msg | undefined;
    const sub = nc.subscribe(so.subject, {
      queue: so.queue,
      callback: (err, m) => {
        if (!err) {
          count++;
          first ??= m;
        }
      },
    });
    await nc.flush();
    report({ message: `subscribed to '${so.subject}'${so.queue ? ` in queue group '${so.queue}'` : ''}`, done: true });
    await new Promise<void>((res) => {
      const t = setTimeout(res, SAMPLE_WAIT_MS);
      signal.addEventListener('abort', () => (clearTimeout(t), res()), { once: true });
    });
    sub.unsubscribe();
    if (count) report({ message: `received ${count} message(s) in ${SAMPLE_WAIT_MS / 1000} s, e.g. on '${first!.subject}'`, done: true });
    else report({ message: `no message on '${so.subject}' in ${SAMPLE_WAIT_MS / 1000} s (the subject may be idle; core NATS only delivers messages published while subscribed)`, done: true });
  } catch (e) {
    const err = e instanceof SluiceError ? e : new SluiceError('CONNECT', errorMessage(e), { cause: e });
    report({ message: err.message, error: true });
    throw err;
  } finally {
    await nc.close().catch(() => undefined);
  }
}
