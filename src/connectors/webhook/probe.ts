// `sluice test` for webhooks: the source checks that it can listen where it is told to; the sink checks that the
// target's host answers TCP (and TLS) without sending a request, because any request could trigger the receiver.

import { createServer } from 'node:net';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { parseOptions, type TestReporter } from '../../core/spec.js';
import { sinkOptions, sourceOptions } from './options.js';
import { displayUrl } from './sink.js';

function parsed<T>(schema: { safeParse: unknown } & Parameters<typeof parseOptions<T>>[0], options: unknown): T {
  const r = parseOptions(schema, options);
  if (!r.ok) throw new ConfigError(r.issues);
  return r.value;
}

export async function testWebhook(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  if (role === 'source') {
    const parsedOpts = parsed(sourceOptions(), options);
    const { mountHost } = await import('./mount.js');
    const host = mountHost();
    if (parsedOpts.mount === true || (parsedOpts.mount === 'auto' && host && parsedOpts.host === undefined && parsedOpts.port === undefined)) {
      if (!host) throw new SluiceError('CONFIG', 'mount: true needs `sluice serve`, which serves the webhook under /v1/webhooks/<pipeline>; give host/port for `sluice run`');
      report({ message: `mounted on the server at ${host.urlFor('<pipeline>', parsedOpts.path)} (no port of its own)`, done: true });
      const auth = parsedOpts.bearer_token ? 'a bearer token' : parsedOpts.signature ? `a ${parsedOpts.signature.style}-style HMAC signature` : undefined;
      report({ message: auth ? `requests must carry ${auth}` : 'requests are not authenticated (set bearer_token or signature)', done: true });
      return;
    }
    const o = { ...parsedOpts, host: parsedOpts.host ?? '127.0.0.1', port: parsedOpts.port ?? 10081 };
    const srv = createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(o.port, o.host, () => resolve());
      });
    } catch (e) {
      report({ message: `cannot listen on ${o.host}:${o.port}: ${errorMessage(e)}`, error: true });
      throw new SluiceError('CONNECT', `webhook source cannot listen on ${o.host}:${o.port}: ${errorMessage(e)}`, { cause: e });
    } finally {
      srv.close();
    }
    report({ message: `${o.host}:${o.port} is free to listen on (path ${o.path})`, done: true });
    const auth = o.bearer_token ? 'a bearer token' : o.signature ? `a ${o.signature.style}-style HMAC signature` : undefined;
    report({ message: auth ? `requests must carry ${auth}` : 'requests are not authenticated (set bearer_token or signature)', done: true });
    return;
  }
  const o = parsed(sinkOptions(), options);
  if (o.url.includes('{{')) {
    report({ message: `the url ${o.url} depends on the record; nothing to connect to yet`, done: true });
    return;
  }
  const u = new URL(o.url);
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  const host = u.hostname.replace(/^\[|\]$/g, '');
  try {
    await new Promise<void>((resolve, reject) => {
      const s =
        u.protocol === 'https:'
          ? tlsConnect({ host, port, servername: host, rejectUnauthorized: !o.insecure_skip_verify }, () => (s.end(), resolve()))
          : tcpConnect({ host, port }, () => (s.end(), resolve()));
      s.setTimeout(o.timeout, () => s.destroy(new Error(`no answer within ${o.timeout} ms`)));
      s.once('error', reject);
      signal.addEventListener('abort', () => s.destroy(new Error('cancelled')), { once: true });
    });
  } catch (e) {
    report({ message: `cannot connect to ${displayUrl(o.url)}: ${errorMessage(e)}`, error: true });
    throw new SluiceError('CONNECT', `webhook sink cannot connect to ${displayUrl(o.url)}: ${errorMessage(e)}`, { cause: e });
  }
  report({ message: `connected to ${host}:${port}${u.protocol === 'https:' ? ' (TLS verified)' : ''}`, done: true });
}
