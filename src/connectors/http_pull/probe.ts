// `sluice test` for http_pull (and the presets built on it): one authenticated request, reported step by step.

import { parseOptions, type TestReporter, type z } from '../../core/spec.js';
import { ConfigError, errorMessage } from '../../core/errors.js';
import type { HttpPullOptions } from './options.js';
import { Authenticator, readBounded, redactUrl } from './http.js';
import { request } from 'undici';

/** The options as the user wrote them (the control plane passes the raw config), validated. */
export function parseOrThrow<T>(schema: z.ZodType<T, any>, input: unknown): T {
  const r = parseOptions(schema, input);
  if (!r.ok) throw new ConfigError(r.issues);
  return r.value;
}

/** One request, no retries: a test reports what is wrong instead of hiding it behind backoff. */
export async function testHttpPull(o: HttpPullOptions, report: TestReporter, signal: AbortSignal): Promise<void> {
  const url = o.url.replace(/\{\{\s*cursor\s*\}\}/g, encodeURIComponent(o.incremental?.initial ?? ''));
  const where = `${o.method} ${redactUrl(url)}`;
  try {
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    if (o.auth?.oauth2) report({ message: `fetching an OAuth2 token from ${redactUrl(o.auth.oauth2.token_url)}` });
    await new Authenticator(o.auth, o.timeout).apply(headers, signal);
    report({ message: `sending ${where}` });
    const res = await request(url, { method: o.method, headers, body: o.body, signal: AbortSignal.any([signal, AbortSignal.timeout(o.timeout)]) });
    const body = await readBounded(res.body, o.max_body_size, where);
    if (res.statusCode >= 400) {
      report({ message: `${where} answered ${res.statusCode}`, error: true, done: true });
      throw new Error(`${where} answered ${res.statusCode}`);
    }
    report({ message: `${where} answered ${res.statusCode} with ${body.length} bytes`, done: true });
  } catch (e) {
    report({ message: `${where}: ${errorMessage(e)}`, error: true, done: true });
    throw e;
  }
}
