// An SSE client: one long-lived GET, parsed with eventsource-parser; each network chunk's events become one batch,
// and reading waits while the pipeline pushes back. The last event id travels in `Last-Event-ID` on every reconnect
// (from memory) and after a restart (from the state, written on commit).

import { Agent, request, type Dispatcher } from 'undici';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { SluiceRecord, Source, SourceContext } from '../../core/types.js';
import { SluiceError, errorMessage } from '../../core/errors.js';
import { durableBufferConfig } from '../../core/durable-options.js';
import { openDurableBuffer } from '../../core/durable-buffer.js';
import { Authenticator, backoff, redactUrl, sleep, snippet } from '../http_pull/http.js';
import type { SseOptions } from './options.js';

const ID_KEY = 'last_event_id';

type DurableBuffer = Awaited<ReturnType<typeof openDurableBuffer>>;

export class SseSource implements Source {
  private lastId?: string;
  /** Server-sent `retry:` in milliseconds; replaces reconnect.initial. */
  retryMs?: number;
  /** Connections opened so far (tests, logs). */
  connections = 0;
  private readonly auth: Authenticator;
  private readonly dispatcher?: Dispatcher;
  private readonly url: string;
  private readonly filter?: Set<string>;
  private buffer?: DurableBuffer;
  private state?: SourceContext['state'];

  /** The id of the last event received (not necessarily committed). */
  get lastEventId(): string | undefined {
    return this.lastId;
  }

  constructor(private readonly o: SseOptions) {
    this.auth = new Authenticator(o.auth, o.connect_timeout);
    if (o.insecure) this.dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
    this.url = redactUrl(o.url);
    this.filter = o.events?.length ? new Set(o.events) : undefined;
  }

  async run(ctx: SourceContext): Promise<void> {
    this.state = ctx.state;
    this.lastId = (await ctx.state.get<string>(ID_KEY)) ?? this.o.last_event_id;
    let target: SourceContext = ctx;
    if (this.o.buffer === 'durable') {
      this.buffer = await openDurableBuffer(ctx, durableBufferConfig(ctx.dataDir, 'sse', this.o));
      target = this.buffer.ctx;
    }
    const received = ctx.metrics.counter('events', 'events received (after the event filter)');
    const reconnects = ctx.metrics.counter('reconnects', 'connections opened after the first');
    let failures = 0;
    while (!ctx.signal.aborted) {
      let delivered = false;
      try {
        if (this.connections > 0) reconnects.inc();
        const r = await this.stream(ctx, target, received);
        if (ctx.signal.aborted) break;
        // 204: the server wants no reconnect. Durable entries not yet acknowledged stay on disk for the next start.
        if (r === null) return;
        delivered = r;
        ctx.log.info({ url: this.url }, `event stream ${this.url} ended; reconnecting`);
      } catch (e) {
        if (ctx.signal.aborted) break;
        if (e instanceof SluiceError && !e.retriable) throw e;
        ctx.log.warn({ url: this.url }, `event stream ${this.url}: ${errorMessage(e)}; reconnecting`);
        delivered = (e as { delivered?: boolean }).delivered === true;
      }
      failures = delivered ? 1 : failures + 1;
      const max = this.o.reconnect.max_retries;
      if (max !== undefined && failures > max) throw new SluiceError('CONNECT', `event stream ${this.url}: gave up after ${failures} consecutive failed attempts`);
      await sleep(backoff(failures, this.retryMs ?? this.o.reconnect.initial, Math.max(this.o.reconnect.max, this.retryMs ?? 0)), ctx.signal);
    }
    if (this.buffer) await this.buffer.done;
  }

  /** One connection. True when it delivered events, null when the server said to stop (204). */
  private async stream(ctx: SourceContext, target: SourceContext, received: { inc(n?: number): void }): Promise<boolean | null> {
    const headers: Record<string, string> = { accept: 'text/event-stream', 'cache-control': 'no-cache' };
    if (this.o.headers) for (const [k, v] of Object.entries(this.o.headers)) headers[k.toLowerCase()] = v;
    if (this.lastId !== undefined) headers['last-event-id'] = this.lastId;
    await this.auth.apply(headers, ctx.signal);
    this.connections++;
    const res = await request(this.o.url, {
      method: 'GET',
      headers,
      signal: ctx.signal,
      dispatcher: this.dispatcher,
      headersTimeout: this.o.connect_timeout,
      bodyTimeout: this.o.idle_timeout,
    });
    if (res.statusCode === 204) {
      // The SSE spec's way for a server to say "do not reconnect".
      await res.body.dump();
      ctx.log.info({ url: this.url }, `event stream ${this.url} answered 204: the server ended the stream`);
      return null;
    }
    if (res.statusCode !== 200) {
      const text = await res.body.text().catch(() => '');
      if (res.statusCode === 401 && this.auth.invalidate()) throw new SluiceError('AUTH', `event stream ${this.url} answered 401; fetching a new token`, { retriable: true });
      const retriable = res.statusCode >= 500 || res.statusCode === 429;
      const authy = res.statusCode === 401 || res.statusCode === 403;
      throw new SluiceError(authy ? 'AUTH' : 'CONNECT', `event stream ${this.url} answered ${res.statusCode}${authy ? ' (authentication failed)' : ''}: ${snippet(text)}`, { retriable });
    }
    const ct = String(res.headers['content-type'] ?? '');
    if (!/^text\/event-stream/i.test(ct)) {
      await res.body.dump();
      throw new SluiceError('CONNECT', `event stream ${this.url} answered with content-type '${ct}', not text/event-stream`);
    }

    let pending: SluiceRecord[] = [];
    let pendingBytes = 0;
    let now = Date.now();
    const url = this.url;
    const filter = this.filter;
    const parser = createParser({
      onEvent: (ev: EventSourceMessage) => {
        if (ev.id !== undefined) this.lastId = ev.id;
        const type = ev.event ?? 'message';
        if (filter && !filter.has(type)) return;
        pending.push({ value: ev.data, timestamp: now, meta: { _event: type, _id: ev.id ?? this.lastId ?? null, _url: url, _received_at: now } });
      },
      onRetry: (ms: number) => {
        this.retryMs = ms;
      },
    });
    const decoder = new TextDecoder();
    let delivered = false;
    try {
      for await (const chunk of res.body) {
        now = Date.now();
        pendingBytes += chunk.length;
        parser.feed(decoder.decode(chunk as Buffer, { stream: true }));
        if (pending.length === 0) {
          // A long event still arriving: the parser holds it; bound that.
          if (pendingBytes > this.o.max_event_size) throw new SluiceError('CONNECT', `event stream ${url}: an event is larger than max_event_size (${this.o.max_event_size} bytes)`, { retriable: true });
          continue;
        }
        pendingBytes = 0;
        const records = pending;
        pending = [];
        received.inc(records.length);
        delivered = true;
        const id = this.lastId;
        const wait = target.emit({ records, ack: { id } });
        if (wait) await wait;
        // With the durable buffer the events are on disk now: that is the position to resume from.
        if (this.buffer && id !== undefined) await ctx.state.set(ID_KEY, id);
      }
    } catch (e) {
      if (e && typeof e === 'object') (e as { delivered?: boolean }).delivered = delivered;
      throw e;
    }
    return delivered;
  }

  async commit(acks: unknown[]): Promise<void> {
    if (this.buffer) return this.buffer.commit(acks);
    const last = acks[acks.length - 1] as { id?: string } | undefined;
    if (last?.id !== undefined && this.state) await this.state.set(ID_KEY, last.id);
  }

  async close(): Promise<void> {
    const b = this.buffer;
    this.buffer = undefined;
    if (b) await b.close();
    await this.dispatcher?.close();
  }
}
