// A Redis lookup table (eKuiper's Redis lookup source): point lookups by key for enriching records, with a small
// LRU cache in front. `string` keys hold a JSON document (GET/MGET); `hash` keys are rows (HGETALL, pipelined).

import { SluiceError } from '../../core/errors.js';
import type { LookupTable } from '../../core/spec.js';
import { closeClient, commandError, endpointOf, openClient, type Client } from './client.js';
import type { RedisLookupOptions } from './options.js';

type Row = Record<string, unknown>;

interface Entry {
  row: Row | undefined;
  expires: number;
}

/** Least-recently-used cache on a Map (insertion order = recency order). */
export class LruCache {
  private readonly map = new Map<string, Entry>();
  hits = 0;
  misses = 0;
  constructor(
    readonly size: number,
    readonly ttlMs: number,
  ) {}

  /** The cached entry (a row, or a cached miss), or null when Redis must be asked. */
  get(key: string, now: number): Entry | null {
    const e = this.map.get(key);
    if (!e) {
      this.misses++;
      return null;
    }
    if (e.expires <= now) {
      this.map.delete(key);
      this.misses++;
      return null;
    }
    this.map.delete(key);
    this.map.set(key, e);
    this.hits++;
    return e;
  }

  set(key: string, row: Row | undefined, now: number): void {
    if (this.size <= 0) return;
    this.map.delete(key);
    this.map.set(key, { row, expires: now + this.ttlMs });
    while (this.map.size > this.size) this.map.delete(this.map.keys().next().value!);
  }

  get length(): number {
    return this.map.size;
  }
}

function decodeString(v: unknown): Row | undefined {
  if (v === null || v === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(String(v));
  } catch {
    // Not JSON: a plain value is still useful to a join.
    return { value: String(v) };
  }
  if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Row;
  return { value: parsed };
}

function decodeHash(v: unknown): Row | undefined {
  if (!v || typeof v !== 'object') return undefined;
  for (const _ in v) return { ...(v as Row) };
  return undefined; // HGETALL of a missing key is an empty map
}

/** Rows are shared with the cache: callers copy before they change one. */
export class RedisLookup implements LookupTable {
  readonly cache: LruCache;
  private client?: Promise<Client>;
  private closed = false;

  constructor(readonly options: RedisLookupOptions) {
    this.cache = new LruCache(options.cache_size, options.cache_ttl);
  }

  /** Connects on first use, so a table that is declared but never joined costs nothing. */
  private conn(): Promise<Client> {
    if (this.closed) return Promise.reject(new SluiceError('INTERNAL', 'redis lookup: used after close'));
    this.client ??= openClient(this.options, { name: 'sluice-lookup' }).catch((e) => {
      this.client = undefined;
      throw e;
    });
    return this.client;
  }

  async get(key: string): Promise<Row | undefined> {
    return (await this.getMany([key]))[0];
  }

  async getMany(keys: string[]): Promise<Array<Row | undefined>> {
    const o = this.options;
    const now = Date.now();
    const out = new Array<Row | undefined>(keys.length);
    const missIdx: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      const e = this.cache.get(keys[i]!, now);
      if (e) out[i] = e.row;
      else missIdx.push(i);
    }
    if (!missIdx.length) return out;
    const c = await this.conn();
    const redisKeys = missIdx.map((i) => o.key_prefix + keys[i]);
    let rows: Array<Row | undefined>;
    try {
      if (o.value_type === 'string') {
        const vals = await c.mGet(redisKeys);
        rows = vals.map(decodeString);
      } else {
        const multi = c.multi();
        for (const k of redisKeys) multi.hGetAll(k);
        const vals = (await multi.execAsPipeline()) as unknown[];
        rows = vals.map(decodeHash);
      }
    } catch (e) {
      throw commandError(`looking up ${redisKeys.length} key(s) such as '${redisKeys[0]}' (${o.value_type === 'string' ? 'MGET' : 'HGETALL'})`, endpointOf(o), e);
    }
    for (let j = 0; j < missIdx.length; j++) {
      const i = missIdx[j]!;
      const row = rows[j];
      out[i] = row;
      if (row !== undefined || o.cache_missing) this.cache.set(keys[i]!, row, now);
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    const p = this.client;
    this.client = undefined;
    if (!p) return;
    try {
      await closeClient(await p);
    } catch {
      // The connection never came up: nothing to close.
    }
  }
}
