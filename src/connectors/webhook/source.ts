// The webhook source: an HTTP endpoint that turns each request body into a raw payload for the pipeline's format (the
// json format splits arrays and NDJSON itself). A sender gets its 2xx only once its records are as safe as `ack` says,
// so a sender that retries on anything else never loses a record.
//
// Requests that arrive in the same turn of the event loop are emitted as one batch; the batch's ack token is the list
// of those requests, and commit(acks) answers them. Under backpressure, requests wait (bounded by
// max_pending_requests) and the rest are refused with 429/503 and Retry-After, which webhook senders honour.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import type { Counter, SluiceRecord, Source, SourceContext } from '../../core/types.js';
import type { EndpointInfo } from '../../core/spec.js';
import { SluiceError, errorMessage } from '../../core/errors.js';
import { durableBufferConfig } from '../../core/durable-options.js';
import { openDurableBuffer, type DurableBuffer } from '../../core/durable-buffer.js';
import type { WebhookSourceOptions } from './options.js';
import { mountHost, mountWebhook } from './mount.js';

interface Pending {
  res: ServerResponse;
  record: SluiceRecord;
  answered: boolean;
  /** When the request was received, for refusing requests that waited out ack_timeout before being emitted. */
  at: number;
}

/** Headers that carry credentials never become record headers (they would reach sinks and DLQs). */
const PRIVATE_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie']);

const DEFAULT_SIGNATURE_HEADER = { github: 'x-hub-signature-256', stripe: 'stripe-signature', plain: 'x-signature' } as const;

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Checks an HMAC signature header; returns the reason it is refused, or undefined when it is valid. */
export function verifySignature(sig: NonNullable<WebhookSourceOptions['signature']>, header: string | undefined, body: Buffer, nowMs: number): string | undefined {
  if (!header) return 'missing signature header';
  const mac = (data: Buffer | string, prefix?: string) => {
    const h = createHmac(sig.algorithm, sig.secret);
    if (prefix !== undefined) h.update(prefix);
    return h.update(data).digest();
  };
  switch (sig.style) {
    case 'github': {
      const want = `${sig.algorithm}=`;
      if (!header.startsWith(want)) return `signature does not start with '${want}'`;
      const given = Buffer.from(header.slice(want.length).trim(), 'hex');
      return safeEqual(given, mac(body)) ? undefined : 'signature mismatch';
    }
    case 'plain': {
      const given = Buffer.from(header.trim(), sig.encoding);
      return safeEqual(given, mac(body)) ? undefined : 'signature mismatch';
    }
    case 'stripe': {
      let t: string | undefined;
      const v1: string[] = [];
      for (const part of header.split(',')) {
        const eq = part.indexOf('=');
        if (eq < 0) continue;
        const k = part.slice(0, eq).trim();
        const v = part.slice(eq + 1).trim();
        if (k === 't') t = v;
        else if (k === 'v1') v1.push(v);
      }
      if (!t || !/^\d+$/.test(t) || !v1.length) return "signature header needs 't=<unix time>' and 'v1=<hmac>'";
      if (Math.abs(nowMs - Number(t) * 1000) > sig.tolerance) return 'signature timestamp outside the tolerance';
      const expected = mac(body, `${t}.`);
      let ok = false;
      // Every candidate is compared so the time taken does not reveal which one matched.
      for (const v of v1) if (safeEqual(Buffer.from(v, 'hex'), expected)) ok = true;
      return ok ? undefined : 'signature mismatch';
    }
  }
}

export class WebhookSource implements Source {
  private server?: Server;
  private ctx?: SourceContext;
  private target?: SourceContext;
  private buf?: DurableBuffer;
  /** Received, not yet emitted; flushed on the next turn of the event loop. */
  private batch: Pending[] = [];
  private flushScheduled = false;
  /** Set while emit's backpressure promise is pending. */
  private blocked?: Promise<void>;
  /** Emitted with ack: sink, waiting for commit. */
  /** Request groups waiting for the sink, with their ack_timeout timer (cleared on commit so the group can be freed). */
  private inFlight = new Map<Pending[], NodeJS.Timeout | undefined>();
  private stopping = false;
  private readonly tokenDigest?: Buffer;
  private readonly sigHeader?: string;
  private readonly retryAfterSec: string;
  private readonly ok: string;
  private m?: { requests: Counter; refusedAuth: Counter; refusedBusy: Counter; refusedSize: Counter; timedOut: Counter };
  /** The bound address, once listening (port 0 picks a free port). */
  address?: { host: string; port: number };

  constructor(
    private readonly o: WebhookSourceOptions,
    _info: EndpointInfo,
  ) {
    if (o.bearer_token) this.tokenDigest = createHash('sha256').update(o.bearer_token).digest();
    if (o.signature) this.sigHeader = (o.signature.header ?? DEFAULT_SIGNATURE_HEADER[o.signature.style]).toLowerCase();
    this.retryAfterSec = String(Math.max(1, Math.ceil(o.retry_after / 1000)));
    this.ok = JSON.stringify({ status: 'ok' });
  }

  async run(ctx: SourceContext): Promise<void> {
    this.ctx = ctx;
    this.m = {
      requests: ctx.metrics.counter('requests', 'requests accepted'),
      refusedAuth: ctx.metrics.counter('refused_auth', 'requests refused for a missing or wrong token or signature'),
      refusedBusy: ctx.metrics.counter('refused_backpressure', 'requests refused with 429/503 because the pipeline was full'),
      refusedSize: ctx.metrics.counter('refused_size', 'requests refused with 413'),
      timedOut: ctx.metrics.counter('ack_timeouts', 'requests answered 503 because the sink did not acknowledge in time'),
    };
    if (this.o.ack === 'buffer') {
      this.buf = await openDurableBuffer(ctx, durableBufferConfig(ctx.dataDir, 'webhook', this.o));
      this.target = this.buf.ctx;
    } else {
      this.target = ctx;
    }
    const mhost = mountHost();
    if (this.o.mount === true && !mhost) {
      await this.buf?.close();
      throw new SluiceError('CONFIG', 'mount: true needs `sluice serve`, which serves the webhook under /v1/webhooks/<pipeline>; `sluice run` listens on host:port (remove mount or set it to false)');
    }
    if (mhost && (this.o.mount === true || (this.o.mount === 'auto' && this.o.host === undefined && this.o.port === undefined))) {
      let unmount: () => void;
      try {
        unmount = mountWebhook(ctx.pipeline, (req, res, path) => this.handle(req, res, path));
      } catch (e) {
        await this.buf?.close();
        throw new SluiceError('CONFIG', `webhook source cannot mount: ${errorMessage(e)}`, { cause: e });
      }
      ctx.log.info({ url: mhost.urlFor(ctx.pipeline, this.o.path), ack: this.o.ack }, 'webhook source mounted on the server');
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      unmount();
      this.stopping = true;
      const unsent = this.batch;
      this.batch = [];
      for (const p of unsent) this.refuse(p.res, 503, 'the pipeline is stopping');
      if (this.buf) await this.buf.done;
      return;
    }
    const server = createServer({ keepAliveTimeout: 5000 }, (req, res) => this.handle(req, res));
    this.server = server;
    const host = this.o.host ?? '127.0.0.1';
    const port = this.o.port ?? 10081;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      await this.buf?.close();
      throw new SluiceError('CONNECT', `webhook source cannot listen on ${host}:${port}: ${errorMessage(e)}`, {
        hint: (e as NodeJS.ErrnoException).code === 'EADDRINUSE' ? 'another process uses this port; choose another `port`' : undefined,
        cause: e,
      });
    }
    const addr = server.address();
    this.address = typeof addr === 'object' && addr ? { host, port: addr.port } : { host, port };
    ctx.log.info({ url: `http://${host.includes(':') ? `[${host}]` : host}:${this.address.port}${this.o.path}`, ack: this.o.ack }, 'webhook source listening');
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    this.stopping = true;
    // Nothing not yet emitted will be: the sender is told to retry.
    const unsent = this.batch;
    this.batch = [];
    for (const p of unsent) this.refuse(p.res, 503, 'the pipeline is stopping');
    server.close();
    server.closeIdleConnections();
    if (this.buf) await this.buf.done;
  }

  commit(acks: unknown[]): Promise<void> | void {
    if (this.buf) return this.buf.commit(acks);
    for (const a of acks) {
      const group = a as Pending[];
      clearTimeout(this.inFlight.get(group));
      this.inFlight.delete(group);
      for (const p of group) this.answer(p, this.o.success_status, this.ok);
    }
  }

  async close(): Promise<void> {
    if (this.sweep) clearInterval(this.sweep);
    for (const [group, timer] of this.inFlight) {
      clearTimeout(timer);
      for (const p of group) this.refuse(p.res, 503, 'the pipeline stopped before the records were acknowledged', p);
    }
    this.inFlight.clear();
    await this.buf?.close();
    if (this.server) {
      this.server.closeAllConnections();
      this.server = undefined;
    }
  }

  /** `mounted`: the request's path below the mount prefix, given by the host server. */
  private handle(req: IncomingMessage, res: ServerResponse, mounted?: string): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = mounted ?? (q < 0 ? url : url.slice(0, q));
    if (path !== this.o.path) return this.refuse(res, 404, `no webhook at ${path}`, undefined, req);
    if (!(this.o.methods as string[]).includes(req.method ?? '')) {
      res.setHeader('Allow', this.o.methods.join(', '));
      return this.refuse(res, 405, `method ${req.method} is not accepted`, undefined, req);
    }
    if (this.stopping) return this.busy(res, req, 'the pipeline is stopping');
    if (this.tokenDigest) {
      const h = req.headers.authorization ?? '';
      const given = /^Bearer\s+/i.test(h) ? h.replace(/^Bearer\s+/i, '') : '';
      if (!safeEqual(createHash('sha256').update(given).digest(), this.tokenDigest)) {
        this.m!.refusedAuth.inc();
        res.setHeader('WWW-Authenticate', 'Bearer');
        this.ctx!.log.warn({ remote: req.socket.remoteAddress, path }, 'webhook request refused: missing or wrong bearer token');
        return this.refuse(res, 401, 'missing or wrong bearer token', undefined, req);
      }
    }
    const limit = this.o.max_body_size;
    const declared = Number(req.headers['content-length']);
    if (declared > limit) return this.tooLarge(res, req);
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        this.tooLarge(res, req);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (over) return;
      this.received(req, res, path, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    req.on('error', () => undefined);
  }

  private received(req: IncomingMessage, res: ServerResponse, path: string, body: Buffer): void {
    const now = Date.now();
    if (this.o.signature) {
      const h = req.headers[this.sigHeader!];
      const why = verifySignature(this.o.signature, Array.isArray(h) ? h[0] : h, body, now);
      if (why) {
        this.m!.refusedAuth.inc();
        this.ctx!.log.warn({ remote: req.socket.remoteAddress, path, reason: why }, 'webhook request refused: bad signature');
        return this.refuse(res, 401, why);
      }
    }
    if (body.length === 0) return this.refuse(res, 400, 'empty body');
    if (this.stopping) return this.busy(res, req, 'the pipeline is stopping');
    if (this.blocked && this.batch.length >= this.o.max_pending_requests) {
      this.m!.refusedBusy.inc();
      return this.busy(res, req, 'the pipeline is full');
    }
    const headers: Record<string, string> = {};
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i]!.toLowerCase();
      if (PRIVATE_HEADERS.has(k)) continue;
      headers[k] = headers[k] === undefined ? raw[i + 1]! : `${headers[k]}, ${raw[i + 1]!}`;
    }
    const record: SluiceRecord = {
      value: body,
      headers,
      timestamp: now,
      meta: { _path: req.url ?? path, _remote_addr: req.socket.remoteAddress ?? null, _received_at: now, _method: req.method },
    };
    this.m!.requests.inc();
    this.batch.push({ res, record, answered: false, at: now });
    if (this.blocked) this.armSweep();
    if (!this.blocked && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.blocked || !this.batch.length || this.stopping) return;
    const group = this.batch;
    this.batch = [];
    const records = new Array<SluiceRecord>(group.length);
    for (let i = 0; i < group.length; i++) records[i] = group[i]!.record;
    const mode = this.o.ack;
    let wait: Promise<void> | undefined;
    try {
      if (mode === 'sink') {
        this.inFlight.set(group, undefined);
        wait = this.target!.emit({ records, ack: group });
        this.armTimeout(group);
      } else {
        wait = this.target!.emit({ records });
        for (const p of group) this.answer(p, this.o.success_status, this.ok);
      }
    } catch (e) {
      clearTimeout(this.inFlight.get(group));
      this.inFlight.delete(group);
      this.ctx!.log.error({ err: errorMessage(e) }, 'webhook source could not hand a request to the pipeline');
      for (const p of group) this.refuse(p.res, 500, 'the request could not be stored', p);
      return;
    }
    if (wait) {
      const w = wait;
      this.blocked = w;
      this.armSweep();
      void w.then(() => {
        if (this.blocked === w) this.blocked = undefined;
        this.flush();
      });
    }
  }

  private sweep?: NodeJS.Timeout;
  /**
   * While the pipeline is full, requests waiting to be emitted are refused once they waited ack_timeout: nothing of
   * theirs entered the pipeline, so the sender's retry cannot duplicate anything.
   */
  private armSweep(): void {
    if (this.sweep) return;
    const every = Math.max(10, Math.min(1000, this.o.ack_timeout / 4));
    this.sweep = setInterval(() => {
      const limit = Date.now() - this.o.ack_timeout;
      if (this.batch.length && this.batch[0]!.at <= limit) {
        let n = 0;
        while (n < this.batch.length && this.batch[n]!.at <= limit) n++;
        const expired = this.batch.splice(0, n);
        for (const p of expired) {
          this.m!.timedOut.inc();
          p.res.setHeader('Retry-After', this.retryAfterSec);
          this.refuse(p.res, this.o.backpressure_status, `the pipeline stayed full for ${this.o.ack_timeout} ms`, p);
        }
      }
      if (!this.blocked || !this.batch.length) {
        clearInterval(this.sweep);
        this.sweep = undefined;
      }
    }, every);
    this.sweep.unref();
  }

  private armTimeout(group: Pending[]): void {
    const t = setTimeout(() => {
      if (!this.inFlight.has(group)) return;
      for (const p of group) {
        if (p.answered) continue;
        this.m!.timedOut.inc();
        p.answered = true;
        p.res.setHeader('Retry-After', this.retryAfterSec);
        send(p.res, 503, JSON.stringify({ error: `the sink did not acknowledge within ${this.o.ack_timeout} ms` }));
      }
    }, this.o.ack_timeout);
    t.unref();
    if (this.inFlight.has(group)) this.inFlight.set(group, t);
  }

  private answer(p: Pending, status: number, body: string): void {
    if (p.answered) return;
    p.answered = true;
    send(p.res, status, body);
  }

  private busy(res: ServerResponse, req: IncomingMessage, why: string): void {
    res.setHeader('Retry-After', this.retryAfterSec);
    this.refuse(res, this.o.backpressure_status, why, undefined, req);
  }

  private tooLarge(res: ServerResponse, req: IncomingMessage): void {
    this.m!.refusedSize.inc();
    this.refuse(res, 413, `body larger than max_body_size (${this.o.max_body_size} bytes)`, undefined, req);
  }

  /** Answers an error; with `req` still streaming a body, the connection is closed after the answer instead of reading it. */
  private refuse(res: ServerResponse, status: number, message: string, p?: Pending, req?: IncomingMessage): void {
    if (p) {
      if (p.answered) return;
      p.answered = true;
    }
    if (req && !req.complete) {
      res.setHeader('Connection', 'close');
      res.on('finish', () => req.destroy());
    }
    send(res, status, JSON.stringify({ error: message }));
  }
}

function send(res: ServerResponse, status: number, body: string): void {
  if (res.headersSent || res.destroyed) return;
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}
