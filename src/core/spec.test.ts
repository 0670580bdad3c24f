import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { bool, builtOptionSchemas, defineConnector, describeOptions, duration, lazyOptions, list, num, opt, parseOptions, size, toJsonSchema } from './spec.js';
import { formatIssue } from './errors.js';

const options = z.strictObject({
  url: opt(z.string(), { description: 'Server URL.', aliases: ['endpoint', 'websocket.url'] }),
  group_id: opt(z.string().optional(), { description: 'Consumer group.', aliases: ['group'] }),
  password: opt(z.string().optional(), { description: 'Password.', secret: true }),
  interval: duration({ default: '200ms', description: 'Interval.' }),
  max_bytes: size({ default: '1MiB', description: 'Size.' }),
  enabled: bool({ default: true, description: 'On?' }),
  retries: num({ default: 3, int: true, min: 0, description: 'Retries.' }),
  servers: list(z.string(), { description: 'Servers.' }).optional(),
  tls: z
    .strictObject({
      disable: bool({ default: false, description: 'No TLS.' }),
      skip_verify_server: bool({ default: false, description: 'Skip verification.', aliases: ['insecure_skip_verify'] }),
    })
    .optional()
    .meta({ description: 'TLS settings.' }),
});

const parse = (input: unknown) => parseOptions(options, input, ['config']);

describe('option specs', () => {
  it('maps aliases, camelCase and dotted spellings to canonical names', () => {
    const r = parse({ 'websocket.url': 'ws://x', groupId: 'g', 'tls.skip_verify_server': 'true', 'tls.disable': false });
    expect(r.ok && r.value).toMatchObject({ url: 'ws://x', group_id: 'g', tls: { skip_verify_server: true, disable: false } });
    const r2 = parse({ endpoint: 'ws://y', tls: { insecure_skip_verify: true } });
    expect(r2.ok && r2.value).toMatchObject({ url: 'ws://y', tls: { skip_verify_server: true } });
  });

  it('applies defaults and parses durations, sizes, booleans, numbers and lists given as strings', () => {
    const r = parse({ url: 'u', interval: '1m30s', max_bytes: '10KB', enabled: 'false', retries: '5', servers: 'a:1, b:2' });
    expect(r.ok && r.value).toMatchObject({ interval: 90_000, max_bytes: 10_000, enabled: false, retries: 5, servers: ['a:1', 'b:2'] });
    const d = parse({ url: 'u' });
    expect(d.ok && d.value).toMatchObject({ interval: 200, max_bytes: 1024 * 1024, enabled: true, retries: 3 });
  });

  it('reports unknown keys with a suggestion, using the path the user wrote', () => {
    const r = parse({ url: 'u', intervall: '1s', tls: { disabel: true } });
    expect(r.ok).toBe(false);
    const msgs = !r.ok ? r.issues.map(formatIssue) : [];
    expect(msgs).toContain("config.intervall: unknown option 'intervall'; did you mean 'interval'?");
    expect(msgs).toContain("config.tls.disabel: unknown option 'disabel'; did you mean 'disable'?");
  });

  it('names a missing required option and keeps the alias spelling in error paths', () => {
    const r = parse({});
    expect(!r.ok && r.issues.map(formatIssue)).toEqual(["config.url: missing required option 'url'"]);
    const r2 = parse({ endpoint: 42 });
    expect(!r2.ok && r2.issues.map(formatIssue)).toEqual(['config.endpoint: expected string, got number 42']);
  });

  it('rejects two spellings of one option', () => {
    const r = parse({ url: 'a', endpoint: 'b' });
    expect(!r.ok && r.issues[0]!.message).toMatch(/'endpoint' and 'url' set the same option 'url'/);
  });

  it('never echoes the value of a secret option in an error', () => {
    const r = parse({ url: 'u', password: 123456789 });
    const msg = !r.ok ? r.issues.map(formatIssue).join('\n') : '';
    expect(msg).toMatch(/config.password: expected string, got number/);
    expect(msg).not.toContain('123456789');
  });

  it('exports JSON Schema and a readable option table with types, defaults, aliases and secrets', () => {
    const js = toJsonSchema(options) as { properties: Record<string, Record<string, unknown>> };
    expect(js.properties.url!.aliases).toEqual(['endpoint', 'websocket.url']);
    expect(js.properties.interval!['x-kind']).toBe('duration');
    const docs = describeOptions(options);
    const byName = Object.fromEntries(docs.map((d) => [d.name, d]));
    expect(byName.url).toMatchObject({ type: 'string', required: true, aliases: ['endpoint', 'websocket.url'] });
    expect(byName.interval).toMatchObject({ type: 'duration', default: '200ms', required: false });
    expect(byName.retries).toMatchObject({ default: 3 });
    expect(byName.password).toMatchObject({ secret: true });
    expect(byName.tls!.children!.map((c) => c.name)).toEqual(['disable', 'skip_verify_server']);
  });
});

describe('nested spellings of dotted aliases', () => {
  it('accepts `a: { b: v }` where `a.b` is an alias', () => {
    const o = z.strictObject({ registry_url: opt(z.string(), { description: 'Registry.', aliases: ['schemaRegistryEnum.endpoint'] }) });
    const r = parseOptions(o, { schemaRegistryEnum: { endpoint: 'http://r:8081' } });
    expect(r.ok && r.value).toEqual({ registry_url: 'http://r:8081' });
  });
});

describe('option schemas built on first use', () => {
  it('builds a connector role\'s options when they are first read, once, and keeps a schema given directly', () => {
    let builds = 0;
    const sinkOptions = lazyOptions('spec-test:sink', () => {
      builds++;
      return z.strictObject({ topic: opt(z.string(), { description: 'Topic.' }) });
    });
    const direct = z.strictObject({ path: opt(z.string(), { description: 'Path.' }) });
    const spec = defineConnector({
      name: 'spec-test',
      title: 'Spec test',
      description: 'test',
      source: { options: direct, create: () => ({ run: async () => undefined }) },
      sink: { options: sinkOptions, create: () => ({ open: async () => undefined, write: async () => undefined }) },
    });
    expect(builds).toBe(0);
    expect(builtOptionSchemas()).not.toContain('spec-test:sink');
    expect(spec.source!.options).toBe(direct);
    const first = spec.sink!.options;
    expect(builds).toBe(1);
    expect(spec.sink!.options).toBe(first);
    expect(sinkOptions()).toBe(first);
    expect(builds).toBe(1);
    expect(builtOptionSchemas().filter((l) => l === 'spec-test:sink')).toHaveLength(1);
    expect(parseOptions(spec.sink!.options, { topc: 'a' })).toMatchObject({ ok: false });
    expect(Object.keys(spec.sink!)).toContain('options');
  });
});
