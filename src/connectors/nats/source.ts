// The core NATS source: one subscription (wildcards, optional queue group) feeding the pipeline in batches.
//
// Core NATS has no acknowledgements and no flow control: the server pushes, and a client that cannot keep up is cut
// off as a slow consumer. So the subscription callback never blocks. Messages go to a bounded in-process queue that
// is emitted in batches; while the pipeline asks us to wait, the queue fills, and past `queue_size` messages are
// dropped and counted (`buffer: memory`). With `buffer: durable` every message is appended to the on-disk log first
// (src/core/durable-buffer.ts) and the log absorbs a slow or dead sink instead.

import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import { durableBufferConfig } from '../../core/durable-options.js';
import { openDurableBuffer, type DurableBuffer } from '../../core/durable-buffer.js';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { Counter, SluiceRecord, Source, SourceContext } from '../../core/types.js';
import { PushQueue } from '../../core/push-queue.js';
import { acquireNats, describeServers, watchStatus, type NatsLease } from './connection.js';
import type { NatsSourceOptions } from './options.js';

/** Most records per emitted batch: large enough to amortise the per-batch cost, small enough to keep latency low. */
const MAX_BATCH = 4096;

/** NATS headers as a plain map; a header with several values keeps them comma-joined. */
export function headersOf(h: MsgHdrs | undefined): Record<string, string> | undefined {
  if (!h) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of h) out[k] = v.length === 1 ? v[0]! : v.join(',');
  return out;
}

export class NatsSource implements Source {
  private ctx!: SourceContext;
  private target!: SourceContext;
  private buffer?: DurableBuffer;
  private nc?: NatsConnection;
  private lease?: NatsLease;
  private readonly profile?: string;
  private sub?: Subscription;
  private queue!: PushQueue;
  private now = 0;
  private readonly text: boolean;
  private m!: { received: Counter; reconnects: Counter };

  /** Largest queue depth seen (tests). */
  get maxDepth(): number {
    return this.queue?.maxDepth ?? 0;
  }

  constructor(
    readonly options: NatsSourceOptions,
    info: EndpointInfo = { format: 'json' },
  ) {
    // Text formats decode strings anyway; bytes stay bytes.
    this.text = info.format !== 'bytes';
    this.profile = info.profile;
  }

  async run(ctx: SourceContext): Promise<void> {
    if (ctx.signal.aborted) return;
    this.ctx = ctx;
    this.target = ctx;
    const mt = ctx.metrics;
    this.m = {
      received: mt.counter('messages_received', 'NATS messages received'),
      reconnects: mt.counter('reconnects', 'reconnections to the NATS server'),
    };
    const o = this.options;
    this.queue = new PushQueue({
      capacity: o.queue_size,
      overflow: o.overflow,
      maxBatch: MAX_BATCH,
      emit: (records) => this.target.emit({ records }),
      log: ctx.log,
      dropped: mt.counter('dropped', 'messages dropped because the in-memory queue was full (slow consumer)'),
      depth: mt.gauge('queue_depth', 'messages waiting for the pipeline'),
      dropContext: { subject: o.subject },
      dropMessage: 'NATS source queue full: the pipeline is slower than the publishers, messages dropped (use buffer: durable to keep them)',
      // Messages of one socket read share a receive time, reset when the next tick starts.
      onTick: () => void (this.now = 0),
    });
    if (o.buffer === 'durable') {
      this.buffer = await openDurableBuffer(ctx, durableBufferConfig(ctx.dataDir, 'nats', o));
      this.target = this.buffer.ctx;
    }
    this.lease = await acquireNats(o, this.profile, `sluice:${ctx.pipeline}`);
    const nc = (this.nc = this.lease.nc);
    const closed = watchStatus(nc, o, ctx.log, () => this.m.reconnects.inc());
    try {
      this.sub = nc.subscribe(o.subject, { queue: o.queue, callback: this.onMessage });
      // The SUB must reach the server before we report running, or the first messages after start are missed.
      await nc.flush();
    } catch (e) {
      await this.release();
      throw new SluiceError('CONNECT', `subscribing to subject '${o.subject}' on ${describeServers(o)} failed: ${errorMessage(e)}`, { cause: e });
    }
    ctx.log.info({ subject: o.subject, queue: o.queue, servers: describeServers(o), buffer: o.buffer }, 'NATS subscription started');
    const stopSignal = this.buffer ? this.buffer.ctx.signal : ctx.signal;
    const stopped = new Promise<void>((r) => {
      if (stopSignal.aborted) r();
      else stopSignal.addEventListener('abort', () => r(), { once: true });
    });
    const ended = await Promise.race([stopped.then(() => undefined), closed]);
    // Draining the subscription delivers what the client already received before it ends.
    try {
      if (!nc.isClosed()) await this.sub.drain();
    } catch {
      /* the connection is going away anyway */
    }
    await this.release();
    this.queue.flush(true);
    if (ended) throw ended;
    if (this.buffer) await this.buffer.done;
  }

  async commit(acks: unknown[]): Promise<void> {
    // Without the durable buffer nothing can be re-read from core NATS, so there is nothing to remember.
    if (this.buffer) await this.buffer.commit(acks);
  }

  async close(): Promise<void> {
    await this.release();
    const b = this.buffer;
    this.buffer = undefined;
    if (b) await b.close();
  }

  /** Gives the connection back (closing it unless other endpoints of the profile still use it). */
  private async release(): Promise<void> {
    const l = this.lease;
    this.lease = undefined;
    if (l) await l.release('close');
  }

  // ---- per message (hot path) ----

  private readonly onMessage = (err: Error | null, msg: Msg): void => {
    if (err) {
      this.ctx.log.warn({ err: errorMessage(err), subject: this.options.subject }, 'NATS subscription error');
      return;
    }
    this.m.received.inc();
    const meta: Record<string, unknown> = { _subject: msg.subject, _reply: msg.reply || null };
    // Messages of one socket read arrive in one synchronous run; they share a receive time (reset on the next tick).
    const now = this.now || (this.now = Date.now());
    const rec: SluiceRecord = { value: this.text ? msg.string() : msg.data, timestamp: now, meta };
    if (msg.headers) rec.headers = headersOf(msg.headers);
    this.queue.push(rec);
  };
}
