// `test()` and autocomplete for the JetStream connector, in their own module so the registry does not load the
// NATS client.

import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { normalizeOptions, parseOptions, z, type TestReporter } from '../../core/spec.js';
import { connectionShape, describeServers, openNats, type ConnectionOptions } from '../nats/connection.js';
import { sinkOptions, sourceOptions, type JetStreamSinkOptions, type JetStreamSourceOptions } from './options.js';
import { ensureStream } from './sink.js';
import { isNotFound, resolveStream } from './source.js';

/** Just enough of the options to connect, for autocomplete before the rest is filled in. */
const connectOnly = z.object({ ...connectionShape(), stream: z.string().optional() });

async function withManager<T>(o: ConnectionOptions, fn: (jsm: JetStreamManager, nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await openNats(o, 'sluice:inspect');
  try {
    return await fn(await jetstreamManager(nc), nc);
  } finally {
    await nc.close().catch(() => undefined);
  }
}

/** Stream names, the subjects they capture, and the consumers of `stream` when one is named. */
export async function autocomplete(options: unknown, signal: AbortSignal): Promise<Record<string, string[]>> {
  const n = normalizeOptions(connectOnly, options ?? {});
  const p = connectOnly.safeParse(n.value);
  if (!p.success) return {};
  const o = p.data as ConnectionOptions & { stream?: string };
  return withManager(o, async (jsm) => {
    const streams: string[] = [];
    const subjects = new Set<string>();
    for await (const s of jsm.streams.list()) {
      if (signal.aborted) break;
      streams.push(s.config.name);
      for (const sub of s.config.subjects ?? []) subjects.add(sub);
    }
    const out: Record<string, string[]> = { stream: streams.sort(), subject: [...subjects].sort() };
    if (o.stream && streams.includes(o.stream)) {
      const consumers: string[] = [];
      for await (const c of jsm.consumers.list(o.stream)) {
        if (signal.aborted) break;
        if (c.config.durable_name) consumers.push(c.config.durable_name);
      }
      out.durable = consumers.sort();
    }
    return out;
  });
}

export async function testJetStream(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  const r = role === 'source' ? parseOptions(sourceOptions(), options) : parseOptions(sinkOptions(), options);
  if (!r.ok) throw new ConfigError(r.issues);
  const o = r.value as JetStreamSourceOptions | JetStreamSinkOptions;
  const fail = (e: unknown): never => {
    const err = e instanceof SluiceError ? e : new SluiceError('CONNECT', errorMessage(e), { cause: e });
    report({ message: err.message, error: true });
    throw err;
  };
  report({ message: `connecting to ${describeServers(o)}` });
  let nc: NatsConnection;
  try {
    nc = await openNats(o, 'sluice:test');
  } catch (e) {
    return fail(e);
  }
  try {
    report({ message: `connected to ${nc.info?.server_name ?? 'server'} (NATS ${nc.info?.version ?? '?'})`, done: true });
    let jsm: JetStreamManager;
    try {
      jsm = await jetstreamManager(nc);
      const acct = await jsm.getAccountInfo();
      report({ message: `JetStream is enabled (${acct.streams} stream(s), ${acct.consumers} consumer(s) in this account)`, done: true });
    } catch (e) {
      return fail(new SluiceError('CONNECT', `JetStream is not available on ${describeServers(o)}: ${errorMessage(e)}`, { cause: e, hint: 'start nats-server with -js' }));
    }
    if (signal.aborted) return;
    if (role === 'sink') {
      const so = o as JetStreamSinkOptions;
      if (so.create_stream) {
        let exists = true;
        try {
          await jsm.streams.info(so.create_stream.name);
        } catch (e) {
          if (!isNotFound(e)) throw e;
          exists = false;
        }
        report({ message: exists ? `stream '${so.create_stream.name}' exists` : `stream '${so.create_stream.name}' does not exist yet; the sink creates it on start`, done: true });
      } else if (!so.subject.includes('{{')) {
        try {
          const s = await jsm.streams.find(so.subject);
          report({ message: `subject '${so.subject}' is captured by stream '${s}'`, done: true });
        } catch (e) {
          return fail(new SluiceError('CONFIG', `no stream captures subject '${so.subject}': ${errorMessage(e)}`, { cause: e, hint: 'set create_stream, or create a stream for it' }));
        }
      }
      return;
    }
    const so = o as JetStreamSourceOptions;
    let stream: string;
    try {
      stream = await resolveStream(jsm, so);
    } catch (e) {
      return fail(e);
    }
    const info = await jsm.streams.info(stream);
    report({ message: `stream '${stream}': ${info.state.messages} message(s), sequences ${info.state.first_seq}..${info.state.last_seq}, subjects ${(info.config.subjects ?? []).join(', ')}`, done: true });
    const name = so.durable ?? so.queue;
    if (name) {
      try {
        const c = await jsm.consumers.info(stream, name);
        report({ message: `consumer '${name}' exists: ${c.num_pending} pending, ${c.num_ack_pending} awaiting acknowledgement`, done: true });
      } catch (e) {
        if (!isNotFound(e)) return fail(e);
        if (so.bind) return fail(new SluiceError('CONFIG', `consumer '${name}' does not exist on stream '${stream}' (bind: true uses an existing consumer)`));
        report({ message: `consumer '${name}' does not exist yet; the source creates it (deliver: ${so.deliver})`, done: true });
      }
    } else report({ message: `no durable: an ephemeral consumer will start at deliver: ${so.deliver} on every start`, done: true });
  } catch (e) {
    return fail(e);
  } finally {
    await nc.close().catch(() => undefined);
  }
}
