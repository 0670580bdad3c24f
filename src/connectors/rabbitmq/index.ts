// `rabbitmq`: a queue consumer acknowledged after the sink (requeue or dead-letter on failure) and a publisher with
// confirms, over rabbitmq-client with automatic reconnection. The client is imported on first use.

import { defineConnector } from '../../core/spec.js';
import { lazySink, lazySource } from '../../core/lazy.js';
import { sinkOptions, sourceOptions, type RabbitSinkOptions, type RabbitSourceOptions } from './options.js';

export { sourceOptions, sinkOptions };
export type { RabbitSourceOptions, RabbitSinkOptions };

export const SOURCE_METADATA = {
  _exchange: 'exchange the message was published to (empty for the default exchange)',
  _routing_key: 'routing key it was published with',
  _delivery_tag: 'delivery tag on the consuming channel',
  _redelivered: '`true` when the broker delivered the message before and it was not acknowledged (a possible duplicate)',
  _properties:
    'message properties as a map: `content_type`, `content_encoding`, `delivery_mode`, `priority`, `correlation_id`, `reply_to`, `expiration`, `message_id`, `timestamp` (ms since the epoch), `type`, `user_id`, `app_id`',
};

export const spec = defineConnector({
  name: 'rabbitmq',
  aliases: ['RabbitMQ', 'amqp', 'rabbit'],
  title: 'RabbitMQ',
  description:
    'Consumes a RabbitMQ queue (declared or checked, bound to exchanges) and acknowledges each message only after the sink accepted it; messages the pipeline could not write are requeued, dead-lettered or dropped. Publishes to an exchange with templated routing keys, persistent delivery and publisher confirms. Reconnects by itself after a broker restart.',
  source: {
    options: sourceOptions,
    create: (o: RabbitSourceOptions, info) => lazySource(async () => new (await import('./source.js')).RabbitSource(o, info)),
    defaultFormat: 'json',
    replayable: true,
    metadata: SOURCE_METADATA,
  },
  sink: {
    options: sinkOptions,
    create: (o: RabbitSinkOptions, info) => lazySink(async () => new (await import('./sink.js')).RabbitSink(o, info)),
    defaultFormat: 'json',
  },
  test: async (options, role, report, signal) => (await import('./probe.js')).testRabbit(options, role, report, signal),
  autocomplete: async (options, signal) => (await import('./probe.js')).autocomplete(options, signal),
});

export default spec;
