// `mqtt`: subscribes to topic filters (QoS 0/1/2, shared subscriptions, persistent sessions, broker acknowledgement
// only after the sink) and publishes records (templated topics, QoS, retain, MQTT 5 user properties). Endpoints naming
// the same connection profile share one client connection. The mqtt client is imported on first use.

import { defineConnector } from '../../core/spec.js';
import { lazySink, lazySource } from '../../core/lazy.js';
import { sinkOptions, sourceOptions, type MqttSinkOptions, type MqttSourceOptions } from './options.js';

export { sourceOptions, sinkOptions, type MqttSourceOptions, type MqttSinkOptions } from './options.js';

export const SOURCE_METADATA = {
  _topic: 'the topic the message was published to',
  _qos: 'QoS the message was delivered with (0, 1 or 2)',
  _retain: 'true for a retained message the broker replayed on subscribe',
  _dup: 'true when the broker marked the message as a redelivery',
  _message_id: 'MQTT packet identifier (QoS 1/2; null for QoS 0); unique only among unacknowledged messages',
  _properties: 'MQTT 5 publish properties: userProperties, contentType, responseTopic, correlationData, messageExpiryInterval, payloadFormatIndicator (null for MQTT 3)',
};

export const spec = defineConnector({
  name: 'mqtt',
  aliases: ['MQTT', 'mqtt5', 'mosquitto'],
  title: 'MQTT',
  description:
    'Subscribes to MQTT topics (wildcards, shared subscriptions, QoS 0/1/2, persistent sessions) and publishes records to templated topics with QoS, retain and MQTT 5 user properties. With QoS 1/2 the broker gets its acknowledgement only after the sink accepted the message; QoS 0 can be protected by an on-disk buffer. Endpoints naming the same connection profile share one connection.',
  source: {
    options: sourceOptions,
    create: (o: MqttSourceOptions, info) => lazySource(async () => new (await import('./source.js')).MqttSource(o, info)),
    defaultFormat: 'json',
    // A persistent session replays unacknowledged messages after a restart; the runtime keeps no position for it.
    replayable: false,
    metadata: SOURCE_METADATA,
  },
  sink: {
    options: sinkOptions,
    create: (o: MqttSinkOptions, info) => lazySink(async () => new (await import('./sink.js')).MqttSink(o, info)),
    defaultFormat: 'json',
  },
  test: async (options, role, report, signal) => (await import('./probe.js')).testMqtt(options, role, report, signal),
});

export default spec;
