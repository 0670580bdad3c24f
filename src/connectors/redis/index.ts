// `redis`: a source (consumer-group streams acknowledged after the sink, lists with an optional reliable processing
// list, pub/sub with an optional durable buffer), a sink (set, hash, list, stream, publish; one pipelined round trip
// per batch) and a lookup table with an LRU cache (eKuiper's Redis lookup source). The client loads on first use.

import { defineConnector } from '../../core/spec.js';
import { lazyLookup, lazySink, lazySource } from '../../core/lazy.js';
import { lookupOptions, sinkOptions, sourceOptions, type RedisLookupOptions, type RedisSinkOptions, type RedisSourceOptions } from './options.js';

export { sourceOptions, sinkOptions, lookupOptions };
export type { RedisSourceOptions, RedisSinkOptions, RedisLookupOptions };

export const SOURCE_METADATA = {
  _stream: 'stream mode: the stream key the entry was read from',
  _id: 'stream mode: the entry ID (`1700000000000-0`); its time part is also the record timestamp',
  _channel: 'pub/sub: the channel the message was published to',
  _pattern: 'pub/sub: the pattern that matched (PSUBSCRIBE), or null for a plain channel subscription',
  _key: 'list mode: the list the element was popped from (also the record key)',
  _timestamp: 'stream mode: the entry ID\'s time; otherwise when the message was received',
};

export const spec = defineConnector({
  name: 'redis',
  aliases: ['Redis', 'redis_stream', 'redis_pubsub'],
  aliasDefaults: { redis_stream: { mode: 'stream' }, redis_pubsub: { mode: 'pubsub' } },
  title: 'Redis',
  description:
    'Reads Redis streams with a consumer group (XACK only after the sink accepted, pending entries re-read after a crash, idle entries of dead consumers claimed), lists (BLPOP, or a reliable processing list) and pub/sub channels and patterns (at-most-once, or durable on disk). Writes with SET (TTL), HSET, RPUSH/LPUSH, XADD (MAXLEN ~) or PUBLISH, one pipelined round trip per batch. Also a lookup table (string JSON or hash keys) with an LRU cache for enrichment.',
  source: {
    options: sourceOptions,
    create: (o: RedisSourceOptions, info) => lazySource(async () => new (await import('./source.js')).RedisSource(o, info)),
    defaultFormat: 'json',
    // Streams and reliable lists re-deliver what was not acknowledged; pub/sub and plain lists cannot.
    replayable: true,
    metadata: SOURCE_METADATA,
  },
  sink: {
    options: sinkOptions,
    create: (o: RedisSinkOptions, info) => lazySink(async () => new (await import('./sink.js')).RedisSink(o, info)),
    defaultFormat: 'json',
  },
  lookup: {
    options: lookupOptions,
    create: (o: RedisLookupOptions) => lazyLookup(async () => new (await import('./lookup.js')).RedisLookup(o)),
  },
  autocomplete: async (options, signal) => (await import('./probe.js')).autocomplete(options, signal),
  test: async (options, role, report, signal) => (await import('./probe.js')).testRedis(options, role, report, signal),
});

export default spec;
