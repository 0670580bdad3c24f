// Option validation: aliases of the seed products, did-you-mean, security combinations. No broker needed.

import { describe, expect, it } from 'vitest';
import { parseOptions } from '../../core/spec.js';
import { formatIssue } from '../../core/errors.js';
import { loadConfigText } from '../../config/load.js';
import { kafkaConfig } from './client.js';
import { resolveSecurity, sinkOptions, sourceOptions, type KafkaSourceOptions } from './options.js';
import { compileFieldTemplate } from './template.js';
import { KafkaSource } from './source.js';
import pino from 'pino';

function src(o: Record<string, unknown>) {
  return parseOptions(sourceOptions(), o);
}
function errors(r: ReturnType<typeof src> | ReturnType<typeof parseOptions>): string[] {
  return r.ok ? [] : r.issues.map(formatIssue);
}
function ok(o: Record<string, unknown>): KafkaSourceOptions {
  const r = src(o);
  if (!r.ok) throw new Error(errors(r).join('\n'));
  return r.value;
}

describe('kafka options', () => {
  it('accepts the Timeplus names', () => {
    const o = ok({ brokers: 'k1:9092, k2:9092', topic: 'orders', offset: 'earliest', group: 'g1', sasl: 'SCRAM-SHA-256', username: 'u', password: 'p', 'tls.skip_verify_server': true });
    expect(o.brokers).toEqual(['k1:9092', 'k2:9092']);
    expect(o.topic).toEqual(['orders']);
    expect(resolveSecurity(o)).toMatchObject({ sasl: { mechanism: 'scram-sha-256', username: 'u', password: 'p' }, tls: { rejectUnauthorized: false } });
  });

  it("accepts Laminar's names and its nested authentication profile", () => {
    const o = ok({
      bootstrapServers: 'k1:9092',
      topic: 'orders',
      'source.offset': 'group',
      groupId: 'order_processor',
      authentication: { protocol: 'SASL_SSL', mechanism: 'SCRAM-SHA-512', username: 'app', password: 'secret' },
    });
    expect(o.group).toBe('order_processor');
    expect(resolveSecurity(o)).toMatchObject({ sasl: { mechanism: 'scram-sha-512', username: 'app' }, tls: { rejectUnauthorized: true } });
    expect(resolveSecurity(ok({ bootstrap_servers: ['k:1'], topic: 't', authentication: { protocol: 'SASL_PLAINTEXT', mechanism: 'PLAIN', username: 'a', password: 'b' } })).tls).toBeUndefined();
  });

  it('reports unknown options with a did-you-mean', () => {
    expect(errors(src({ brokers: 'k:1', topic: 't', ofset: 'earliest' }))).toEqual(["ofset: unknown option 'ofset'; did you mean 'offset'?"]);
    expect(errors(src({ brokers: 'k:1', topic: 't', 'tls.skip_verify_sever': true }))[0]).toMatch(/did you mean 'skip_verify_server'/);
    expect(errors(parseOptions(sinkOptions(), { brokers: 'k:1', topic: 't', key_feild: 'id' }))[0]).toMatch(/did you mean 'key_field'/);
  });

  it('requires a topic and brokers, and validates regex topics', () => {
    expect(errors(src({ brokers: 'k:1' })).join()).toMatch(/missing required option 'topic'/);
    expect(errors(src({ topic: 't' })).join()).toMatch(/brokers/);
    expect(errors(src({ brokers: 'k:1', topic: '/[unclosed/' })).join()).toMatch(/not a valid regular expression/);
    expect(ok({ brokers: 'k:1', topic: '/^orders-.*/' }).topic).toEqual(['/^orders-.*/']);
  });

  it('checks SASL and TLS combinations, naming the options', () => {
    expect(errors(src({ brokers: 'k:1', topic: 't', sasl: 'plain', username: 'u' }))).toEqual(["password: sasl 'plain' needs a password"]);
    expect(errors(src({ brokers: 'k:1', topic: 't', username: 'u', password: 'p' }))[0]).toMatch(/username: a username\/password needs a SASL mechanism/);
    expect(errors(src({ brokers: 'k:1', topic: 't', sasl: 'kerberos' }))[0]).toMatch(/sasl: must be one of "none", "plain", "scram-sha-256", "scram-sha-512"/);
    expect(errors(src({ brokers: 'k:1', topic: 't', authentication: { protocol: 'SASL_SSL', username: 'u', password: 'p' } }))[0]).toMatch(/authentication.mechanism: protocol SASL_SSL needs a mechanism/);
    expect(errors(src({ brokers: 'k:1', topic: 't', tls: { key: '/x.key' } }))[0]).toMatch(/tls.cert: tls.key needs tls.cert/);
    expect(errors(src({ brokers: 'k:1', topic: 't', tls: { disable: true }, authentication: { protocol: 'SSL' } }))[0]).toMatch(/tls.disable: contradicts authentication.protocol SSL/);
  });

  it('turns TLS on with any TLS option and off with tls.disable; a secret never appears in errors', () => {
    expect(resolveSecurity(ok({ brokers: 'k:1', topic: 't' })).tls).toBeUndefined();
    expect(resolveSecurity(ok({ brokers: 'k:1', topic: 't', 'tls.disable': false })).tls).toBeDefined();
    expect(resolveSecurity(ok({ brokers: 'k:1', topic: 't', tls: { enabled: true } })).tls).toBeDefined();
    expect(resolveSecurity(ok({ brokers: 'k:1', topic: 't', 'tls.disable': true, 'tls.skip_verify_server': true })).tls).toBeUndefined();
    expect(() => resolveSecurity(ok({ brokers: 'k:1', topic: 't', tls: { ca: '/nonexistent/ca.pem' } }))).toThrow(/tls.ca: cannot read '\/nonexistent\/ca.pem'/);
    const bad = errors(src({ brokers: 'k:1', topic: 't', sasl: 'plain', username: 'u', password: 12345 }));
    expect(bad.join()).not.toContain('12345');
    const cfg = kafkaConfig(ok({ brokers: 'k:1', topic: 't', sasl: 'plain', username: 'u', password: 'hunter2' }), pino({ level: 'silent' }));
    expect(cfg.sasl).toMatchObject({ mechanism: 'plain', username: 'u' });
  });

  it("routes KafkaJS's log lines into the pipeline log at debug, with scalar fields only", () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const cfg = kafkaConfig(ok({ brokers: 'k:1', topic: 't', sasl: 'plain', username: 'u', password: 'hunter2' }), log);
    const entry = cfg.logCreator!(4)({ namespace: 'Connection', level: 1, label: 'ERROR', log: { timestamp: 'x', message: 'Connection error', broker: 'k:1', request: { password: 'hunter2' } } as never });
    expect(entry).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 20, msg: 'Connection error', kafkajs: 'Connection', kafkajs_level: 'ERROR', broker: 'k:1' });
    expect(JSON.stringify(lines)).not.toContain('hunter2');
  });

  it('exposes the schema registry settings on the source as `registry`, from the Timeplus or the Laminar names', () => {
    const s = new KafkaSource(ok({ brokers: 'k:1', topic: 't', schema_registry_address: 'http://sr:8081', schema_registry_api_key: 'key', schema_registry_api_secret: 'sec' }));
    expect(s.registry).toEqual({ url: 'http://sr:8081', api_key: 'key', api_secret: 'sec' });
    const l = new KafkaSource(ok({ brokers: 'k:1', topic: 't', schemaRegistryEnum: { endpoint: 'http://sr:8081' } }));
    expect(l.registry).toEqual({ url: 'http://sr:8081', api_key: undefined, api_secret: undefined });
  });

  it('sink: acks, compression without a codec, idempotence and exactly-once constraints', () => {
    const sink = (o: Record<string, unknown>) => parseOptions(sinkOptions(), { brokers: 'k:1', topic: 't', ...o });
    const v = sink({ required_acks: -1, compression: 'GZIP', commitMode: 'exactly_once' });
    expect(v.ok && v.value).toMatchObject({ acks: 'all', compression: 'gzip', commit_mode: 'exactly_once' });
    expect(errors(sink({ compression: 'snappy' }))).toEqual(["compression: compression 'snappy' needs the kafkajs-snappy codec, which is not installed; use 'gzip' or 'none'"]);
    expect(errors(sink({ compression: 'zstd' }))[0]).toMatch(/needs the @kafkajs\/zstd codec/);
    expect(errors(sink({ idempotent: true, acks: 1 }))[0]).toMatch(/idempotent: an idempotent producer needs acks 'all'/);
    expect(errors(sink({ key_field: 'a', key: '{{ b }}' }))[0]).toMatch(/set either `key_field` or `key`/);
    expect(errors(sink({ topic: 'x-{{ a b }}' }))[0]).toMatch(/'\{\{ a b \}\}' is not a field name/);
  });

  it('field templates substitute fields, dotted paths and metadata, and name a missing field', () => {
    const t = compileFieldTemplate('orders-{{ region }}-{{ customer.tier }}-{{ _partition }}');
    expect(t.render({ value: { region: 'eu', customer: { tier: 1 } }, meta: { _partition: 2 } })).toBe('orders-eu-1-2');
    expect(() => t.render({ value: { customer: {} } })).toThrow(/field 'region' is missing/);
    expect(compileFieldTemplate('plain').constant).toBe('plain');
  });

  it('a YAML pipeline takes data_type as the format and the Laminar table fields', () => {
    const doc = loadConfigText(
      [
        'name: p',
        'source:',
        '  connector: kafka',
        '  config: { bootstrap_servers: "k:9092", topic: events, type: source, data_type: json, "source.offset": earliest }',
        'sink: { connector: stdout }',
      ].join('\n'),
      'p.yaml',
      { env: {} },
    );
    const p = doc.pipelines[0]!;
    expect(p.source.format.name).toBe('json');
    expect(p.source.options).toMatchObject({ brokers: ['k:9092'], topic: ['events'], offset: 'earliest' });
  });
});
