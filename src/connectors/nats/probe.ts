// `test()` for the NATS connector, in its own module so the registry does not load the NATS client.

import type { Msg } from '@nats-io/transport-node';
import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { parseOptions, type TestReporter } from '../../core/spec.js';
import { describeServers, openNats } from './connection.js';
import { sinkOptions, sourceOptions, type NatsSinkOptions, type NatsSourceOptions } from './options.js';
import { flushWithin } from './sink.js';

/** How long `test()` listens for a sample message on the source subject. */
const SAMPLE_WAIT_MS = 3000;

export async function testNats(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  const r = role === 'source' ? parseOptions(sourceOptions(), options) : parseOptions(sinkOptions(), options);
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
