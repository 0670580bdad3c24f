// RabbitMQ options. The connection part is shared by source, sink and a connection profile; Laminar/Arroyo's
// spellings (`host`, `virtual_host`, camelCase keys) are accepted as aliases of the canonical snake_case names.

import { bool, duration, list, num, opt, z, lazyOptions } from '../../core/spec.js';
import { checkTemplate } from './template.js';
import { payloadTemplateShape } from '../../core/data-template.js';

const amqpUrl = lazyOptions('rabbitmq:url', () =>
  z.string().refine((u) => /^amqps?:\/\//i.test(u) && URL.canParse(u), {
    message: 'must be an amqp:// or amqps:// URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2F',
  }),
);

/** Option shape of the connection, also used by connection profiles. */
export const connectionShape = lazyOptions('rabbitmq:connection', () =>
  ({
    url: opt(amqpUrl().optional(), {
      description:
        'Broker URL `amqp[s]://user:password@host:port/vhost` (the vhost URL-encoded: `%2F` is `/`). The password in it is treated as a secret and never logged. `host`, `port`, `username`, `password` and `vhost` override the parts of the URL. Default `amqp://guest:guest@127.0.0.1:5672`.',
      aliases: ['uri', 'amqp_url', 'rabbitmq.url', 'server', 'address'],
      examples: ['amqp://guest:guest@127.0.0.1:5672', 'amqps://app:${RABBIT_PASSWORD}@mq.example.com/prod'],
    }),
    host: opt(z.string().min(1).optional(), { description: 'Broker host name (overrides the URL\'s).', aliases: ['hostname'] }),
    port: num({ int: true, min: 1, max: 65535, description: 'Broker port (overrides the URL\'s; 5672, or 5671 with TLS).' }).optional(),
    username: opt(z.string().optional(), { description: 'User name (overrides the URL\'s).', aliases: ['user', 'login'] }),
    password: opt(z.string().optional(), { description: 'Password (overrides the URL\'s).', secret: true, aliases: ['pass', 'passwd'] }),
    vhost: opt(z.string().optional(), {
      description: 'Virtual host, e.g. `/` (overrides the URL\'s).',
      aliases: ['virtual_host', 'virtualhost'],
    }),
    tls: opt(
      z
        .strictObject({
          enabled: bool({ description: 'Connect with TLS (implied by an `amqps://` URL).' }).optional(),
          ca_file: opt(z.string().optional(), { description: 'CA certificate (PEM) to verify the broker with.', aliases: ['root_ca_path', 'ca'] }),
          cert_file: opt(z.string().optional(), { description: 'Client certificate (PEM).', aliases: ['cert', 'certification_path'] }),
          key_file: opt(z.string().optional(), { description: 'Client private key (PEM).', aliases: ['key', 'private_key_path'] }),
          skip_verify: bool({ default: false, description: 'Accept any server certificate (testing only).', aliases: ['insecure_skip_verify', 'skip_verify_server'] }),
        })
        .optional(),
      { description: 'TLS settings.', aliases: ['tls_config'] },
    ),
    heartbeat: duration({ default: '60s', description: 'AMQP heartbeat: the connection is considered dead after two missed heartbeats.', advanced: true }),
    connection_timeout: duration({ default: '10s', description: 'How long one connection attempt may take.', aliases: ['connect_timeout'], advanced: true }),
    reconnect_max_backoff: duration({
      default: '10s',
      description: 'Longest wait between reconnection attempts (exponential backoff from 500 ms). The client reconnects forever.',
      advanced: true,
    }),
    connection_name: opt(z.string().optional(), { description: 'Connection name shown by `rabbitmqctl list_connections` and the management UI.', advanced: true }),
    management_url: opt(z.string().url().optional(), {
      description:
        'Base URL of the management plugin\'s HTTP API, used only to suggest queues and exchanges (autocomplete). Default: `http://<host>:15672` with the same credentials. AMQP itself cannot list queues.',
      advanced: true,
    }),
  }),
);

const stringMap = lazyOptions('rabbitmq:map', () => z.record(z.string(), z.unknown()));

const exchangeType = lazyOptions('rabbitmq:exchange_type', () => z.enum(['direct', 'topic', 'fanout', 'headers']));

const binding = lazyOptions('rabbitmq:binding', () =>
  z.strictObject({
    exchange: opt(z.string().min(1), { description: 'Exchange to bind the queue to.', aliases: ['exchange_name', 'source'] }),
    routing_key: opt(list(z.string()).default(['']), {
      description: 'Binding key(s): one binding per key. Topic exchanges take `*` and `#` wildcards. Default: empty.',
      aliases: ['routing_keys', 'binding_key', 'binding_keys', 'pattern'],
    }),
    exchange_type: opt(exchangeType().optional(), {
      description: 'Declare the exchange (durable) with this type before binding. Without it the exchange must exist.',
      aliases: ['type'],
    }),
    arguments: opt(stringMap().optional(), { description: 'Binding arguments (for `headers` exchanges: `x-match` and the header values).', aliases: ['args'] }),
  }),
);

export type Binding = z.output<ReturnType<typeof binding>>;

export const sourceOptions = lazyOptions('rabbitmq:source', () =>
  z
    .strictObject({
      ...connectionShape(),
      queue: opt(z.string().min(1), {
        description: 'Queue to consume from. It is declared (created if missing) unless `passive: true`.',
        aliases: ['queue_name', 'rabbitmq.queue', 'stream'],
        examples: ['orders', 'events.audit'],
      }),
      passive: bool({
        default: false,
        description: 'Only check that the queue exists (the pipeline fails with a clear error if it does not); never create or change it.',
        aliases: ['queue_passive'],
      }),
      durable: bool({ default: true, description: 'Declare the queue durable (it survives a broker restart).', aliases: ['queue_durable'] }),
      exclusive: bool({ default: false, description: 'Declare the queue exclusive to this connection (deleted when it closes).', advanced: true }),
      auto_delete: bool({ default: false, description: 'Declare the queue to be deleted when its last consumer goes away.', advanced: true }),
      queue_arguments: opt(stringMap().optional(), {
        description: 'Arguments for the queue declaration, e.g. `x-queue-type: quorum`, `x-message-ttl`, `x-max-length`.',
        aliases: ['arguments', 'queue_args'],
      }),
      dead_letter_exchange: opt(z.string().optional(), {
        description:
          'Shorthand for the queue argument `x-dead-letter-exchange`: where the broker sends messages rejected with `on_failure: dead_letter` (use `""` for the default exchange).',
        aliases: ['x_dead_letter_exchange', 'dlx'],
      }),
      dead_letter_routing_key: opt(z.string().optional(), {
        description: 'Shorthand for the queue argument `x-dead-letter-routing-key` (default: the message\'s own routing key).',
        aliases: ['x_dead_letter_routing_key'],
      }),
      bindings: opt(z.array(binding()).optional(), {
        description: 'Exchange bindings of the queue: `[{exchange, routing_key, exchange_type?, arguments?}]`, declared on every (re)connect.',
        aliases: ['binding'],
      }),
      exchange: opt(z.string().min(1).optional(), {
        description: 'Shorthand for a single binding: the exchange to bind the queue to (with `routing_key` and `exchange_type`).',
        aliases: ['exchange_name'],
      }),
      routing_key: opt(list(z.string()).optional(), {
        description: 'Shorthand binding: the binding key(s) for `exchange`.',
        aliases: ['routing_keys', 'binding_key', 'binding_keys'],
      }),
      exchange_type: opt(exchangeType().optional(), { description: 'Shorthand binding: declare `exchange` with this type.' }),
      prefetch: num({
        int: true,
        min: 1,
        max: 65535,
        default: 2000,
        description:
          'Most unacknowledged messages the broker sends ahead (basic.qos prefetch count). Messages are acknowledged only once the sink accepted them, so this bounds what is in flight and in memory.',
        aliases: ['prefetch_count', 'qos'],
      }),
      on_failure: opt(z.enum(['requeue', 'dead_letter', 'drop']).default('requeue'), {
        description:
          'What happens to messages handed to the pipeline but never acknowledged when it fails (sink gave up, `bad_data: fail`): `requeue` puts them back for redelivery, `dead_letter` rejects them without requeue so the queue\'s dead-letter exchange receives them (discarded when it has none), `drop` acknowledges and discards them.',
        aliases: ['failure_mode', 'nack_mode'],
      }),
      consumer_tag: opt(z.string().optional(), { description: 'Consumer tag (default: generated by the broker).', advanced: true }),
      exclusive_consumer: bool({ default: false, description: 'Ask to be the queue\'s only consumer (single active reader).', advanced: true }),
      max_batch: num({ int: true, min: 1, default: 500, description: 'Most messages handed to the pipeline in one batch.', advanced: true }),
    })
    .superRefine((o, ctx) => {
      if ((o.routing_key !== undefined || o.exchange_type !== undefined) && o.exchange === undefined) {
        ctx.addIssue({ code: 'custom', path: ['routing_key'], message: "'routing_key'/'exchange_type' need 'exchange' (or use 'bindings')" });
      }
      if (o.passive && (o.queue_arguments || o.dead_letter_exchange !== undefined || o.dead_letter_routing_key !== undefined)) {
        ctx.addIssue({ code: 'custom', path: ['passive'], message: 'a passive queue is not declared, so queue arguments and dead-letter settings cannot apply; set them on the existing queue' });
      }
    }),
);

export type RabbitSourceOptions = z.output<ReturnType<typeof sourceOptions>>;

const template = (what: string) =>
  z.string().superRefine((s, ctx) => {
    const p = checkTemplate(s);
    if (p) ctx.addIssue({ code: 'custom', message: `${what}: ${p}` });
  });

export const sinkOptions = lazyOptions('rabbitmq:sink', () =>
  z.strictObject({
    ...connectionShape(),
    exchange: opt(z.string().default(''), {
      description: 'Exchange to publish to. Default `""`: the default exchange, which routes by queue name.',
      aliases: ['exchange_name', 'rabbitmq.exchange'],
    }),
    routing_key: opt(template('routing_key').default(''), {
      description:
        'Routing key, fixed or templated from the record: `orders.{{ region }}`, `{{ customer.id }}`, `{{ _routing_key }}` (a name starting with `_` reads source metadata when the row has no such field). With the default exchange this is the queue name.',
      aliases: ['routingKey', 'topic'],
      examples: ['orders', 'orders.{{ region }}.{{ type }}'],
    }),
    exchange_type: opt(exchangeType().optional(), {
      description: 'Declare `exchange` (durable) with this type when the sink opens. Without it the exchange must exist.',
    }),
    queue: opt(z.string().min(1).optional(), {
      description: 'Declare this durable queue when the sink opens (and bind it to `exchange` with `bind_key`, when `exchange` is set).',
      aliases: ['declare_queue'],
    }),
    bind_key: opt(z.string().default('#'), { description: 'Binding key for the declared `queue` (default `#`).', advanced: true }),
    persistent: bool({
      default: true,
      description: 'Publish with delivery mode 2 (persistent): messages in durable queues survive a broker restart.',
      aliases: ['durable', 'delivery_mode_persistent'],
    }),
    mandatory: bool({
      default: false,
      description: 'Fail the write when a message cannot be routed to any queue (instead of the broker silently dropping it).',
    }),
    headers: opt(z.record(z.string(), template('headers')).optional(), {
      description: 'Message headers; each value is a template like `routing_key`: `{ source: sluice, region: "{{ region }}" }`.',
    }),
    forward_headers: bool({
      default: false,
      description: 'Also copy the record\'s own headers (e.g. those a RabbitMQ or Kafka source read) into the message headers.',
    }),
    content_type: opt(z.string().optional(), {
      description: 'The content_type property; default from the format (`application/json`, `text/plain`, `text/csv`, `application/octet-stream`).',
    }),
    message_id: opt(template('message_id').optional(), { description: 'The message_id property, a template (e.g. `{{ id }}`), for consumer-side de-duplication.' }),
    correlation_id: opt(template('correlation_id').optional(), { description: 'The correlation_id property, a template.', advanced: true }),
    ...payloadTemplateShape(),
    expiration: duration({ description: 'Per-message TTL.', advanced: true }).optional(),
    priority: num({ int: true, min: 0, max: 255, description: 'Message priority (needs a queue with `x-max-priority`).', advanced: true }).optional(),
    confirm_timeout: duration({
      default: '30s',
      description: 'How long a batch may wait for the broker\'s publisher confirms before the write fails (and is retried).',
      advanced: true,
    }),
  }),
);

export type RabbitSinkOptions = z.output<ReturnType<typeof sinkOptions>>;
export type RabbitConnectionOptions = Pick<RabbitSourceOptions, keyof ReturnType<typeof connectionShape>>;
