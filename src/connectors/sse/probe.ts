// `sluice test` for sse: connect, check the answer is an event stream, and wait briefly for a first event.

import { request } from 'undici';
import type { TestReporter } from '../../core/spec.js';
import { errorMessage } from '../../core/errors.js';
import { Authenticator, redactUrl } from '../http_pull/http.js';
import type { SseOptions } from './options.js';

export async function testSse(o: SseOptions, report: TestReporter, signal: AbortSignal): Promise<void> {
  const where = redactUrl(o.url);
  try {
    const headers: Record<string, string> = { accept: 'text/event-stream', ...(o.headers ?? {}) };
    await new Authenticator(o.auth, o.connect_timeout).apply(headers, signal);
    report({ message: `connecting to ${where}` });
    const ac = new AbortController();
    const res = await request(o.url, { headers, signal: AbortSignal.any([signal, ac.signal]), headersTimeout: o.connect_timeout });
    const ct = String(res.headers['content-type'] ?? '');
    if (res.statusCode !== 200 || !/^text\/event-stream/i.test(ct)) {
      ac.abort();
      throw new Error(`${where} answered ${res.statusCode} with content-type '${ct}'`);
    }
    report({ message: `${where} answered 200 with an event stream; waiting up to 5s for data` });
    const timer = setTimeout(() => ac.abort(), 5000);
    let got = 0;
    try {
      for await (const c of res.body) {
        got += c.length;
        break;
      }
    } catch {
      // The wait ended without data: the stream may just be quiet.
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
    report({ message: got ? `received data from ${where}` : `connected; no data within 5s (the stream may be quiet)`, done: true });
  } catch (e) {
    report({ message: `${where}: ${errorMessage(e)}`, error: true, done: true });
    throw e;
  }
}
