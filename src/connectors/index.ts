// Every connector, by name. Adding a connector = a folder with an `index.ts` exporting `spec`, plus one line here.

import type { ConnectorSpec } from '../core/spec.js';
import { spec as blackhole } from './blackhole/index.js';
import { spec as file } from './file/index.js';
import { spec as generator } from './generator/index.js';
import { spec as kafka } from './kafka/index.js';
import { spec as memory } from './memory/index.js';
import { spec as mqtt } from './mqtt/index.js';
import { spec as nats } from './nats/index.js';
import { spec as natsJetstream } from './nats_jetstream/index.js';
import { spec as rabbitmq } from './rabbitmq/index.js';
import { spec as redis } from './redis/index.js';
import { spec as stdout } from './stdout/index.js';
import { spec as websocket } from './websocket/index.js';
import { spec as influxdb } from './influxdb/index.js';
import { spec as mysql } from './mysql/index.js';
import { spec as postgres } from './postgres/index.js';
import { spec as httpPull } from './http_pull/index.js';
import { spec as livepeer } from './livepeer/index.js';
import { spec as sse } from './sse/index.js';
import { spec as webhook } from './webhook/index.js';

export const CONNECTORS: readonly ConnectorSpec[] = [blackhole, file, generator, kafka, memory, mqtt, nats, natsJetstream, rabbitmq, redis, stdout, websocket, influxdb, mysql, postgres, httpPull, livepeer, sse, webhook];

const byName = new Map<string, ConnectorSpec>();
for (const c of CONNECTORS) {
  byName.set(c.name.toLowerCase(), c);
  for (const a of c.aliases ?? []) byName.set(a.toLowerCase(), c);
}

/** A connector by its name or an alias (case-insensitive). */
export function findConnector(name: string): ConnectorSpec | undefined {
  return byName.get(name.toLowerCase());
}

export function connectorNames(): string[] {
  return [...byName.keys()];
}
