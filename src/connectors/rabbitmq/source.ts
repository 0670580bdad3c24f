// RabbitMQ source: consume a queue and acknowledge each message only after the sink accepted it.
//
// Why a raw channel with basicConsume + basicAck(multiple) rather than rabbitmq-client's Consumer: the Consumer acks a
// message when its handler's promise settles, so holding deliveries until the runtime commits would need one pending
// promise (and closure) per message, and would ack them one frame each. Here the runtime's commit(acks) arrives in
// emit order, so one `basic.ack multiple=true` up to the last delivery tag of the committed batches acknowledges a
// whole batch in one frame. The prefetch count bounds what is unacknowledged, which bounds memory: while emit() says
// the pipeline is full, deliveries are held instead of emitted and nothing new is acked, so the broker stops sending
// after `prefetch` messages. The price is owning reconnection: delivery tags belong to a channel, so every channel gets
// a generation number, and acks from an earlier generation are dropped (the broker already requeued those messages
// when that channel died; they come back with `_redelivered: true`: at-least-once).

import type { AsyncMessage, Channel, Connection } from 'rabbitmq-client';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { Counter, SluiceRecord, Source, SourceContext } from '../../core/types.js';
import { CONSUMER_FRAME_MAX, amqpError, errorCode, fastDeliveries, isPermanent, keepRawBodies, openConnection, sleep, type DeliverFields } from './connection.js';
import type { Binding, RabbitSourceOptions } from './options.js';

export interface RabbitAck {
  /** Channel generation the delivery tag belongs to. */
  gen: number;
  /** Last delivery tag of the batch. */
  tag: number;
}

/** AMQP header values are typed (numbers, booleans, tables); record headers are text or bytes. */
function headerText(v: unknown): string | Uint8Array {
  if (typeof v === 'string' || v instanceof Uint8Array) return v;
  if (v instanceof Date) return v.toISOString();
  if (v !== null && typeof v === 'object') return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
  return String(v);
}

/** Every binding to declare: the `bindings` list plus the `exchange`/`routing_key` shorthand. */
export function allBindings(o: RabbitSourceOptions): Binding[] {
  const out = [...(o.bindings ?? [])];
  if (o.exchange !== undefined) out.push({ exchange: o.exchange, routing_key: o.routing_key ?? [''], exchange_type: o.exchange_type, arguments: undefined });
  return out;
}

export function queueArguments(o: RabbitSourceOptions): Record<string, unknown> | undefined {
  const args: Record<string, unknown> = { ...(o.queue_arguments ?? {}) };
  if (o.dead_letter_exchange !== undefined) args['x-dead-letter-exchange'] = o.dead_letter_exchange;
  if (o.dead_letter_routing_key !== undefined) args['x-dead-letter-routing-key'] = o.dead_letter_routing_key;
  return Object.keys(args).length ? args : undefined;
}

/** Declares the exchanges, the queue and the bindings; returns the queue's message count. */
export async function declareTopology(ch: Channel, o: RabbitSourceOptions): Promise<{ messageCount: number; consumerCount: number }> {
  const bindings = allBindings(o);
  for (const b of bindings) {
    if (b.exchange_type) {
      await wrapStep(`declaring exchange '${b.exchange}' (${b.exchange_type})`, ch.exchangeDeclare({ exchange: b.exchange, type: b.exchange_type, durable: true }));
    }
  }
  const q = await wrapStep(
    o.passive ? `checking queue '${o.queue}'` : `declaring queue '${o.queue}'`,
    ch.queueDeclare(
      o.passive
        ? { queue: o.queue, passive: true }
        : { queue: o.queue, durable: o.durable, exclusive: o.exclusive, autoDelete: o.auto_delete, arguments: queueArguments(o) as never },
    ),
  );
  for (const b of bindings) {
    for (const key of b.routing_key) {
      await wrapStep(`binding queue '${o.queue}' to exchange '${b.exchange}' with key '${key}'`, ch.queueBind({ queue: o.queue, exchange: b.exchange, routingKey: key, arguments: b.arguments }));
    }
  }
  return { messageCount: q.messageCount, consumerCount: q.consumerCount };
}

/** Tags the step onto the broker's error so the final message says what was being done. */
async function wrapStep<T>(step: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    (err as Error & { step?: string }).step ??= step;
    throw err;
  }
}

export class RabbitSource implements Source {
  private ctx?: SourceContext;
  private conn?: Connection;
  private where = '';
  private ch?: Channel;
  private consumerTag?: string;
  /** Bumped whenever a channel is replaced; delivery tags of older channels are meaningless. */
  private gen = 0;
  /** Deliveries received but not yet handed to the pipeline (held while it applies backpressure). */
  private held: SluiceRecord[] = [];
  private heldTag = 0;
  /** Last delivery tag handed to the pipeline / acknowledged, on the current channel. */
  private emittedTag = 0;
  private ackedTag = 0;
  private blocked = false;
  private flushQueued = false;
  private stopping = false;
  private fatal?: SluiceError;
  private wakeUp?: () => void;
  /** The `_properties` of the last message with only a content type, delivery mode and timestamp; shared while they repeat. */
  private props?: Record<string, unknown>;
  private propsCt?: string;
  private propsDm?: number;
  private propsTs?: number;
  private staleAcks?: Counter;
  private reconnects?: Counter;
  private redelivered?: Counter;
  private readonly unblock = () => {
    this.blocked = false;
    this.flush();
  };
  private readonly flushTask = () => {
    this.flushQueued = false;
    this.flush();
  };

  constructor(
    readonly options: RabbitSourceOptions,
    readonly info: EndpointInfo = { format: 'json' },
  ) {}

  async run(ctx: SourceContext): Promise<void> {
    this.ctx = ctx;
    const o = this.options;
    this.staleAcks = ctx.metrics.counter('stale_acks', 'acknowledgements skipped because their channel was lost (the messages are redelivered)');
    this.reconnects = ctx.metrics.counter('reconnects', 'consumer channels re-established');
    this.redelivered = ctx.metrics.counter('redelivered', 'messages the broker flagged as redelivered (possible duplicates)');
    const { conn, where } = openConnection(o, CONSUMER_FRAME_MAX);
    this.conn = conn;
    this.where = where;
    conn.on('error', (e: unknown) => {
      const code = errorCode(e);
      // Credentials and vhost problems do not heal by reconnecting forever: stop with the reason.
      if (code === 'ACCESS_REFUSED' || code === 'NOT_ALLOWED') this.setFatal(amqpError('connecting', where, e));
      else if (!this.stopping) ctx.log.warn({ server: where, err: errorMessage(e) }, 'rabbitmq connection error; reconnecting');
    });
    conn.on('connection', () => ctx.log.info({ server: where }, 'rabbitmq connected'));

    let failures = 0;
    while (!ctx.signal.aborted && !this.fatal) {
      let ch: Channel | undefined;
      try {
        ch = await this.interruptible(this.setup(conn));
        if (!ch) break;
        failures = 0;
      } catch (e) {
        if (ctx.signal.aborted || this.fatal) break;
        const err = amqpError((e as { step?: string }).step ?? `consuming queue '${o.queue}'`, where, e);
        if (isPermanent(e)) throw err;
        failures++;
        if (failures === 1 || failures % 10 === 0) ctx.log.warn({ err: err.message, attempt: failures }, 'rabbitmq consumer setup failed; retrying');
        await sleep(Math.min(500 * 2 ** Math.min(failures, 6), o.reconnect_max_backoff), ctx.signal);
        continue;
      }
      const live = ch;
      await this.interruptible(new Promise<void>((resolve) => live.once('close', resolve)));
      if (ctx.signal.aborted || this.fatal) break;
      this.lose();
      this.reconnects.inc();
      ctx.log.warn({ server: where, queue: o.queue }, 'rabbitmq channel closed; re-establishing the consumer (unacknowledged messages are redelivered)');
    }
    this.stopping = true;
    // Stop deliveries but keep the channel: the final commits still have to ack on it. Held messages were never
    // emitted; the broker requeues them when the channel closes.
    this.held = [];
    if (this.ch?.active && this.consumerTag) await this.ch.basicCancel(this.consumerTag).catch(() => undefined);
    if (this.fatal) throw this.fatal;
  }

  private setFatal(e: SluiceError) {
    this.fatal ??= e;
    this.wakeUp?.();
  }

  /** Races `p` against stop and fatal errors, so a wait for the broker never outlives the pipeline. */
  private interruptible<T>(p: Promise<T>): Promise<T | undefined> {
    const signal = this.ctx!.signal;
    return new Promise<T | undefined>((resolve, reject) => {
      const stop = () => {
        signal.removeEventListener('abort', stop);
        reject(this.fatal ?? new SluiceError('INTERNAL', 'stopped'));
      };
      this.wakeUp = stop;
      if (signal.aborted || this.fatal) return stop();
      signal.addEventListener('abort', stop, { once: true });
      p.then(
        (v) => (signal.removeEventListener('abort', stop), resolve(v)),
        (e) => (signal.removeEventListener('abort', stop), reject(e)),
      );
    }).catch((e) => {
      if (signal.aborted && !this.fatal) return undefined;
      throw e;
    });
  }

  private async setup(conn: Connection): Promise<Channel> {
    const o = this.options;
    const ch = await wrapStep('opening a channel', conn.acquire({ emitErrorsFromChannel: true }));
    try {
      if (this.ctx!.signal.aborted) throw new SluiceError('INTERNAL', 'stopped');
      ch.on('error', (e: unknown) => {
        if (!this.stopping) this.ctx!.log.warn({ server: this.where, err: errorMessage(e) }, 'rabbitmq channel error');
      });
      ch.on('basic.cancel', () => {
        // The broker cancelled the consumer (queue deleted, node failover): start over on a fresh channel.
        this.ctx!.log.warn({ queue: o.queue }, `rabbitmq cancelled the consumer of queue '${o.queue}'`);
        void ch.close().catch(() => undefined);
      });
      keepRawBodies(ch);
      const q = await declareTopology(ch, o);
      await wrapStep('setting the prefetch count', ch.basicQos({ prefetchCount: o.prefetch }));
      this.gen++;
      this.ch = ch;
      this.held = [];
      this.heldTag = this.emittedTag = this.ackedTag = 0;
      const gen = this.gen;
      // Deliveries come through fastDeliveries when it can hook in; the handler below gets them otherwise.
      fastDeliveries(ch, (f, props, body) => this.deliver(f, props, body, gen));
      const { consumerTag } = await wrapStep(
        `consuming queue '${o.queue}'`,
        ch.basicConsume({ queue: o.queue, noAck: false, exclusive: o.exclusive_consumer, consumerTag: o.consumer_tag }, (m) => this.receive(m, gen)),
      );
      this.consumerTag = consumerTag;
      if (this.stopping || this.ctx!.signal.aborted) throw new SluiceError('INTERNAL', 'stopped');
      this.ctx!.log.info({ server: this.where, queue: o.queue, messages: q.messageCount, prefetch: o.prefetch }, 'rabbitmq consumer started');
      return ch;
    } catch (e) {
      void ch.close().catch(() => undefined);
      throw e;
    }
  }

  /** Forgets the lost channel's deliveries: they are requeued by the broker and come back redelivered. */
  private lose() {
    this.ch = undefined;
    this.consumerTag = undefined;
    this.held = [];
    this.heldTag = this.emittedTag = this.ackedTag = 0;
  }

  /** The client's own delivery path (when fastDeliveries could not hook in): one spread-built message each. */
  private receive(m: AsyncMessage, gen: number): void {
    this.accept(m.deliveryTag, m.redelivered, m.exchange, m.routingKey, m as unknown as Record<string, unknown>, m.body, gen);
  }

  /** fastDeliveries' path: the method fields and the content-header properties as the client decoded them. */
  private deliver(f: DeliverFields, props: Record<string, unknown>, body: Buffer, gen: number): void {
    try {
      this.accept(f.deliveryTag, f.redelivered, f.exchange, f.routingKey, props, body, gen);
    } catch (e) {
      // This runs inside the client's frame reader, which a throw would end, taking the connection down with it.
      this.setFatal(new SluiceError('INTERNAL', `rabbitmq: handling a delivery failed: ${errorMessage(e)}`, { cause: e }));
    }
  }

  /**
   * `header` holds the content properties (the spread message on the client's path, whose other keys are skipped). One
   * for-in pass instead of named reads: rabbitmq-client builds a spread message, and a property table per set of
   * present properties, with a hidden class of their own, so each `m.x` would miss V8's inline caches (~0.1 us, and
   * most of the ~14 properties are absent). Walking the own keys once costs about as much as two such reads.
   */
  private accept(tag: number, redelivered: boolean, exchange: string | undefined, routingKey: string | undefined, header: Record<string, unknown>, b: unknown, gen: number): void {
    if (gen !== this.gen || this.stopping) return;
    let rawHeaders: Record<string, unknown> | undefined;
    let ct: string | undefined;
    let sluiceCt: string | undefined;
    let dm: number | undefined;
    // Properties other than content type, delivery mode and timestamp (seconds: equal for bursts): rarer, and often
    // different on every message.
    let rare = false;
    let enc: string | undefined, priority: number | undefined, correlationId: string | undefined, replyTo: string | undefined;
    let expiration: string | undefined, messageId: string | undefined, type: string | undefined, userId: string | undefined;
    let appId: string | undefined, clusterId: string | undefined, ts: number | undefined;
    for (const k in header) {
      const v = header[k];
      switch (k) {
        case 'headers': rawHeaders = v as Record<string, unknown> | undefined; break;
        case 'contentType': ct = v as string | undefined; break;
        case 'sluiceContentType': sluiceCt = v as string | undefined; break;
        case 'deliveryMode': dm = v as number | undefined; break;
        case 'contentEncoding': enc = v as string | undefined; rare = true; break;
        case 'priority': priority = v as number | undefined; rare = true; break;
        case 'correlationId': correlationId = v as string | undefined; rare = true; break;
        case 'replyTo': replyTo = v as string | undefined; rare = true; break;
        case 'expiration': expiration = v as string | undefined; rare = true; break;
        case 'messageId': messageId = v as string | undefined; rare = true; break;
        case 'type': type = v as string | undefined; rare = true; break;
        case 'userId': userId = v as string | undefined; rare = true; break;
        case 'appId': appId = v as string | undefined; rare = true; break;
        case 'clusterId': clusterId = v as string | undefined; rare = true; break;
        case 'timestamp': ts = v as number | undefined; break;
      }
    }
    const contentType = sluiceCt ?? ct;
    let props: Record<string, unknown>;
    if (!rare && this.props !== undefined && this.propsCt === contentType && this.propsDm === dm && this.propsTs === ts) {
      // A producer usually sends the same properties on every message: those records share one `_properties` object
      // (as the durable buffer shares equal metadata), so a delivery allocates no property table of its own.
      props = this.props;
    } else {
      props = {};
      if (contentType) props.content_type = contentType;
      if (enc) props.content_encoding = enc;
      if (dm) props.delivery_mode = dm;
      if (priority !== undefined) props.priority = priority;
      if (correlationId) props.correlation_id = correlationId;
      if (replyTo) props.reply_to = replyTo;
      if (expiration) props.expiration = expiration;
      if (messageId) props.message_id = messageId;
      if (type) props.type = type;
      if (userId) props.user_id = userId;
      if (appId) props.app_id = appId;
      if (clusterId) props.cluster_id = clusterId;
      if (ts) props.timestamp = ts * 1000;
      if (!rare) {
        this.props = props;
        this.propsCt = contentType;
        this.propsDm = dm;
        this.propsTs = ts;
      }
    }
    let headers: Record<string, string | Uint8Array> | undefined;
    if (rawHeaders) {
      headers = {};
      for (const k in rawHeaders) {
        const v = rawHeaders[k];
        if (v !== undefined && v !== null) headers[k] = headerText(v);
      }
    }
    let body: string | Uint8Array;
    if (typeof b === 'string' || b instanceof Uint8Array) body = b;
    else body = JSON.stringify(b) ?? ''; // the client decoded it (no raw-body hook): re-encode for the format
    this.held.push({
      value: body,
      // `raw` is set by the decoding step; declaring it here keeps one object shape (no property store added per record).
      raw: undefined,
      headers,
      timestamp: ts ? ts * 1000 : Date.now(),
      meta: {
        _exchange: exchange,
        _routing_key: routingKey,
        _delivery_tag: tag,
        _redelivered: redelivered,
        _properties: props,
      },
    });
    if (redelivered) this.redelivered?.inc();
    this.heldTag = tag;
    if (this.held.length >= this.options.max_batch) this.flush();
    else if (!this.flushQueued) {
      this.flushQueued = true;
      // After the rest of the socket read: fastDeliveries hands over its messages while the client decodes them (the
      // client's own path queues one setImmediate each, which run before this one).
      setImmediate(this.flushTask);
    }
  }

  private flush(): void {
    const ctx = this.ctx;
    if (this.blocked || !this.held.length || !ctx || this.stopping) return;
    const all = this.held;
    const max = this.options.max_batch;
    this.held = [];
    for (let i = 0; i < all.length; i += max) {
      const records = i === 0 && all.length <= max ? all : all.slice(i, i + max);
      const last = records[records.length - 1]!.meta!._delivery_tag as number;
      this.emittedTag = last;
      const ack: RabbitAck = { gen: this.gen, tag: last };
      const wait = ctx.emit({ records, ack });
      if (wait) {
        // Hold the rest (and what still arrives, at most `prefetch` in all) until the pipeline has room again.
        if (i + max < all.length) this.held = all.slice(i + max);
        this.blocked = true;
        wait.then(this.unblock, this.unblock);
        return;
      }
    }
  }

  commit(acks: unknown[]): void {
    let last = 0;
    for (const a of acks as RabbitAck[]) {
      if (a.gen === this.gen) last = a.tag;
      else this.staleAcks?.inc();
    }
    const ch = this.ch;
    if (last <= this.ackedTag || !ch?.active) return;
    try {
      ch.basicAck({ deliveryTag: last, multiple: true });
      this.ackedTag = last;
    } catch (e) {
      // The channel died between the check and the write: the broker requeues these, so this is not a loss.
      this.ctx?.log.warn({ err: errorMessage(e) }, 'rabbitmq ack failed; the messages will be redelivered');
    }
  }

  async close(): Promise<void> {
    this.stopping = true;
    const ch = this.ch;
    const conn = this.conn;
    const log = this.ctx?.log;
    if (ch?.active && this.emittedTag > this.ackedTag) {
      // Handed to the pipeline but never written: the pipeline failed. Apply on_failure to exactly those.
      const n = this.emittedTag - this.ackedTag;
      try {
        if (this.options.on_failure === 'drop') ch.basicAck({ deliveryTag: this.emittedTag, multiple: true });
        else ch.basicNack({ deliveryTag: this.emittedTag, multiple: true, requeue: this.options.on_failure === 'requeue' });
        log?.warn({ queue: this.options.queue, messages: n, on_failure: this.options.on_failure }, `rabbitmq: ${n} unwritten message(s) ${this.options.on_failure === 'requeue' ? 'requeued' : this.options.on_failure === 'dead_letter' ? 'rejected to the dead-letter exchange' : 'dropped'}`);
      } catch (e) {
        log?.warn({ err: errorMessage(e) }, 'rabbitmq: rejecting unwritten messages failed; the broker requeues them');
      }
      this.ackedTag = this.emittedTag;
    }
    this.ch = undefined;
    this.conn = undefined;
    await closeQuietly(ch, conn);
  }
}

/** Closes the channel and the connection, giving up after a few seconds (the broker may be gone). */
export async function closeQuietly(ch: Channel | undefined, conn: Connection | undefined, ms = 5000): Promise<void> {
  if (conn && !conn.ready) {
    // Reconnecting (broker down, credentials refused): nothing to flush, and close() would wait for a connection.
    conn.unsafeDestroy();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const work = (async () => {
    if (ch?.active) await ch.close().catch(() => undefined);
    if (conn) await conn.close().catch(() => undefined);
  })();
  const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)));
  const r = await Promise.race([work, timeout]);
  clearTimeout(timer);
  if (r === 'timeout') conn?.unsafeDestroy();
}
