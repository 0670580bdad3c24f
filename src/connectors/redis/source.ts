// The Redis source in its three modes.
//
// - stream: XREADGROUP with a consumer group. Entries stay in the group's pending list until commit() XACKs them,
//   which the runtime calls only after the sink accepted them, so a crash or a failing sink loses nothing: at start
//   the consumer first re-reads its own pending entries (ID 0), then optionally takes over (XAUTOCLAIM) entries that
//   other consumers left idle for `claim_idle`.
// - list: BLPOP/BRPOP, then a non-blocking LPOP/RPOP with COUNT for the rest of a batch (at-most-once); `reliable`
//   moves elements into a processing list and removes them there only once committed.
// - pubsub: SUBSCRIBE/PSUBSCRIBE. Redis pushes and cannot be paused, so messages go to a bounded in-memory queue
//   (dropped and counted past `queue_size`) or, with `buffer: durable`, to the on-disk log (src/core/durable-buffer.ts).
//
// Blocking reads run on their own connection so that XACK/LREM never queue behind a BLOCK. A stop unblocks them with
// CLIENT UNBLOCK from the other connection: the blocked command returns as if it timed out, so no element is popped
// and then abandoned in flight. The next blocking read is issued only after emit's backpressure promise resolved.

import { hostname } from 'node:os';
import { join } from 'node:path';
import { durableBufferConfig } from '../../core/durable-options.js';
import { openDurableBuffer, type DurableBuffer } from '../../core/durable-buffer.js';
import { RecordError, errorMessage } from '../../core/errors.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { BadRecord, Counter, SluiceRecord, Source, SourceContext } from '../../core/types.js';
import { acquireClient, closeClient, commandError, destroyClient, endpointOf, openClient, wantsBytes, withBuffers, type Client, type ClientLease, type Endpoint } from './client.js';
import type { RedisSourceOptions } from './options.js';
import { PushQueue } from '../../core/push-queue.js';

const MAX_PUBSUB_BATCH = 4096;
const COMMIT_ATTEMPTS = 5;

/** Moves up to ARGV[1] elements from KEYS[1] to the tail of KEYS[2] in one round trip (reliable list mode). */
const MOVE_MANY = `local out = {}
for i = 1, tonumber(ARGV[1]) do
  local v = redis.call('LMOVE', KEYS[1], KEYS[2], ARGV[2], 'RIGHT')
  if not v then break end
  out[#out + 1] = v
end
return out`;

interface StreamAck {
  stream: string;
  ids: string[];
}

type Payload = string | Buffer;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

/** Milliseconds part of a stream entry ID (`1700000000000-3`). */
function idTime(id: string): number | undefined {
  const dash = id.indexOf('-');
  const ms = Number(dash < 0 ? id : id.slice(0, dash));
  return Number.isFinite(ms) ? ms : undefined;
}

/** XREADGROUP as the server sends it: per stream its name and entries `[id, [field, value, ...]]` (null when deleted). */
type RawStreamEntry = [string, string[] | null];
type RawStreamReply = Array<[string, RawStreamEntry[]]>;

function pairsToObject(fields: string[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (let k = 0; k + 1 < fields.length; k += 2) o[fields[k]!] = fields[k + 1]!;
  return o;
}

export function defaultConsumer(pipeline: string): string {
  return `${pipeline}@${hostname()}`;
}

export class RedisSource implements Source {
  private ctx!: SourceContext;
  private cmd?: Client;
  /** The command connection (XACK, XGROUP, LREM), shared with the other endpoints of a connection profile. */
  private cmdLease?: ClientLease;
  private readonly profile?: string;
  private reader?: Client;
  private readerId?: number;
  private blocking = false;
  private killer?: NodeJS.Timeout;
  private readonly ep: Endpoint;
  private readonly bytes: boolean;
  private group = '';
  private consumer = '';
  private closed = false;
  private m!: { received: Counter; acked: Counter; claimed: Counter; reread: Counter; reconnects: Counter; redelivered: Counter };

  // pub/sub queue
  private target!: SourceContext;
  private buffer?: DurableBuffer;
  private queue?: PushQueue;
  /** Largest pub/sub queue depth seen (tests). */
  get maxDepth(): number {
    return this.queue?.maxDepth ?? 0;
  }

  constructor(
    readonly options: RedisSourceOptions,
    info: EndpointInfo = { format: 'json' },
  ) {
    this.ep = endpointOf(options);
    this.bytes = wantsBytes(info.format);
    this.profile = info.profile;
  }

  async run(ctx: SourceContext): Promise<void> {
    if (ctx.signal.aborted) return;
    this.ctx = ctx;
    const mt = ctx.metrics;
    this.m = {
      received: mt.counter('messages_received', 'entries, elements or messages read from Redis'),
      acked: mt.counter('acknowledged', 'stream entries acknowledged (XACK) or list elements removed from the processing list'),
      claimed: mt.counter('claimed', 'stream entries taken over from idle consumers (XAUTOCLAIM)'),
      reread: mt.counter('pending_reread', 'entries re-read at start: own pending stream entries, or the processing list'),
      reconnects: mt.counter('reconnects', 'reconnect attempts after a lost connection'),
      redelivered: mt.counter('redelivered', 'stream entries or list elements delivered again (pending, claimed or processing list): possible duplicates'),
    };
    const o = this.options;
    this.group = o.group ?? ctx.pipeline;
    this.consumer = o.consumer ?? defaultConsumer(ctx.pipeline);
    const open = (role: string) =>
      openClient(o, { name: `sluice-${ctx.pipeline}-${role}`.replace(/\s/g, '_'), log: ctx.log, onReconnect: () => this.m.reconnects.inc() });
    switch (o.mode) {
      case 'pubsub':
        return this.runPubSub(ctx, open);
      case 'stream':
      case 'list': {
        // Both connections at once: a start (and a restart after a failure) waits for one connect, not two.
        // The blocking reader is always this source's own; the command connection may be the profile's shared one.
        const [cmd, reader] = await Promise.allSettled([
          acquireClient(o, this.profile, { name: `sluice-${ctx.pipeline}-cmd`.replace(/\s/g, '_'), log: ctx.log, onReconnect: () => this.m.reconnects.inc() }),
          open('reader'),
        ]);
        if (cmd.status === 'rejected' || reader.status === 'rejected') {
          if (cmd.status === 'fulfilled') await cmd.value.release();
          if (reader.status === 'fulfilled') await closeClient(reader.value);
          throw cmd.status === 'rejected' ? cmd.reason : (reader as PromiseRejectedResult).reason;
        }
        this.cmdLease = cmd.value;
        this.cmd = cmd.value.client;
        this.reader = reader.value;
        this.reader.on('ready', () => (this.readerId = undefined));
        const onAbort = () => void this.unblock();
        ctx.signal.addEventListener('abort', onAbort, { once: true });
        try {
          if (o.mode === 'stream') await this.runStream(ctx);
          else if (o.reliable) await this.runReliableList(ctx);
          else await this.runList(ctx);
        } finally {
          ctx.signal.removeEventListener('abort', onAbort);
          // The reader is done; the command connection stays for the commits of what is still in flight.
          if (this.killer) clearTimeout(this.killer);
          const r = this.reader;
          this.reader = undefined;
          destroyClient(r);
        }
        return;
      }
    }
  }

  async commit(acks: unknown[]): Promise<void> {
    if (this.buffer) return this.buffer.commit(acks);
    if (!acks.length || !this.cmd) return;
    if (this.options.mode === 'stream') {
      const byStream = new Map<string, string[]>();
      for (const a of acks as StreamAck[]) {
        const ids = byStream.get(a.stream);
        if (ids) for (const id of a.ids) ids.push(id);
        else byStream.set(a.stream, a.ids.slice());
      }
      for (const [stream, ids] of byStream) {
        if (!ids.length) continue;
        await this.withRetry(`acknowledging ${ids.length} entries of stream '${stream}' (XACK, group '${this.group}')`, () => this.cmd!.xAck(stream, this.group, ids));
        this.m.acked.inc(ids.length);
      }
    } else if (this.options.mode === 'list' && this.options.reliable) {
      const proc = this.processingKey();
      let n = 0;
      for (const a of acks as Payload[][]) n += a.length;
      if (!n) return;
      await this.withRetry(`removing ${n} committed elements from the processing list '${proc}' (LREM)`, () => {
        const multi = this.cmd!.multi();
        for (const a of acks as Payload[][]) for (const v of a) multi.lRem(proc, 1, v);
        return multi.execAsPipeline();
      });
      this.m.acked.inc(n);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const b = this.buffer;
    this.buffer = undefined;
    if (b) await b.close();
    const r = this.reader;
    this.reader = undefined;
    destroyClient(r);
    this.cmd = undefined;
    const l = this.cmdLease;
    this.cmdLease = undefined;
    await l?.release();
  }

  /**
   * A commit that fails because the connection dropped is retried (queued commands are sent after the reconnect).
   * If it still fails, the entries stay pending and are re-read at the next start: duplicates, never loss, so the
   * pipeline goes on with a warning.
   */
  private async withRetry(what: string, fn: () => Promise<unknown>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await fn();
        return;
      } catch (e) {
        if (attempt >= COMMIT_ATTEMPTS || this.closed) {
          this.ctx.log.warn({ server: this.ep.shown, err: errorMessage(e) }, `redis: ${what} failed; the records stay pending and are read again after a restart`);
          return;
        }
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
  }

  /** Wakes the blocked read as if it timed out (CLIENT UNBLOCK), so nothing is popped and then abandoned. */
  private async unblock(): Promise<void> {
    const reader = this.reader;
    if (!reader) return;
    const id = this.readerId;
    // If the unblock cannot reach the server, dropping the connection ends the read all the same.
    this.killer = setTimeout(() => destroyClient(reader), 2000);
    this.killer.unref();
    try {
      if (this.blocking && id !== undefined && this.cmd?.isReady) await this.cmd.sendCommand(['CLIENT', 'UNBLOCK', String(id), 'TIMEOUT']);
      else if (this.blocking) destroyClient(reader);
    } catch {
      destroyClient(reader);
    }
  }

  /** Waits before retrying after a failed read; the client reconnects meanwhile. */
  private failures = 0;
  private async afterReadError(what: string, e: unknown): Promise<void> {
    this.failures++;
    if (this.failures === 1 || this.failures % 20 === 0) {
      this.ctx.log.warn({ server: this.ep.shown, err: errorMessage(e), attempt: this.failures }, `redis: ${what} failed; retrying`);
    }
    await sleep(Math.min(this.options.reconnect_max_delay, 50 * 2 ** Math.min(this.failures, 8)), this.ctx.signal);
  }

  private async blockingCall<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    const reader = this.reader!;
    this.readerId ??= await reader.clientId();
    this.blocking = true;
    try {
      return await fn(reader);
    } finally {
      this.blocking = false;
    }
  }

  // ---- streams ------------------------------------------------------------------------------------------------

  private async ensureGroup(stream: string, startId: string): Promise<void> {
    try {
      await this.cmd!.xGroupCreate(stream, this.group, startId, { MKSTREAM: true });
      this.ctx.log.info({ stream, group: this.group, start_id: startId }, 'redis: created consumer group');
    } catch (e) {
      if (/BUSYGROUP/.test(errorMessage(e))) return;
      throw commandError(`creating consumer group '${this.group}' on stream '${stream}' (XGROUP CREATE)`, this.ep, e);
    }
  }

  private readerFor(): Client {
    return (this.bytes && this.options.payload_field !== null ? withBuffers(this.reader!) : this.reader!) as Client;
  }

  /** Turns one stream's entries into a batch; entries without the payload field are reported as bad data first. */
  private emitEntries(stream: string, messages: Array<{ id: unknown; message: Record<string, unknown> } | null>, ids?: string[]): Promise<void> | undefined {
    const ctx = this.ctx;
    const field = this.options.payload_field;
    const records: SluiceRecord[] = [];
    const ackIds: string[] = ids ?? [];
    let bad: BadRecord[] | undefined;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      if (!m) continue;
      const id = String(m.id);
      ackIds.push(id);
      // A deleted entry still in the pending list comes back without fields: acknowledge it, deliver nothing.
      if (!m.message) continue;
      const meta = { _stream: stream, _id: id };
      if (field === null) {
        records.push({ value: m.message, timestamp: idTime(id), meta });
        continue;
      }
      const v = m.message[field];
      if (v === undefined) {
        const raw = JSON.stringify(m.message, (_k, x) => (Buffer.isBuffer(x) ? x.toString('utf8') : x && x.type === 'Buffer' ? Buffer.from(x.data).toString('utf8') : x));
        (bad ??= []).push({
          raw,
          error: new RecordError('DECODE', `stream '${stream}' entry ${id} has no field '${field}' (fields: ${Object.keys(m.message).join(', ') || 'none'}); set payload_field, or '*' for the whole entry`),
          meta,
        });
        continue;
      }
      records.push({ value: v as Payload, timestamp: idTime(id), meta });
    }
    this.m.received.inc(records.length + (bad?.length ?? 0));
    if (bad) ctx.bad(bad);
    if (!ackIds.length) return undefined;
    return ctx.emit({ records, decoded: field === null, ack: { stream, ids: ackIds } satisfies StreamAck });
  }

  /** `emitEntries` for a plain XREADGROUP reply with a payload field; anything unusual takes the general path. */
  private emitRawEntries(stream: string, entries: RawStreamEntry[]): Promise<void> | undefined {
    const field = this.options.payload_field!;
    const records: SluiceRecord[] = new Array(entries.length);
    const ids: string[] = new Array(entries.length);
    let n = 0;
    for (let i = 0; i < entries.length; i++) {
      const [id, fields] = entries[i]!;
      ids[i] = id;
      let v: string | undefined;
      if (fields) for (let k = 0; k + 1 < fields.length; k += 2) if (fields[k] === field) v = fields[k + 1];
      if (v === undefined) {
        // A deleted entry (no fields) or one without the payload field: the general path acknowledges or reports it.
        return this.emitEntries(stream, entries.map(([eid, f]) => ({ id: eid, message: f ? pairsToObject(f) : (null as never) })));
      }
      records[n++] = { value: v, timestamp: idTime(id), meta: { _stream: stream, _id: id } };
    }
    this.m.received.inc(n);
    return this.ctx.emit({ records, ack: { stream, ids } satisfies StreamAck });
  }

  private async runStream(ctx: SourceContext): Promise<void> {
    const o = this.options;
    const streams = o.streams!;
    for (const s of streams) await this.ensureGroup(s, o.start_id);
    ctx.log.info({ streams, group: this.group, consumer: this.consumer, server: this.ep.shown }, 'redis: reading streams with a consumer group');
    // 1. What this consumer read before a crash or stop but never acknowledged.
    for (const s of streams) await this.readOwnPending(s);
    // 2. What crashed consumers left behind.
    let lastClaim = 0;
    if (o.claim_idle !== undefined) {
      await this.claimIdle(streams);
      lastClaim = Date.now();
    }
    const keys = streams.map((key) => ({ key, id: '>' }));
    const opts = { COUNT: o.count, BLOCK: o.block };
    // Text payloads from one field: the plain reply (nested arrays) is read directly, without node-redis building an
    // object per entry and per field map that the batch would only copy out of.
    const rawArgs =
      o.payload_field !== null && !this.bytes
        ? ['XREADGROUP', 'GROUP', this.group, this.consumer, 'COUNT', String(o.count), 'BLOCK', String(o.block), 'STREAMS', ...streams, ...streams.map(() => '>')]
        : undefined;
    // The newest entry ID each stream delivered through '>' in this run.
    const lastRead = new Map<string, string>();
    // A read that failed with the connection may have been served: the server moved the entries into this consumer's
    // pending list, and the reply was lost. '>' never returns them again, so re-read own pending entries past the last
    // delivered ID before reading on; otherwise they would stay pending until the next restart.
    let resync = false;
    while (!ctx.signal.aborted) {
      if (resync) {
        try {
          for (const s of streams) await this.readOwnPending(s, lastRead.get(s) ?? '0');
          resync = false;
        } catch (e) {
          if (ctx.signal.aborted) break;
          // The group itself is gone (a server restart without persistence): nothing is pending any more, and the
          // XREADGROUP below re-creates the group.
          if (/NOGROUP/.test(errorMessage(e))) resync = false;
          else {
            await this.afterReadError('re-reading pending entries after a failed read', e);
            continue;
          }
        }
      }
      if (o.claim_idle !== undefined && Date.now() - lastClaim >= o.claim_idle) {
        await this.claimIdle(streams);
        lastClaim = Date.now();
      }
      type Reply = Array<{ name: unknown; messages: Array<{ id: unknown; message: Record<string, unknown> } | null> }> | null;
      let reply: Reply = null;
      let raw: RawStreamReply | null = null;
      try {
        if (rawArgs) raw = (await this.blockingCall((r) => r.sendCommand(rawArgs))) as RawStreamReply | null;
        else reply = (await this.blockingCall(() => this.readerFor().xReadGroup(this.group, this.consumer, keys, opts))) as Reply;
        this.failures = 0;
      } catch (e) {
        if (ctx.signal.aborted) break;
        if (/NOGROUP/.test(errorMessage(e))) {
          // The group or the stream vanished (deleted, or a server restart without persistence). Re-create it from
          // the start of what the stream now holds, so entries added since are not skipped.
          ctx.log.warn({ streams, group: this.group, err: errorMessage(e) }, 'redis: consumer group missing; re-creating it');
          try {
            for (const s of streams) await this.ensureGroup(s, '0');
          } catch (e2) {
            await this.afterReadError('re-creating the consumer group', e2);
          }
          continue;
        }
        await this.afterReadError(`XREADGROUP on ${streams.map((s) => `'${s}'`).join(', ')}`, e);
        resync = true;
        continue;
      }
      if (raw) {
        for (const [name, entries] of raw) {
          if (!entries.length) continue;
          lastRead.set(name, entries[entries.length - 1]![0]);
          const p = this.emitRawEntries(name, entries);
          if (p) await p;
        }
        continue;
      }
      if (!reply) continue;
      for (const r of reply) {
        const last = r.messages[r.messages.length - 1];
        if (last) lastRead.set(String(r.name), String(last.id));
        const p = this.emitEntries(String(r.name), r.messages);
        if (p) await p;
      }
    }
  }

  private async readOwnPending(stream: string, after = '0'): Promise<void> {
    let from = after;
    for (;;) {
      let reply;
      try {
        reply = await this.readerFor().xReadGroup(this.group, this.consumer, { key: stream, id: from }, { COUNT: this.options.count });
      } catch (e) {
        throw commandError(`re-reading the pending entries of consumer '${this.consumer}' on stream '${stream}'`, this.ep, e);
      }
      const msgs = (reply as Array<{ messages: Array<{ id: unknown; message: Record<string, unknown> } | null> }> | null)?.[0]?.messages ?? [];
      if (!msgs.length) return;
      this.m.reread.inc(msgs.length);
      // From '0' these were delivered before (an earlier run); past the last read ID this run never saw them.
      if (after === '0') this.m.redelivered.inc(msgs.length);
      const last = msgs[msgs.length - 1];
      const p = this.emitEntries(stream, msgs);
      if (p) await p;
      if (!last || this.ctx.signal.aborted) return;
      from = String(last.id);
    }
  }

  private async claimIdle(streams: string[]): Promise<void> {
    const o = this.options;
    for (const stream of streams) {
      let start = '0-0';
      do {
        let reply;
        try {
          reply = await (this.bytes && o.payload_field !== null ? withBuffers(this.cmd!) : this.cmd!).xAutoClaim(stream, this.group, this.consumer, o.claim_idle!, start, { COUNT: o.count });
        } catch (e) {
          this.ctx.log.warn({ stream, group: this.group, err: errorMessage(e) }, 'redis: XAUTOCLAIM failed; idle entries are claimed on the next attempt');
          return;
        }
        const msgs = reply.messages as Array<{ id: unknown; message: Record<string, unknown> } | null>;
        const n = msgs.filter((x) => x).length;
        if (n) {
          this.m.claimed.inc(n);
          this.m.redelivered.inc(n);
          this.ctx.log.info({ stream, group: this.group, claimed: n }, 'redis: took over idle pending entries of other consumers');
          const p = this.emitEntries(stream, msgs);
          if (p) await p;
        }
        start = String(reply.nextId);
      } while (start !== '0-0' && !this.ctx.signal.aborted);
    }
  }

  // ---- lists --------------------------------------------------------------------------------------------------

  private processingKey(): string {
    return this.options.processing_key ?? `${this.options.key![0]}:processing:${this.consumer}`;
  }

  private listClient(c: Client): Client {
    return (this.bytes ? withBuffers(c) : c) as Client;
  }

  private listRecords(key: string, values: Payload[]): SluiceRecord[] {
    const now = Date.now();
    const out = new Array<SluiceRecord>(values.length);
    for (let i = 0; i < values.length; i++) out[i] = { value: values[i], key, timestamp: now, meta: { _key: key } };
    this.m.received.inc(values.length);
    return out;
  }

  private async runList(ctx: SourceContext): Promise<void> {
    const o = this.options;
    const keys = o.key!;
    const secs = o.block / 1000;
    ctx.log.info({ keys, direction: o.direction, server: this.ep.shown }, 'redis: popping from lists (at-most-once)');
    while (!ctx.signal.aborted) {
      let first: { key: unknown; element: unknown } | null;
      try {
        first = await this.blockingCall((r) => (o.direction === 'left' ? this.listClient(r).blPop(keys, secs) : this.listClient(r).brPop(keys, secs)));
        this.failures = 0;
      } catch (e) {
        if (ctx.signal.aborted) break;
        await this.afterReadError(`${o.direction === 'left' ? 'BLPOP' : 'BRPOP'} on ${keys.map((k) => `'${k}'`).join(', ')}`, e);
        continue;
      }
      if (!first) continue;
      const key = String(first.key);
      const values: Payload[] = [first.element as Payload];
      if (o.count > 1) {
        try {
          const r = this.listClient(this.reader!);
          const more = (o.direction === 'left' ? await r.lPopCount(key, o.count - 1) : await r.rPopCount(key, o.count - 1)) as Payload[] | null;
          if (more) for (const v of more) values.push(v);
        } catch (e) {
          // What was popped already is delivered; the rest stays in the list for the next round.
          ctx.log.warn({ key, err: errorMessage(e) }, 'redis: popping the rest of a batch failed');
        }
      }
      const p = ctx.emit({ records: this.listRecords(key, values) });
      if (p) await p;
    }
  }

  private async runReliableList(ctx: SourceContext): Promise<void> {
    const o = this.options;
    const key = o.key![0]!;
    const proc = this.processingKey();
    const side = o.direction === 'left' ? 'LEFT' : 'RIGHT';
    const secs = o.block / 1000;
    ctx.log.info({ key, processing_key: proc, server: this.ep.shown }, 'redis: reliable list consumer (elements acknowledged after the sink)');
    // Elements moved but never acknowledged before the last stop or crash come first, oldest first.
    let left: Payload[];
    try {
      left = (await this.listClient(this.cmd!).lRange(proc, 0, -1)) as Payload[];
    } catch (e) {
      throw commandError(`reading the processing list '${proc}'`, this.ep, e);
    }
    if (left.length) {
      ctx.log.info({ processing_key: proc, elements: left.length }, 'redis: re-delivering unacknowledged elements from the processing list');
      this.m.reread.inc(left.length);
      this.m.redelivered.inc(left.length);
    }
    for (let i = 0; i < left.length && !ctx.signal.aborted; i += o.count) {
      const values = left.slice(i, i + o.count);
      const p = ctx.emit({ records: this.listRecords(key, values), ack: values });
      if (p) await p;
    }
    while (!ctx.signal.aborted) {
      let first: Payload | null;
      try {
        first = (await this.blockingCall((r) => this.listClient(r).blMove(key, proc, side, 'RIGHT', secs))) as Payload | null;
        this.failures = 0;
      } catch (e) {
        if (ctx.signal.aborted) break;
        await this.afterReadError(`BLMOVE from '${key}' to '${proc}'`, e);
        continue;
      }
      if (first === null) continue;
      const values: Payload[] = [first];
      if (o.count > 1) {
        try {
          const more = (await this.listClient(this.reader!).eval(MOVE_MANY, { keys: [key, proc], arguments: [String(o.count - 1), side] })) as Payload[] | null;
          if (more) for (const v of more) values.push(v);
        } catch (e) {
          ctx.log.warn({ key, err: errorMessage(e) }, 'redis: moving the rest of a batch failed');
        }
      }
      const p = ctx.emit({ records: this.listRecords(key, values), ack: values });
      if (p) await p;
    }
  }

  // ---- pub/sub ------------------------------------------------------------------------------------------------

  private async runPubSub(ctx: SourceContext, open: (role: string) => Promise<Client>): Promise<void> {
    const o = this.options;
    this.target = ctx;
    if (o.buffer === 'durable') {
      this.buffer = await openDurableBuffer(ctx, durableBufferConfig(ctx.dataDir, 'redis', o));
      this.target = this.buffer.ctx;
    }
    const mt = ctx.metrics;
    const queue = (this.queue = new PushQueue({
      capacity: o.queue_size,
      overflow: 'drop_newest',
      maxBatch: MAX_PUBSUB_BATCH,
      emit: (records) => this.target.emit({ records }),
      log: ctx.log,
      emitted: this.m.received,
      dropped: mt.counter('dropped', 'pub/sub messages dropped because the in-memory queue was full'),
      depth: mt.gauge('queue_depth', 'pub/sub messages waiting for the pipeline'),
      dropContext: {},
      dropMessage: 'redis pub/sub queue full: the pipeline is slower than the publishers, messages dropped (use buffer: durable to keep them)',
    }));
    const sub = await open('subscriber');
    const stop = this.buffer ? this.buffer.ctx.signal : ctx.signal;
    try {
      const bytes = this.bytes;
      if (o.channels?.length) {
        const onMessage = (message: Payload, channel: Payload) => this.accept(message, channel, null);
        await sub.subscribe(o.channels, onMessage as never, bytes);
      }
      for (const pattern of o.patterns ?? []) {
        // One listener per pattern (not per message) so each message knows which pattern matched.
        const onMessage = (message: Payload, channel: Payload) => this.accept(message, channel, pattern);
        await sub.pSubscribe(pattern, onMessage as never, bytes);
      }
    } catch (e) {
      await closeClient(sub);
      throw commandError(`subscribing to ${[...(o.channels ?? []), ...(o.patterns ?? [])].map((c) => `'${c}'`).join(', ')}`, this.ep, e);
    }
    ctx.log.info({ channels: o.channels, patterns: o.patterns, buffer: o.buffer, server: this.ep.shown }, 'redis: subscribed');
    await new Promise<void>((resolve) => {
      if (stop.aborted) resolve();
      else stop.addEventListener('abort', () => resolve(), { once: true });
    });
    destroyClient(sub);
    queue.flush(true);
    if (this.buffer) await this.buffer.done;
  }

  private accept(message: Payload, channel: Payload, pattern: string | null): void {
    this.queue!.push({ value: message, timestamp: Date.now(), meta: { _channel: String(channel), _pattern: pattern } });
  }
}

