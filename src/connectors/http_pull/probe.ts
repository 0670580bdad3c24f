// `sluice test` for http_pull (and the presets built on it): one authenticated request, reported step by step.

import type { TestReporter } from '../../core/spec.js';
import { errorMessage } from '../../core/errors.js';
import { parseOptions } from '../../core/spec.js';
import { formatIssue } from '../../core/errors.js';
import { pullOptions, type HttpPullOptions } from './options.js';
import { Authenticator, readBounded, redactUrl } from './http.js';
import { request } from 'undici';

export async function testHttpPull(input: HttpPullOptions | Record<string, unknown>, report: TestReporter, signal: AbortSignal): Promise<void> {
  const parsed = parseOptions(pullOptions, input);
  const o = parsed.ok ? parsed.value : (input as HttpPullOptions);
  if (!parsed.ok && typeof (input as HttpPullOptions).interval !== 'number') {
    report({ message: `options are invalid: ${parsed.issues.map(formatIssue).join('; ')}`, error: true, done: true });
    throw new Error('invalid options');
  }
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
