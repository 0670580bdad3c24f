// `sluice serve`: the control plane in one process (REST API, embedded store, the pipelines it runs).

import { Command, Option } from 'commander';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import { errorMessage } from '../core/errors.js';
import { SECRET_KEYS } from '../cli/logging.js';
import { buildApp } from './app.js';
import { openStore } from './store.js';
import { Scrubber, SecretBox } from './secrets.js';

export interface ServeOptions {
  host: string;
  port: number;
  dataDir: string;
  store?: string;
  tokens: string[];
  insecure: boolean;
  logFormat?: 'json' | 'pretty';
  logLevel?: string;
}

export class ServeUsageError extends Error {}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const h = host.replace(/^\[|\]$/g, '');
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./i.test(h);
  return false;
}

/** A logger whose every line passes the secret scrubber: values of stored secrets never reach the log. */
function serverLogger(scrubber: Scrubber, format: 'json' | 'pretty' | undefined, level: string): Logger {
  const dest = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      process.stderr.write(scrubber.scrub(chunk.toString()));
      cb();
    },
  });
  const fmt = format ?? (process.stderr.isTTY ? 'pretty' : 'json');
  const stream = fmt === 'pretty' ? pretty({ destination: dest, colorize: !!process.stderr.isTTY, sync: true, ignore: 'pid,hostname' }) : dest;
  return pino(
    {
      level,
      base: undefined,
      redact: { paths: [...SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]), 'req.headers.authorization'], censor: '[redacted]' },
    },
    stream as pino.DestinationStream,
  );
}

/** Starts the server; resolves once it listens, with a function that drains pipelines and closes everything. */
export async function serve(o: ServeOptions): Promise<{ port: number; close(): Promise<void> }> {
  if (!o.tokens.length && !isLoopback(o.host) && !o.insecure) {
    throw new ServeUsageError(`refusing to listen on '${o.host}' without an API token: set --api-token (or SLUICE_API_TOKEN), bind to 127.0.0.1, or pass --insecure`);
  }
  const scrubber = new Scrubber();
  scrubber.add(o.tokens);
  const log = serverLogger(scrubber, o.logFormat, o.logLevel ?? 'info');
  const box = new SecretBox(process.env.SLUICE_SECRET_KEY || undefined);
  if (process.env.SLUICE_SECRET_KEY) scrubber.add([process.env.SLUICE_SECRET_KEY]);
  const storeSpec = o.store ?? `sqlite:${join(o.dataDir, 'sluice.db')}`;
  const store = await openStore(storeSpec);
  const { app, manager, ready } = await buildApp({ store, box, scrubber, log, dataDir: o.dataDir, tokens: o.tokens, initialBackoffMs: Number(process.env.SLUICE_RESTART_BACKOFF_MS) || undefined });
  await app.listen({ host: o.host, port: o.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  log.info({ host: o.host, port, store: store.description, auth: o.tokens.length > 0, secrets_encrypted: box.enabled }, 'sluice server listening');
  if (!o.tokens.length && !isLoopback(o.host)) log.warn('listening beyond loopback without authentication (--insecure)');
  if (!box.enabled) log.warn('SLUICE_SECRET_KEY is not set: secrets are stored unencrypted (still redacted in every response)');
  await ready();
  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closing ??= (async () => {
        await app.close();
        await manager.shutdown();
        await store.close();
      })()),
  };
}


/** Adds `serve` to the `sluice` program. */
