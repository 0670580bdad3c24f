// The webhook (REST) sink: HTTP requests built from records, with method, URL and headers rendered by data templates
// and the body from `body_template` or the sink format. Transient answers (network errors, 5xx, 408, 429) are retried
// here with backoff and Retry-After; a permanent answer (other 4xx, 3xx) fails the write with a non-retriable error,
// because sending the same request again cannot succeed.

import { Agent } from 'undici';
import type { Encoder, SluiceRecord, Sink, SinkContext } from '../../core/types.js';
import type { EndpointInfo } from '../../core/spec.js';
import { RejectedRecordsError, SluiceError, errorMessage, type RejectedRecord } from '../../core/errors.js';
import { compileDataTemplate, textOf, type DataTemplate } from '../../core/data-template.js';
import type { WebhookSinkOptions } from './options.js';
import { encodeRecord } from '../../core/encode.js';

interface Target {
  method: string;
  url: string;
  headers: Record<string, string>;
  /** method + url + headers, to group records that go to the same place. */
  key: string;
}

interface Req {
  target: Target;
  body: string | Uint8Array;
}

/** The URL without user info and with query values masked: API keys often travel there. */
export function displayUrl(u: string): string {
  try {
    const p = new URL(u);
    let q = '';
    if (p.search) q = '?' + [...p.searchParams.keys()].map((k) => `${k}=***`).join('&');
    return `${p.protocol}//${p.host}${p.pathname}${q}`;
  } catch {
    return '(invalid URL)';
  }
}

/** Retry-After in milliseconds: delta-seconds or an HTTP date. */
export function parseRetryAfter(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  if (/^\d+$/.test(s.trim())) return Number(s.trim()) * 1000;
  const t = Date.parse(s);
  return isNaN(t) ? undefined : Math.max(0, t - now);
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });

const CONTENT_TYPES: Record<string, string> = {
  json: 'application/json',
  text: 'text/plain; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  bytes: 'application/octet-stream',
  raw: 'application/octet-stream',
  avro: 'application/octet-stream',
  protobuf: 'application/x-protobuf',
};

export class WebhookSink implements Sink {
  private ctx?: SinkContext;
  private encoder?: Encoder;
  private agent?: Agent;
  private readonly method: DataTemplate;
  private readonly url: DataTemplate;
  private readonly headerTpls: Array<[string, DataTemplate]>;
  private readonly body?: DataTemplate;
  /** Set when method, URL and headers do not depend on the record. */
  private readonly fixed?: Target;
  private readonly contentType: string;
  private readonly authHeaders: Record<string, string> = {};

  constructor(
    private readonly o: WebhookSinkOptions,
    private readonly info: EndpointInfo,
  ) {
    this.method = compileDataTemplate(o.method, { escape: 'none' });
    this.url = compileDataTemplate(o.url, { escape: 'none' });
    this.headerTpls = Object.entries(o.headers ?? {}).map(([k, v]) => [k, compileDataTemplate(v, { escape: 'none' })]);
    if (o.body_template !== undefined) this.body = compileDataTemplate(o.body_template, { escape: o.body_escape });
    if (o.batch_mode === 'array' && !this.body && info.format !== 'json') {
      throw new SluiceError('CONFIG', `webhook sink: batch_mode 'array' needs the json format or a body_template (the format is '${info.format}')`);
    }
    const a = o.auth;
    if (a?.bearer) this.authHeaders.authorization = `Bearer ${a.bearer}`;
    else if (a?.username !== undefined) this.authHeaders.authorization = `Basic ${Buffer.from(`${a.username}:${a.password ?? ''}`).toString('base64')}`;
    else if (a?.api_key) this.authHeaders[a.api_key_header.toLowerCase()] = a.api_key;
    this.contentType =
      o.content_type ??
      (o.batch_mode === 'ndjson'
        ? 'application/x-ndjson'
        : o.batch_mode === 'array' || (this.body && o.body_escape === 'json')
          ? 'application/json'
          : this.body
            ? 'text/plain; charset=utf-8'
            : (CONTENT_TYPES[info.format] ?? 'application/octet-stream'));
    if (this.method.constant !== undefined && this.url.constant !== undefined && this.headerTpls.every(([, t]) => t.constant !== undefined)) {
      this.fixed = this.targetOf({ value: {} });
    }
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    this.encoder = ctx.encoder;
    this.agent = new Agent({
      connections: this.o.max_connections,
      keepAliveTimeout: 30_000,
      connect: { rejectUnauthorized: !this.o.insecure_skip_verify },
    });
  }

  private targetOf(rec: SluiceRecord): Target {
    const method = this.method.render(rec.value, rec).trim().toUpperCase();
    const url = this.url.render(rec.value, rec).trim();
    if (!/^[A-Z]+$/.test(method)) {
      throw new SluiceError('CONFIG', `webhook sink: method template '${this.o.method}' rendered '${method}', which is not an HTTP method`);
    }
    if (!/^https?:\/\//i.test(url) || !URL.canParse(url)) {
      throw new SluiceError('CONFIG', `webhook sink: url template '${this.o.url}' rendered '${displayUrl(url)}', which is not an http(s) URL`);
    }
    const headers: Record<string, string> = { 'content-type': this.contentType };
    for (const [k, t] of this.headerTpls) headers[k.toLowerCase()] = t.render(rec.value, rec);
    Object.assign(headers, this.authHeaders);
    let key = `${method} ${url}`;
    for (const [k] of this.headerTpls) key += `\n${headers[k.toLowerCase()]}`;
    return { method, url, headers, key };
  }

  private bodyOf(rec: SluiceRecord): string | Uint8Array {
    if (this.body) return this.body.render(rec.value, rec);
    return encodeRecord(this.encoder!, rec);
  }

  async write(records: SluiceRecord[]): Promise<void> {
    if (!records.length) return;
    if (this.o.batch_mode === 'single') return this.writeSingle(records);
    // Consecutive records with the same method, URL and headers share a request; order is kept across requests.
    let start = 0;
    let target = this.fixed ?? this.targetOf(records[0]!);
    for (let i = 1; i <= records.length; i++) {
      const t = i === records.length ? undefined : (this.fixed ?? this.targetOf(records[i]!));
      if (t && t.key === target.key) continue;
      await this.send({ target, body: this.batchBody(records, start, i) });
      start = i;
      if (t) target = t;
    }
  }

  private batchBody(records: SluiceRecord[], from: number, to: number): string | Uint8Array {
    if (this.o.batch_mode === 'ndjson') {
      if (!this.body && this.encoder!.encodeRecords) return this.encoder!.encodeRecords(records.slice(from, to), true);
      if (!this.body) {
        const values = new Array<unknown>(to - from);
        for (let i = from; i < to; i++) values[i - from] = records[i]!.value;
        return this.encoder!.encodeStream(values, true);
      }
      let s = '';
      for (let i = from; i < to; i++) s += this.body.render(records[i]!.value, records[i]) + '\n';
      return s;
    }
    let s = '[';
    for (let i = from; i < to; i++) {
      if (i > from) s += ',';
      s += this.body ? this.body.render(records[i]!.value, records[i]) : textOf(encodeRecord(this.encoder!, records[i]!));
    }
    return s + ']';
  }

  private async writeSingle(records: SluiceRecord[]): Promise<void> {
    let next = 0;
    let failed: unknown;
    // One request per record: a permanent refusal of the body (4xx other than auth/not-found) concerns that record
    // only, so the others still go and the runtime dead-letters (or drops) just the refused ones.
    const rejected: RejectedRecord[] = [];
    const worker = async () => {
      while (next < records.length && failed === undefined) {
        const index = next++;
        const rec = records[index]!;
        try {
          await this.send({ target: this.fixed ?? this.targetOf(rec), body: this.bodyOf(rec) });
        } catch (e) {
          if (e instanceof SluiceError && e.code === 'SCHEMA' && !e.retriable) rejected.push({ index, error: e });
          else failed ??= e;
        }
      }
    };
    const n = Math.min(this.o.concurrency, records.length);
    if (n === 1) await worker();
    else await Promise.all(Array.from({ length: n }, worker));
    if (failed !== undefined) throw failed;
    if (rejected.length) throw new RejectedRecordsError(rejected.sort((a, b) => a.index - b.index));
  }

  private async send(r: Req): Promise<void> {
    const { method, url, headers } = r.target;
    const u = new URL(url);
    const shown = `${method} ${displayUrl(url)}`;
    const signal = this.ctx?.signal;
    for (let attempt = 1; ; attempt++) {
      let status = 0;
      let detail: string;
      let retryAfter: number | undefined;
      try {
        const res = await this.agent!.request({
          origin: u.origin,
          path: u.pathname + u.search,
          method: method as 'POST',
          headers,
          body: r.body,
          headersTimeout: this.o.timeout,
          bodyTimeout: this.o.timeout,
          signal,
        });
        status = res.statusCode;
        if (status >= 200 && status < 300) {
          await res.body.dump();
          return;
        }
        const text = await res.body.text().catch(() => '');
        detail = text.replace(/\s+/g, ' ').trim().slice(0, 300);
        retryAfter = parseRetryAfter(res.headers['retry-after']);
        if (status >= 300 && status < 400) detail = `redirect to ${displayUrl(String(res.headers.location ?? ''))} (not followed)`;
      } catch (e) {
        if (signal?.aborted) throw new SluiceError('SINK', `${shown}: stopped while sending`, { retriable: true, cause: e });
        detail = errorMessage(e);
      }
      const transient = status === 0 || status >= 500 || status === 429 || status === 408;
      const what = status ? `${shown} answered ${status}${detail ? `: ${detail}` : ''}` : `${shown} failed: ${detail}`;
      if (!transient) {
        // A permanent answer: retrying the same request cannot help, so the runtime must not retry it either
        // (it retries SINK and CONNECT errors regardless of `retriable`).
        const code = status === 401 || status === 403 ? 'AUTH' : status === 404 || status === 405 || status < 400 ? 'CONFIG' : 'SCHEMA';
        throw new SluiceError(code, what, {
          hint: code === 'AUTH' ? 'check the sink auth / headers' : code === 'CONFIG' ? 'check the sink url and method' : 'the endpoint refused the request body; check body_template / format',
        });
      }
      if (attempt >= this.o.max_attempts || signal?.aborted) {
        throw new SluiceError('SINK', `${what} (after ${attempt} attempt(s))`, { retriable: true });
      }
      const backoff = Math.min(this.o.max_backoff, this.o.initial_backoff * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      const delay = retryAfter !== undefined ? Math.min(retryAfter, this.o.max_backoff) : backoff;
      this.ctx?.log.warn({ attempt, delay_ms: Math.round(delay), status, url: displayUrl(url) }, 'webhook request failed; retrying');
      await sleep(delay, signal);
    }
  }

  async close(): Promise<void> {
    await this.agent?.close();
    this.agent = undefined;
  }
}
