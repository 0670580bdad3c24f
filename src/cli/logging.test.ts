import { describe, expect, it } from 'vitest';
import { createLogger, scrubLogObject, scrubUrlCredentials } from './logging.js';

describe('secrets in logs', () => {
  it('hides passwords written into URLs', () => {
    expect(scrubUrlCredentials('cannot reach amqp://guest:hunter2@127.0.0.1:5672/')).toBe('cannot reach amqp://guest:***@127.0.0.1:5672/');
    expect(scrubUrlCredentials('redis://:pw@h:6379 and nats://u:p@x')).toBe('redis://:***@h:6379 and nats://u:***@x');
    expect(scrubUrlCredentials('no url here')).toBe('no url here');
  });

  it("hides URL passwords in a log line without changing the caller's object", () => {
    const options = { url: 'amqp://guest:hunter2@127.0.0.1:5672/', queue: 'q' };
    expect(scrubLogObject(options)).toEqual({ url: 'amqp://guest:***@127.0.0.1:5672/', queue: 'q' });
    // Connectors log their live options: a scrubbed URL written back would be used on the next reconnect.
    expect(options.url).toBe('amqp://guest:hunter2@127.0.0.1:5672/');
    const plain = { url: 'amqp://127.0.0.1/', n: 1 };
    expect(scrubLogObject(plain)).toBe(plain);
  });

  it('redacts secret keys wherever they appear in a log line, child bindings included', () => {
    const lines: string[] = [];
    const { log } = createLogger({ format: 'json', level: 'info', out: { write: (c: string | Buffer) => lines.push(String(c)) } });
    log.info({ config: { password: 'hunter2', auth: { token: 'abc123' } }, schema_registry_api_secret: 'zzz' }, 'x');
    log.child({ sasl_password: 'pw-in-binding' }).info({ url: 'nats://u:natspw@127.0.0.1:4222' }, 'y');
    const text = lines.join('');
    expect(lines).toHaveLength(2);
    expect(text).not.toMatch(/hunter2|abc123|zzz|pw-in-binding|natspw/);
    expect(text).toContain('[redacted]');
  });
});
