// The Redis source, sink, lookup table, test() and autocomplete against the real server on 127.0.0.1:6379.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFormat } from '../../formats/index.js';
import { parseOptions } from '../../core/spec.js';
import { collectSource, sinkContext, writeAll } from '../../testing/harness.js';
import { ensureService } from '../../testing/services.js';
import type { SluiceRecord } from '../../core/types.js';
import type { Client } from './client.js';
import { lookupOptions, sinkOptions, sourceOptions, spec } from './index.js';
import { RedisLookup } from './lookup.js';
import { RedisSink } from './sink.js';
import { RedisSource } from './source.js';
import { addEntries, adminClient, cleanup, parsed, pendingCount, uniquePrefix, waitFor } from './testkit.js';

let admin: Client;
const P = uniquePrefix('unit');

beforeAll(async () => {
  await ensureService('redis');
  admin = await adminClient();
}, 60_000);

afterAll(async () => {
  if (admin) {
    await cleanup(admin, P);
    admin.destroy();
  }
});

const json = () => createFormat({ name: 'json', options: {} });
const values = (rs: SluiceRecord[]) => rs.map((r) => JSON.parse(String(r.value)));

describe('options', () => {
  it('accepts the seeds\' spellings as aliases and infers the mode', () => {
    const s = parseOptions(sinkOptions(), { addr: '127.0.0.1:6379', dataType: 'string', field: 'id', expiration: '10s', db: '2' });
    expect(s.ok).toBe(true);
    if (s.ok) expect(s.value).toMatchObject({ url: '127.0.0.1:6379', mode: 'set', key_field: 'id', ttl: 10_000, db: 2 });
    const l = parseOptions(sinkOptions(), { address: 'redis://h:1', type: 'list', list_prefix: 'q:', key_column: 'user', operation: 'prepend', max_length: 5 });
    expect(l.ok && l.value).toMatchObject({ mode: 'list', key_prefix: 'q:', key_field: 'user', push: 'left', max_len: 5 });
    const src = parseOptions(sourceOptions(), { stream: 'orders', consumer_group: 'g', batch_size: 10 });
    expect(src.ok && src.value).toMatchObject({ mode: 'stream', streams: ['orders'], group: 'g', count: 10, payload_field: 'payload' });
    const whole = parseOptions(sourceOptions(), { streams: 'a,b', payload_field: '*' });
    expect(whole.ok && whole.value).toMatchObject({ streams: ['a', 'b'], payload_field: null });
    expect(parseOptions(sourceOptions(), { channels: 'x', patterns: ['y.*'] }).ok && true).toBe(true);
    const lk = parseOptions(lookupOptions(), { addr: '127.0.0.1:6379', datatype: 'HASH', cacheTtl: '5s' });
    expect(lk.ok && lk.value).toMatchObject({ value_type: 'hash', cache_ttl: 5000 });
  });

  it('reports unknown options with a suggestion and mode problems by option name', () => {
    const typo = parseOptions(sourceOptions(), { streams: 'a', consumr: 'x' });
    expect(typo.ok).toBe(false);
    if (!typo.ok) expect(typo.issues[0]!.message).toBe("unknown option 'consumr'; did you mean 'consumer'?");
    const none = parseOptions(sourceOptions(), {});
    expect(!none.ok && none.issues[0]!.message).toMatch(/nothing to read: set `streams`/);
    const both = parseOptions(sourceOptions(), { streams: 'a', channels: 'b' });
    expect(!both.ok && both.issues[0]!.message).toMatch(/choose one with `mode`/);
    const needs = parseOptions(sinkOptions(), { mode: 'stream' });
    expect(!needs.ok && needs.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual(["key: mode 'stream' needs `key` (the stream to write to)"]);
    const tpl = parseOptions(sinkOptions(), { key: 'user:{{ id' });
    expect(!tpl.ok && tpl.issues[0]!.message).toMatch(/missing '}}'/);
    const bad = parseOptions(sourceOptions(), { streams: 'a', start_id: 'latest' });
    expect(!bad.ok && bad.issues[0]!.message).toMatch(/must be '\$'/);
    const pw = parseOptions(sourceOptions(), { streams: 'a', password: 123 });
    expect(!pw.ok && pw.issues[0]!.message).toBe('expected string, got number');
  });
});

describe('source', () => {
  it('stream: reads with a consumer group, exposes _stream/_id, and XACKs only what was committed', async () => {
    const stream = `${P}s1`;
    await addEntries(admin, stream, 0, 50);
    const o = parsed(sourceOptions(), { streams: stream, group: 'g1', consumer: 'c1', start_id: '0', count: 20, block: '100ms' });
    const got = await collectSource(new RedisSource(o), { limit: 50, timeoutMs: 10_000 });
    expect(values(got.records).map((v) => v.i)).toEqual([...Array(50).keys()]);
    expect(got.records[0]!.meta).toMatchObject({ _stream: stream });
    expect(String(got.records[0]!.meta!._id)).toMatch(/^\d+-\d+$/);
    expect(got.records[0]!.timestamp).toBeGreaterThan(Date.now() - 60_000);
    expect(await pendingCount(admin, stream, 'g1')).toBe(0);

    // Without commits every entry stays pending; the same consumer re-reads them first on its next start.
    await addEntries(admin, stream, 50, 10);
    const uncommitted = await collectSource(new RedisSource(o), { limit: 10, timeoutMs: 10_000, autoCommit: false });
    expect(uncommitted.records).toHaveLength(10);
    expect(await pendingCount(admin, stream, 'g1')).toBe(10);
    const again = await collectSource(new RedisSource(o), { limit: 10, timeoutMs: 10_000 });
    expect(values(again.records).map((v) => v.i)).toEqual([50, 51, 52, 53, 54, 55, 56, 57, 58, 59]);
    expect(await pendingCount(admin, stream, 'g1')).toBe(0);
  });

  it('stream: payload_field * makes the whole entry the row; a missing payload field is bad data', async () => {
    const stream = `${P}s2`;
    await admin.xAdd(stream, '*', { device: 'd1', temp: '21.5' });
    const whole = await collectSource(new RedisSource(parsed(sourceOptions(), { streams: stream, group: 'g', start_id: '0', payload_field: '*', block: '100ms' })), { limit: 1, timeoutMs: 10_000 });
    expect(whole.batches[0]!.decoded).toBe(true);
    expect(whole.records[0]!.value).toEqual({ device: 'd1', temp: '21.5' });
    const missing = await collectSource(new RedisSource(parsed(sourceOptions(), { streams: stream, group: 'g2', start_id: '0', block: '100ms' })), { timeoutMs: 1500 });
    expect(missing.records).toHaveLength(0);
    expect(missing.bad).toHaveLength(1);
    expect(missing.bad[0]!.error.message).toMatch(/has no field 'payload' \(fields: device, temp\)/);
    // The bad entry's ID still travels in the batch ack, so dlq/drop acknowledge it.
    expect(missing.committed).toHaveLength(1);
    expect(await pendingCount(admin, stream, 'g2')).toBe(0);
  });

  it('stream: XAUTOCLAIM takes over the entries a crashed consumer left pending', async () => {
    const stream = `${P}s3`;
    await addEntries(admin, stream, 0, 5);
    const base = { streams: stream, group: 'g', start_id: '0', block: '100ms' };
    const crashed = await collectSource(new RedisSource(parsed(sourceOptions(), { ...base, consumer: 'dead' })), { limit: 5, timeoutMs: 10_000, autoCommit: false });
    expect(crashed.records).toHaveLength(5);
    await new Promise((r) => setTimeout(r, 30)); // idle time is the point of this test
    const taker = await collectSource(new RedisSource(parsed(sourceOptions(), { ...base, consumer: 'alive', claim_idle: '20ms' })), { limit: 5, timeoutMs: 10_000 });
    expect(values(taker.records).map((v) => v.i)).toEqual([0, 1, 2, 3, 4]);
    expect(await pendingCount(admin, stream, 'g')).toBe(0);
  });

  it('list: pops in batches (at-most-once), and reliable mode keeps elements until committed', async () => {
    const key = `${P}l1`;
    await admin.rPush(key, Array.from({ length: 30 }, (_, i) => JSON.stringify({ i })));
    const plain = await collectSource(new RedisSource(parsed(sourceOptions(), { key, count: 10, block: '100ms' })), { limit: 30, timeoutMs: 10_000 });
    expect(values(plain.records).map((v) => v.i)).toEqual([...Array(30).keys()]);
    expect(plain.records[0]!.key).toBe(key);
    expect(plain.batches.length).toBeLessThanOrEqual(4);
    expect(await admin.lLen(key)).toBe(0);

    const rkey = `${P}l2`;
    await admin.rPush(rkey, ['{"i":1}', '{"i":2}', '{"i":3}']);
    const ro = parsed(sourceOptions(), { key: rkey, reliable: true, consumer: 'w1', block: '100ms' });
    const first = await collectSource(new RedisSource(ro), { limit: 3, timeoutMs: 10_000, autoCommit: false });
    expect(first.records).toHaveLength(3);
    expect(await admin.lRange(`${rkey}:processing:w1`, 0, -1)).toEqual(['{"i":1}', '{"i":2}', '{"i":3}']);
    const second = await collectSource(new RedisSource(ro), { limit: 3, timeoutMs: 10_000 });
    expect(values(second.records).map((v) => v.i)).toEqual([1, 2, 3]);
    await waitFor(async () => (await admin.lLen(`${rkey}:processing:w1`)) === 0, 'the processing list to empty');
  });

  it('pubsub: channels and patterns with _channel/_pattern metadata', async () => {
    const ch = `${P}ch`;
    const src = new RedisSource(parsed(sourceOptions(), { channels: ch, patterns: `${P}pat.*` }));
    const run = collectSource(src, { limit: 3, timeoutMs: 10_000 });
    await waitFor(async () => Number((await admin.pubSubNumSub(ch))[ch]) === 1 && (await admin.pubSubNumPat()) > 0, 'the subscription');
    await admin.publish(ch, '{"a":1}');
    await admin.publish(`${P}pat.x`, '{"a":2}');
    await admin.publish(`${P}pat.y`, '{"a":3}');
    const got = await run;
    expect(got.records.map((r) => [JSON.parse(String(r.value)).a, r.meta])).toEqual([
      [1, { _channel: ch, _pattern: null }],
      [2, { _channel: `${P}pat.x`, _pattern: `${P}pat.*` }],
      [3, { _channel: `${P}pat.y`, _pattern: `${P}pat.*` }],
    ]);
  });

  it('fails with the server named when Redis is unreachable', async () => {
    const src = new RedisSource(parsed(sourceOptions(), { url: 'redis://127.0.0.1:1', streams: 'x', connect_retries: 0 }));
    await expect(collectSource(src, { timeoutMs: 5000 })).rejects.toThrow(/redis redis:\/\/127\.0\.0\.1:1\/0: cannot connect: .*ECONNREFUSED/);
  });
});

describe('sink', () => {
  const rows = [
    { id: 1, name: 'a', tags: ['x'] },
    { id: 2, name: 'b', tags: [] },
  ];
  const recs = (): SluiceRecord[] => rows.map((value) => ({ value: { ...value } }));
  const write = (o: Record<string, unknown>, batches: SluiceRecord[][]) => writeAll(new RedisSink(parsed(sinkOptions(), o)), sinkContext(json().encoder()), batches);

  it('set with a key template and TTL; hash with the row fields', async () => {
    await write({ key: `${P}user:{{ id }}`, ttl: '60s' }, [recs()]);
    expect(JSON.parse((await admin.get(`${P}user:1`))!)).toEqual(rows[0]);
    const ttl = await admin.pTTL(`${P}user:2`);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    await write({ mode: 'hash', key_prefix: `${P}h:`, key_field: 'id' }, [recs()]);
    expect(await admin.hGetAll(`${P}h:1`)).toEqual({ id: '1', name: 'a', tags: '["x"]' });
  });

  it('template (dataTemplate) renders the stored value and the key template takes helpers', async () => {
    await write({ key: `${P}tpl:{{ upper name }}`, dataTemplate: '{"who":"{{ name }}","n":{{ len tags }}}' }, [recs()]);
    expect(await admin.get(`${P}tpl:A`)).toBe('{"who":"a","n":1}');
    expect(await admin.get(`${P}tpl:B`)).toBe('{"who":"b","n":0}');
    const bad = parseOptions(sinkOptions(), { key: 'k', template: '{{#if a}}x' });
    expect(!bad.ok && bad.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual(["template: template 1:3: '{{#if}}' is never closed with '{{/if}}'"]);
  });

  it('list push with trimming, stream XADD with MAXLEN ~, and publish', async () => {
    await write({ mode: 'list', key: `${P}list`, max_len: 3 }, [recs(), recs()]);
    expect((await admin.lRange(`${P}list`, 0, -1)).map((v) => JSON.parse(v).id)).toEqual([2, 1, 2]);

    await write({ mode: 'stream', stream: `${P}xs` }, [recs()]);
    await write({ mode: 'stream', stream: `${P}xs2`, payload_field: '*' }, [recs()]);
    const entries = await admin.xRange(`${P}xs`, '-', '+');
    expect(entries.map((e) => JSON.parse(e.message.payload!).id)).toEqual([1, 2]);
    expect((await admin.xRange(`${P}xs2`, '-', '+'))[1]!.message).toEqual({ id: '2', name: 'b', tags: '[]' });
    const many = Array.from({ length: 2000 }, (_, i) => ({ value: { i } }));
    await write({ mode: 'stream', key: `${P}xs3`, max_len: 100 }, [many]);
    const len = await admin.xLen(`${P}xs3`);
    expect(len).toBeGreaterThanOrEqual(100);
    expect(len).toBeLessThan(2000);

    const sub = admin.duplicate();
    sub.on('error', () => undefined);
    await sub.connect();
    const got: string[] = [];
    await sub.subscribe(`${P}pub.1`, (m) => void got.push(m));
    try {
      await write({ mode: 'publish', channel: `${P}pub.{{ id }}` }, [recs()]);
      await waitFor(() => got.length === 1, 'the published message');
      expect(JSON.parse(got[0]!)).toEqual(rows[0]);
    } finally {
      sub.destroy();
    }
  });

  it('a write to a key of the wrong type fails naming the key type problem, not retriable', async () => {
    await admin.set(`${P}notalist`, 'x');
    const err = await write({ mode: 'list', key: `${P}notalist` }, [recs()]).catch((e) => e);
    expect(err.message).toMatch(/redis redis:\/\/127\.0\.0\.1:6379\/0: writing 2 records \(mode list, key '.*notalist'\): the key holds a different type \(WRONGTYPE/);
    expect(err.code).toBe('CONFIG');
    const nokey = await write({}, [recs()]).catch((e) => e);
    expect(nokey.message).toMatch(/the record has no key; set `key`/);
  });
});

describe('lookup', () => {
  it('get/getMany over JSON strings and hashes, with an LRU cache and TTL', async () => {
    await admin.set(`${P}lk:1`, '{"name":"alice","tier":2}');
    await admin.set(`${P}lk:2`, '"plain"');
    const t = new RedisLookup(parsed(lookupOptions(), { key_prefix: `${P}lk:`, cache_size: 3, cache_ttl: '200ms' }));
    try {
      expect(await t.get('1')).toEqual({ name: 'alice', tier: 2 });
      expect(await t.getMany(['2', 'missing', '1'])).toEqual([{ value: 'plain' }, undefined, { name: 'alice', tier: 2 }]);
      // Served from the cache even after the key changed in Redis, until the TTL passes.
      await admin.set(`${P}lk:1`, '{"name":"bob"}');
      expect(await t.get('1')).toEqual({ name: 'alice', tier: 2 });
      expect(t.cache.length).toBe(3);
      await t.get('3');
      expect(t.cache.length).toBe(3); // bounded: the least recently used entry went
      await new Promise((r) => setTimeout(r, 250));
      expect(await t.get('1')).toEqual({ name: 'bob' });
    } finally {
      await t.close();
    }
    await admin.hSet(`${P}lh:7`, { name: 'carol', city: 'Oslo' });
    const h = new RedisLookup(parsed(lookupOptions(), { key_prefix: `${P}lh:`, value_type: 'hash' }));
    try {
      expect(await h.getMany(['7', '8'])).toEqual([{ name: 'carol', city: 'Oslo' }, undefined]);
      expect(h.cache.hits).toBe(0);
      await h.get('8');
      expect(h.cache.hits).toBe(1); // the miss was cached too
    } finally {
      await h.close();
    }
  });
});

describe('test() and autocomplete', () => {
  it('reports each step, and warns about a key of the wrong type', async () => {
    const steps: string[] = [];
    await spec.test!({ url: 'redis://127.0.0.1:6379', streams: `${P}t1`, group: 'g' }, 'source', (s) => steps.push(s.message), new AbortController().signal);
    expect(steps[0]).toBe('connecting to redis://127.0.0.1:6379/0');
    expect(steps[1]).toMatch(/^connected to redis:\/\/127\.0\.0\.1:6379\/0 \(Redis \d/);
    expect(steps[2]).toMatch(/does not exist yet; it is created \(MKSTREAM\)/);
    await admin.set(`${P}t2`, 'x');
    const s2: Array<{ message: string; error?: boolean }> = [];
    await expect(spec.test!({ mode: 'hash', key: `${P}t2` }, 'sink', (s) => s2.push(s), new AbortController().signal)).rejects.toThrow(/holds a string, but mode 'hash' writes a hash/);
    expect(s2.at(-1)!.error).toBe(true);
    const s3: Array<{ message: string; error?: boolean }> = [];
    await expect(spec.test!({ url: 'redis://127.0.0.1:1', key: 'x' }, 'source', (s) => s3.push(s), new AbortController().signal)).rejects.toThrow(/cannot connect/);
    expect(s3.at(-1)).toMatchObject({ error: true });
  });

  it('autocomplete lists keys by pattern, streams and lists', async () => {
    await admin.xAdd(`${P}ac:stream`, '*', { a: '1' });
    await admin.rPush(`${P}ac:list`, 'x');
    await admin.set(`${P}ac:str`, 'x');
    const r = await spec.autocomplete!({ pattern: `${P}ac:*` }, new AbortController().signal);
    expect(r.keys).toEqual([`${P}ac:list`, `${P}ac:str`, `${P}ac:stream`]);
    expect(r.streams).toEqual([`${P}ac:stream`]);
    expect(r.lists).toEqual([`${P}ac:list`]);
  });
});
