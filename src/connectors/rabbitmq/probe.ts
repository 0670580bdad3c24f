// `test()` and autocomplete for the RabbitMQ connector, in their own module so the registry does not load
// rabbitmq-client.

import type { Channel, Connection } from 'rabbitmq-client';
import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { parseOptions, type TestReporter } from '../../core/spec.js';
import { amqpError, endpointOf, errorCode, isPermanent, keepRawBodies, openConnection } from './connection.js';
import { sinkOptions, sourceOptions, type RabbitConnectionOptions, type RabbitSinkOptions, type RabbitSourceOptions } from './options.js';
import { allBindings, closeQuietly } from './source.js';

function parsed<T>(schema: { safeParse: unknown }, options: unknown): T {
  const r = parseOptions(schema as never, options);
  if (!r.ok) throw new ConfigError(r.issues);
  return r.value as T;
}

/** Connects once (no endless retries) and returns the connection, or throws a SluiceError saying why not. */
async function connectOnce(o: RabbitConnectionOptions, signal: AbortSignal): Promise<{ conn: Connection; where: string }> {
  const { conn, where } = openConnection(o);
  let refused: ((e: unknown) => void) | undefined;
  const denied = new Promise<never>((_r, reject) => (refused = reject));
  denied.catch(() => undefined);
  let last: unknown;
  conn.on('error', (e: unknown) => {
    last = e;
    if (isPermanent(e)) refused?.(e);
  });
  const onAbort = () => refused?.(new SluiceError('INTERNAL', 'test cancelled'));
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    await Promise.race([conn.onConnect(o.connection_timeout), denied]);
    return { conn, where };
  } catch (e) {
    conn.unsafeDestroy();
    throw amqpError('connecting', where, isPermanent(e) || last === undefined ? e : last);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/** A passive declare closes the channel when the object is missing, so each check gets its own channel. */
async function exists(conn: Connection, check: (ch: Channel) => Promise<unknown>): Promise<unknown | undefined> {
  const ch = await conn.acquire();
  try {
    return await check(ch);
  } catch (e) {
    if (errorCode(e) === 'NOT_FOUND') return undefined;
    throw e;
  } finally {
    if (ch.active) await ch.close().catch(() => undefined);
  }
}

export async function testRabbit(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  const o = role === 'source' ? parsed<RabbitSourceOptions>(sourceOptions(), options) : parsed<RabbitSinkOptions>(sinkOptions(), options);
  let conn: Connection | undefined;
  try {
    const c = await connectOnce(o, signal);
    conn = c.conn;
    const where = c.where;
    report({ message: `connected to ${where}`, done: true });
    if (role === 'sink') {
      const s = o as RabbitSinkOptions;
      if (s.exchange) {
        const found = await exists(conn, (ch) => ch.exchangeDeclare({ exchange: s.exchange, passive: true }).then(() => true));
        if (found) report({ message: `exchange '${s.exchange}' exists`, done: true });
        else if (s.exchange_type) report({ message: `exchange '${s.exchange}' does not exist yet; the sink will declare it (${s.exchange_type})`, done: true });
        else {
          const msg = `exchange '${s.exchange}' does not exist on ${where}; create it, or set exchange_type to let the sink declare it`;
          report({ message: msg, error: true });
          throw new SluiceError('CONFIG', msg);
        }
      } else report({ message: 'publishing to the default exchange (routing key = queue name)', done: true });
      const ch = await conn.acquire();
      await ch.confirmSelect();
      await ch.close();
      report({ message: 'publisher confirms are available', done: true });
      return;
    }
    const s = o as RabbitSourceOptions;
    for (const b of allBindings(s)) {
      const found = await exists(conn, (ch) => ch.exchangeDeclare({ exchange: b.exchange, passive: true }).then(() => true));
      if (found) report({ message: `exchange '${b.exchange}' exists; the queue will be bound with key(s) ${b.routing_key.map((k) => `'${k}'`).join(', ')}`, done: true });
      else if (b.exchange_type) report({ message: `exchange '${b.exchange}' does not exist yet; it will be declared (${b.exchange_type})`, done: true });
      else {
        const msg = `exchange '${b.exchange}' does not exist on ${where}; create it, or set exchange_type to declare it`;
        report({ message: msg, error: true });
        throw new SluiceError('CONFIG', msg);
      }
    }
    const q = (await exists(conn, (ch) => ch.queueDeclare({ queue: s.queue, passive: true }))) as { messageCount: number; consumerCount: number } | undefined;
    if (!q) {
      if (s.passive) {
        const msg = `queue '${s.queue}' does not exist on ${where} (passive: true never creates it)`;
        report({ message: msg, error: true });
        throw new SluiceError('CONFIG', msg);
      }
      report({ message: `queue '${s.queue}' does not exist yet; the pipeline will declare it`, done: true });
      return;
    }
    report({ message: `queue '${s.queue}' exists: ${q.messageCount} ready message(s), ${q.consumerCount} consumer(s)`, done: true });
    if (q.messageCount === 0) {
      report({ message: 'the queue is empty, so there is no sample message', done: true });
      return;
    }
    // Peek: get one message and put it back (it is then marked redelivered).
    const ch = await conn.acquire();
    try {
      keepRawBodies(ch);
      const m = await ch.basicGet({ queue: s.queue, noAck: false });
      if (!m) report({ message: 'the queue emptied before a sample could be taken', done: true });
      else {
        ch.basicNack({ deliveryTag: m.deliveryTag, requeue: true });
        const body = m.body as unknown;
        const size = typeof body === 'string' ? Buffer.byteLength(body) : body instanceof Uint8Array ? body.length : JSON.stringify(body).length;
        const ct = (m as { sluiceContentType?: string }).sluiceContentType ?? m.contentType;
        report({
          message: `first message: ${size} bytes${ct ? ` (${ct})` : ''} from exchange '${m.exchange || '(default)'}' with routing key '${m.routingKey}'; it was put back`,
          done: true,
        });
      }
    } finally {
      await ch.close().catch(() => undefined);
    }
  } catch (e) {
    if (!(e instanceof SluiceError && e.code === 'CONFIG')) report({ message: errorMessage(e), error: true });
    throw e;
  } finally {
    await closeQuietly(undefined, conn, 2000);
  }
}

/**
 * AMQP has no way to list queues or exchanges; the management plugin's HTTP API does. Without it (not enabled, not
 * reachable, other credentials) there are no suggestions.
 */
export async function autocomplete(options: unknown, signal: AbortSignal): Promise<Record<string, string[]>> {
  const r = parseOptions(sinkOptions(), { ...((options as object) ?? {}) });
  const o = r.ok ? r.value : parsed<RabbitSinkOptions>(sinkOptions(), {});
  const e = endpointOf(o);
  const base = (o.management_url ?? `http://${e.hostname.includes(':') ? `[${e.hostname}]` : e.hostname}:15672`).replace(/\/+$/, '');
  const auth = 'Basic ' + Buffer.from(`${e.username}:${e.password}`).toString('base64');
  const vhost = encodeURIComponent(e.vhost);
  const get = async (what: string): Promise<string[]> => {
    try {
      const res = await fetch(`${base}/api/${what}/${vhost}?columns=name`, { headers: { authorization: auth }, signal: AbortSignal.any([signal, AbortSignal.timeout(3000)]) });
      if (!res.ok) return [];
      const list = (await res.json()) as Array<{ name?: unknown }>;
      return list.map((x) => x.name).filter((n): n is string => typeof n === 'string' && n !== '' && !n.startsWith('amq.gen-')).sort();
    } catch {
      return [];
    }
  };
  const [queues, exchanges] = await Promise.all([get('queues'), get('exchanges')]);
  return { queues, exchanges };
}
