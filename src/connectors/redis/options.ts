// Options of the Redis source, sink and lookup table. The connection part is shared by all three.
//
// Canonical names are snake_case. eKuiper's Redis sink and lookup source (`addr`, `db`, `dataType`, `field`,
// `expiration`) and Laminar's Redis sink (`address`, `key_prefix`, `key_column`, `max_length`, `operation`) are
// accepted as aliases.

import { bool, duration, list, num, opt, z, lazyOptions } from '../../core/spec.js';
import { durableStorageShape, durableOnFullDropping } from '../../core/durable-options.js';
import { compileKeyTemplate } from './template.js';
import { payloadTemplateShape } from '../../core/data-template.js';

export const connectionShape = lazyOptions('redis:connection', () =>
  ({
    url: opt(z.string().min(1).default('redis://127.0.0.1:6379'), {
      description:
        'Server address: `redis://[user[:password]@]host[:port][/db]`, `rediss://` for TLS, or eKuiper\'s bare `host:port`. `host`, `port`, `db`, `username` and `password` override the parts of the URL.',
      aliases: ['addr', 'address', 'server', 'uri', 'redis_url', 'connection.address'],
      examples: ['redis://127.0.0.1:6379', 'rediss://cache.example.com:6380/2', '10.0.0.5:6379'],
    }),
    host: opt(z.string().min(1).optional(), { description: 'Server host name; overrides the URL\'s host.', aliases: ['hostname'] }),
    port: num({ int: true, min: 1, max: 65535, description: 'Server port; overrides the URL\'s port.' }).optional(),
    db: num({ int: true, min: 0, description: 'Database number (`SELECT`); overrides the URL\'s `/db`.', aliases: ['database', 'db_index'] }).optional(),
    username: opt(z.string().optional(), { description: 'ACL user name (Redis 6+).', aliases: ['user'] }),
    password: opt(z.string().optional(), {
      description: 'Password (`AUTH`); with `username` the ACL user\'s password. Never logged.',
      secret: true,
      aliases: ['pass', 'auth'],
    }),
    tls: bool({ default: false, description: 'Connect over TLS (same as a `rediss://` URL).', aliases: ['ssl', 'tls.enable'] }),
    tls_skip_verify: bool({
      default: false,
      description: 'Accept any server certificate (tests only).',
      aliases: ['insecure_skip_verify', 'tls.skip_verify_server', 'tls.insecure_skip_verify'],
      advanced: true,
    }),
    connect_timeout: duration({ default: '10s', description: 'How long one connection attempt may take.', aliases: ['connection_timeout'] }),
    connect_retries: num({
      int: true,
      min: 0,
      default: 3,
      description:
        'Failed attempts before the first connection gives up and the pipeline fails with the cause. Once connected, a lost connection is re-established forever, with backoff up to `reconnect_max_delay`.',
      advanced: true,
    }),
    reconnect_max_delay: duration({ default: '5s', description: 'Longest wait between reconnect attempts.', aliases: ['max_reconnect_delay'], advanced: true }),
  }),
);

export type ConnectionOptions = {
  url: string;
  host?: string;
  port?: number;
  db?: number;
  username?: string;
  password?: string;
  tls: boolean;
  tls_skip_verify: boolean;
  connect_timeout: number;
  connect_retries: number;
  reconnect_max_delay: number;
};

/** A stream entry ID or the special start IDs. */
const streamId = lazyOptions('redis:stream_id', () => z.string().regex(/^(\$|0|\d+(-\d+)?)$/, { message: "must be '$' (new entries only), '0' (the whole stream) or an entry ID such as '1700000000000-0'" }));

const payloadField = lazyOptions('redis:payload_field', () => z.union([z.string().min(1), z.null()]));

const sourceShape = lazyOptions('redis:source shape', () =>
  ({
    ...connectionShape(),
    mode: opt(z.enum(['pubsub', 'stream', 'list']).optional(), {
      description:
        '`pubsub`: SUBSCRIBE to `channels` and PSUBSCRIBE to `patterns` (at-most-once; `buffer: durable` available). `stream`: read `streams` with a consumer group, acknowledged (XACK) only after the sink accepted (at-least-once). `list`: pop from the lists in `key` (BLPOP/BRPOP; at-most-once, or at-least-once with `reliable: true`). Default: chosen by which of `streams`, `channels`/`patterns` or `key` is set.',
      aliases: ['type', 'source_type'],
    }),
    channels: opt(list(z.string().min(1)).optional(), { description: 'Pub/sub channels to subscribe to (exact names).', aliases: ['channel', 'subscribe'], examples: [['orders', 'alerts']] }),
    patterns: opt(list(z.string().min(1)).optional(), { description: 'Pub/sub glob patterns to subscribe to (`sensors.*`).', aliases: ['pattern', 'psubscribe'], examples: [['sensors.*']] }),
    streams: opt(list(z.string().min(1)).optional(), { description: 'Stream keys to read with the consumer group.', aliases: ['stream', 'stream_key', 'stream_keys'], examples: [['orders']] }),
    group: opt(z.string().min(1).optional(), {
      description: 'Consumer group. Created (with MKSTREAM) when missing. Default: the pipeline name.',
      aliases: ['consumer_group', 'group_name', 'group_id'],
    }),
    consumer: opt(z.string().min(1).optional(), {
      description:
        'Consumer name within the group. Default: `<pipeline>@<host name>`, so a restarted pipeline on the same host finds and re-reads its own pending entries. Give each replica a different name.',
      aliases: ['consumer_name'],
    }),
    start_id: opt(streamId().default('$'), {
      description: 'Where a newly created group starts: `$` (entries added from now on), `0` (the whole stream) or an entry ID. An existing group keeps its position.',
      aliases: ['start', 'offset', 'from'],
    }),
    count: num({ int: true, min: 1, default: 500, description: 'Most entries (stream) or elements (list) fetched per round trip.', aliases: ['batch_size', 'max_count'] }),
    block: duration({
      default: '2s',
      description: 'How long one XREADGROUP BLOCK or BLPOP waits for data before it is issued again. Stopping the pipeline does not wait for it.',
      aliases: ['block_timeout', 'timeout'],
    }),
    claim_idle: duration({
      description:
        'Stream mode: take over (XAUTOCLAIM) entries that another consumer of the group read but has not acknowledged for this long (a crashed replica), at start and then every `claim_idle`. Off by default.',
      aliases: ['min_idle_time', 'claim_min_idle'],
    }).optional(),
    payload_field: opt(payloadField().default('payload'), {
      description:
        'Stream mode: the entry field holding the payload, decoded with the pipeline\'s format. `*` or null: the whole entry (its field map) is the row, no format decoding. An entry without this field is bad data.',
      aliases: ['value_field', 'data_field'],
    }),
    key: opt(list(z.string().min(1)).optional(), {
      description: 'List mode: the list key(s) to pop from; with several, BLPOP serves them in the order given.',
      aliases: ['keys', 'list', 'list_key'],
      examples: [['jobs']],
    }),
    direction: opt(z.enum(['left', 'right']).default('left'), {
      description: 'List mode: pop from the `left` (BLPOP, FIFO with RPUSH producers) or the `right` (BRPOP).',
      aliases: ['pop', 'side'],
    }),
    reliable: bool({
      default: false,
      description:
        'List mode: move each element into a processing list (BLMOVE) and remove it there (LREM) only after the sink accepted it; elements left in the processing list are re-read at start. One `key` only.',
      aliases: ['reliable_queue'],
    }),
    processing_key: opt(z.string().min(1).optional(), {
      description: 'List mode with `reliable`: the processing list. Default: `<key>:processing:<consumer>`.',
      aliases: ['processing_list'],
      advanced: true,
    }),
    queue_size: num({
      int: true,
      min: 1,
      default: 65536,
      description: 'Pub/sub with `buffer: memory`: messages held while the pipeline is busy. Redis cannot be told to wait; past this bound messages are dropped and counted (`dropped`).',
      aliases: ['pending_limit'],
    }),
    buffer: opt(z.enum(['memory', 'durable']).default('memory'), {
      description:
        'Pub/sub: `memory` is at-most-once (a sink outage or a restart loses what was received). `durable` appends every message to a log in the data dir before it enters the pipeline and deletes it once the sink acknowledged it, so sink outages and restarts lose nothing that was received.',
    }),
    ...durableStorageShape(),
    ...durableOnFullDropping('Redis pub/sub cannot be told to wait, so there is no `block`.'),
  }),
);

type SourceOut = z.output<z.ZodObject<ReturnType<typeof sourceShape>>>;

export const sourceOptions = lazyOptions('redis:source', () =>
  z
    .strictObject(sourceShape())
    .superRefine((o, ctx) => {
      const has = { pubsub: !!(o.channels?.length || o.patterns?.length), stream: !!o.streams?.length, list: !!o.key?.length };
      const set = (Object.keys(has) as Array<keyof typeof has>).filter((k) => has[k]);
      const what = { pubsub: '`channels` or `patterns`', stream: '`streams`', list: '`key`' };
      if (o.mode) {
        if (!has[o.mode]) ctx.addIssue({ code: 'custom', path: [o.mode === 'pubsub' ? 'channels' : o.mode === 'stream' ? 'streams' : 'key'], message: `mode '${o.mode}' needs ${what[o.mode]}` });
      } else if (set.length === 0) {
        ctx.addIssue({ code: 'custom', path: ['mode'], message: 'nothing to read: set `streams` (consumer group), `channels`/`patterns` (pub/sub) or `key` (list)' });
      } else if (set.length > 1) {
        ctx.addIssue({ code: 'custom', path: ['mode'], message: `${set.map((s) => what[s]).join(' and ')} are all set; choose one with \`mode\`` });
      }
      const mode = o.mode ?? set[0];
      if (mode === 'list' && o.reliable && (o.key?.length ?? 0) > 1) {
        ctx.addIssue({ code: 'custom', path: ['reliable'], message: `reliable mode moves elements from one list; ${o.key!.length} keys are given` });
      }
    })
    .transform((o) => {
      const mode = o.mode ?? (o.streams?.length ? 'stream' : o.key?.length ? 'list' : 'pubsub');
      return { ...o, mode, payload_field: o.payload_field === '*' ? null : o.payload_field } as SourceOut & { mode: 'pubsub' | 'stream' | 'list' };
    }),
);

export type RedisSourceOptions = z.output<ReturnType<typeof sourceOptions>>;

/** Sink mode names, with eKuiper's `string` and the seeds' other spellings mapped onto them. */
const SINK_MODES: Record<string, 'set' | 'hash' | 'list' | 'stream' | 'publish'> = {
  set: 'set',
  string: 'set',
  hash: 'hash',
  list: 'list',
  stream: 'stream',
  xadd: 'stream',
  publish: 'publish',
  pubsub: 'publish',
};

function templateString(what: string) {
  return z.string().min(1).superRefine((s, ctx) => {
    try {
      compileKeyTemplate(s, what);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  });
}

const sinkShape = lazyOptions('redis:sink shape', () =>
  ({
    ...connectionShape(),
    mode: opt(
      z.preprocess((v) => (typeof v === 'string' ? (SINK_MODES[v.toLowerCase()] ?? v) : v), z.enum(['set', 'hash', 'list', 'stream', 'publish'])).default('set'),
      {
        description:
          '`set`: SET the encoded record under `key` (with `ttl`). `hash`: HSET the row\'s fields under `key` (or one field per record with `hash_field`). `list`: RPUSH/LPUSH onto `key`. `stream`: XADD to `key`, trimmed to about `max_len`. `publish`: PUBLISH to the channel `key`. eKuiper\'s `string` means `set`. Default: `set`.',
        aliases: ['data_type', 'dataType', 'type', 'target'],
        default: 'set',
      },
    ),
    key: opt(templateString('key').optional(), {
      description:
        'Target key, stream or channel: fixed, or a template over the record\'s fields (`user:{{ id }}`, `{{ _key }}` for the record key). Default (set and hash modes): the record\'s own key.',
      aliases: ['stream', 'channel', 'key_template', 'topic'],
      examples: ['latest:{{ device_id }}', 'events', 'alerts.{{ level }}'],
    }),
    key_field: opt(z.string().min(1).optional(), {
      description: 'Take the key from this field of the row (eKuiper\'s `field`, Laminar\'s `key_column`); same as `key: \'{{ field }}\'`.',
      aliases: ['field', 'key_column', 'list_key_column', 'hash_key_column'],
    }),
    key_prefix: opt(z.string().optional(), {
      description: 'Text put in front of every key (`sensor:`).',
      aliases: ['prefix', 'list_prefix', 'hash_key_prefix'],
    }),
    ttl: duration({ description: 'Set and hash modes: expire each written key after this long (`PX`/`PEXPIRE`). Default: no expiry.', aliases: ['expiration', 'expire'] }).optional(),
    push: opt(
      z.preprocess((v) => (v === 'append' || v === 'rpush' ? 'right' : v === 'prepend' || v === 'lpush' ? 'left' : v), z.enum(['right', 'left'])).default('right'),
      { description: 'List mode: append with RPUSH (`right`, alias `append`) or prepend with LPUSH (`left`, alias `prepend`). Default: `right`.', aliases: ['operation', 'list_operation'], default: 'right' },
    ),
    max_len: num({
      int: true,
      min: 1,
      description: 'Stream mode: trim to about this many entries (`XADD MAXLEN ~`). List mode: keep this many elements (LTRIM after the push). Default: no trimming.',
      aliases: ['max_length', 'maxlen'],
    }).optional(),
    payload_field: opt(payloadField().default('payload'), {
      description: 'Stream mode: the entry field that holds the encoded record. `*` or null: one entry field per row field instead (objects as JSON).',
      aliases: ['value_field', 'data_field'],
    }),
    hash_field: opt(z.string().min(1).optional(), {
      description: 'Hash mode: write the encoded record into one hash field named by this row field (HSET key <row[hash_field]> <record>) instead of one hash field per row field.',
      aliases: ['hash_field_column', 'field_column'],
    }),
    ...payloadTemplateShape(),
  }),
);

type SinkOut = z.output<z.ZodObject<ReturnType<typeof sinkShape>>>;

export const sinkOptions = lazyOptions('redis:sink', () =>
  z
    .strictObject(sinkShape())
    .superRefine((o, ctx) => {
      if (o.key !== undefined && o.key_field !== undefined) ctx.addIssue({ code: 'custom', path: ['key_field'], message: '`key` and `key_field` both set the target key; keep one' });
      if ((o.mode === 'list' || o.mode === 'stream' || o.mode === 'publish') && o.key === undefined && o.key_field === undefined) {
        ctx.addIssue({ code: 'custom', path: ['key'], message: `mode '${o.mode}' needs \`key\` (the ${o.mode === 'stream' ? 'stream' : o.mode === 'publish' ? 'channel' : 'list'} to write to)` });
      }
      if (o.ttl !== undefined && o.mode !== 'set' && o.mode !== 'hash') ctx.addIssue({ code: 'custom', path: ['ttl'], message: `ttl applies to modes set and hash, not '${o.mode}'` });
      if (o.max_len !== undefined && o.mode !== 'stream' && o.mode !== 'list') ctx.addIssue({ code: 'custom', path: ['max_len'], message: `max_len applies to modes stream and list, not '${o.mode}'` });
      if (o.hash_field !== undefined && o.mode !== 'hash') ctx.addIssue({ code: 'custom', path: ['hash_field'], message: `hash_field applies to mode hash, not '${o.mode}'` });
    })
    .transform((o) => ({ ...o, payload_field: o.payload_field === '*' ? null : o.payload_field }) as SinkOut),
);

export type RedisSinkOptions = z.output<ReturnType<typeof sinkOptions>>;

export const lookupOptions = lazyOptions('redis:lookup', () =>
  z
    .strictObject({
      ...connectionShape(),
      value_type: opt(
        z.preprocess((v) => (typeof v === 'string' ? v.toLowerCase() : v), z.enum(['string', 'hash'])).default('string'),
        {
          description: '`string`: the key holds a JSON document (GET), decoded into the row. `hash`: the key is a hash (HGETALL) whose fields are the row. Default: `string`.',
          aliases: ['data_type', 'datatype', 'dataType', 'type'],
          default: 'string',
        },
      ),
      key_prefix: opt(z.string().default(''), { description: 'Text put in front of every looked-up key (`user:`).', aliases: ['prefix'] }),
      cache_size: num({ int: true, min: 0, default: 1000, description: 'Rows kept in the least-recently-used cache; 0 turns the cache off.', aliases: ['cache_max_size', 'cacheSize'] }),
      cache_ttl: duration({ default: '60s', description: 'How long a cached row (or a cached miss) is used before Redis is asked again.', aliases: ['cache_expiration', 'cacheTtl'] }),
      cache_missing: bool({ default: true, description: 'Also cache that a key does not exist, so repeated misses do not reach Redis.' }),
    }),
);

export type RedisLookupOptions = z.output<ReturnType<typeof lookupOptions>>;

/** Options for autocomplete and for `test()` without a role-specific shape. */
export const browseOptions = lazyOptions('redis:browse', () => z.object({ ...connectionShape(), pattern: opt(z.string().default('*'), { description: 'Key pattern (SCAN MATCH).' }) }));
