// The polling loop: one poll = one request per page, each page emitted as one batch and awaited when the pipeline
// pushes back. The incremental cursor advances in memory at once (so the next poll does not fetch the same records)
// and reaches the state store only through commit, after the sink accepted the records.

import { Agent, request, type Dispatcher } from 'undici';
import type { EndpointInfo } from '../../core/spec.js';
import type { SluiceRecord, Source, SourceContext } from '../../core/types.js';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { HttpPullOptions } from './options.js';
import { Authenticator, backoff, readBounded, redactUrl, retryAfterMs, sha256, sleep, snippet } from './http.js';

const CURSOR_KEY = 'cursor';
const CURSOR_RE = /\{\{\s*cursor\s*\}\}/g;

interface Ack {
  cursor?: string;
}

interface Page {
  status: number;
  body?: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

/** `a.b[0].c` -> ['a', 'b', '0', 'c']; split once per option, not per record. */
export function pathParts(path: string): string[] {
  return path.split(/\.|\[(\d+)\]/).filter((p) => p !== undefined && p !== '');
}

/** The value at a dotted path (a string, or parts from pathParts), or undefined. */
export function pick(v: unknown, path: string | string[]): unknown {
  const parts = typeof path === 'string' ? pathParts(path) : path;
  let cur = v;
  for (let i = 0; i < parts.length; i++) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[parts[i]!];
  }
  return cur;
}

/** The `rel="next"` target of a `Link` header, resolved against the request URL. */
export function nextLink(link: string | string[] | undefined, base: string): string | undefined {
  const s = Array.isArray(link) ? link.join(',') : link;
  if (!s) return undefined;
  for (const m of s.matchAll(/<([^>]*)>\s*((?:;\s*[^;,]*)*)/g)) {
    if (/;\s*rel\s*=\s*"?(?:[^";,]*\s)?next(?:\s[^";,]*)?"?/i.test(m[2] ?? '')) return new URL(m[1]!, base).toString();
  }
  return undefined;
}

/** Larger of two cursor values: numerically when both are numbers, else as strings (ISO timestamps sort so). */
function maxCursor(a: string | undefined, b: unknown): string | undefined {
  if (b === undefined || b === null || b === '') return a;
  const s = typeof b === 'object' ? JSON.stringify(b) : String(b);
  if (a === undefined) return s;
  const na = Number(a);
  const nb = Number(s);
  if (a.trim() !== '' && s.trim() !== '' && Number.isFinite(na) && Number.isFinite(nb)) return nb > na ? s : a;
  return s > a ? s : a;
}

export class HttpPullSource implements Source {
  private cursor?: string;
  private cursorPath?: string[];
  private readonly auth: Authenticator;
  private readonly dispatcher?: Dispatcher;
  /** Per request URL: validators and body hash of the last emitted response (emit: changes). */
  private readonly seen = new Map<string, { etag?: string; lastModified?: string; hash?: string }>();

  constructor(
    private readonly o: HttpPullOptions,
    private readonly info: EndpointInfo,
  ) {
    this.auth = new Authenticator(o.auth, o.timeout);
    if (o.insecure) this.dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  }

  async run(ctx: SourceContext): Promise<void> {
    this.ctxState = ctx.state;
    const stored = await ctx.state.get<string>(CURSOR_KEY);
    this.cursor = stored ?? this.o.incremental?.initial;
    const m = {
      requests: ctx.metrics.counter('requests', 'HTTP requests sent'),
      failures: ctx.metrics.counter('request_failures', 'requests that failed and were retried'),
      unchanged: ctx.metrics.counter('unchanged', 'responses skipped because nothing changed'),
    };
    while (!ctx.signal.aborted) {
      const started = Date.now();
      await this.poll(ctx, m);
      if (ctx.signal.aborted) break;
      await sleep(Math.max(0, this.o.interval - (Date.now() - started)), ctx.signal);
    }
  }

  commit(acks: unknown[]): Promise<void> | void {
    if (!this.o.incremental || !this.ctxState) return;
    const last = acks[acks.length - 1] as Ack | undefined;
    if (last?.cursor !== undefined) return this.ctxState.set(CURSOR_KEY, last.cursor);
  }

  private ctxState?: SourceContext['state'];

  async close(): Promise<void> {
    await this.dispatcher?.close();
  }

  private template(s: string, encode: boolean): string {
    const c = this.cursor ?? '';
    return s.replace(CURSOR_RE, () => (encode ? encodeURIComponent(c) : c));
  }

  private async poll(ctx: SourceContext, m: { requests: { inc(): void }; failures: { inc(): void }; unchanged: { inc(): void } }) {
    const p = this.o.pagination;
    let url = this.template(this.o.url, true);
    const body = this.o.body === undefined ? undefined : this.template(this.o.body, false);
    let pageNo = p.type === 'page' ? p.start : 1;
    if (p.type === 'page') url = withParam(url, p.param ?? 'page', String(pageNo));
    for (let page = 1; page <= p.max_pages && !ctx.signal.aborted; page++) {
      const res = await this.fetchWithRetry(ctx, url, body, m);
      if (!res) return;
      const fetchedAt = Date.now();
      if (res.status === 304) {
        m.unchanged.inc();
        return;
      }
      const buf = res.body!;
      if (this.o.emit === 'changes') {
        const hash = sha256(buf);
        const prev = this.seen.get(url);
        const etag = header(res.headers['etag']);
        const lastModified = header(res.headers['last-modified']);
        this.seen.set(url, { etag, lastModified, hash });
        if (prev?.hash === hash) {
          m.unchanged.inc();
          return;
        }
      }
      const meta = { _url: redactUrl(url), _status: res.status, _fetched_at: fetchedAt, _page: page };
      const { records, decoded, count, parsed } = this.toRecords(ctx, buf, meta, fetchedAt);
      if (count > 0) {
        const ack: Ack = { cursor: this.cursor };
        const wait = ctx.emit({ records, decoded, ack });
        if (wait) await wait;
      }
      // Next page, or the end of this poll.
      if (p.type === 'none') return;
      if (p.type === 'link') {
        const next = nextLink(res.headers['link'], url);
        if (!next) return;
        url = next;
      } else if (p.type === 'cursor') {
        const next = pick(parsed ?? safeJson(buf), p.cursor_path!);
        if (next === undefined || next === null || next === '') return;
        url = withParam(url, p.param ?? 'cursor', String(next));
      } else {
        if (count === 0) return;
        pageNo++;
        url = withParam(url, p.param ?? 'page', String(pageNo));
      }
    }
  }

  /** Rows (with records_path) or the raw body, plus the number of records for page-number pagination. */
  private toRecords(ctx: SourceContext, buf: Buffer, meta: Record<string, unknown>, ts: number) {
    const needJson = this.o.records_path !== undefined || this.o.incremental !== undefined || this.o.pagination.type === 'page';
    let parsed: unknown;
    if (needJson) {
      const text = buf.toString('utf8');
      try {
        parsed = JSON.parse(text);
      } catch (e) {
        // The body cannot be split or scanned for the cursor: it goes to bad_data as a whole.
        ctx.bad([{ raw: text, error: new SluiceError('DECODE', `response of ${meta._url} is not JSON: ${errorMessage(e)}`), meta }]);
        return { records: [] as SluiceRecord[], decoded: false, count: 0, parsed: undefined };
      }
    }
    let items: unknown[] | undefined;
    if (parsed !== undefined) {
      const at = this.o.records_path ? pick(parsed, this.o.records_path) : parsed;
      items = Array.isArray(at) ? at : at === undefined || at === null ? [] : [at];
      if (this.o.incremental) {
        const path = (this.cursorPath ??= pathParts(this.o.incremental.path));
        for (let i = 0; i < items.length; i++) this.cursor = maxCursor(this.cursor, pick(items[i], path));
      }
    }
    if (this.o.records_path !== undefined) {
      const records: SluiceRecord[] = new Array(items!.length);
      for (let i = 0; i < items!.length; i++) records[i] = { value: items![i], timestamp: ts, meta };
      return { records, decoded: true, count: records.length, parsed };
    }
    const count = items ? items.length : buf.length > 0 ? 1 : 0;
    // A text format wants a string; bytes pass through untouched.
    const value = this.info.format === 'bytes' || this.info.format === 'raw' || this.info.format === 'avro' || this.info.format === 'protobuf' ? new Uint8Array(buf) : buf.toString('utf8');
    return { records: count > 0 ? [{ value, timestamp: ts, meta }] : [], decoded: false, count, parsed };
  }

  private async fetchWithRetry(ctx: SourceContext, url: string, body: string | undefined, m: { requests: { inc(): void }; failures: { inc(): void } }): Promise<Page | undefined> {
    const r = this.o.retry;
    const where = `${this.o.method} ${redactUrl(url)}`;
    let authRetried = false;
    for (let attempt = 1; ; attempt++) {
      if (ctx.signal.aborted) return undefined;
      let failure: SluiceError;
      let wait: number | undefined;
      try {
        m.requests.inc();
        const res = await this.fetchOnce(ctx, url, body);
        if (res.status < 400) return res;
        const text = res.body ? res.body.toString('utf8') : '';
        if (res.status === 401 && !authRetried && this.auth.invalidate()) {
          authRetried = true;
          attempt--;
          continue;
        }
        if (res.status === 429 || res.status >= 500) {
          wait = retryAfterMs(res.headers['retry-after']);
          failure = new SluiceError('CONNECT', `${where} answered ${res.status}: ${snippet(text)}`, { retriable: true });
        } else {
          const authy = res.status === 401 || res.status === 403;
          throw new SluiceError(authy ? 'AUTH' : 'CONNECT', `${where} answered ${res.status}${authy ? ' (authentication failed)' : ''}: ${snippet(text)}`, {
            hint: authy ? 'check the auth options (token, user/password, API key, OAuth2 client)' : undefined,
          });
        }
      } catch (e) {
        if (ctx.signal.aborted) return undefined;
        if (e instanceof SluiceError && !e.retriable) throw e;
        failure =
          e instanceof SluiceError
            ? e
            : new SluiceError('CONNECT', `${where}: ${isTimeout(e) ? `no complete answer within timeout (${this.o.timeout} ms)` : errorMessage(e)}`, { retriable: true, cause: e });
      }
      m.failures.inc();
      if (r.max_attempts > 0 && attempt >= r.max_attempts) throw new SluiceError(failure.code, `${failure.message} (gave up after ${attempt} attempts)`, { cause: failure });
      const delay = wait ?? backoff(attempt, r.initial_backoff, r.max_backoff);
      ctx.log.warn({ attempt, delay_ms: delay }, `${failure.message}; retrying`);
      await sleep(delay, ctx.signal);
    }
  }

  private async fetchOnce(ctx: SourceContext, url: string, body: string | undefined): Promise<Page> {
    const headers: Record<string, string> = { accept: 'application/json, */*;q=0.5' };
    if (this.o.headers) for (const [k, v] of Object.entries(this.o.headers)) headers[k.toLowerCase()] = v;
    if (body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
    if (this.o.emit === 'changes') {
      const s = this.seen.get(url);
      if (s?.etag) headers['if-none-match'] = s.etag;
      if (s?.lastModified) headers['if-modified-since'] = s.lastModified;
    }
    await this.auth.apply(headers, ctx.signal);
    const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(this.o.timeout)]);
    const res = await request(url, { method: this.o.method, headers, body, signal, dispatcher: this.dispatcher });
    const buf = await readBounded(res.body, this.o.max_body_size, `${this.o.method} ${redactUrl(url)}`);
    return { status: res.statusCode, headers: res.headers, body: buf };
  }
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function withParam(url: string, name: string, value: string): string {
  const u = new URL(url);
  u.searchParams.set(name, value);
  return u.toString();
}

function safeJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString('utf8'));
  } catch {
    return undefined;
  }
}

function isTimeout(e: unknown): boolean {
  const n = (e as { name?: string })?.name;
  return n === 'TimeoutError' || n === 'HeadersTimeoutError' || n === 'BodyTimeoutError' || (e as { code?: string })?.code === 'UND_ERR_HEADERS_TIMEOUT';
}
