// The MQTT source: subscribes on a (possibly shared) client and hands messages to the pipeline in batches.
//
// Per message: one record and one meta object, no closures or promises. Messages that arrive in the same turn of the
// event loop form one batch; the batch's ack token is the list of its QoS 1/2 ack entries, so commit() releases the
// broker acknowledgements in order once the sink accepted the batch.

import type { IPublishPacket } from 'mqtt';
import { SluiceError, errorMessage } from '../../core/errors.js';
import { durableBufferConfig } from '../../core/durable-options.js';
import { openDurableBuffer, type DurableBuffer } from '../../core/durable-buffer.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { Counter, Gauge, SluiceRecord, Source, SourceContext } from '../../core/types.js';
import { acquireConnection, compileFilter, releaseConnection, type AckEntry, type MqttConnection, type Subscriber } from './connection.js';
import type { MqttSourceOptions } from './options.js';

interface Metrics {
  messages: Counter;
  bytes: Counter;
  queueDepth: Gauge;
  connected: Gauge;
  reconnects: Gauge;
  pauses: Counter;
  redelivered: Counter;
}

function headersOf(props: IPublishPacket['properties']): Record<string, string> | undefined {
  const up = props?.userProperties;
  if (!up) return undefined;
  const out: Record<string, string> = {};
  for (const k in up) {
    const v = up[k];
    out[k] = Array.isArray(v) ? v.join(',') : String(v);
  }
  return out;
}

export class MqttSource implements Source, Subscriber {
  private ctx!: SourceContext;
  /** The pipeline, or the durable buffer in front of it. */
  private target!: SourceContext;
  private buffer?: DurableBuffer;
  private conn?: MqttConnection;
  private m!: Metrics;
  private readonly matchers: Array<(t: string) => boolean>;
  private pending: SluiceRecord[] = [];
  private acks: AckEntry[] = [];
  private scheduled = false;
  private waiting = false;
  private failure?: Error;
  private wakeRun?: () => void;
  private unpublished = { messages: 0, bytes: 0 };
  private readonly stop = new AbortController();

  constructor(
    readonly options: MqttSourceOptions,
    private readonly info: EndpointInfo = { format: 'json' },
  ) {
    this.matchers = options.topic.map(compileFilter);
  }

  /** The client this source uses (tests, `test()`). */
  get connection(): MqttConnection | undefined {
    return this.conn;
  }

  async run(ctx: SourceContext): Promise<void> {
    this.ctx = ctx;
    const mt = ctx.metrics;
    this.m = {
      messages: mt.counter('messages_received', 'MQTT messages received'),
      bytes: mt.counter('bytes_received', 'payload bytes received'),
      queueDepth: mt.gauge('queue_depth', 'messages waiting for the pipeline'),
      connected: mt.gauge('connected', '1 while the client is connected to the broker'),
      reconnects: mt.gauge('reconnects', 'reconnections of the client since it started'),
      pauses: mt.counter('pauses', 'times reading from the broker was paused because the pipeline was full'),
      redelivered: mt.counter('redelivered', 'QoS 1/2 messages the broker sent again (DUP flag): possible duplicates'),
    };
    if (ctx.signal.aborted) return;
    const onAbort = () => this.stop.abort();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    this.target = ctx;
    const o = this.options;
    const gauge = setInterval(this.publish, 1000);
    gauge.unref();
    try {
      if (o.buffer === 'durable') {
        this.buffer = await openDurableBuffer(ctx, durableBufferConfig(ctx.dataDir, 'mqtt', o));
        this.target = this.buffer.ctx;
      }
      this.conn = acquireConnection(o, this.info.profile, ctx.log, { receiveMaximum: o.max_inflight });
      ctx.log.info({ server: this.conn.shown, client_id: this.conn.clientId, topics: o.topic, qos: o.qos, clean_session: o.clean_session, shared: !!this.info.profile }, 'mqtt source starting');
      // Subscribed before the CONNACK (a persistent session's queued messages follow it at once and need their
      // subscriber). A SUBSCRIBE queued on a connection the broker then refuses (TLS failure, bad password) fails
      // only with 'Connection closed': the reason is what whenConnected names.
      const connected = this.conn.whenConnected(o.connect_timeout, this.stop.signal);
      connected.catch(() => undefined);
      try {
        await this.conn.subscribe(this, o.topic, o.qos, this.stop.signal);
      } catch (e) {
        await connected;
        throw e;
      }
      if (!this.stop.signal.aborted && !this.failure) ctx.log.info({ topics: o.topic }, 'mqtt: subscribed');
      await new Promise<void>((resolve) => {
        this.wakeRun = resolve;
        if (this.stop.signal.aborted || this.failure) resolve();
        else this.stop.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      this.flushNow(true);
      if (this.failure) throw this.failure;
      if (this.buffer) await this.buffer.done;
    } finally {
      clearInterval(gauge);
      ctx.signal.removeEventListener('abort', onAbort);
      this.publish();
      const c = this.conn;
      if (c) {
        await c.unsubscribe(this, o.topic).catch(() => undefined);
      }
    }
  }

  async commit(acks: unknown[]): Promise<void> {
    if (this.buffer) {
      await this.buffer.commit(acks);
      return;
    }
    const c = this.conn;
    if (!c) return;
    for (const a of acks) c.ack(a as AckEntry[]);
  }

  async close(): Promise<void> {
    this.stop.abort();
    const b = this.buffer;
    this.buffer = undefined;
    if (b) await b.close();
    const c = this.conn;
    this.conn = undefined;
    if (c) await releaseConnection(c);
  }

  // ---- Subscriber (hot path) ----

  matches(topic: string): boolean {
    const ms = this.matchers;
    for (let i = 0; i < ms.length; i++) if (ms[i]!(topic)) return true;
    return false;
  }

  deliver(p: IPublishPacket, ack: AckEntry | undefined): void {
    const payload = p.payload as Buffer;
    this.unpublished.messages++;
    this.unpublished.bytes += payload.length;
    const props = p.properties;
    this.pending.push({
      value: payload,
      timestamp: Date.now(),
      headers: props?.userProperties ? headersOf(props) : undefined,
      meta: {
        _topic: p.topic,
        _qos: p.qos,
        _retain: p.retain,
        _dup: p.dup,
        _message_id: p.qos > 0 ? (p.messageId ?? null) : null,
        _properties: props ?? null,
      },
    });
    if (p.dup && p.qos > 0) this.m.redelivered.inc();
    if (ack) this.acks.push(ack);
    if (!this.scheduled && !this.waiting) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.wakeRun?.();
  }

  private readonly flush = () => {
    this.scheduled = false;
    this.flushNow(false);
  };

  /** Hand what is queued to the pipeline; `final`: while stopping, the returned promise is not waited for. */
  private flushNow(final: boolean): void {
    if (this.waiting && !final) return;
    if (!this.pending.length) return;
    const records = this.pending;
    const acks = this.acks;
    this.pending = [];
    this.acks = [];
    let p: Promise<void> | undefined;
    try {
      p = this.target.emit(this.buffer ? { records } : { records, ack: acks.length ? acks : undefined });
    } catch (e) {
      this.fail(new SluiceError('INTERNAL', `mqtt: handing messages to the pipeline failed: ${errorMessage(e)}`, { cause: e }));
      return;
    }
    // In the durable log the messages are safe; the broker may forget them.
    if (this.buffer && acks.length) this.conn?.ack(acks);
    if (p && !final) {
      this.waiting = true;
      this.m.pauses.inc();
      this.conn?.setWaiting(this, true);
      p.then(this.onSpace, this.onEmitError);
    } else if (p) p.catch(() => undefined);
  }

  private readonly onSpace = () => {
    this.waiting = false;
    if (this.pending.length) this.flushNow(false);
    if (!this.waiting) this.conn?.setWaiting(this, false);
  };

  private readonly onEmitError = (e: unknown) => {
    this.waiting = false;
    this.conn?.setWaiting(this, false);
    this.fail(new SluiceError('INTERNAL', `mqtt: the pipeline rejected messages: ${errorMessage(e)}`, { cause: e }));
  };

  private readonly publish = () => {
    if (!this.m) return;
    const u = this.unpublished;
    if (u.messages) this.m.messages.inc(u.messages);
    if (u.bytes) this.m.bytes.inc(u.bytes);
    u.messages = 0;
    u.bytes = 0;
    this.m.queueDepth.set(this.pending.length);
    this.m.connected.set(this.conn?.client.connected ? 1 : 0);
    this.m.reconnects.set(this.conn?.reconnects ?? 0);
  };
}
