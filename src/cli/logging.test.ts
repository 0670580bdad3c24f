import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import pino from 'pino';
import { scrubUrlCredentials, SECRET_KEYS } from './logging.js';

describe('secrets in logs', () => {
  it('hides passwords written into URLs', () => {
    expect(scrubUrlCredentials('cannot reach amqp://guest:hunter2@127.0.0.1:5672/')).toBe('cannot reach amqp://guest:***@127.0.0.1:5672/');
    expect(scrubUrlCredentials('redis://:pw@h:6379 and nats://u:p@x')).toBe('redis://:***@h:6379 and nats://u:***@x');
    expect(scrubUrlCredentials('no url here')).toBe('no url here');
  });

  it('redacts secret keys wherever they appear in a log line', async () => {
    const lines: string[] = [];
    const out = new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) });
    const log = pino({ redact: { paths: SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]), censor: '[redacted]' } }, out);
    log.info({ config: { password: 'hunter2', auth: { token: 'abc123' } }, schema_registry_api_secret: 'zzz' }, 'x');
    expect(lines.join('')).not.toMatch(/hunter2|abc123|zzz/);
  });
});
