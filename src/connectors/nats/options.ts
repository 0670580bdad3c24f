// Options of the core NATS source and sink. The connection part lives in connection.ts (shared with JetStream).

import { bool, duration, num, opt, z, lazyOptions } from '../../core/spec.js';
import { durableStorageShape, durableOnFullDropping } from '../../core/durable-options.js';
import { checkConnection, connectionShape } from './connection-options.js';
import { fieldTemplateString } from './fields.js';
import { payloadTemplateShape } from '../../core/data-template.js';

/** A subject to subscribe to: dot-separated tokens, `*` for one token, `>` for the rest. */
export const subscribeSubject = lazyOptions('nats:subject', () =>
  z.string().refine(
    (s) => {
      if (!s || /\s/.test(s)) return false;
      const tokens = s.split('.');
      return tokens.every((t, i) => t.length > 0 && (t === '>' ? i === tokens.length - 1 : t === '*' || !/[*>]/.test(t)));
    },
    { message: "must be a NATS subject such as 'orders.>' or 'sensors.*.temp' (dot-separated tokens, '*' for one token, '>' only at the end)" },
  ),
);

export const sourceOptions = lazyOptions('nats:source', () =>
  z
    .strictObject({
      ...connectionShape(),
      subject: opt(subscribeSubject(), {
        description: 'Subject to subscribe to. Wildcards: `*` matches one token, `>` the rest (`orders.>`).',
        aliases: ['subjects', 'topic', 'nats.subject'],
        examples: ['orders.>', 'sensors.*.temperature'],
      }),
      queue: opt(z.string().min(1).optional(), {
        description: 'Queue group: the subscribers of one group share the messages (each message goes to one of them), for scale-out.',
        aliases: ['queue_group', 'group', 'nats.queue'],
      }),
      queue_size: num({
        int: true,
        min: 1,
        default: 65536,
        description: 'Messages held in memory while the pipeline is busy (`buffer: memory`). Core NATS cannot be paused: past this bound messages are dropped and counted (`dropped`).',
        aliases: ['pending_limit', 'max_pending', 'prefetch_count'],
      }),
      overflow: opt(z.enum(['drop_newest', 'drop_oldest']).default('drop_newest'), {
        description: 'Which messages go when the in-memory queue is full: the arriving ones (`drop_newest`) or the oldest queued ones (`drop_oldest`).',
        aliases: ['overflow_policy', 'on_full'],
      }),
      buffer: opt(z.enum(['memory', 'durable']).default('memory'), {
        description: '`memory`: at-most-once (a sink outage or a restart loses what was received). `durable`: every message is appended to a log in the data dir before it enters the pipeline and deleted once the sink acknowledged it, so sink outages and restarts lose nothing that was received.',
      }),
      ...durableStorageShape(),
      ...durableOnFullDropping('NATS cannot be told to wait, so there is no `block`.'),
      nak_delay: duration({ description: 'Accepted for Timeplus configs; core NATS has no acknowledgements, so it has no effect (see `nats_jetstream`).', advanced: true }).optional(),
    })
    .superRefine(checkConnection),
);

export type NatsSourceOptions = z.output<ReturnType<typeof sourceOptions>>;

export const sinkOptions = lazyOptions('nats:sink', () =>
  z
    .strictObject({
      ...connectionShape(),
      subject: opt(fieldTemplateString('subject'), {
        description: 'Subject to publish to: fixed, or templated from each record\'s fields (`orders.{{ region }}`); `{{ _key }}` and other `_name`s read the record\'s metadata.',
        aliases: ['topic', 'nats.subject'],
        examples: ['orders.created', 'sensors.{{ device.site }}.{{ device_id }}'],
      }),
      headers: opt(z.record(z.string(), fieldTemplateString('headers')).optional(), {
        description: 'Message headers: name -> value, each value fixed or templated from the record (`{{ trace_id }}`).',
        aliases: ['header'],
      }),
      forward_headers: bool({
        default: true,
        description: 'Copy the headers the record arrived with (from a NATS, Kafka or MQTT source) onto the message; `headers` wins on a clash.',
        aliases: ['propagate_headers'],
      }),
      ...payloadTemplateShape(),
      request: bool({
        default: false,
        description: 'Request-reply: publish each message as a request and wait for one reply (from any responder) before the write counts as done. Off: plain publish, confirmed by a flush round trip.',
        aliases: ['request_reply'],
      }),
      request_timeout: duration({ default: '5s', description: 'How long each request waits for its reply (`request: true`). A timeout or no responder fails the write, which is retried.', aliases: ['reply_timeout'] }),
      flush_timeout: duration({ default: '10s', description: 'How long a write waits for the server to confirm (flush round trip) before it fails and is retried.', advanced: true }),
    })
    .superRefine(checkConnection),
);

export type NatsSinkOptions = z.output<ReturnType<typeof sinkOptions>>;
