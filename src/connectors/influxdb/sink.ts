// InfluxDB sink: each write becomes one POST of line protocol (v1 `/write` or v2 `/api/v2/write`).

import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { Sink, SinkContext, SluiceRecord } from '../../core/types.js';
import { integerFieldsOf, LineEncoder, LineError } from './line.js';
import { versionOf, type InfluxSinkOptions } from './options.js';

type RequestFn = typeof import('undici').request;

/** The URL as it may appear in logs and errors: no user info, no query (v1 `p=` carries the password). */
export function displayUrl(u: string): string {
  try {
    const url = new URL(u);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return '<invalid url>';
  }
}

export interface WriteTarget {
  url: string;
  headers: Record<string, string>;
}

/** The write endpoint with its query parameters and auth headers. */
export function writeTarget(o: InfluxSinkOptions): WriteTarget {
  const base = o.url.replace(/\/+$/, '');
  const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8' };
  const q = new URLSearchParams();
  if (versionOf(o) === 'v2') {
    q.set('org', o.org!);
    q.set('bucket', o.bucket!);
    q.set('precision', o.precision);
    if (o.token) headers.authorization = `Token ${o.token}`;
    return { url: `${base}/api/v2/write?${q}`, headers };
  }
  q.set('db', o.database!);
  if (o.retention_policy) q.set('rp', o.retention_policy);
  // v1 spells microseconds `u`.
  q.set('precision', o.precision === 'us' ? 'u' : o.precision);
  if (o.username !== undefined) {
    if (o.auth_method === 'query') {
      q.set('u', o.username);
      q.set('p', o.password ?? '');
    } else headers.authorization = `Basic ${Buffer.from(`${o.username}:${o.password ?? ''}`).toString('base64')}`;
  }
  return { url: `${base}/write?${q}`, headers };
}

/** Seconds or an HTTP date, as milliseconds from now. */
export function retryAfterMs(h: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(h) ? h[0] : h;
  if (!v) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(v)) return Math.round(Number(v) * 1000);
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** InfluxDB's own explanation: `{"error": ...}` (v1) or `{"message": ...}` (v2), else the body text. */
function serverMessage(body: string): string {
  try {
    const j = JSON.parse(body) as { error?: unknown; message?: unknown };
    const m = j.message ?? j.error;
    if (typeof m === 'string') return m;
  } catch {
    // not JSON
  }
  return body.trim().slice(0, 500) || '(empty response)';
}

const INITIAL_BACKOFF = 200;

export class InfluxSink implements Sink {
  private ctx!: SinkContext;
  private request!: RequestFn;
  private readonly lines: LineEncoder;
  private readonly target: WriteTarget;
  private readonly where: string;
  private requests?: { inc(n?: number): void };
  private retries?: { inc(n?: number): void };

  constructor(
    private readonly o: InfluxSinkOptions,
    info: EndpointInfo,
  ) {
    this.lines = new LineEncoder({
      measurement: o.measurement,
      measurement_field: o.measurement_field,
      tags: o.tags,
      fields: o.fields,
      timestamp_field: o.timestamp_field,
      precision: o.precision,
      integerFields: integerFieldsOf(info.schema?.fields),
    });
    this.target = writeTarget(o);
    this.where = versionOf(o) === 'v2' ? `bucket '${o.bucket}' at ${displayUrl(o.url)}` : `database '${o.database}' at ${displayUrl(o.url)}`;
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    this.request = (await import('undici')).request;
    this.requests = ctx.metrics.counter('write_requests', 'HTTP write requests sent to InfluxDB');
    this.retries = ctx.metrics.counter('write_retries', 'write requests retried after a 5xx, 429 or connection error');
  }

  async write(records: SluiceRecord[]): Promise<void> {
    if (records.length === 0) return;
    const parts = new Array<string>(records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      try {
        parts[i] = this.lines.line(r.value, r.timestamp);
      } catch (e) {
        if (!(e instanceof LineError)) throw e;
        // A record that cannot be a point stays that way; retrying would not help.
        throw new SluiceError('SINK', `InfluxDB sink: record ${i + 1} of the batch cannot be written as line protocol: ${e.message}`, { retriable: false });
      }
    }
    await this.post(parts.join('\n'), records.length);
  }

  private async post(body: string, count: number): Promise<void> {
    const signal = this.ctx.signal;
    for (let attempt = 0; ; attempt++) {
      let wait: number | undefined;
      let failure: SluiceError;
      try {
        this.requests?.inc();
        const res = await this.request(this.target.url, {
          method: 'POST',
          headers: this.target.headers,
          body,
          headersTimeout: this.o.timeout,
          bodyTimeout: this.o.timeout,
          signal,
        } as Dispatcher.RequestOptions);
        const status = res.statusCode;
        if (status >= 200 && status < 300) {
          await res.body.dump();
          return;
        }
        const text = await res.body.text().catch(() => '');
        const msg = `InfluxDB refused a write of ${count} points to ${this.where}: HTTP ${status}: ${serverMessage(text)}`;
        if (status === 429 || status >= 500) {
          wait = retryAfterMs(res.headers['retry-after']);
          failure = new SluiceError('SINK', msg, { retriable: true });
        } else if (status === 401 || status === 403) {
          throw new SluiceError('AUTH', msg, { retriable: false, hint: 'check token (v2) or username/password (v1) and their write permission' });
        } else {
          // 400 (bad line protocol, field type conflict), 404 (no such database/bucket), 413 ...: the same request
          // would fail the same way.
          throw new SluiceError('SINK', msg, { retriable: false });
        }
      } catch (e) {
        if (e instanceof SluiceError) throw e;
        if (signal.aborted) throw new SluiceError('SINK', `InfluxDB write to ${this.where} cancelled: the pipeline is stopping`, { retriable: true, cause: e });
        failure = new SluiceError('CONNECT', `cannot reach InfluxDB ${this.where}: ${errorMessage(e)}`, { retriable: true, cause: e });
      }
      if (attempt >= this.o.max_retries) throw failure;
      const backoff = wait ?? Math.min(this.o.max_retry_delay, INITIAL_BACKOFF * 2 ** attempt) * (0.8 + Math.random() * 0.4);
      const delay = Math.min(backoff, this.o.max_retry_delay);
      this.retries?.inc();
      this.ctx.log.warn({ attempt: attempt + 1, delay_ms: Math.round(delay), err: failure.message }, 'influxdb sink: write failed; retrying');
      await sleep(delay, undefined, { signal }).catch(() => {});
      if (signal.aborted) throw failure;
    }
  }
}
