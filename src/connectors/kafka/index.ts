// `kafka`: a consumer-group source that commits offsets only after the sink acknowledged them, and a batching
// producer sink with templated topics and keys, headers, partitioners, compression and optional transactions.
// The client code (kafkajs) is imported when a pipeline or a test first uses the connector.

import { defineConnector } from '../../core/spec.js';
import { lazySink, lazySource } from '../../core/lazy.js';
import { sinkOptions, sourceOptions, type KafkaSinkOptions, type KafkaSourceOptions } from './options.js';

export { sourceOptions, sinkOptions };
export type { KafkaAck } from './source.js';
export type { KafkaSourceOptions, KafkaSinkOptions, RegistryConfig } from './options.js';

export const SOURCE_METADATA = {
  _topic: 'topic the message was read from',
  _partition: 'partition number',
  _offset: 'offset of the message in its partition',
};

export const spec = defineConnector({
  name: 'kafka',
  aliases: ['Kafka', 'apache_kafka', 'redpanda'],
  title: 'Apache Kafka',
  description:
    'Reads topics as a consumer group member, committing offsets only after the sink acknowledged the records (at-least-once, resume after restart), with per-partition order and concurrent partitions; writes batches with templated topics and keys, headers, partitioners, gzip and optional transactions. SASL (PLAIN, SCRAM) and TLS.',
  source: {
    options: sourceOptions,
    create: (o: KafkaSourceOptions, info) => lazySource(async () => new (await import('./source.js')).KafkaSource(o, info)),
    defaultFormat: 'json',
    replayable: true,
    metadata: SOURCE_METADATA,
  },
  sink: {
    options: sinkOptions,
    create: (o: KafkaSinkOptions, info) => lazySink(async () => new (await import('./sink.js')).KafkaSink(o, info)),
    defaultFormat: 'json',
  },
  autocomplete: async (options, signal) => (await import('./probe.js')).autocompleteKafka(options, signal),
  test: async (options, role, report, signal) => (await import('./probe.js')).testKafka(options, role, report, signal),
});

export default spec;
