// The WebSocket source: one or more connections (subscriptions sharded over them) feeding one queue.
//
// Per message: one record and one meta object, no closures and no promises. Frames that arrive in the same turn of
// the event loop are emitted as one batch. When the pipeline pushes back, every socket is paused (overflow:
// backpressure) so the kernel's receive window fills and TCP slows the server down; in the drop modes reading goes on
// and the queue sheds messages instead.

import { join } from 'node:path';
import WebSocket from 'ws';
import { durableBufferConfig } from '../../core/durable-options.js';
import { RecordError, SluiceError, errorMessage } from '../../core/errors.js';
import type { Counter, Gauge, SluiceRecord, Source, SourceContext } from '../../core/types.js';
import type { EndpointInfo } from '../../core/spec.js';
import { Backoff, describeClose, effectiveUrl, openWebSocket, redactUrl, sleep } from './connect.js';
import type { HandshakeStep, WebSocketSourceOptions } from './options.js';
import { compileTemplate, type Template, type TemplateVars } from './template.js';
import { openBuffer, type DurableBufferHandle } from './durable.js';

/** Strict UTF-8 that keeps a leading BOM, as Buffer#toString did. */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Connection states as exposed in the `connection_state` gauge. */
export const ConnState = { Disconnected: 0, Connecting: 1, Live: 2 } as const;
export type ConnState = (typeof ConnState)[keyof typeof ConnState];

/** What `test()` and tests can watch: each step of each connection, in words. */
export interface SourceObserver {
  step(message: string, kind: 'info' | 'done' | 'error'): void;
}

interface Metrics {
  messages: Counter;
  bytes: Counter;
  state: Gauge;
  connects: Counter;
  reconnects: Counter;
  handshakeFailures: Counter;
  lastMessageAge: Gauge;
  queueDepth: Gauge;
  dropped: Counter;
  gaps: Counter;
  badFrames: Counter;
}

type CompiledStep =
  | { kind: 'send'; template: Template; binary: boolean }
  | { kind: 'expect'; json?: Array<[string[], unknown]>; regex?: RegExp; timeout: number; describe: string }
  | { kind: 'sleep'; ms: number };

function compileSteps(steps: HandshakeStep[] | undefined): CompiledStep[] {
  return (steps ?? []).map((s): CompiledStep => {
    if ('send' in s) return { kind: 'send', template: compileTemplate(s.send), binary: s.type === 'binary' };
    if ('sleep' in s) return { kind: 'sleep', ms: s.sleep };
    const e = s.expect;
    const json = e.json ? Object.entries(e.json).map(([k, v]): [string[], unknown] => [k.split('.'), v]) : undefined;
    const describe = [e.json ? JSON.stringify(e.json) : '', e.regex ? `/${e.regex}/` : ''].filter(Boolean).join(' and ');
    return { kind: 'expect', json, regex: e.regex === undefined ? undefined : new RegExp(e.regex), timeout: e.timeout, describe };
  });
}

function at(v: unknown, path: string[]): unknown {
  let cur = v;
  for (let i = 0; i < path.length; i++) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[path[i]!];
  }
  return cur;
}

/** `/regex/` or exact text. */
function textMatcher(spec: string): (text: string) => boolean {
  const m = /^\/(.*)\/([a-z]*)$/s.exec(spec);
  if (m) {
    const re = new RegExp(m[1]!, m[2]);
    return (t) => re.test(t);
  }
  return (t) => t === spec;
}

/**
 * With the durable buffer, reading pauses after this many frames in one event-loop turn and resumes once they are
 * appended (the size of one replay batch): each turn then costs a few ms, and the sink side gets its turns in between.
 */
export const DURABLE_TURN_FRAMES = 1000;

export class WebSocketSource implements Source {
  readonly options: WebSocketSourceOptions;
  private ctx!: SourceContext;
  /** Where batches go: the pipeline, or the durable buffer in front of it. */
  private target!: SourceContext;
  private buffer?: DurableBufferHandle;
  private m!: Metrics;
  private conns: Connection[] = [];
  private readonly stop = new AbortController();

  // ---- the queue ----
  private pending: SluiceRecord[] = [];
  /** drop_oldest advances this instead of shifting the array. */
  private head = 0;
  private scheduled = false;
  /** The pipeline asked us to wait (emit returned a promise that has not resolved yet). */
  private waiting = false;
  /** Sockets are paused for backpressure; liveness timers must not count this as silence. */
  paused = false;
  /** Largest queue depth seen (tests and the status of the slow-sink case). */
  maxDepth = 0;
  /** Frames accepted since the last flush (counted only with the durable buffer, see DURABLE_TURN_FRAMES). */
  private turnFrames = 0;
  /** The sockets are paused because this turn's frame budget is spent, not because the pipeline pushed back. */
  private yielded = false;
  readonly selfDecode: boolean;
  private readonly seqPath?: string[];
  private readonly binaryFormat: boolean;
  lastDataAt = 0;
  private unpublished = { messages: 0, bytes: 0 };
  private gaugeTimer?: NodeJS.Timeout;

  constructor(
    options: WebSocketSourceOptions,
    info: EndpointInfo = { format: 'json' },
    private readonly observer?: SourceObserver,
  ) {
    this.options = options;
    this.seqPath = options.sequence_field?.split('.');
    this.selfDecode = this.seqPath !== undefined;
    this.binaryFormat = info.format === 'bytes';
    // Templates were checked by the option schema; compiling here makes a bad one fail before any connection.
    this.steps = compileSteps(options.handshake);
    this.subs = (options.subscription_messages ?? []).map(compileTemplate);
    this.subTemplate = options.subscription_template === undefined ? undefined : compileTemplate(options.subscription_template);
    this.pingTemplate = options.ping_message === undefined ? undefined : compileTemplate(options.ping_message);
    this.pongMatch = options.pong_match === undefined ? undefined : textMatcher(options.pong_match);
  }

  readonly steps: CompiledStep[];
  readonly subs: Template[];
  readonly subTemplate?: Template;
  readonly pingTemplate?: Template;
  readonly pongMatch?: (text: string) => boolean;

  /** The channel lists of the connections: one list per connection. */
  shards(): string[][] {
    const all = this.options.subscriptions ?? [];
    const per = this.options.max_subscriptions_per_connection ?? (all.length || 1);
    if (!all.length) return [[]];
    const out: string[][] = [];
    for (let i = 0; i < all.length; i += per) out.push(all.slice(i, i + per));
    return out;
  }

  async run(ctx: SourceContext): Promise<void> {
    this.ctx = ctx;
    const mt = ctx.metrics;
    this.m = {
      messages: mt.counter('messages_received', 'WebSocket messages received'),
      bytes: mt.counter('bytes_received', 'payload bytes received'),
      state: mt.gauge('connection_state', '0 disconnected, 1 connecting, 2 connected (the lowest over all connections)'),
      connects: mt.counter('connects', 'successful connections'),
      reconnects: mt.counter('reconnects', 'reconnect attempts'),
      handshakeFailures: mt.counter('handshake_failures', 'handshake scripts that failed'),
      lastMessageAge: mt.gauge('last_message_age_ms', 'time since the last data message'),
      queueDepth: mt.gauge('queue_depth', 'messages waiting for the pipeline'),
      dropped: mt.counter('dropped', 'messages dropped by the overflow policy'),
      gaps: mt.counter('gaps', 'jumps in sequence_field'),
      badFrames: mt.counter('decode_errors', 'frames the source could not decode (invalid UTF-8, invalid JSON with sequence_field)'),
    };
    const onAbort = () => this.stop.abort();
    if (ctx.signal.aborted) return;
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    this.target = ctx;
    try {
      if (this.options.buffer === 'durable') {
        this.buffer = await openBuffer(ctx, durableBufferConfig(ctx.dataDir, 'websocket', this.options));
        this.target = this.buffer.ctx;
      }
      this.lastDataAt = Date.now();
      this.gaugeTimer = setInterval(this.publish, 1000);
      this.gaugeTimer.unref();
      const shards = this.shards();
      this.conns = shards.map((channels, i) => new Connection(this, i, channels, this.m, ctx, this.stop.signal, this.observer));
      this.updateState();
      // The first connection to give up stops the others: the source fails as a whole.
      const results = await Promise.allSettled(
        this.conns.map((c) =>
          c.run().catch((e) => {
            this.stop.abort();
            throw e;
          }),
        ),
      );
      this.flushNow(true);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      if (this.buffer) await this.buffer.done;
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      if (this.gaugeTimer) clearInterval(this.gaugeTimer);
      this.publish();
    }
  }

  async commit(acks: unknown[]): Promise<void> {
    // Without the durable buffer nothing can be re-read from a WebSocket, so there is nothing to remember.
    if (this.buffer) await this.buffer.commit(acks);
  }

  async close(): Promise<void> {
    this.stop.abort();
    const b = this.buffer;
    this.buffer = undefined;
    if (b) await b.close();
  }

  // ---- per message (hot path) ----

  /** A data frame from a live connection. */
  accept(conn: Connection, data: Buffer, isBinary: boolean, now: number): void {
    const u = this.unpublished;
    u.messages++;
    u.bytes += data.length;
    let value: string | Buffer;
    if (isBinary || this.binaryFormat) value = data;
    else {
      // One pass that checks and decodes (isUtf8 then toString took two: 120 against 82 ns for a 160-byte message).
      try {
        value = utf8.decode(data);
      } catch {
        this.badFrame(conn, data, isBinary, now, 'text frame is not valid UTF-8');
        return;
      }
    }
    if (this.pongMatchText(conn, value, now)) return;
    this.lastDataAt = now;
    conn.lastDataAt = now;
    conn.sawData();
    const meta = conn.meta(now, isBinary);
    if (this.selfDecode) {
      let row: unknown;
      try {
        row = JSON.parse(typeof value === 'string' ? value : value.toString('utf8'));
      } catch (e) {
        this.m.badFrames.inc();
        this.target.bad([{ raw: value, error: new RecordError('DECODE', `invalid JSON: ${errorMessage(e)}`), meta }]);
        return;
      }
      conn.checkSequence(at(row, this.seqPath!));
      this.push({ value: row, raw: value, timestamp: now, meta });
    } else {
      // `raw` is set by the decoding step; declaring it here keeps one object shape (no property store added per record).
      this.push({ value, raw: undefined, timestamp: now, meta });
    }
  }

  private pongMatchText(conn: Connection, value: string | Buffer, now: number): boolean {
    if (!this.pongMatch || typeof value !== 'string' || !this.pongMatch(value)) return false;
    conn.lastPongAt = now;
    return true;
  }

  private badFrame(conn: Connection, data: Buffer, isBinary: boolean, now: number, why: string) {
    this.m.badFrames.inc();
    conn.lastDataAt = now;
    this.lastDataAt = now;
    const meta = { _received_at: now, _connection_id: conn.id, _url: conn.shownUrl, _message_type: isBinary ? 'binary' : 'text' };
    this.target.bad([{ raw: data, error: new RecordError('DECODE', why), meta }]);
  }

  private push(r: SluiceRecord): void {
    const depth = this.pending.length - this.head;
    if (depth >= this.options.queue_size) {
      switch (this.options.overflow) {
        case 'drop_newest':
          this.m.dropped.inc();
          return;
        case 'drop_oldest':
          this.pending[this.head++] = undefined as never;
          this.m.dropped.inc();
          // While the pipeline waits nothing else empties `pending`: without this its array would grow by a slot per
          // dropped message for as long as the outage lasts (the same bound as PushQueue's).
          if (this.head * 2 >= this.pending.length) {
            this.pending = this.pending.slice(this.head);
            this.head = 0;
          }
          break;
        case 'backpressure':
          // Frames ws had already read before the pause still arrive; they are kept (a chunk's worth at most).
          if (!this.waiting) {
            this.flushNow(false);
            break;
          }
          this.pauseAll();
          break;
      }
    }
    this.pending.push(r);
    const d = this.pending.length - this.head;
    if (d > this.maxDepth) this.maxDepth = d;
    // The durable buffer accepts as fast as the socket delivers, so nothing else would end a read turn: libuv reads up
    // to 2 MB per poll, and parsing plus appending that many frames in one go delays the sink's timers and I/O by
    // tens of ms. Pausing here ends the turn; flush() resumes reading after the append.
    if (this.buffer && ++this.turnFrames >= DURABLE_TURN_FRAMES && !this.paused && !this.waiting) {
      this.yielded = true;
      this.pauseAll();
    }
    if (!this.scheduled && !this.waiting) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = () => {
    this.scheduled = false;
    this.turnFrames = 0;
    this.flushNow(false);
    if (this.yielded) {
      this.yielded = false;
      if (!this.waiting) this.resumeAll();
    }
  };

  /** Hand what is queued to the pipeline. `final`: while stopping, the returned promise is not waited for. */
  private flushNow(final: boolean): void {
    if (this.waiting && !final) return;
    const n = this.pending.length - this.head;
    if (n <= 0) return;
    const records = this.head === 0 ? this.pending : this.pending.slice(this.head);
    this.pending = [];
    this.head = 0;
    this.publish();
    let p: Promise<void> | undefined;
    try {
      p = this.target.emit(this.selfDecode ? { records, decoded: true, rowsAreRaw: true } : { records });
    } catch (e) {
      this.ctx.log.error({ err: errorMessage(e) }, 'websocket: handing messages to the pipeline failed');
      this.stop.abort();
      return;
    }
    if (p && !final) {
      this.waiting = true;
      if (this.options.overflow === 'backpressure') this.pauseAll();
      p.then(this.onSpace, this.onEmitError);
    } else if (p) p.catch(() => undefined);
  }

  private readonly onSpace = () => {
    this.waiting = false;
    this.yielded = false;
    if (this.pending.length - this.head > 0) this.flushNow(false);
    if (!this.waiting) this.resumeAll();
  };

  private readonly onEmitError = (e: unknown) => {
    this.waiting = false;
    this.ctx.log.error({ err: errorMessage(e) }, 'websocket: the pipeline rejected messages');
    this.stop.abort();
  };

  private pauseAll() {
    if (this.paused) return;
    this.paused = true;
    for (const c of this.conns) c.pause();
  }

  private resumeAll() {
    if (!this.paused) return;
    this.paused = false;
    for (const c of this.conns) c.resume();
  }

  /** Counters are kept in plain numbers on the hot path and published here. */
  readonly publish = () => {
    if (!this.m) return;
    const u = this.unpublished;
    if (u.messages) this.m.messages.inc(u.messages);
    if (u.bytes) this.m.bytes.inc(u.bytes);
    u.messages = 0;
    u.bytes = 0;
    this.m.queueDepth.set(this.pending.length - this.head);
    this.m.lastMessageAge.set(Date.now() - this.lastDataAt);
  };

  updateState(): void {
    let s: number = ConnState.Live;
    for (const c of this.conns) if (c.state < s) s = c.state;
    this.m.state.set(s);
  }

  /** Connection states, for tests and status. */
  states(): ConnState[] {
    return this.conns.map((c) => c.state);
  }

  /** Messages waiting for the pipeline. */
  get queueDepth(): number {
    return this.pending.length - this.head;
  }

  /** Array slots the queue holds, dropped ones included (tests: memory follows `queue_size`, not the drops). */
  get queueSlots(): number {
    return this.pending.length;
  }
}

/** Why a live connection ended; logged and, when reconnect is off, the source's error. */
class Dropped extends Error {}

/** One socket of the source and its reconnect loop. */
export class Connection {
  state: ConnState = ConnState.Disconnected;
  id = '';
  readonly shownUrl: string;
  /** Frames of one connection arriving in the same millisecond share one metadata object (it is never mutated). */
  private lastMeta?: { _received_at: number; _connection_id: string; _url: string; _message_type: string };

  meta(now: number, isBinary: boolean) {
    const type = isBinary ? 'binary' : 'text';
    const m = this.lastMeta;
    if (m && m._received_at === now && m._message_type === type && m._connection_id === this.id) return m;
    return (this.lastMeta = { _received_at: now, _connection_id: this.id, _url: this.shownUrl, _message_type: type });
  }
  private readonly url: string;
  private ws?: WebSocket;
  private attempt = 0;
  lastDataAt = 0;
  lastRecvAt = 0;
  lastPongAt = 0;
  private lastPingAt = 0;
  private pingSentAt = 0;
  private pingOutstanding = false;
  private gotData = false;
  private liveSince = 0;
  private lastSeq: number | undefined;
  private timer?: NodeJS.Timeout;
  /** Set before the socket is terminated on purpose (watchdog, gap, oversized message), so the close names it. */
  private dropReason?: Error;
  private endLive?: (e: Error) => void;
  /** Messages that arrived during the handshake, and the expect step waiting for them. */
  private inbox: string[] = [];
  private wake?: () => void;
  private readonly vars: TemplateVars;
  private readonly backoff: Backoff;
  private readonly log: SourceContext['log'];
  private readonly label: string;

  constructor(
    private readonly src: WebSocketSource,
    readonly index: number,
    readonly channels: string[],
    private readonly m: Metrics,
    ctx: SourceContext,
    private readonly signal: AbortSignal,
    private readonly observer?: SourceObserver,
  ) {
    this.url = effectiveUrl(src.options);
    this.shownUrl = redactUrl(this.url);
    this.vars = { channels, connection: index };
    this.backoff = new Backoff(src.options.reconnect);
    this.label = src.shards().length > 1 ? `connection ${index + 1} ` : '';
    this.log = ctx.log.child({ url: this.shownUrl, ...(this.label ? { connection: index } : {}) });
  }

  private setState(s: ConnState) {
    this.state = s;
    this.src.updateState();
  }

  private note(msg: string, kind: 'info' | 'done' | 'error' = 'info', extra: Record<string, unknown> = {}) {
    if (kind === 'error') this.log.warn(extra, `websocket ${this.label}${msg}`);
    else this.log.info(extra, `websocket ${this.label}${msg}`);
    this.observer?.step(`${this.label}${msg}`, kind);
  }

  async run(): Promise<void> {
    const o = this.src.options;
    while (!this.signal.aborted) {
      let cause: Error;
      this.attempt++;
      this.id = `${this.index}.${this.attempt}`;
      this.setState(ConnState.Connecting);
      this.note(`connecting to ${this.shownUrl}${o.proxy_url ? ` via proxy ${redactUrl(o.proxy_url)}` : ''}`);
      try {
        this.inboxFrames = [];
        const ws = await openWebSocket(o, { signal: this.signal, url: this.url, setup: (w) => this.attach(w) });
        this.ws = ws;
        this.m.connects.inc();
        this.note(`connected to ${this.shownUrl}${ws.protocol ? ` (subprotocol ${ws.protocol})` : ''}`, 'done');
        cause = await this.session(ws);
      } catch (e) {
        cause = e instanceof Error ? e : new Error(String(e));
      }
      this.stopTimer();
      this.ws = undefined;
      this.setState(ConnState.Disconnected);
      if (this.signal.aborted) break;
      if (this.gotData || (this.liveSince && Date.now() - this.liveSince >= o.reconnect.max)) this.backoff.reset();
      if (!o.reconnect.enabled) {
        this.note(`disconnected: ${errorMessage(cause)}; reconnect is disabled`, 'error');
        throw new SluiceError('CONNECT', `websocket ${this.shownUrl}: ${errorMessage(cause)} (reconnect is disabled)`, { cause });
      }
      const delay = this.backoff.next();
      if (delay === undefined) {
        throw new SluiceError('CONNECT', `websocket ${this.shownUrl}: giving up after ${this.backoff.failures} failed reconnect attempts; last error: ${errorMessage(cause)}`, { cause });
      }
      this.note(`disconnected: ${errorMessage(cause)}; reconnecting in ${delay} ms`, 'error', { attempt: this.backoff.failures });
      this.m.reconnects.inc();
      await sleep(delay, this.signal);
    }
    this.setState(ConnState.Disconnected);
  }

  /** Session state that the socket listeners read; reset by `attach` for every new socket. */
  private live = false;
  private closeErr?: Error;
  private closedWith?: Error;

  /** Listeners are per connection, not per message; attached before 'open' so no early frame is missed. */
  private attach(ws: WebSocket): void {
    this.live = false;
    this.closeErr = undefined;
    this.closedWith = undefined;
    this.dropReason = undefined;
    this.inbox = [];
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const now = Date.now();
      this.lastRecvAt = now;
      if (this.live) this.src.accept(this, data, isBinary, now);
      else this.handshakeMessage(data, isBinary);
    });
    ws.on('pong', () => {
      this.lastRecvAt = this.lastPongAt = Date.now();
    });
    ws.on('error', (e: Error & { code?: string }) => {
      if (e.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        this.closeErr = new SluiceError('CONNECT', `a message larger than max_message_size (${this.src.options.max_message_size} bytes) arrived; it was discarded and the connection is re-opened`);
        this.log.error(`websocket ${this.label}${this.closeErr.message}`);
      } else this.closeErr ??= e;
    });
    ws.on('close', (code: number, reason: Buffer) => {
      const why =
        this.dropReason ??
        this.closeErr ??
        new Error(code === 1006 ? `the connection dropped (${describeClose(code, reason)})` : `the server closed the connection: ${describeClose(code, reason)}`);
      this.closedWith = why;
      this.endLive?.(why);
      this.wake?.();
    });
  }

  /** Handshake, subscriptions, then data until the socket closes; resolves with the reason it ended. */
  private async session(ws: WebSocket): Promise<Error> {
    this.gotData = false;
    this.liveSince = 0;
    this.lastSeq = undefined;
    const ended = new Promise<Error>((resolve) => {
      if (this.closedWith) resolve(this.closedWith);
      this.endLive = resolve;
    });
    const onAbort = () => {
      this.dropReason = new Error('stopping');
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'client stopping');
      // A server that never answers the close frame must not hold the stop up.
      const t = setTimeout(() => ws.terminate(), 1000);
      t.unref();
      ws.once('close', () => clearTimeout(t));
    };
    this.signal.addEventListener('abort', onAbort, { once: true });
    try {
      this.lastRecvAt = this.lastDataAt = this.lastPongAt = Date.now();
      this.startTimer();
      try {
        await this.runHandshake(ws, ended);
      } catch (e) {
        this.m.handshakeFailures.inc();
        const err = e instanceof Error ? e : new Error(String(e));
        if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'handshake failed');
        return new SluiceError('CONNECT', `handshake failed: ${errorMessage(err)}`, { cause: err, retriable: true });
      }
      if (ws.readyState !== WebSocket.OPEN) return await ended;
      // Without a handshake, what arrived before this point is already data (servers that push on connect).
      const early = this.src.steps.length ? [] : this.inboxFrames;
      this.inbox = [];
      this.inboxFrames = [];
      this.live = true;
      this.liveSince = Date.now();
      this.lastDataAt = this.liveSince;
      for (const [data, isBinary] of early) this.src.accept(this, data, isBinary, this.liveSince);
      this.sendSubscriptions(ws);
      this.setState(ConnState.Live);
      this.note(this.channels.length ? `live; subscribed to ${this.channels.length} channel(s)` : 'live', 'done');
      if (this.src.paused) ws.pause();
      return await ended;
    } finally {
      this.signal.removeEventListener('abort', onAbort);
      this.endLive = undefined;
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
        if (this.signal.aborted) onAbort();
        else ws.terminate();
      }
    }
  }

  /** Raw frames that arrived before the session went live, kept in case there is no handshake to consume them. */
  private inboxFrames: Array<[Buffer, boolean]> = [];

  private send(ws: WebSocket, text: string, binary: boolean) {
    ws.send(binary ? Buffer.from(text) : text, { binary });
  }

  private sendSubscriptions(ws: WebSocket) {
    const o = this.src.options;
    const binary = o.open_message_type === 'binary';
    const now = Date.now();
    for (const t of this.src.subs) this.send(ws, t.render(this.vars, now), binary);
    const st = this.src.subTemplate;
    if (st && this.channels.length) {
      if (st.uses.has('channel')) for (const channel of this.channels) this.send(ws, st.render({ ...this.vars, channel }, now), binary);
      else this.send(ws, st.render(this.vars, now), binary);
    }
  }

  private handshakeMessage(data: Buffer, isBinary: boolean) {
    if (!this.src.steps.length) {
      this.inboxFrames.push([data, isBinary]);
      return;
    }
    if (this.inbox.length >= 1000) this.inbox.shift();
    this.inbox.push(isBinary ? data.toString('latin1') : data.toString('utf8'));
    this.wake?.();
  }

  private async runHandshake(ws: WebSocket, ended: Promise<Error>): Promise<void> {
    const steps = this.src.steps;
    if (!steps.length) return;
    let closed: Error | undefined;
    void ended.then((e) => (closed = e));
    for (let i = 0; i < steps.length; i++) {
      const s = steps[i]!;
      const n = `handshake step ${i + 1}`;
      if (closed || ws.readyState !== WebSocket.OPEN) throw new Error(`${n}: ${errorMessage(closed ?? new Error('the connection closed'))}`);
      switch (s.kind) {
        case 'send': {
          let text: string;
          try {
            text = s.template.render(this.vars);
          } catch (e) {
            throw new Error(`${n} (send): ${errorMessage(e)}`);
          }
          this.send(ws, text, s.binary);
          this.note(`${n}: sent`);
          break;
        }
        case 'sleep':
          await sleep(s.ms, this.signal);
          break;
        case 'expect': {
          const deadline = Date.now() + s.timeout;
          let matched = false;
          while (!matched) {
            while (this.inbox.length && !matched) matched = this.matches(s, this.inbox.shift()!);
            if (matched) break;
            if (this.signal.aborted) throw new Error('stopping');
            if (closed) throw new Error(`${n}: ${errorMessage(closed)} while waiting for ${s.describe}`);
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`${n}: no message matching ${s.describe} within ${s.timeout} ms`);
            await new Promise<void>((resolve) => {
              const t = setTimeout(done, left);
              const onAbort = () => done();
              this.signal.addEventListener('abort', onAbort, { once: true });
              function done() {
                clearTimeout(t);
                resolve();
              }
              this.wake = () => {
                this.signal.removeEventListener('abort', onAbort);
                done();
              };
            });
            this.wake = undefined;
          }
          this.note(`${n}: got the expected reply`);
          break;
        }
      }
    }
  }

  private matches(s: Extract<CompiledStep, { kind: 'expect' }>, text: string): boolean {
    if (s.regex && !s.regex.test(text)) return false;
    if (s.json) {
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        return false;
      }
      for (const [path, want] of s.json) {
        const got = at(v, path);
        if (got === want) continue;
        if (got === undefined || want === null || got === null || typeof got === 'object') return false;
        if (String(got) !== String(want)) return false;
      }
    }
    return true;
  }

  /** The first data message of a session proves the subscription works: the backoff starts over. */
  sawData(): void {
    this.gotData = true;
  }

  checkSequence(v: unknown): void {
    const seq = typeof v === 'number' ? v : typeof v === 'string' && v !== '' ? Number(v) : NaN;
    if (!Number.isFinite(seq)) return;
    const last = this.lastSeq;
    this.lastSeq = seq;
    if (last === undefined || seq === last + 1 || seq <= last) return;
    this.m.gaps.inc();
    this.log.warn({ expected: last + 1, got: seq, missing: seq - last - 1 }, `websocket ${this.label}sequence gap: expected ${last + 1}, got ${seq}`);
    if (this.src.options.reconnect_on_gap) this.drop(new Error(`sequence gap (expected ${last + 1}, got ${seq}); reconnecting to resynchronise`));
  }

  /** End the session on purpose; the close handler reports `why`. */
  drop(why: Error): void {
    if (this.dropReason) return;
    this.dropReason = why;
    this.ws?.terminate();
  }

  pause(): void {
    this.ws?.pause();
  }

  resume(): void {
    const now = Date.now();
    // Time spent paused is not silence: the server was waiting for us.
    this.lastRecvAt = this.lastDataAt = now;
    this.pingOutstanding = false;
    this.ws?.resume();
  }

  // ---- liveness ----

  private startTimer() {
    const o = this.src.options;
    const periods = [o.ping_interval, o.pong_timeout, o.idle_timeout].filter((x) => x > 0);
    if (!periods.length) return;
    const tick = Math.max(10, Math.min(1000, Math.min(...periods) / 4));
    this.lastPingAt = Date.now();
    this.pingOutstanding = false;
    this.timer = setInterval(this.tick, tick);
  }

  private stopTimer() {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private readonly tick = () => {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.dropReason) return;
    const o = this.src.options;
    const now = Date.now();
    if (this.src.paused) {
      this.lastRecvAt = this.lastDataAt = now;
      this.pingOutstanding = false;
      return;
    }
    if (this.pingOutstanding && this.lastRecvAt >= this.pingSentAt) this.pingOutstanding = false;
    if (o.ping_interval > 0 && now - this.lastPingAt >= o.ping_interval) {
      this.lastPingAt = now;
      try {
        if (this.src.pingTemplate && this.state === ConnState.Live) ws.send(this.src.pingTemplate.render(this.vars, now));
        else ws.ping();
      } catch (e) {
        this.drop(new Error(`sending a ping failed: ${errorMessage(e)}`));
        return;
      }
      if (!this.pingOutstanding) {
        this.pingOutstanding = true;
        this.pingSentAt = now;
      }
    }
    if (this.pingOutstanding && o.pong_timeout > 0 && now - this.pingSentAt >= o.pong_timeout) {
      this.drop(new Error(`no pong or message within ${o.pong_timeout} ms after a ping (pong_timeout); the connection is dead`));
      return;
    }
    if (o.idle_timeout > 0 && this.state === ConnState.Live && now - this.lastDataAt >= o.idle_timeout) {
      this.drop(new Error(`no data message for ${o.idle_timeout} ms (idle_timeout); reconnecting and re-subscribing`));
    }
  };
}
