// Options of the JetStream source and sink: Timeplus's `nats_jetstream` names, plus the sink's de-duplication and
// stream creation. The connection part is shared with core NATS (../nats/connection.ts).

import { bool, duration, list, num, opt, size, z, lazyOptions } from '../../core/spec.js';
import { checkConnection, connectionShape } from '../nats/connection-options.js';
import { fieldTemplateString } from '../nats/fields.js';
import { payloadTemplateShape } from '../../core/data-template.js';
import { subscribeSubject } from '../nats/options.js';

const streamName = lazyOptions('nats_jetstream:stream', () => z.string().regex(/^[^\s.*>/\\]+$/, { message: "must be a stream name without spaces, '.', '*', '>', '/' or '\\'" }));

/** `2026-01-02T03:04:05Z`, or epoch milliseconds. */
const startTime = lazyOptions('nats_jetstream:start_time', () =>
  z.union([z.number(), z.string()]).transform((v, ctx) => {
    const d = typeof v === 'number' ? new Date(v) : /^\d+$/.test(v) ? new Date(Number(v)) : new Date(v);
    if (isNaN(d.getTime())) {
      ctx.addIssue({ code: 'custom', message: `'${v}' is not a time (use an ISO timestamp such as 2026-01-02T03:04:05Z, or epoch milliseconds)` });
      return z.NEVER;
    }
    return d.toISOString();
  }),
);

export const sourceOptions = lazyOptions('nats_jetstream:source', () =>
  z
    .strictObject({
      ...connectionShape(),
      subject: opt(subscribeSubject().optional(), {
        description: 'Subject to consume (wildcards allowed). With `stream`, it filters the stream; without, the stream that captures it is looked up. Either `subject` or `stream` is required.',
        aliases: ['subjects', 'filter_subject', 'topic', 'nats.subject'],
        examples: ['orders.>'],
      }),
      stream: opt(streamName().optional(), { description: 'Stream to consume. Either `subject` or `stream` is required.', aliases: ['stream_name', 'nats.stream'] }),
      durable: opt(z.string().regex(/^[^\s.*>]+$/, { message: "must be a consumer name without spaces, '.', '*' or '>'" }).optional(), {
        description: 'Durable consumer name: the server keeps the position, so a restarted pipeline resumes after the last acknowledged message. Without it (and without `queue`), an ephemeral consumer starts at `deliver` on every start and is deleted on stop.',
        aliases: ['durable_name', 'consumer', 'consumer_name'],
      }),
      queue: opt(z.string().regex(/^[^\s.*>]+$/, { message: "must be a name without spaces, '.', '*' or '>' (it names the shared consumer)" }).optional(), {
        description: 'Queue group: pipelines naming the same queue share one durable pull consumer (named after the queue when `durable` is unset) and each message goes to one of them.',
        aliases: ['queue_group', 'group', 'deliver_group'],
      }),
      deliver: opt(z.enum(['all', 'last', 'new', 'by_start_time', 'last_per_subject']).default('all'), {
        description: 'Where a new consumer starts: `all` (the whole stream), `last` (the last message), `new` (only messages published from now on), `by_start_time` (from `start_time`), `last_per_subject`. An existing durable consumer keeps its position.',
        aliases: ['deliver_policy', 'start_position'],
      }),
      start_time: opt(startTime().optional(), { description: 'With `deliver: by_start_time`: an ISO timestamp or epoch milliseconds.', aliases: ['opt_start_time', 'start_at'] }),
      bind: bool({
        default: false,
        description: 'Use an existing consumer (named by `durable`) as it is configured; fail if it does not exist. Without it, the consumer is created, or its ack_wait, max_ack_pending and filter are updated.',
      }),
      ack_wait: duration({ default: '30s', description: 'How long the server waits for an acknowledgement before redelivering. Messages are acknowledged only after the sink accepted them, so this must exceed the time a batch takes to reach the sink.' }),
      max_ack_pending: num({
        int: true,
        min: 1,
        default: 1024,
        description: 'Most delivered but unacknowledged messages; the server stops delivering at this bound, which is what pauses the source while the sink is slow.',
        aliases: ['max_inflight'],
      }),
      nak_delay: duration({ description: 'Delay before the server redelivers a message that was negatively acknowledged (pipeline failure, stop with records not written). Unset: redeliver at once.', aliases: ['nak_backoff'] }).optional(),
      prefetch_count: num({
        int: true,
        min: 1,
        default: 524288,
        description: 'Messages requested per pull (`max_messages` of the pull request). The server never has more than `max_ack_pending` unacknowledged messages out, so the effective bound is the smaller of the two.',
        aliases: ['batch_size', 'pull_batch', 'max_messages'],
      }),
      max_deliver: num({ int: true, min: -1, default: -1, description: 'Deliveries of one message before the server gives up on it (-1: unlimited).', advanced: true }),
    })
    .superRefine((o, ctx) => {
      checkConnection(o, ctx);
      if (o.subject === undefined && o.stream === undefined) ctx.addIssue({ code: 'custom', path: ['subject'], message: 'either `subject` or `stream` is required' });
      if (o.deliver === 'by_start_time' && o.start_time === undefined) ctx.addIssue({ code: 'custom', path: ['start_time'], message: '`deliver: by_start_time` needs a `start_time`' });
      if (o.start_time !== undefined && o.deliver !== 'by_start_time') ctx.addIssue({ code: 'custom', path: ['start_time'], message: '`start_time` only applies with `deliver: by_start_time`' });
      if (o.bind && o.durable === undefined && o.queue === undefined) ctx.addIssue({ code: 'custom', path: ['bind'], message: '`bind` needs the consumer name in `durable`' });
    }),
);

export type JetStreamSourceOptions = z.output<ReturnType<typeof sourceOptions>>;

const createStreamSchema = lazyOptions('nats_jetstream:create_stream', () =>
  z.strictObject({
    name: opt(streamName(), { description: 'Stream name.' }),
    subjects: list(subscribeSubject(), { description: 'Subjects the stream captures. Default: the sink subject (when it is not templated).' }).optional(),
    storage: opt(z.enum(['file', 'memory']).default('file'), { description: 'Where the stream keeps its messages.' }),
    retention: opt(z.enum(['limits', 'interest', 'workqueue']).default('limits'), { description: 'When messages are removed: at the limits, once every consumer acknowledged them, or once one did.' }),
    max_age: duration({ description: 'Oldest message kept (0 = no limit).' }).optional(),
    max_bytes: size({ description: 'Largest stream size.' }).optional(),
    max_msgs: num({ int: true, min: -1, description: 'Most messages kept (-1 = no limit).', aliases: ['max_messages'] }).optional(),
    duplicate_window: duration({ description: 'How long a `Nats-Msg-Id` is remembered for de-duplication (server default 2m).', aliases: ['duplicates'] }).optional(),
    replicas: num({ int: true, min: 1, max: 5, default: 1, description: 'Copies of the stream in a cluster.', aliases: ['num_replicas'] }),
  }),
);

export const sinkOptions = lazyOptions('nats_jetstream:sink', () =>
  z
    .strictObject({
      ...connectionShape(),
      subject: opt(fieldTemplateString('subject'), {
        description: 'Subject to publish to: fixed, or templated from each record\'s fields (`orders.{{ region }}`). A stream must capture it.',
        aliases: ['topic', 'nats.subject'],
        examples: ['orders.created', 'orders.{{ region }}'],
      }),
      msg_id_field: opt(z.string().min(1).optional(), {
        description: 'Dotted path of a record field whose value becomes the `Nats-Msg-Id` header; `_key` uses the record key. The stream drops a message whose id it saw within its duplicate window, so retried batches are written once.',
        aliases: ['msg_id', 'message_id_field', 'dedup_field', 'id_field', 'key_field'],
      }),
      headers: opt(z.record(z.string(), fieldTemplateString('headers')).optional(), {
        description: 'Message headers: name -> value, each value fixed or templated from the record (`{{ trace_id }}`).',
        aliases: ['header'],
      }),
      forward_headers: bool({ default: true, description: 'Copy the headers the record arrived with onto the message; `headers` wins on a clash.', aliases: ['propagate_headers'] }),
      ...payloadTemplateShape(),
      expect_stream: opt(streamName().optional(), { description: 'Fail a publish that would land in any other stream than this one.', advanced: true }),
      publish_timeout: duration({ default: '5s', description: 'How long each publish waits for the stream\'s acknowledgement (PubAck) before the write fails and is retried.', aliases: ['ack_timeout', 'timeout_publish'] }),
      create_stream: opt(createStreamSchema().optional(), {
        description: 'Create this stream when the sink starts, if it does not exist yet (an existing stream is left as it is).',
        aliases: ['stream'],
      }),
    })
    .superRefine((o, ctx) => {
      checkConnection(o, ctx);
      if (o.create_stream && !o.create_stream.subjects?.length && o.subject.includes('{{')) {
        ctx.addIssue({ code: 'custom', path: ['create_stream', 'subjects'], message: 'a templated subject needs the stream\'s `subjects` listed (e.g. orders.>)' });
      }
    }),
);

export type JetStreamSinkOptions = z.output<ReturnType<typeof sinkOptions>>;
