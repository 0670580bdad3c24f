// The JetStream source: a pull consumer whose messages are acknowledged only after the sink accepted them.
//
// Each emitted batch carries its JsMsg objects as the ack token; commit(acks) acks them in order. What was delivered
// but never committed (a failing sink, a `bad_data: fail` record, a pipeline that dies) is nak'ed on close, with
// `nak_delay`, so the server redelivers it; if the process is killed instead, `ack_wait` expires and the server
// redelivers anyway. Flow control: pull requests are issued one at a time and not while the pipeline asks us to wait;
// the server also stops delivering once `max_ack_pending` messages are unacknowledged, and acks follow the sink.

import { jetstream, jetstreamManager, type Consumer, type ConsumerConfig, type FetchOptions, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { Counter, Gauge, SluiceRecord, Source, SourceContext } from '../../core/types.js';
import { acquireNats, connectError, describeServers, watchStatus, type NatsLease } from '../nats/connection.js';
import { headersOf } from '../nats/source.js';
import type { JetStreamSourceOptions } from './options.js';

const MAX_BATCH = 4096;
/** How long one pull request waits for messages; also the longest a stop waits for the current request to end. */
const FETCH_EXPIRES = 1000;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
/** Ephemeral consumers the server forgets after this long without a client (a crashed pipeline leaves no litter). */
const EPHEMERAL_INACTIVE_MS = 5 * 60_000;

/** Is this a JetStream "not found" API error (stream 10059, consumer 10014)? */
export function isNotFound(e: unknown): boolean {
  const code = (e as { api_error?: { err_code?: number } })?.api_error?.err_code ?? (e as { code?: number })?.code;
  return code === 10059 || code === 10014 || /not found/i.test(errorMessage(e));
}

/** The stream to read: the named one (checked), or the one capturing the subject. */
export async function resolveStream(jsm: JetStreamManager, o: { stream?: string; subject?: string }): Promise<string> {
  if (o.stream) {
    try {
      await jsm.streams.info(o.stream);
    } catch (e) {
      if (isNotFound(e)) throw new SluiceError('CONFIG', `JetStream stream '${o.stream}' does not exist`, { cause: e, hint: 'create it (e.g. with the nats_jetstream sink option create_stream) or fix `stream`' });
      throw e;
    }
    return o.stream;
  }
  try {
    return await jsm.streams.find(o.subject!);
  } catch (e) {
    throw new SluiceError('CONFIG', `no JetStream stream captures subject '${o.subject}': ${errorMessage(e)}`, { cause: e, hint: 'set `stream`, or create a stream whose subjects include it' });
  }
}

export class JetStreamSource implements Source {
  private ctx!: SourceContext;
  private nc?: NatsConnection;
  private lease?: NatsLease;
  private readonly profile?: string;
  private consumerHandle?: Consumer;
  private loop?: Promise<void>;
  /** Set while the pipeline asked us to wait; the pull loop awaits it before the next request. */
  private space?: Promise<void>;
  private stream = '';
  private consumerName = '';
  private ephemeral = false;
  private jsm?: JetStreamManager;
  /** Received, not yet emitted. */
  private pending: JsMsg[] = [];
  /** Emitted batches, in order, not yet committed. */
  private outstanding: JsMsg[][] = [];
  private outHead = 0;
  private scheduled = false;
  private waiting = false;
  private readonly text: boolean;
  private m!: { received: Counter; acked: Counter; naked: Counter; redelivered: Counter; reconnects: Counter; inflight: Gauge };

  constructor(
    readonly options: JetStreamSourceOptions,
    info: EndpointInfo = { format: 'json' },
  ) {
    this.text = info.format !== 'bytes';
    this.profile = info.profile;
  }

  /** Stream and consumer in use (after run() started; tests and logs). */
  get consumer(): { stream: string; name: string } {
    return { stream: this.stream, name: this.consumerName };
  }

  async run(ctx: SourceContext): Promise<void> {
    if (ctx.signal.aborted) return;
    this.ctx = ctx;
    const mt = ctx.metrics;
    this.m = {
      received: mt.counter('messages_received', 'JetStream messages delivered'),
      acked: mt.counter('acked', 'messages acknowledged after the sink accepted them'),
      naked: mt.counter('naked', 'messages negatively acknowledged for redelivery'),
      redelivered: mt.counter('redelivered', 'messages delivered more than once'),
      reconnects: mt.counter('reconnects', 'reconnections to the NATS server'),
      inflight: mt.gauge('unacknowledged', 'delivered messages waiting for the sink'),
    };
    const o = this.options;
    this.lease = await acquireNats(o, this.profile, `sluice:${ctx.pipeline}`);
    const nc = (this.nc = this.lease.nc);
    const closed = watchStatus(nc, o, ctx.log, () => this.m.reconnects.inc());
    try {
      await this.setup(nc);
    } catch (e) {
      this.nc = undefined;
      const l = this.lease;
      this.lease = undefined;
      await l!.release('close');
      throw e instanceof SluiceError ? e : connectError(o, e, `setting up the JetStream consumer on ${describeServers(o)}`);
    }
    let fatal: SluiceError | undefined;
    void closed.then((e) => (fatal = e));
    this.loop = this.pullLoop(ctx.signal, () => fatal !== undefined);
    await this.loop;
    this.flush(true);
    if (fatal) throw fatal;
  }

  /**
   * Pull requests one after another, each for at most min(prefetch_count, max_ack_pending) messages and `FETCH_EXPIRES`
   * long. A request is never abandoned half-way: on stop the current one runs out, so the server holds no request
   * whose inbox is gone (it would send messages, nak'ed ones included, into the void until ack_wait expired).
   */
  private async pullLoop(signal: AbortSignal, dead: () => boolean): Promise<void> {
    const o = this.options;
    const batch = Math.min(o.prefetch_count, o.max_ack_pending);
    let failures = 0;
    const aborted = new Promise<void>((r) => (signal.aborted ? r() : signal.addEventListener('abort', () => r(), { once: true })));
    while (!signal.aborted && !dead()) {
      if (this.space) await Promise.race([this.space, aborted]);
      if (signal.aborted) break;
      try {
        // nats.js hands fetched messages to a callback like consume() does, without a promise per message.
        const it = await this.consumerHandle!.fetch({ max_messages: batch, expires: FETCH_EXPIRES, callback: this.onMessage } as FetchOptions);
        const err = await it.closed();
        if (err) throw err;
        failures = 0;
      } catch (e) {
        if (signal.aborted || dead()) break;
        failures++;
        // Disconnected, or the server is restarting: nats.js reconnects by itself; pull again shortly.
        if (failures === 1 || failures % 20 === 0) this.ctx.log.warn({ stream: this.stream, consumer: this.consumerName, err: errorMessage(e), failures }, 'JetStream pull failed; retrying');
        await sleep(Math.min(2000, 100 * failures), signal);
      }
    }
  }

  private async setup(nc: NatsConnection): Promise<void> {
    const o = this.options;
    const jsm = (this.jsm = await jetstreamManager(nc));
    this.stream = await resolveStream(jsm, o);
    const name = o.durable ?? o.queue;
    const cfg: Partial<ConsumerConfig> = {
      ack_policy: 'explicit',
      deliver_policy: o.deliver,
      ack_wait: nanos(o.ack_wait),
      max_ack_pending: o.max_ack_pending,
      max_deliver: o.max_deliver,
      ...(o.subject && o.stream ? { filter_subject: o.subject } : o.subject ? { filter_subject: o.subject } : {}),
      ...(o.start_time ? { opt_start_time: o.start_time } : {}),
    };
    if (name === undefined) {
      const info = await jsm.consumers.add(this.stream, { ...cfg, inactive_threshold: nanos(EPHEMERAL_INACTIVE_MS) });
      this.consumerName = info.name;
      this.ephemeral = true;
    } else {
      this.consumerName = name;
      let exists = true;
      try {
        await jsm.consumers.info(this.stream, name);
      } catch (e) {
        if (!isNotFound(e)) throw e;
        exists = false;
      }
      if (o.bind) {
        if (!exists) throw new SluiceError('CONFIG', `consumer '${name}' does not exist on stream '${this.stream}' (bind: true uses an existing consumer)`);
      } else if (!exists) {
        await jsm.consumers.add(this.stream, { ...cfg, durable_name: name });
      } else {
        // The position of an existing durable is the point of having one; only the settings that can change are updated.
        try {
          await jsm.consumers.update(this.stream, name, {
            ack_wait: cfg.ack_wait,
            max_ack_pending: cfg.max_ack_pending,
            max_deliver: cfg.max_deliver,
            ...(cfg.filter_subject ? { filter_subject: cfg.filter_subject } : {}),
          });
        } catch (e) {
          this.ctx.log.warn({ consumer: name, stream: this.stream, err: errorMessage(e) }, 'could not update the existing consumer; using it as configured');
        }
      }
    }
    this.consumerHandle = await jetstream(nc).consumers.get(this.stream, this.consumerName);
    this.ctx.log.info(
      { stream: this.stream, consumer: this.consumerName, ephemeral: this.ephemeral, subject: o.subject, servers: describeServers(o) },
      'JetStream consumer started',
    );
  }

  private readonly onMessage = (msg: JsMsg): void => {
    this.m.received.inc();
    this.pending.push(msg);
    if (!this.scheduled && !this.waiting) {
      this.scheduled = true;
      setImmediate(this.onTick);
    }
  };

  private readonly onTick = (): void => {
    this.scheduled = false;
    this.flush(false);
  };

  private readonly onSpace = (): void => {
    this.waiting = false;
    this.space = undefined;
    this.flush(false);
  };

  private flush(final: boolean): void {
    while (this.pending.length && (final || !this.waiting)) {
      const msgs = this.pending.length <= MAX_BATCH ? this.pending : this.pending.splice(0, MAX_BATCH);
      if (msgs === this.pending) this.pending = [];
      const records = new Array<SluiceRecord>(msgs.length);
      let redelivered = 0;
      for (let i = 0; i < msgs.length; i++) {
        const m = msgs[i]!;
        const info = m.info;
        if (info.deliveryCount > 1) redelivered++;
        const ts = Math.floor(info.timestampNanos / 1e6);
        const rec: SluiceRecord = {
          value: this.text ? m.string() : m.data,
          timestamp: ts,
          meta: { _stream: info.stream, _sequence: info.streamSequence, _subject: m.subject, _delivery_count: info.deliveryCount },
        };
        if (m.headers) rec.headers = headersOf(m.headers);
        records[i] = rec;
      }
      if (redelivered) this.m.redelivered.inc(redelivered);
      this.outstanding.push(msgs);
      this.m.inflight.set(this.unacked());
      const p = this.ctx.emit({ records, ack: msgs });
      if (p && !final) {
        this.waiting = true;
        this.space = p.then(this.onSpace, this.onSpace);
      }
    }
  }

  private unacked(): number {
    let n = this.pending.length;
    for (let i = this.outHead; i < this.outstanding.length; i++) n += this.outstanding[i]!.length;
    return n;
  }

  commit(acks: unknown[]): void {
    let n = 0;
    for (const a of acks) {
      const msgs = a as JsMsg[];
      for (let i = 0; i < msgs.length; i++) msgs[i]!.ack();
      n += msgs.length;
      // Commits arrive in emit order, so the acknowledged batch is the oldest outstanding one.
      if (this.outstanding[this.outHead] === msgs) this.outstanding[this.outHead++] = undefined as never;
      else {
        const at = this.outstanding.indexOf(msgs, this.outHead);
        if (at >= 0) this.outstanding.splice(at, 1);
      }
    }
    if (this.outHead > 256 && this.outHead * 2 > this.outstanding.length) {
      this.outstanding = this.outstanding.slice(this.outHead);
      this.outHead = 0;
    }
    this.m.acked.inc(n);
  }

  async close(): Promise<void> {
    const nc = this.nc;
    if (!nc) return;
    this.nc = undefined;
    // The last pull request must have ended before anything is nak'ed, or the server redelivers into it.
    if (this.loop) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.loop, new Promise<void>((r) => (t = setTimeout(r, FETCH_EXPIRES + 1000)))]);
      clearTimeout(t);
    }
    // What was delivered but never acknowledged goes back to the server now instead of after ack_wait.
    let naked = 0;
    const delay = this.options.nak_delay;
    const nak = (m: JsMsg) => {
      m.nak(delay);
      naked++;
    };
    if (!nc.isClosed()) {
      for (let i = this.outHead; i < this.outstanding.length; i++) this.outstanding[i]!.forEach(nak);
      this.pending.forEach(nak);
    }
    this.outstanding = [];
    this.outHead = 0;
    this.pending = [];
    if (naked) {
      this.m.naked.inc(naked);
      this.ctx.log.info({ naked, nak_delay_ms: delay ?? 0, stream: this.stream }, 'unacknowledged messages returned to JetStream for redelivery');
    }
    if (!nc.isClosed()) {
      await nc.flush().catch(() => undefined);
      if (this.ephemeral && this.jsm) await this.jsm.consumers.delete(this.stream, this.consumerName).catch(() => undefined);
    }
    const l = this.lease;
    this.lease = undefined;
    await l?.release('close');
  }
}
