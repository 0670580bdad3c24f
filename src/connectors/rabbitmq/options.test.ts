// Option validation: canonical names, the seeds' spellings as aliases, did-you-mean, and the connection parts.

import { describe, expect, it } from 'vitest';
import { parseOptions } from '../../core/spec.js';
import { sinkOptions, sourceOptions } from './index.js';
import { CONSUMER_FRAME_MAX, clientOptions, describeEndpoint, endpointOf } from './connection.js';
import { allBindings, queueArguments } from './source.js';
import { compileTemplate } from './template.js';

const src = (o: Record<string, unknown>) => parseOptions(sourceOptions(), o);
const messages = (r: { ok: boolean; issues?: Array<{ path: (string | number)[]; message: string }> }) =>
  r.ok ? [] : r.issues!.map((i) => `${i.path.join('.')}: ${i.message}`);

describe('rabbitmq options', () => {
  it('applies defaults and accepts the aliases (Laminar/Arroyo and camelCase spellings)', () => {
    const r = src({ uri: 'amqp://u:p@mq:5673/prod', queue_name: 'orders', prefetch_count: '50', virtualHost: 'v1', onFailure: 'dead_letter', dlx: 'dead' });
    expect(r.ok).toBe(true);
    const o = (r as { value: any }).value;
    expect(o).toMatchObject({ url: 'amqp://u:p@mq:5673/prod', queue: 'orders', prefetch: 50, vhost: 'v1', on_failure: 'dead_letter', dead_letter_exchange: 'dead', durable: true, passive: false });
    expect(endpointOf(o)).toEqual({ hostname: 'mq', port: 5673, username: 'u', password: 'p', vhost: 'v1', tls: false });
    expect(queueArguments(o)).toEqual({ 'x-dead-letter-exchange': 'dead' });
    const s = parseOptions(sinkOptions(), { 'rabbitmq.exchange': 'events', routingKey: 'a.{{ b }}', durable: false });
    expect(s.ok && s.value).toMatchObject({ exchange: 'events', routing_key: 'a.{{ b }}', persistent: false });
  });

  it('reports unknown options with a did-you-mean suggestion', () => {
    expect(messages(src({ queue: 'q', prefech: 10 }))).toEqual(["prefech: unknown option 'prefech'; did you mean 'prefetch'?"]);
    expect(messages(parseOptions(sinkOptions(), { routing_kye: 'x' }))).toEqual(["routing_kye: unknown option 'routing_kye'; did you mean 'routing_key'?"]);
  });

  it('rejects bad values with the option named', () => {
    expect(messages(src({}))).toEqual(["queue: missing required option 'queue'"]);
    expect(messages(src({ queue: 'q', url: 'http://x' }))[0]).toMatch(/^url: must be an amqp:\/\/ or amqps:\/\/ URL/);
    expect(messages(src({ queue: 'q', on_failure: 'retry' }))).toEqual(['on_failure: must be one of "requeue", "dead_letter", "drop"']);
    expect(messages(src({ queue: 'q', prefetch: 0 }))[0]).toMatch(/^prefetch: /);
    expect(messages(src({ queue: 'q', routing_key: 'a' }))[0]).toMatch(/need 'exchange'/);
    expect(messages(src({ queue: 'q', passive: true, dead_letter_exchange: 'd' }))[0]).toMatch(/^passive: a passive queue is not declared/);
    expect(messages(parseOptions(sinkOptions(), { routing_key: 'a.{{ 1x }}' }))[0]).toMatch(/routing_key: '\{\{ 1x \}\}' is not a field name/);
    expect(messages(parseOptions(sinkOptions(), { headers: { a: '{{ b' } }))[0]).toMatch(/unbalanced/);
  });

  it('a wrongly typed password is reported without its value', () => {
    const m = messages(src({ queue: 'q', password: 12345678 })).join('\n');
    expect(m).toMatch(/password: expected string, got number/);
    expect(m).not.toContain('12345678');
  });

  it('host/port/username/password/vhost override the URL; the description never shows the password', () => {
    const r = src({ queue: 'q', url: 'amqps://a:b@h1/%2Fx', host: 'h2', username: 'me', password: 'pw', tls: { skip_verify: true } });
    const e = endpointOf((r as { value: any }).value);
    expect(e).toEqual({ hostname: 'h2', port: 5671, username: 'me', password: 'pw', vhost: '/x', tls: true });
    expect(describeEndpoint(e)).toBe('amqps://me@h2:5671/%2Fx');
    expect(endpointOf((src({ queue: 'q' }) as { value: any }).value)).toEqual({ hostname: '127.0.0.1', port: 5672, username: 'guest', password: 'guest', vhost: '/', tls: false });
  });

  it('merges the exchange shorthand into the bindings, one binding per key', () => {
    const r = src({ queue: 'q', exchange: 'ev', routing_key: 'a.*,b.#', exchange_type: 'topic', bindings: [{ exchange: 'other', binding_key: 'k' }] });
    expect(allBindings((r as { value: any }).value)).toEqual([
      { exchange: 'other', routing_key: ['k'] },
      { exchange: 'ev', routing_key: ['a.*', 'b.#'], exchange_type: 'topic', arguments: undefined },
    ]);
  });

  it('templates read fields, nested fields and metadata, and name a missing field', () => {
    const t = compileTemplate('x.{{ region }}.{{ a.b }}.{{ _routing_key }}', 'routing_key');
    expect(t.render({ value: { region: 'eu', a: { b: 7 } }, meta: { _routing_key: 'rk' } })).toBe('x.eu.7.rk');
    expect(() => t.render({ value: { region: 'eu' } })).toThrow("routing_key 'x.{{ region }}.{{ a.b }}.{{ _routing_key }}': the record has no field 'a.b'");
    expect(compileTemplate('plain', 'routing_key').constant).toBe(true);
  });

  it('consumers ask for the client default frame size, publishers for 128 KiB frames', () => {
    const o = (src({ queue: 'q' }) as { value: any }).value;
    expect(CONSUMER_FRAME_MAX).toBe(8192);
    expect(clientOptions(o).frameMax).toBe(131072);
    expect(clientOptions(o, endpointOf(o), CONSUMER_FRAME_MAX).frameMax).toBe(8192);
  });
});
