// `nats`: core NATS publish/subscribe. The source subscribes to a subject (wildcards, queue groups) and is
// at-most-once unless `buffer: durable`; the sink publishes to a fixed or templated subject, optionally as
// request-reply. JetStream lives in ../nats_jetstream and shares connection.ts. The client is imported on first use.

import { defineConnector } from '../../core/spec.js';
import { lazySink, lazySource } from '../../core/lazy.js';
import { sinkOptions, sourceOptions, type NatsSinkOptions, type NatsSourceOptions } from './options.js';

export { sourceOptions, sinkOptions };
export type { NatsSourceOptions, NatsSinkOptions };

export const SOURCE_METADATA = {
  _subject: 'the subject the message was published to (useful with wildcards)',
  _reply: 'the reply subject of a request, or null',
  _headers: 'the message headers (a map; a header with several values is comma-joined)',
  _timestamp: 'when the message was received (NATS core messages carry no time)',
};

export const spec = defineConnector({
  name: 'nats',
  aliases: ['nats_core', 'NATS'],
  title: 'NATS',
  description:
    'Subscribes to a core NATS subject (wildcards, queue groups) and publishes to a fixed or templated subject, with user/password, token, NKey or credentials-file auth and TLS. Core NATS is at-most-once; `buffer: durable` keeps every received message on disk until the sink acknowledged it. For acknowledged, replayable delivery use `nats_jetstream`.',
  source: {
    options: sourceOptions,
    create: (o: NatsSourceOptions, info) => lazySource(async () => new (await import('./source.js')).NatsSource(o, info)),
    defaultFormat: 'json',
    replayable: false,
    metadata: SOURCE_METADATA,
  },
  sink: {
    options: sinkOptions,
    create: (o: NatsSinkOptions, info) => lazySink(async () => new (await import('./sink.js')).NatsSink(o, info)),
    defaultFormat: 'json',
  },
  test: async (options, role, report, signal) => (await import('./probe.js')).testNats(options, role, report, signal),
});

export default spec;
