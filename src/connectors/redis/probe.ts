// `test()` and autocomplete for the Redis connector, in their own module so the registry does not load the redis
// client.

import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { parseOptions, type TestReporter } from '../../core/spec.js';
import { closeClient, endpointOf, openClient, type Client } from './client.js';
import { browseOptions, sinkOptions, sourceOptions, type RedisSinkOptions, type RedisSourceOptions } from './options.js';

/** Most keys SCAN visits for one autocomplete request, so a huge keyspace does not stall the caller. */
const SCAN_BUDGET = 10_000;
const MAX_SUGGESTIONS = 200;

async function scanKeys(c: Client, pattern: string, type: string | undefined, signal: AbortSignal): Promise<string[]> {
  const out = new Set<string>();
  let cursor = '0';
  let visited = 0;
  do {
    const r = await c.scan(cursor, { MATCH: pattern, COUNT: 500, ...(type ? { TYPE: type } : {}) });
    cursor = String(r.cursor);
    for (const k of r.keys) {
      out.add(String(k));
      if (out.size >= MAX_SUGGESTIONS) return [...out].sort();
    }
    visited += 500;
  } while (cursor !== '0' && visited < SCAN_BUDGET && !signal.aborted);
  return [...out].sort();
}

/** Keys by pattern, stream keys, list keys and active pub/sub channels, each bounded. */
export async function autocomplete(options: unknown, signal: AbortSignal): Promise<Record<string, string[]>> {
  const r = parseOptions(browseOptions(), options);
  if (!r.ok) throw new ConfigError(r.issues);
  const o = r.value;
  const c = await openClient({ ...o, connect_retries: 0 }, { name: 'sluice-autocomplete' });
  try {
    const [keys, streams, lists, channels] = await Promise.all([
      scanKeys(c, o.pattern, undefined, signal),
      scanKeys(c, o.pattern, 'stream', signal),
      scanKeys(c, o.pattern, 'list', signal),
      c.pubSubChannels(o.pattern).then((x) => x.map(String).sort().slice(0, MAX_SUGGESTIONS)),
    ]);
    return { keys, streams, lists, channels };
  } finally {
    await closeClient(c);
  }
}

export async function testRedis(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  const r = role === 'source' ? parseOptions(sourceOptions(), options) : parseOptions(sinkOptions(), options);
  if (!r.ok) throw new ConfigError(r.issues);
  const o = r.value as RedisSourceOptions | RedisSinkOptions;
  const ep = endpointOf(o);
  report({ message: `connecting to ${ep.shown}` });
  let c: Client;
  try {
    c = await openClient({ ...o, connect_retries: 0 }, { name: 'sluice-test' });
  } catch (e) {
    report({ message: errorMessage(e), error: true });
    throw e;
  }
  try {
    const info = await c.info('server');
    const version = /redis_version:([^\r\n]+)/.exec(String(info))?.[1] ?? '?';
    report({ message: `connected to ${ep.shown} (Redis ${version})`, done: true });
    if (signal.aborted) return;
    if (role === 'sink') {
      const so = o as RedisSinkOptions;
      const key = so.key;
      if (key && !key.includes('{{')) {
        const target = (so.key_prefix ?? '') + key;
        const type = String(await c.type(target));
        const want = { set: 'string', hash: 'hash', list: 'list', stream: 'stream', publish: undefined }[so.mode];
        if (want && type !== 'none' && type !== want) {
          const msg = `key '${target}' holds a ${type}, but mode '${so.mode}' writes a ${want}; writes would fail with WRONGTYPE`;
          report({ message: msg, error: true });
          throw new SluiceError('CONFIG', msg);
        }
        report({ message: type === 'none' ? `key '${target}' does not exist yet; the first write creates it` : `key '${target}' is a ${type}`, done: true });
      }
      report({ message: `ready to write (mode ${so.mode})`, done: true });
      return;
    }
    const so = o as RedisSourceOptions;
    if (so.mode === 'stream') {
      for (const s of so.streams!) {
        const type = String(await c.type(s));
        if (type === 'none') {
          report({ message: `stream '${s}' does not exist yet; it is created (MKSTREAM) with the consumer group at start`, done: true });
          continue;
        }
        if (type !== 'stream') {
          const msg = `key '${s}' holds a ${type}, not a stream`;
          report({ message: msg, error: true });
          throw new SluiceError('CONFIG', msg);
        }
        const len = await c.xLen(s);
        const groups = (await c.xInfoGroups(s)) as Array<{ name: unknown; pending: unknown; consumers: unknown }>;
        const g = groups.find((x) => String(x.name) === (so.group ?? '(pipeline name)'));
        report({
          message: `stream '${s}': ${len} entries, ${groups.length} group(s)${g ? `; group '${String(g.name)}' has ${String(g.pending)} pending entries and ${String(g.consumers)} consumer(s)` : so.group ? `; group '${so.group}' is created at start` : ''}`,
          done: true,
        });
      }
    } else if (so.mode === 'list') {
      for (const k of so.key!) {
        const type = String(await c.type(k));
        if (type !== 'none' && type !== 'list') {
          const msg = `key '${k}' holds a ${type}, not a list`;
          report({ message: msg, error: true });
          throw new SluiceError('CONFIG', msg);
        }
        report({ message: type === 'none' ? `list '${k}' is empty (does not exist yet)` : `list '${k}' holds ${await c.lLen(k)} element(s)`, done: true });
      }
    } else {
      const subs = [...(so.channels ?? [])];
      const counts = subs.length ? ((await c.pubSubNumSub(subs)) as Record<string, number>) : {};
      for (const ch of subs) report({ message: `channel '${ch}': ${counts[ch] ?? 0} subscriber(s) now`, done: true });
      if (so.patterns?.length) {
        const active = await c.pubSubChannels();
        report({ message: `${active.length} channel(s) have subscribers now; patterns ${so.patterns.map((p) => `'${p}'`).join(', ')} are matched as messages arrive`, done: true });
      }
      report({ message: 'pub/sub delivers only messages published while subscribed (use buffer: durable to survive sink outages)', done: true });
    }
  } catch (e) {
    if (e instanceof SluiceError) throw e;
    const err = new SluiceError('CONNECT', `redis ${ep.shown}: ${errorMessage(e)}`, { cause: e });
    report({ message: err.message, error: true });
    throw err;
  } finally {
    await closeClient(c);
  }
}
