// pino to stderr: JSON for machines, pretty for people; secrets are redacted by key name wherever they appear.

import pino, { type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import type { StatusLine } from './status.js';

export type LogFormat = 'json' | 'pretty';

/** Keys whose values never reach a log line, whatever object they are in. */
export const SECRET_KEYS = [
  'password', 'passwd', 'token', 'secret', 'api_key', 'apikey', 'api_secret', 'authorization', 'sasl_password', 'private_key',
  'key_password', 'passphrase', 'bearer', 'access_token', 'client_secret', 'secret_key', 'schema_registry_api_key',
  'schema_registry_api_secret', 'schema_registry_password', 'credentials', 'creds', 'nkey', 'seed',
];

export function createLogger(o: { format?: LogFormat; level: string; status?: StatusLine; /** Default: stderr. */ out?: { write(chunk: Buffer | string): unknown } }): {
  log: Logger;
  flush(): Promise<void>;
} {
  const format = o.format ?? (process.stderr.isTTY ? 'pretty' : 'json');
  const status = o.status;
  const out = o.out ?? process.stderr;
  // The status line is cleared before a log line and redrawn after it, so the two never interleave.
  const dest = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      status?.clear();
      out.write(chunk);
      status?.redraw();
      cb();
    },
  });
  // pino-pretty (and its dependencies) is required only for pretty output: JSON logs, the usual case for `run` under a
  // supervisor, do not pay its start-up cost (issue 9). It is CommonJS, so a synchronous require keeps this function sync.
  const pretty = format === 'pretty' ? (createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty) : undefined;
  const stream = pretty ? pretty({ destination: dest, colorize: !!process.stderr.isTTY, sync: true, ignore: 'pid,hostname' }) : dest;
  const log = pino(
    {
      level: o.level,
      base: undefined,
      formatters: { log: scrubLogObject },
      redact: { paths: SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]), censor: '[redacted]' },
    },
    stream as pino.DestinationStream,
  );
  return { log, flush: async () => undefined };
}

const URL_CREDENTIALS = /(\b[a-z][a-z0-9+.-]*:\/\/)([^\s/:@]*):([^\s/@]+)@/gi;

/** `amqp://user:secret@host` -> `amqp://user:***@host`: passwords written into URLs are secrets too. */
export function scrubUrlCredentials(s: string): string {
  return s.includes('://') ? s.replace(URL_CREDENTIALS, '$1$2:***@') : s;
}

/** The log call's own object, or a copy with URL passwords hidden: the caller's object may be live state. */
export function scrubLogObject(obj: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const k in obj) {
    const v = obj[k];
    if (typeof v !== 'string') continue;
    const clean = scrubUrlCredentials(v);
    if (clean !== v) (out ??= { ...obj })[k] = clean;
  }
  return out ?? obj;
}
