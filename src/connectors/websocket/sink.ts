// WebSocket sink. Client mode sends every record to one server and acknowledges a write only once ws handed each frame
// to the socket; server mode (server.ts) broadcasts to whoever is connected, at most once.

import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { EndpointInfo, TestReporter } from '../../core/spec.js';
import type { Counter, Gauge, Sink, SinkContext, SluiceRecord } from '../../core/types.js';
import { Backoff, describeClose, openWebSocket, redactUrl } from './connect.js';
import type { ConnectionOptions } from './options.js';
import { sinkMode, type WebSocketSinkOptions } from './sink-options.js';
import { WebSocketBroadcastServer } from './server.js';
import { payloadTemplate, type PayloadTemplate } from '../../core/data-template.js';
import { encodeRecord } from '../../core/encode.js';
import { asBuffer } from '../../formats/util.js';

export { sinkOptions, sinkMode, type WebSocketSinkOptions } from './sink-options.js';

export function createWebSocketSink(options: WebSocketSinkOptions, info?: EndpointInfo): Sink {
  return sinkMode(options) === 'server' ? new WebSocketServerSink(options, info) : new WebSocketClientSink(options, info);
}

/**
 * `sluice test` for the sink role, on already parsed options. Client mode: one connection with the configured auth,
 * TLS and proxy, closed again. Server mode: the port can be listened on (and is released again).
 */
export async function testWebSocketSink(o: WebSocketSinkOptions, report: TestReporter, signal: AbortSignal): Promise<void> {
  if (sinkMode(o) === 'server') {
    const probe = new WebSocketBroadcastServer(serverOptions(o), undefined as never, probeContext(signal));
    try {
      await probe.start();
    } catch (e) {
      report({ message: errorMessage(e), error: true });
      throw e;
    }
    const url = `ws${o.tls.cert ? 's' : ''}://${o.host}:${probe.port}${o.path}`;
    await probe.stop();
    report({ message: `can listen on ${url}`, done: true });
    return;
  }
  const shown = redactUrl(o.url!);
  try {
    const ws = await clientConnector(o).connect(signal);
    report({ message: `connected to ${shown}${ws.protocol ? ` (subprotocol ${ws.protocol})` : ''}`, done: true });
    ws.on('error', () => {});
    ws.close(1000, 'connection test');
  } catch (e) {
    report({ message: errorMessage(e), error: true });
    throw e;
  }
}

function probeContext(signal: AbortSignal): SinkContext {
  const none = { inc() {}, set() {} };
  const quiet = { info() {}, warn() {}, error() {}, debug() {} };
  return { log: quiet, metrics: { counter: () => none, gauge: () => none }, signal } as unknown as SinkContext;
}

function serverOptions(o: WebSocketSinkOptions): ConstructorParameters<typeof WebSocketBroadcastServer>[0] {
  return {
    host: o.host,
    port: o.port!,
    path: o.path,
    bearer: o.auth?.bearer,
    basic: o.auth?.username !== undefined ? { username: o.auth.username, password: o.auth.password ?? '' } : undefined,
    cert: readPem(o.tls.cert, 'tls.cert'),
    key: readPem(o.tls.key, 'tls.key'),
    subprotocols: o.subprotocols,
    compression: o.compression,
    clientFilters: o.client_filters,
    slowClient: o.slow_client,
    maxClientBuffer: o.max_client_buffer,
    maxClients: o.max_clients,
    pingInterval: o.ping_interval,
    arrays: o.batching === 'array',
  };
}

// ---- shared pieces -------------------------------------------------------------------------------------------

/** A PEM option is either the PEM text itself or a path to it. */
export function readPem(v: string | undefined, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (v.includes('-----BEGIN')) return v;
  try {
    return readFileSync(v, 'utf8');
  } catch (e) {
    throw new SluiceError('CONFIG', `cannot read ${what} '${v}': ${errorMessage(e)}`, { cause: e });
  }
}

export type Frame = Buffer;

/** Turns records into frames the same way in both modes. */
export class FrameEncoder {
  readonly binary: boolean | undefined;
  constructor(
    private readonly ctx: SinkContext,
    private readonly batching: 'per_record' | 'array',
    frameType: 'text' | 'binary' | undefined,
    private readonly json: boolean,
    /** The sink's `template`: each record's text replaces the format's encoding. */
    private readonly tpl?: PayloadTemplate,
  ) {
    this.binary = frameType === undefined ? undefined : frameType === 'binary';
  }

  one(value: unknown, rec?: SluiceRecord): { data: Frame; binary: boolean } {
    if (this.tpl) return this.frame(this.tpl(rec ?? { value }));
    return this.frame(rec ? encodeRecord(this.ctx.encoder, rec) : this.ctx.encoder.encode(value));
  }

  many(values: unknown[], recs?: SluiceRecord[]): { data: Frame; binary: boolean } {
    if (this.tpl) {
      // Rendered templates are JSON values under the json format (an array frame), lines of text otherwise.
      const texts = values.map((value, i) => this.tpl!(recs?.[i] ?? { value }));
      return this.frame(this.json ? `[${texts.join(',')}]` : texts.join('\n'));
    }
    if (this.json) {
      // The json stream encoding is newline-delimited; a frame meant as one message should parse as one JSON value.
      let s = '[';
      for (let i = 0; i < values.length; i++) {
        if (i) s += ',';
        const v = recs ? encodeRecord(this.ctx.encoder, recs[i]!) : this.ctx.encoder.encode(values[i]);
        s += typeof v === 'string' ? v : Buffer.from(v).toString('utf8');
      }
      return this.frame(s + ']');
    }
    return this.frame(this.ctx.encoder.encodeStream(values, true));
  }

  frames(records: SluiceRecord[]): Array<{ data: Frame; binary: boolean }> {
    if (records.length === 0) return [];
    if (this.batching === 'array') return [this.many(records.map((r) => r.value), records)];
    const out = new Array<{ data: Frame; binary: boolean }>(records.length);
    for (let i = 0; i < records.length; i++) out[i] = this.one(records[i]!.value, records[i]);
    return out;
  }

  private frame(v: string | Uint8Array): { data: Frame; binary: boolean } {
    // Buffers once, so byte accounting is exact and server mode does not re-encode a string for every client.
    const data = typeof v === 'string' ? Buffer.from(v, 'utf8') : asBuffer(v);
    // JSON is text: a message passed through as the bytes it arrived as is still a text frame.
    return { data, binary: this.binary ?? (!this.json && typeof v !== 'string') };
  }
}

function isJsonFormat(info: EndpointInfo | undefined, ctx: SinkContext): boolean {
  if (info) return info.format === 'json';
  return ctx.encoder.extension === 'jsonl';
}

// ---- client connection ---------------------------------------------------------------------------------------

/** Opens one client connection; a seam so tests (or another transport) can supply the socket. */
export interface ClientConnector {
  connect(signal?: AbortSignal): Promise<WebSocket>;
}

/** The source's connection helper, so both ends handle auth, headers, TLS, proxy and compression identically. */
export function clientConnector(o: WebSocketSinkOptions): ClientConnector {
  const conn = { ...o, url: o.url! } as ConnectionOptions;
  return { connect: (signal) => openWebSocket(conn, { signal }) };
}

// ---- client sink ---------------------------------------------------------------------------------------------

interface Job {
  frames: Array<{ data: Frame; binary: boolean }>;
  records: number;
  bytes: number;
  /** Frames passed to ws.send / frames whose send callback reported success. */
  sent: number;
  acked: number;
  resolve(): void;
  reject(e: Error): void;
  /** With `ack: pong`: the number of the ping sent after this job's frames, and whether its pong came. */
  ping?: number;
  ponged?: boolean;
  /** write_timeout, armed only while the job waits for a connection. */
  timer?: NodeJS.Timeout;
  done?: boolean;
}

type LinkState = 'connecting' | 'open' | 'failed' | 'closed';

// Ack pings carry a tag and a sequence number, so keepalive pongs (empty) and stray pongs are told apart.
const ACK_PING_TAG = Buffer.from('SLck');
const ACK_PING_BYTES = 8;

/** Whether sequence number a comes after b, across the 32-bit wrap. */
function seqAfter(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

function isCertificateError(e: SluiceError): boolean {
  const code = (e.cause as NodeJS.ErrnoException | undefined)?.code ?? '';
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code);
}

function asSluiceError(e: unknown, display: string): SluiceError {
  return e instanceof SluiceError ? e : new SluiceError('CONNECT', `cannot connect to ${display}: ${errorMessage(e)}`, { cause: e, retriable: true });
}

export class WebSocketClientSink implements Sink {
  private ctx!: SinkContext;
  private enc!: FrameEncoder;
  private readonly connector: ClientConnector;
  private readonly backoff: Backoff;
  private ws?: WebSocket;
  private state: LinkState = 'connecting';
  private reconnecting = false;
  /** Writes not yet fully acknowledged, oldest first; all frames of one job are sent before the next job's. */
  private jobs: Job[] = [];
  private waitingRecords = 0;
  private waitingBytes = 0;
  private lastError?: SluiceError;
  private wake?: () => void;
  private pingTimer?: NodeJS.Timeout;
  private pongTimer?: NodeJS.Timeout;
  private readonly display: string;
  private m!: { connected: Gauge; connects: Counter; reconnects: Counter; frames: Counter; bytes: Counter; rejected: Counter };
  private everConnected = false;
  /** Numbers the ack pings of this sink, so a pong tells which jobs it confirms. */
  private pingSeq = 0;
  private ackTimer?: NodeJS.Timeout;

  constructor(
    private readonly o: WebSocketSinkOptions,
    private readonly info?: EndpointInfo,
    connector?: ClientConnector,
  ) {
    this.connector = connector ?? clientConnector(o);
    this.backoff = new Backoff(o.reconnect);
    this.display = redactUrl(o.url!);
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    this.enc = new FrameEncoder(ctx, this.o.batching, this.o.frame_type, isJsonFormat(this.info, ctx), payloadTemplate(this.o));
    this.m = {
      connected: ctx.metrics.gauge('connected', '1 while the sink is connected to its server'),
      connects: ctx.metrics.counter('connects', 'successful connections'),
      reconnects: ctx.metrics.counter('reconnects', 'connections after the first one'),
      frames: ctx.metrics.counter('frames_sent', 'frames handed to the socket'),
      bytes: ctx.metrics.counter('bytes_sent', 'payload bytes handed to the socket'),
      rejected: ctx.metrics.counter('writes_rejected', 'writes failed because the sink was not connected in time or its buffer was full'),
    };
    ctx.signal.addEventListener('abort', () => this.wake?.(), { once: true });
    try {
      this.attach(await this.connector.connect(ctx.signal));
    } catch (e) {
      const err = asSluiceError(e, this.display);
      // Wrong credentials or an untrusted certificate stop the pipeline at startup. An unreachable server does not:
      // it may simply start later, and writes wait for it within max_buffered and write_timeout.
      if (err.code === 'AUTH' || !err.retriable || isCertificateError(err) || ctx.signal.aborted) {
        this.state = 'failed';
        throw err;
      }
      this.lastError = err;
      ctx.log.warn({ url: this.display, err: err.message }, 'websocket sink: server not reachable yet; writes wait for it');
      this.reconnect(false);
    }
  }

  write(records: SluiceRecord[]): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new SluiceError('SINK', 'websocket sink is closed'));
    const frames = this.enc.frames(records);
    if (frames.length === 0) return Promise.resolve();
    let bytes = 0;
    for (const f of frames) bytes += f.data.length;
    const max = this.o.max_buffered;
    // One write is always taken (its records are in memory anyway); beyond that the bound applies.
    if (this.jobs.length > 0 && (this.waitingRecords + records.length > max.records || this.waitingBytes + bytes > max.bytes)) {
      this.m.rejected.inc();
      return Promise.reject(
        new SluiceError(
          'SINK',
          `${this.waitingRecords} records (${this.waitingBytes} bytes) are already waiting for ${this.display}${this.state === 'open' ? '' : ` (${this.notConnected()})`}; max_buffered is ${max.records} records / ${max.bytes} bytes`,
          { retriable: true },
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const job: Job = { frames, records: records.length, bytes, sent: 0, acked: 0, resolve, reject };
      this.jobs.push(job);
      this.waitingRecords += job.records;
      this.waitingBytes += job.bytes;
      if (this.state === 'open') return this.pump();
      job.timer = setTimeout(() => this.timeOut(job), this.o.write_timeout);
      // A sink that gave up (reconnect disabled, or max_retries used up) tries again when a write (or its retry) comes.
      if (this.state === 'failed') this.reconnect(true);
    });
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.wake?.();
    this.failJobs(0, new SluiceError('SINK', 'websocket sink closed before the write completed', { retriable: true }));
    this.stopPing();
    const ws = this.ws;
    this.ws = undefined;
    this.m?.connected.set(0);
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 2000);
      ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      ws.close(1000, 'sink closed');
    });
  }

  /** For tests and status. */
  get connectionState(): LinkState {
    return this.state;
  }

  private notConnected(): string {
    return this.lastError ? `not connected: ${this.lastError.message}` : 'not connected yet';
  }

  private isClosed(): boolean {
    return this.state === 'closed' || this.ctx.signal.aborted;
  }

  private reconnect(immediate: boolean): void {
    if (this.reconnecting || this.isClosed()) return;
    this.reconnecting = true;
    this.state = 'connecting';
    void this.reconnectLoop(immediate).finally(() => (this.reconnecting = false));
  }

  private async reconnectLoop(immediate: boolean): Promise<void> {
    for (let first = true; ; first = false) {
      if (!(immediate && first)) {
        const delay = this.o.reconnect.enabled ? this.backoff.next() : undefined;
        if (delay === undefined) return this.giveUp();
        await this.sleep(delay);
        if (this.isClosed()) return;
      }
      try {
        const ws = await this.connector.connect(this.ctx.signal);
        if (this.isClosed()) {
          ws.on('error', () => {});
          ws.terminate();
          return;
        }
        this.attach(ws);
        return;
      } catch (e) {
        const err = asSluiceError(e, this.display);
        this.lastError = err;
        if (this.isClosed()) return;
        if (!err.retriable) {
          this.state = 'failed';
          this.ctx.log.error({ url: this.display, err: err.message }, 'websocket sink: cannot connect');
          this.failJobs(0, err);
          return;
        }
        this.ctx.log.warn({ url: this.display, failures: this.backoff.failures, err: err.message }, 'websocket sink: connect failed; retrying');
      }
    }
  }

  private giveUp(): void {
    const attempts = this.backoff.failures;
    this.backoff.reset();
    this.state = 'failed';
    this.ctx.log.warn({ url: this.display, err: this.lastError?.message }, 'websocket sink: not reconnecting until the next write');
    this.failJobs(
      0,
      new SluiceError('SINK', `${this.notConnected()}${this.o.reconnect.enabled ? ` (gave up after ${attempts} attempts)` : ' (reconnect is disabled)'}`, {
        retriable: true,
        cause: this.lastError,
      }),
    );
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wake?.(), ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
    });
  }

  private attach(ws: WebSocket): void {
    this.ws = ws;
    this.state = 'open';
    this.backoff.reset();
    this.m.connected.set(1);
    this.m.connects.inc();
    if (this.everConnected) this.m.reconnects.inc();
    this.everConnected = true;
    this.lastError = undefined;
    this.ctx.log.info({ url: this.display }, 'websocket sink: connected');
    // The sink has no use for what a server says, but must keep reading so that TCP does not stall.
    ws.on('message', () => {});
    ws.on('error', (e) => {
      this.lastError = new SluiceError('CONNECT', `connection to ${this.display} failed: ${errorMessage(e)}`, { retriable: true });
    });
    ws.once('close', (code, reason) => this.onClose(ws, code, reason));
    ws.on('pong', (data) => {
      clearTimeout(this.pongTimer);
      if (data.length === ACK_PING_BYTES && data.subarray(0, 4).equals(ACK_PING_TAG)) this.onAckPong(data.readUInt32BE(4));
    });
    if (this.o.ping_interval > 0) {
      this.pingTimer = setInterval(() => {
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.ping();
        clearTimeout(this.pongTimer);
        this.pongTimer = setTimeout(() => {
          this.lastError = new SluiceError('CONNECT', `${this.display} did not answer a ping within ${this.o.pong_timeout} ms`, { retriable: true });
          ws.terminate();
        }, this.o.pong_timeout);
      }, this.o.ping_interval);
    }
    for (const j of this.jobs) {
      clearTimeout(j.timer);
      j.timer = undefined;
    }
    this.pump();
  }

  private stopPing(): void {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
  }

  /** Pongs come back in ping order, so one confirms its own job and every job before it. */
  private onAckPong(n: number): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    for (const job of [...this.jobs]) {
      if (job.ping === undefined || seqAfter(job.ping, n)) break;
      job.ponged = true;
      if (job.acked === job.frames.length) this.finish(job);
    }
    if (this.jobs.some((j) => j.ping !== undefined && !j.ponged)) this.armAckTimer();
  }

  private armAckTimer(): void {
    if (this.ackTimer) return;
    const ws = this.ws;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined;
      this.lastError = new SluiceError('CONNECT', `${this.display} did not answer a delivery ping within ${this.o.pong_timeout} ms`, { retriable: true });
      ws?.terminate();
    }, this.o.pong_timeout);
  }

  private onClose(ws: WebSocket, code: number, reason: Buffer): void {
    if (this.ws !== ws) return;
    this.ws = undefined;
    this.stopPing();
    this.m.connected.set(0);
    if (this.state === 'closed') return;
    const why = this.lastError?.message ?? `${this.display} closed the connection: ${describeClose(code, reason)}`;
    this.lastError = new SluiceError('CONNECT', why, { retriable: true });
    this.ctx.log.warn({ url: this.display, code }, `websocket sink: connection closed: ${why}`);
    // Frames handed to a dropped socket may or may not have arrived. Their writes fail and are retried (at least
    // once), and so is every write queued after them, so that the retries keep the original order.
    const firstStarted = this.jobs.findIndex((j) => j.sent > 0);
    if (firstStarted >= 0) {
      this.failJobs(firstStarted, new SluiceError('SINK', `connection to ${this.display} dropped while sending: ${why}`, { retriable: true }));
    }
    for (const j of this.jobs) j.timer ??= setTimeout(() => this.timeOut(j), this.o.write_timeout);
    this.state = 'connecting';
    this.reconnect(false);
  }

  private pump(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    for (const job of this.jobs) {
      while (job.sent < job.frames.length) {
        const f = job.frames[job.sent++]!;
        ws.send(f.data, { binary: f.binary }, (err) => {
          if (job.done) return;
          if (err) {
            // onClose fails this job and the ones after it; make sure the close comes.
            this.lastError = new SluiceError('CONNECT', `sending to ${this.display} failed: ${errorMessage(err)}`, { retriable: true });
            ws.terminate();
            return;
          }
          this.m.frames.inc();
          this.m.bytes.inc(f.data.length);
          if (++job.acked === job.frames.length && (job.ping === undefined || job.ponged)) this.finish(job);
        });
      }
      if (this.o.ack === 'pong' && job.ping === undefined) {
        job.ping = this.pingSeq = (this.pingSeq + 1) >>> 0;
        const payload = Buffer.alloc(ACK_PING_BYTES);
        ACK_PING_TAG.copy(payload);
        payload.writeUInt32BE(job.ping, 4);
        ws.ping(payload);
        this.armAckTimer();
      }
    }
  }

  private finish(job: Job): void {
    const i = this.jobs.indexOf(job);
    if (i >= 0) this.jobs.splice(i, 1);
    job.done = true;
    clearTimeout(job.timer);
    this.waitingRecords -= job.records;
    this.waitingBytes -= job.bytes;
    job.frames = [];
    job.resolve();
  }

  private timeOut(job: Job): void {
    if (job.done || job.sent > 0) return;
    const i = this.jobs.indexOf(job);
    if (i < 0) return;
    this.m.rejected.inc();
    this.failJobs(i, new SluiceError('SINK', `no connection to ${this.display} within write_timeout (${this.o.write_timeout} ms): ${this.notConnected()}`, { retriable: true }));
  }

  /** Fail jobs[from..] and forget them. */
  private failJobs(from: number, err: SluiceError): void {
    const failed = this.jobs.splice(from);
    for (const j of failed) {
      j.done = true;
      clearTimeout(j.timer);
      this.waitingRecords -= j.records;
      this.waitingBytes -= j.bytes;
      j.frames = [];
      j.reject(err);
    }
  }
}

// ---- server sink ---------------------------------------------------------------------------------------------

export class WebSocketServerSink implements Sink {
  private server?: WebSocketBroadcastServer;
  constructor(
    private readonly o: WebSocketSinkOptions,
    private readonly info?: EndpointInfo,
  ) {}

  async open(ctx: SinkContext): Promise<void> {
    const enc = new FrameEncoder(ctx, this.o.batching, this.o.frame_type, isJsonFormat(this.info, ctx), payloadTemplate(this.o));
    this.server = new WebSocketBroadcastServer(serverOptions(this.o), enc, ctx);
    await this.server.start();
  }

  /** The port actually listened on (with `port: 0`). */
  get port(): number | undefined {
    return this.server?.port;
  }

  async write(records: SluiceRecord[]): Promise<void> {
    if (!this.server) throw new SluiceError('SINK', 'websocket sink is not open');
    this.server.broadcast(records);
  }

  async close(): Promise<void> {
    await this.server?.stop();
    this.server = undefined;
  }
}
