// MQTT in, core NATS out: the mqtt source (QoS 1, PUBACK held until the sink accepted the message), JSON decode/
// encode, and the nats sink (publish, then a flush round trip per batch), against the local Mosquitto and nats-server.
// MQTT does not replay, so a publisher process sends the trade ticks with QoS 1 during the run, at most WINDOW ahead
// of what the measured side reports written (see bench/lib/brokers-publisher.mjs). A NATS subscriber in the worker
// counts what arrived on the output subject; both implementations must deliver exactly N there.

import mqtt from 'mqtt';
import { connect } from '@nats-io/transport-node';
import { join } from 'node:path';
import { payloadBytes, runUntil, startPublisher, uniqueName, unreachable, until } from '../lib/brokers.mjs';

const MQTT_URL = 'mqtt://127.0.0.1:1883';
const NATS_URL = 'nats://127.0.0.1:4222';
// Mosquitto keeps at most max_queued_messages (1000, its default) per subscriber beyond those in flight and drops
// QoS 1 messages past that. Written-but-not-yet-PUBACKed messages are still queued there, so the window stays at half.
const WINDOW = 500;
// The source's Receive Maximum default (`max_inflight`), given to the bare client too.
const RECEIVE_MAXIMUM = 1000;
const BATCH = 1000;

async function withSubjects(fixtureDir, n, fn) {
  const id = uniqueName('bench');
  const topic = `bench/mqtt/${id}`;
  const subject = `bench.mqtt.${id}`;
  const bytes = payloadBytes(fixtureDir, n);
  const counter = await connect({ servers: NATS_URL, name: 'sluice-bench-counter' });
  let delivered = 0;
  const sub = counter.subscribe(subject, { callback: () => void delivered++ });
  await counter.flush();
  const publisher = startPublisher('mqtt', topic, n, WINDOW, fixtureDir);
  try {
    await publisher.ready;
    const r = await fn({ id, topic, subject, publisher, bytes });
    const pub = await publisher.done;
    await until(() => delivered >= n, `${n} messages on the NATS subject (got ${delivered})`, 10_000, 5).catch(() => undefined);
    await counter.flush();
    if (delivered !== n) throw new Error(`the NATS subscriber counted ${delivered} messages, expected ${n}`);
    return { ...r, published: pub.published, nats_delivered: delivered };
  } finally {
    publisher.kill();
    sub.unsubscribe();
    await counter.close();
  }
}

export default {
  name: 'mqtt->nats',
  summary: `mqtt source (QoS 1, MQTT 5, clean session, Receive Maximum ${RECEIVE_MAXIMUM}, PUBACK after the sink; format json) into the nats sink (format json; a write resolves after a flush round trip); a publisher process sends ~150-byte trade ticks with QoS 1 at most ${WINDOW} ahead`,
  baseline: `mqtt.js client (MQTT 5, Receive Maximum ${RECEIVE_MAXIMUM}) whose outgoing PUBACKs are held back until the NATS publishes of their batch were flushed; messages gathered per event-loop turn (up to ${BATCH}), JSON.parse + JSON.stringify each, nc.publish each, await nc.flush(), then release that batch's PUBACKs; same publisher and window`,
  records: 50_000,
  bytes: true,

  async skip() {
    return (await unreachable('Mosquitto', 1883)) ?? (await unreachable('NATS', 4222));
  },
  // The ticks file for the publisher process; the measured worker only needs its byte count, not the payloads.
  prepare: ({ fixtureDir, n }) => ({ bytes: payloadBytes(fixtureDir, n) }),

  impls: {
    async sluice({ n, fixtureDir, workDir }) {
      return withSubjects(fixtureDir, n, async ({ id, topic, subject, publisher, bytes }) => {
        const { seconds, stats } = await runUntil(
          {
            name: 'bench',
            source: { connector: 'mqtt', config: { server: MQTT_URL, topic, qos: 1, client_id: `sluice-${id}`, clean_session: true }, format: 'json' },
            sink: { connector: 'nats', config: { url: [NATS_URL], subject }, format: 'json' },
          },
          { dataDir: join(workDir, 'data'), n, timeoutMs: 60_000, go: () => publisher.go(), progress: (w) => publisher.progress(w) },
        );
        if (stats.records_out !== n) throw new Error(`sink wrote ${stats.records_out} records, expected ${n}`);
        return { records: stats.records_out, seconds, bytes };
      });
    },

    async bare({ n, fixtureDir }) {
      return withSubjects(fixtureDir, n, async ({ id, topic, subject, publisher, bytes }) => {
        const nc = await connect({ servers: NATS_URL, name: 'sluice-bench-bare' });
        const client = await mqtt.connectAsync(MQTT_URL, { clientId: `bare-${id}`, clean: true, protocolVersion: 5, properties: { receiveMaximum: RECEIVE_MAXIMUM }, reconnectPeriod: 0 });
        // mqtt.js PUBACKs a message as soon as it was handled; holding the ack packets back (and letting the client go
        // on reading) is how a bare program acknowledges only what reached NATS without one message in flight.
        const send = client._sendPacket.bind(client);
        const held = [];
        client._sendPacket = (packet, cb, ...rest) => {
          if (packet.cmd === 'puback') {
            held.push(packet);
            cb?.();
            return;
          }
          send(packet, cb, ...rest);
        };
        const td = new TextDecoder();
        let queue = [];
        let written = 0;
        let running = false;
        let failure;
        let finish;
        const done = new Promise((r) => (finish = r));
        const drain = async () => {
          running = true;
          try {
            while (queue.length) {
              const batch = queue.length <= BATCH ? queue : queue.slice(0, BATCH);
              queue = queue.length <= BATCH ? [] : queue.slice(BATCH);
              for (const p of batch) nc.publish(subject, JSON.stringify(JSON.parse(td.decode(p))));
              await nc.flush();
              for (const ack of held.splice(0, batch.length)) send(ack);
              written += batch.length;
              publisher.progress(written);
              if (written >= n) finish();
            }
          } catch (e) {
            failure = e;
            finish();
          } finally {
            running = false;
          }
        };
        client.on('message', (_t, payload) => {
          queue.push(payload);
          if (!running) {
            running = true;
            setImmediate(drain);
          }
        });
        await client.subscribeAsync(topic, { qos: 1 });
        const t0 = performance.now();
        publisher.go();
        // A lost message would leave the publisher waiting for credit and this loop for input: fail, saying where.
        const timer = setTimeout(() => {
          failure = new Error(`no end after 60 s: ${written} written, ${queue.length} queued, ${held.length} PUBACKs held`);
          finish();
        }, 60_000);
        await done;
        clearTimeout(timer);
        if (failure) throw failure;
        await client.endAsync();
        await nc.drain();
        const seconds = (performance.now() - t0) / 1000;
        return { records: written, seconds, bytes };
      });
    },
  },
};
