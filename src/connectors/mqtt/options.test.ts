// Option spellings users bring from eKuiper and other tools, validation messages, topic filters and topic templates.

import { describe, expect, it } from 'vitest';
import { parseOptions } from '../../core/spec.js';
import { formatIssue } from '../../core/errors.js';
import { clientOptions, compileFilter } from './connection.js';
import { sinkOptions, sourceOptions } from './options.js';
import { compileFieldTemplate } from './template.js';

function source(input: Record<string, unknown>) {
  const r = parseOptions(sourceOptions(), input);
  if (!r.ok) throw new Error(r.issues.map(formatIssue).join('\n'));
  return r.value;
}

function issues(schema: Parameters<typeof parseOptions>[0], input: Record<string, unknown>): string[] {
  const r = parseOptions(schema, input);
  return r.ok ? [] : r.issues.map(formatIssue);
}

describe('mqtt options', () => {
  it('accepts the eKuiper connection profile and stream spellings', () => {
    const o = source({
      servers: 'tcp://127.0.0.1:1883, ssl://backup:8883',
      datasource: 'sensors/+/temp',
      clientid: 'edge-1',
      cleanSession: 'false',
      protocolVersion: 3,
      certificationPath: '/c.pem',
      privateKeyPath: '/k.pem',
      rootCaPath: '/ca.pem',
      insecureSkipVerify: true,
      qos: '2',
    });
    expect(o.server).toEqual(['tcp://127.0.0.1:1883', 'ssl://backup:8883']);
    expect(o.topic).toEqual(['sensors/+/temp']);
    expect(o.client_id).toBe('edge-1');
    expect(o.clean_session).toBe(false);
    expect(o.protocol_version).toBe('3.1');
    expect(o.certification_path).toBe('/c.pem');
    expect(o.private_key_path).toBe('/k.pem');
    expect(o.root_ca_path).toBe('/ca.pem');
    expect(o.insecure_skip_verify).toBe(true);
    expect(o.qos).toBe(2);
  });

  it('maps protocol versions 3, 4, 5 and 3.1.1 and defaults to 5, QoS 1 and the local broker', () => {
    expect(source({ topic: 't', protocol_version: 4 }).protocol_version).toBe('3.1.1');
    expect(source({ topic: 't', protocol_version: '3.1.1' }).protocol_version).toBe('3.1.1');
    expect(source({ topic: 't', protocol_version: 5 }).protocol_version).toBe('5');
    const d = source({ topic: 'a,b/#' });
    expect(d.protocol_version).toBe('5');
    expect(d.qos).toBe(1);
    expect(d.server).toEqual(['tcp://127.0.0.1:1883']);
    expect(d.topic).toEqual(['a', 'b/#']);
    expect(clientOptions(source({ topic: 't', protocol_version: 3 })).options).toMatchObject({ protocolVersion: 3, protocolId: 'MQIsdp' });
    expect(clientOptions(source({ topic: 't', protocol_version: '3.1.1' })).options).toMatchObject({ protocolVersion: 4, protocolId: 'MQTT' });
    expect(issues(sourceOptions(), { topic: 't', protocol_version: 6 })[0]).toMatch(/protocol_version: must be one of .*"3.1.1"/);
  });

  it('reports unknown options with a suggestion, and conflicting aliases', () => {
    expect(issues(sourceOptions(), { topc: 'a' })).toContain("topc: unknown option 'topc'; did you mean 'topic'?");
    expect(issues(sourceOptions(), { topic: 'a', clientidd: 'x' })[0]).toMatch(/did you mean 'clientid'/);
    expect(issues(sourceOptions(), { topic: 'a', server: 'tcp://a:1883', servers: ['tcp://b:1883'] })[0]).toMatch(/'servers' and 'server' set the same option 'server'/);
  });

  it('rejects bad servers, topic filters, QoS and a persistent session without a client id', () => {
    expect(issues(sourceOptions(), { topic: 'a', server: 'http://x:1883' })[0]).toMatch(/server\[0\]: must be a URL with scheme tcp:\/\//);
    expect(issues(sourceOptions(), { topic: 'a/#/b' })[0]).toMatch(/topic: 'a\/#\/b': '#' must be a whole level and the last one/);
    expect(issues(sourceOptions(), { topic: 'a/b+' })[0]).toMatch(/'\+' must be a whole level/);
    expect(issues(sourceOptions(), { topic: '$share/g' })[0]).toMatch(/\$share\/<group>\/<topic filter>/);
    expect(issues(sourceOptions(), { topic: 'a', qos: 3 })).toEqual(['qos: QoS must be 0, 1 or 2']);
    expect(issues(sourceOptions(), { topic: 'a', clean_session: false })).toEqual([
      'client_id: a persistent session (clean_session: false) needs a fixed client_id, or the broker cannot find it again',
    ]);
    expect(issues(sourceOptions(), { topic: 'a', certificationPath: '/c.pem' })[0]).toMatch(/private_key_path: mutual TLS needs both/);
    expect(issues(sourceOptions(), {})[0]).toMatch(/topic: missing required option 'topic'/);
  });

  it('never shows a password in a validation message', () => {
    const msgs = issues(sourceOptions(), { topic: 'a', password: 12345678 });
    expect(msgs[0]).toMatch(/password: expected string, got number/);
    expect(msgs.join()).not.toContain('12345678');
  });

  it('checks sink topics and user property templates', () => {
    expect(issues(sinkOptions(), { topic: 'out/+' })[0]).toMatch(/cannot contain the wildcards/);
    expect(issues(sinkOptions(), { topic: 'out/{{ a b }}' })[0]).toMatch(/'\{\{ a b \}\}' is not a field name/);
    expect(issues(sinkOptions(), { topic: 'out/{{ a' })[0]).toMatch(/unbalanced/);
    const r = parseOptions(sinkOptions(), { topic: 'o/{{ id }}', userProperties: 'src:sluice,dev:{{ d.id }}', retained: true });
    expect(r.ok && r.value.user_properties).toEqual({ src: 'sluice', dev: '{{ d.id }}' });
    expect(r.ok && r.value.retain).toBe(true);
  });
});

describe('topic filters', () => {
  it('match per MQTT rules', () => {
    const m = (f: string, t: string) => compileFilter(f)(t);
    expect(m('a/+/c', 'a/b/c')).toBe(true);
    expect(m('a/+/c', 'a/b/d')).toBe(false);
    expect(m('a/+/c', 'a//c')).toBe(true);
    expect(m('a/+', 'a/b/c')).toBe(false);
    expect(m('a/#', 'a')).toBe(true);
    expect(m('a/#', 'a/b/c')).toBe(true);
    expect(m('a/#', 'ab/c')).toBe(false);
    expect(m('#', '$SYS/x')).toBe(false);
    expect(m('+/x', '$SYS/x')).toBe(false);
    expect(m('$SYS/#', '$SYS/x')).toBe(true);
    expect(m('$share/g/a/+', 'a/b')).toBe(true);
    expect(m('a/b', 'a/b')).toBe(true);
    expect(m('a/b', 'a/bc')).toBe(false);
  });
});

describe('topic templates', () => {
  it('render fields, nested fields and metadata, and name what is missing', () => {
    const t = compileFieldTemplate('out/{{ site }}/{{ dev.id }}/{{ _topic }}', 'topic');
    expect(t.render({ value: { site: 'x', dev: { id: 7 } }, meta: { _topic: 'in/a' } })).toBe('out/x/7/in/a');
    expect(() => t.render({ value: { site: 'x' }, meta: {} })).toThrow("topic 'out/{{ site }}/{{ dev.id }}/{{ _topic }}': the record has no value for {{ dev.id }}");
    expect(compileFieldTemplate('fixed', 'topic').constant).toBe(true);
  });
});
