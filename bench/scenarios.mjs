// Every benchmark scenario. Adding one = a module in scenarios/ exporting
//   { name, summary, baseline, records, bytes?, target?, skip?, prepare?, impls: { sluice, bare } }
// plus one line in this list. `skip` (async, in the parent) returns a reason when the scenario cannot run here, such
// as a broker that is not reachable; `prepare` runs once in the parent (fixtures shared by all runs); each impl runs
// in a fresh worker process and returns { records, seconds, bytes?, ...anything worth recording }.

import generatorBlackhole from './scenarios/generator-blackhole.mjs';
import fileJsonl from './scenarios/file-jsonl.mjs';
import fileCsv from './scenarios/file-csv.mjs';
import websocketFileJsonl from './scenarios/websocket-file-jsonl.mjs';
import websocketBlackholeSchema from './scenarios/websocket-blackhole-schema.mjs';
import websocketSlowSink from './scenarios/websocket-slow-sink.mjs';
import websocketSlowSinkDurable from './scenarios/websocket-slow-sink-durable.mjs';
import websocketLatency from './scenarios/websocket-latency.mjs';

// Broker scenarios: each needs its local server on 127.0.0.1 (Kafka: the emulator its prepare step starts) and skips otherwise.
import generatorKafka from './scenarios/kafka-generator.mjs';
import kafkaBlackhole from './scenarios/kafka-blackhole.mjs';
import rabbitmqBlackhole from './scenarios/rabbitmq-blackhole.mjs';
import redisStreamFile from './scenarios/redis-stream-file.mjs';
import natsJetstream from './scenarios/nats-jetstream.mjs';
import mqttNats from './scenarios/mqtt-nats.mjs';

export const SCENARIOS = [generatorBlackhole, fileJsonl, fileCsv, websocketFileJsonl, websocketBlackholeSchema, websocketSlowSink, websocketSlowSinkDurable, websocketLatency];
SCENARIOS.push(generatorKafka, kafkaBlackhole, rabbitmqBlackhole, redisStreamFile, natsJetstream, mqttNats);

/** Implementations in the order they run; `ratio` in the report is the first over the second. */
export const IMPLS = ['sluice', 'bare'];

export function findScenario(name) {
  return SCENARIOS.find((s) => s.name === name);
}
