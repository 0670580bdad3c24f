// Every benchmark scenario. Adding one = a module in scenarios/ exporting
//   { name, summary, baseline, records, bytes?, target?, skip?, prepare?, teardown?, impls: { sluice, bare } }
// plus its file name in MODULES below. `skip` (async, in the parent) returns a reason when the scenario cannot run here, such
// as a broker that is not reachable; `prepare` runs once in the parent (fixtures shared by all runs); `teardown` (in
// the parent, after the last run or a failure) removes what `prepare` made outside the fixture directory; each impl runs
// in a fresh worker process and returns { records, seconds, bytes?, ...anything worth recording }.

// Modules under scenarios/, in report order. The parent loads them all; a worker loads only the one it runs (the parent
// passes `--module`), so the client libraries of the broker scenarios do not count toward every worker's peak RSS.
const MODULES = [
  'generator-blackhole.mjs',
  'file-jsonl.mjs',
  'file-csv.mjs',
  'websocket-file-jsonl.mjs',
  'websocket-file-jsonl-schema.mjs',
  'websocket-blackhole-schema.mjs',
  'websocket-slow-sink.mjs',
  'websocket-slow-sink-durable.mjs',
  'websocket-latency.mjs',
  // Issue 7: webhook ingest (requests/s, records/s), Parquet writing, and the Postgres sink (skips without PostgreSQL).
  'webhook-requests.mjs',
  'webhook-records.mjs',
  'parquet-write.mjs',
  'postgres-sink.mjs',
  // Broker scenarios: each needs its local server on 127.0.0.1 (Kafka: the emulator its prepare step starts) and skips otherwise.
  'kafka-generator.mjs',
  'kafka-blackhole.mjs',
  'rabbitmq-blackhole.mjs',
  'redis-stream-file.mjs',
  'nats-jetstream.mjs',
  'mqtt-nats.mjs',
];

/** The module file (under scenarios/) of each scenario object. */
export const MODULE_OF = new WeakMap();

/** One scenario module, by its file name under scenarios/. */
export async function loadScenarioModule(file) {
  const scenario = (await import(new URL(`./scenarios/${file}`, import.meta.url).href)).default;
  MODULE_OF.set(scenario, file);
  return scenario;
}

export const SCENARIOS = await Promise.all(MODULES.map(loadScenarioModule));

/** Implementations in the order they run; `ratio` in the report is the first over the second. */
export const IMPLS = ['sluice', 'bare'];

export function findScenario(name) {
  return SCENARIOS.find((s) => s.name === name);
}
