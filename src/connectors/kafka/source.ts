// The Kafka source: a consumer group member that hands each fetched partition batch to the pipeline as one
// SourceBatch, and commits offsets only once the pipeline acknowledged them (at-least-once).
//
// Positions live in two places: the consumer group (what other tools see, and what `offset: group` resumes from) and
// the pipeline's state store (what `offset: earliest|latest` resume from after a restart, independent of whatever
// else uses the group).

import { isUtf8 } from 'node:buffer';
import type { Logger } from 'pino';
import { SluiceError, errorMessage } from '../../core/errors.js';
import { suggest } from '../../core/units.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { Counter, SluiceRecord, Source, SourceContext } from '../../core/types.js';
import { backend, connectError, rootCause, type Consumer, type EachBatchPayload, type IHeaders } from './client.js';
import { registryConfig, topicRegex, type KafkaSourceOptions, type RegistryConfig } from './options.js';

/** Ack token of one emitted batch: the last offset of a partition batch. */
export interface KafkaAck {
  topic: string;
  partition: number;
  offset: string;
}

const STATE_KEY = 'offsets';
/** Per partition, the highest offset this pipeline emitted, persisted with each commit: re-reads up to it are counted. */
const EMITTED_KEY = 'emitted';
const EMIT_SLICE = 1000;
const tp = (topic: string, partition: number) => `${topic}\u0000${partition}`;

function isKafkaAck(a: unknown): a is KafkaAck {
  return !!a && typeof a === 'object' && typeof (a as KafkaAck).topic === 'string' && typeof (a as KafkaAck).partition === 'number' && typeof (a as KafkaAck).offset === 'string';
}

/** Header values as text when they are UTF-8 (almost always), else the bytes; repeated headers keep the first. */
const EMPTY = Buffer.alloc(0);

function convertHeaders(h: IHeaders): Record<string, string | Uint8Array> | undefined {
  let out: Record<string, string | Uint8Array> | undefined;
  for (const k in h) {
    let v = h[k];
    if (Array.isArray(v)) v = v[0];
    if (v === undefined) continue;
    (out ??= {})[k] = typeof v === 'string' ? v : isUtf8(v) ? v.toString('utf8') : v;
  }
  return out;
}

export class KafkaSource implements Source {
  /** Schema Registry settings for the Avro format; the format reads them from here. */
  readonly registry?: RegistryConfig;
  private consumer?: Consumer;
  private log?: Logger;
  private ctx?: SourceContext;
  private group = '';
  /** Next offsets acknowledged but not yet committed to the group. */
  private pending = new Map<string, { topic: string; partition: number; offset: string }>();
  /** Every acknowledged position of this pipeline, as persisted in the state store. */
  private positions: Record<string, string> = {};
  private assigned = new Set<string>();
  private flushing?: Promise<void>;
  private flushAgain = false;
  private stopping = false;
  private inFlight = 0;
  private idle?: () => void;
  private tombstones?: Counter;
  private redelivered?: Counter;
  /** Highest offset emitted per partition, by this run or (as persisted at its last commit) an earlier one. */
  private emitted = new Map<string, number>();
  private readonly keepTombstones: boolean;

  constructor(
    readonly options: KafkaSourceOptions,
    readonly info?: EndpointInfo,
  ) {
    this.registry = registryConfig(options);
    this.keepTombstones = /upsert/.test(info?.format ?? '');
  }

  async run(ctx: SourceContext): Promise<void> {
    const o = this.options;
    this.ctx = ctx;
    this.log = ctx.log;
    this.group = o.group ?? `sluice-source-${ctx.pipeline}`;
    this.tombstones = ctx.metrics.counter('tombstones', 'messages with a null value (skipped)');
    const client = backend.client(o, ctx.log);
    this.positions = ((await ctx.state.get<Record<string, string>>(STATE_KEY)) ?? {}) as Record<string, string>;
    this.redelivered = ctx.metrics.counter('redelivered', 'records at offsets this pipeline had emitted before (re-read after a restart or rebalance): possible duplicates');
    for (const [k, v] of Object.entries((await ctx.state.get<Record<string, number>>(EMITTED_KEY)) ?? {})) if (typeof v === 'number') this.emitted.set(k, v);
    // An exactly-once sink's stored position wins over ours and over the group's (both may be behind it).
    const resumed = new Map<string, string>();
    for (const a of Object.values(ctx.resume ?? {})) {
      if (!isKafkaAck(a)) continue;
      const next = (BigInt(a.offset) + 1n).toString();
      resumed.set(tp(a.topic, a.partition), next);
      // Past an exactly-once sink's position nothing is in the sink: re-reading it duplicates nothing.
      this.emitted.delete(tp(a.topic, a.partition));
      this.positions[tp(a.topic, a.partition)] = next;
    }

    const { topics, starts } = await this.prepare(client.admin(), ctx);
    for (const [key, next] of resumed) starts.set(key, next);
    if (ctx.signal.aborted) return;

    const consumer = client.consumer({
      groupId: this.group,
      readUncommitted: o.read_mode === 'read_uncommitted',
      sessionTimeout: o.session_timeout,
      heartbeatInterval: o.heartbeat_interval,
      rebalanceTimeout: o.rebalance_timeout,
      maxWaitTimeInMs: o.max_wait,
      maxBytesPerPartition: o.max_bytes_per_partition,
      retry: { retries: o.retries, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
    this.consumer = consumer;
    let crashed: (e: Error) => void = () => undefined;
    const crash = new Promise<never>((_r, reject) => (crashed = reject));
    crash.catch(() => undefined);
    const sought = new Set<string>();
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.assigned.clear();
      for (const [topic, parts] of Object.entries(e.payload.memberAssignment)) {
        for (const p of parts) {
          const key = tp(topic, p);
          this.assigned.add(key);
          // Seeks apply to the next fetch, which comes after this (synchronous) event.
          const start = starts.get(key);
          if (start !== undefined && !sought.has(key)) consumer.seek({ topic, partition: p, offset: start });
          sought.add(key);
        }
      }
      // Acknowledged positions of partitions this member no longer owns cannot be committed any more; the new owner
      // re-reads from the group's last commit (duplicates, no loss).
      for (const [key, v] of this.pending) {
        if (!this.assigned.has(key)) {
          this.pending.delete(key);
          ctx.log.info({ topic: v.topic, partition: v.partition, offset: v.offset }, 'partition revoked before its acknowledged offset was committed; its new owner re-reads from the last commit');
        }
      }
      ctx.log.info({ group: this.group, partitions: this.assigned.size }, 'joined consumer group');
      if (this.pending.size) void this.flush();
    });
    // KafkaJS has no revocation callback. The REBALANCING event comes before it rejoins, while this member's
    // generation is still current, so that is the last moment acknowledged offsets can be committed for partitions it
    // may lose.
    consumer.on(consumer.events.REBALANCING, () => {
      if (this.pending.size) void this.flush();
    });
    consumer.on(consumer.events.CRASH, (e) => {
      const { error, restart } = e.payload;
      if (restart) {
        ctx.log.warn({ err: rootCause(error), group: this.group }, 'kafka consumer failed; reconnecting');
        return;
      }
      crashed(connectError(error, o, `kafka source (group '${this.group}')`));
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics, fromBeginning: o.offset === 'earliest' || (o.offset === 'group' && o.offset_reset === 'earliest') });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: o.concurrency,
        eachBatch: (p) => this.eachBatch(p),
      });
    } catch (e) {
      await consumer.disconnect().catch(() => undefined);
      this.consumer = undefined;
      throw connectError(e, o, `kafka source (group '${this.group}')`);
    }
    const aborted = new Promise<void>((r) => (ctx.signal.aborted ? r() : ctx.signal.addEventListener('abort', () => r(), { once: true })));
    try {
      await Promise.race([aborted, crash]);
    } finally {
      await this.quiesce(topics);
    }
  }

  /** Resolve the topic list and, for earliest/latest, each partition's starting offset; fails early and clearly. */
  private async prepare(admin: ReturnType<ReturnType<typeof backend.client>['admin']>, ctx: SourceContext) {
    const o = this.options;
    const starts = new Map<string, string>();
    let topics: string[];
    try {
      await admin.connect();
      const existing = await admin.listTopics();
      const patterns = o.topic_pattern ? [new RegExp(o.topic_pattern)] : (o.topic ?? []).map(topicRegex).filter((r): r is RegExp => !!r);
      const named = (o.topic ?? []).filter((t) => !topicRegex(t));
      for (const t of named) {
        if (!existing.includes(t)) {
          const hint = suggest(t, existing);
          throw new SluiceError('CONFIG', `topic '${t}' does not exist on brokers ${o.brokers.join(',')}${hint ? `; did you mean '${hint}'?` : ''}`);
        }
      }
      const matched = existing.filter((t) => !t.startsWith('__') && patterns.some((r) => r.test(t)));
      if (patterns.length && !matched.length && !named.length) {
        throw new SluiceError('CONFIG', `no topic on brokers ${o.brokers.join(',')} matches ${patterns.map(String).join(', ')}`);
      }
      topics = [...new Set([...named, ...matched])];
      if (o.offset !== 'group') {
        for (const t of topics) {
          const offs = await admin.fetchTopicOffsets(t);
          for (const p of offs) {
            const key = tp(t, p.partition);
            starts.set(key, this.positions[key] ?? (o.offset === 'earliest' ? p.low : p.high));
          }
        }
      }
    } catch (e) {
      if (e instanceof SluiceError) throw e;
      throw connectError(e, o, 'kafka source');
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
    ctx.log.info({ topics, group: this.group, offset: o.offset }, 'kafka source starting');
    return { topics, starts };
  }

  private async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    if (this.stopping || !isRunning() || isStale()) return;
    const msgs = batch.messages;
    const n = msgs.length;
    if (n === 0) return;
    this.inFlight++;
    try {
      const { topic, partition } = batch;
      const key = `${topic}/${partition}`;
      // A fetch can hold thousands of messages per partition; emitting them in slices lets backpressure act between
      // slices, so the pipeline's buffer bound is overshot by at most one slice per partition.
      for (let from = 0; from < n; from += EMIT_SLICE) {
        if (this.stopping || isStale()) return;
        const to = Math.min(n, from + EMIT_SLICE);
        const records: SluiceRecord[] = [];
        let tombstones = 0;
        for (let i = from; i < to; i++) {
          const m = msgs[i]!;
          if (m.value === null) {
            // Upsert formats turn a tombstone (null value, key set) into a delete; for every other format it is noise.
            if (!this.keepTombstones || m.key === null || m.key === undefined) {
              tombstones++;
              continue;
            }
          }
          const rec: SluiceRecord = { value: m.value ?? EMPTY, timestamp: Number(m.timestamp), meta: { _topic: topic, _partition: partition, _offset: Number(m.offset) } };
          if (m.key !== null && m.key !== undefined) rec.key = m.key;
          if (m.headers) {
            const h = convertHeaders(m.headers);
            if (h) rec.headers = h;
          }
          records.push(rec);
        }
        if (tombstones) this.tombstones!.inc(tombstones);
        const last = msgs[to - 1]!.offset;
        const seen = this.emitted.get(key);
        if (seen === undefined || Number(last) > seen) this.emitted.set(key, Number(last));
        if (seen !== undefined && Number(msgs[from]!.offset) <= seen) {
          let again = 0;
          for (const r of records) if ((r.meta!._offset as number) <= seen) again++;
          this.redelivered!.inc(again);
        }
        const ack: KafkaAck = { topic, partition, offset: last };
        const wait = this.ctx!.emit({ records, ack, position: ack, partition: key });
        // The in-memory fetch position only: nothing is committed until the pipeline acknowledges the slice.
        resolveOffset(last);
        if (wait) await this.waitWithHeartbeat(wait, heartbeat);
      }
    } finally {
      if (--this.inFlight === 0 && this.idle) this.idle();
    }
  }

  /** Backpressure holds this partition's batch; heartbeats keep the group membership alive meanwhile. */
  private async waitWithHeartbeat(wait: Promise<void>, heartbeat: () => Promise<void>): Promise<void> {
    let done = false;
    void wait.then(() => (done = true));
    const every = Math.max(100, this.options.heartbeat_interval);
    while (!done) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([wait, new Promise<void>((r) => (t = setTimeout(r, every)))]);
      clearTimeout(t);
      if (!done) await heartbeat().catch((e) => this.log?.debug({ err: errorMessage(e) }, 'heartbeat while waiting for the pipeline failed'));
    }
  }

  /** Stop fetching and let in-flight batches finish, but stay in the group so acknowledged offsets can still commit. */
  private async quiesce(topics: string[]): Promise<void> {
    this.stopping = true;
    try {
      this.consumer?.pause(topics.map((topic) => ({ topic })));
    } catch {
      /* not running (crashed): nothing to pause */
    }
    if (this.inFlight > 0) await new Promise<void>((r) => (this.idle = r));
  }

  async commit(acks: unknown[]): Promise<void> {
    for (const a of acks as KafkaAck[]) {
      const key = tp(a.topic, a.partition);
      const next = (BigInt(a.offset) + 1n).toString();
      this.pending.set(key, { topic: a.topic, partition: a.partition, offset: next });
      this.positions[key] = next;
    }
    await this.ctx?.state.set(STATE_KEY, this.positions);
    await this.ctx?.state.set(EMITTED_KEY, Object.fromEntries(this.emitted));
    void this.flush();
  }

  /** Commit pending offsets to the group, one request at a time; failures keep them pending for the next try. */
  private flush(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      do {
        this.flushAgain = false;
        const consumer = this.consumer;
        if (!consumer || !this.pending.size) break;
        const batch = [...this.pending.entries()].filter(([k]) => this.assigned.has(k));
        if (!batch.length) break;
        try {
          await consumer.commitOffsets(batch.map(([, v]) => v));
          for (const [k, v] of batch) if (this.pending.get(k)?.offset === v.offset) this.pending.delete(k);
        } catch (e) {
          this.log?.warn({ err: rootCause(e), group: this.group }, 'committing offsets to the consumer group failed; retrying with the next acknowledgement');
          break;
        }
      } while (this.flushAgain);
    })().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  async close(): Promise<void> {
    const consumer = this.consumer;
    if (!consumer) return;
    // A run that ends without a final commit (a failed sink) still leaves what it emitted for the next run to count.
    await this.ctx?.state.set(EMITTED_KEY, Object.fromEntries(this.emitted)).catch(() => undefined);
    if (this.pending.size) {
      // One last bounded attempt: a broker that is down must not hold up the shutdown.
      await Promise.race([this.flush(), new Promise((r) => setTimeout(r, 5000).unref())]);
    }
    this.consumer = undefined;
    await consumer.disconnect().catch((e) => this.log?.debug({ err: errorMessage(e) }, 'kafka consumer disconnect failed'));
  }

  /** Test hook: positions the group has not confirmed yet. */
  get uncommitted(): number {
    return this.pending.size;
  }
}
