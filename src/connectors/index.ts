// Every connector, by name. Adding a connector = a folder with an `index.ts` exporting `spec`, plus one line here.
// A connector's modules load on first use, so a pipeline pays only for the connectors it names (issue 9: start-up).
// The names and aliases are written here as well as in each spec, so that a config can be resolved before any spec
// is loaded; registry.test.ts checks that each line agrees with its spec.

import type { ConnectorSpec } from '../core/spec.js';
import { NotLoadedError, onDemand } from '../core/loading.js';

interface RegistryLine {
  name: string;
  aliases: string[];
  load: () => Promise<{ spec: ConnectorSpec }>;
}

export const REGISTRY: readonly RegistryLine[] = [
  { name: 'blackhole', aliases: ['nop', 'null'], load: () => import('./blackhole/index.js') },
  { name: 'file', aliases: ['filesystem', 'FileSystem'], load: () => import('./file/index.js') },
  { name: 'generator', aliases: ['stream_generator', 'impulse', 'nexmark', 'random'], load: () => import('./generator/index.js') },
  { name: 'kafka', aliases: ['Kafka', 'apache_kafka', 'redpanda'], load: () => import('./kafka/index.js') },
  { name: 'memory', aliases: [], load: () => import('./memory/index.js') },
  { name: 'mqtt', aliases: ['MQTT', 'mqtt5', 'mosquitto'], load: () => import('./mqtt/index.js') },
  { name: 'nats', aliases: ['nats_core', 'NATS'], load: () => import('./nats/index.js') },
  { name: 'nats_jetstream', aliases: ['jetstream', 'nats-jetstream', 'natsjetstream'], load: () => import('./nats_jetstream/index.js') },
  { name: 'rabbitmq', aliases: ['RabbitMQ', 'amqp', 'rabbit'], load: () => import('./rabbitmq/index.js') },
  { name: 'redis', aliases: ['Redis', 'redis_stream', 'redis_pubsub'], load: () => import('./redis/index.js') },
  { name: 'stdout', aliases: ['log', 'console'], load: () => import('./stdout/index.js') },
  { name: 'websocket', aliases: ['ws', 'WebSocket', 'websockets'], load: () => import('./websocket/index.js') },
  { name: 'influxdb', aliases: ['influx', 'influxdb2', 'influxdbv2', 'influx2'], load: () => import('./influxdb/index.js') },
  { name: 'mysql', aliases: ['mariadb', 'sql'], load: () => import('./mysql/index.js') },
  { name: 'postgres', aliases: ['postgresql', 'pg'], load: () => import('./postgres/index.js') },
  { name: 'http_pull', aliases: ['polling_http', 'http-pull', 'httppull', 'http_poll', 'rest_poll'], load: () => import('./http_pull/index.js') },
  { name: 'livepeer', aliases: ['livepeer_studio'], load: () => import('./livepeer/index.js') },
  { name: 'sse', aliases: ['server_sent_events', 'eventsource', 'event_source'], load: () => import('./sse/index.js') },
  { name: 'webhook', aliases: ['http_push', 'httppush', 'rest', 'http', 'Webhook'], load: () => import('./webhook/index.js') },
];

const byName = new Map<string, RegistryLine>();
for (const line of REGISTRY) for (const n of [line.name, ...line.aliases]) byName.set(n.toLowerCase(), line);

const specs = onDemand((line: RegistryLine) => line.load().then((m) => m.spec));
const load = specs.load;

/**
 * Loads the connectors with these names or aliases (case-insensitive; every connector when none are given). Other
 * strings are ignored, so a caller may pass whatever a config has in its `connector:` places: the compiler reports
 * unknown names.
 */
export async function loadConnectors(names?: Iterable<string>): Promise<void> {
  const lines = names === undefined ? REGISTRY : [...new Set([...names].flatMap((n) => byName.get(n.toLowerCase()) ?? []))];
  await Promise.all(lines.map(load));
}

/** Every connector, loaded, in the registry's order (for listings, docs and JSON Schema export). */
export async function allConnectors(): Promise<ConnectorSpec[]> {
  return Promise.all(REGISTRY.map(load));
}

/**
 * A connector by its name or an alias (case-insensitive), or undefined for an unknown name. A known connector that is
 * not loaded yet throws a NotLoadedError: the entry point should have loaded it (`whenLoaded` does that and retries).
 */
export function findConnector(name: string): ConnectorSpec | undefined {
  const line = byName.get(name.toLowerCase());
  if (!line) return undefined;
  const spec = specs.get(line);
  if (!spec) throw new NotLoadedError(`connector '${line.name}'`, () => load(line));
  return spec;
}

/** Every name and alias, lower-cased (for "did you mean" hints); loads nothing. */
export function connectorNames(): string[] {
  return [...byName.keys()];
}
