// `nats_jetstream`: JetStream with acknowledgement at both ends. The source is a pull consumer whose messages are
// acked only after the sink accepted them (at-least-once; durable consumers resume after a restart); the sink awaits
// each message's PubAck and de-duplicates retries with Nats-Msg-Id. The client is imported on first use.

import { defineConnector } from '../../core/spec.js';
import { lazySink, lazySource } from '../../core/lazy.js';
import { sinkOptions, sourceOptions, type JetStreamSinkOptions, type JetStreamSourceOptions } from './options.js';

export { sourceOptions, sinkOptions };
export type { JetStreamSourceOptions, JetStreamSinkOptions };

export const SOURCE_METADATA = {
  _stream: 'the stream the message was read from',
  _sequence: 'the message\'s sequence number in the stream',
  _subject: 'the subject the message was published to',
  _delivery_count: 'how often the message was delivered (1 the first time; more after a nak or an ack_wait timeout)',
  _headers: 'the message headers (a map)',
  _timestamp: 'when the stream stored the message; also the record timestamp',
};

export const spec = defineConnector({
  name: 'nats_jetstream',
  aliases: ['jetstream', 'nats-jetstream', 'natsjetstream'],
  title: 'NATS JetStream',
  description:
    'Consumes a JetStream stream through a durable or ephemeral pull consumer and acknowledges each message only after the sink accepted it (at-least-once; failures nak with nak_delay), and publishes to JetStream with acknowledgement, Nats-Msg-Id de-duplication and optional stream creation.',
  source: {
    options: sourceOptions,
    create: (o: JetStreamSourceOptions, info) => lazySource(async () => new (await import('./source.js')).JetStreamSource(o, info)),
    defaultFormat: 'json',
    replayable: true,
    metadata: SOURCE_METADATA,
  },
  sink: {
    options: sinkOptions,
    create: (o: JetStreamSinkOptions, info) => lazySink(async () => new (await import('./sink.js')).JetStreamSink(o, info)),
    defaultFormat: 'json',
  },
  autocomplete: async (options, signal) => (await import('./probe.js')).autocomplete(options, signal),
  test: async (options, role, report, signal) => (await import('./probe.js')).testJetStream(options, role, report, signal),
});

export default spec;
