// The publisher side of the push-source scenarios (mqtt->nats, nats->jetstream), run as its own process:
//   node bench/lib/brokers-publisher.mjs <nats|mqtt> <subject-or-topic> <n> <window> <fixture-dir>
// Core NATS and MQTT do not replay, and neither waits for a slow subscriber: NATS cuts off a slow consumer and
// Mosquitto drops QoS 1 messages past `max_queued_messages` (1000). So it publishes only while fewer than `window`
// messages are ahead of what the measured process reports as written (IPC messages `{written}`), which keeps the
// brokers from dropping anything while the measured side, not the publisher, sets the pace. Prints {published, seconds}.

import { payloadReader } from './brokers.mjs';

const [kind, target, nText, windowText, fixtureDir] = process.argv.slice(2);
const n = Number(nText);
const window = Number(windowText);
// Read slice by slice as credit arrives: the whole input would be ~N x 200 bytes of Buffers in this process.
const reader = payloadReader(fixtureDir, n);

let written = 0;
let wake;
let started;
const go = new Promise((r) => (started = r));
process.on('message', (m) => {
  if (m?.go) started();
  if (typeof m?.written === 'number' && m.written > written) {
    written = m.written;
    wake?.();
  }
});
const credit = () => new Promise((r) => (wake = r));

async function natsPublisher() {
  const { connect } = await import('@nats-io/transport-node');
  const nc = await connect({ servers: '127.0.0.1:4222', name: 'sluice-bench-publisher' });
  return {
    async publish(count) {
      for (const m of reader.next(count)) nc.publish(target, m);
      await nc.flush();
    },
    close: () => nc.drain(),
  };
}

async function mqttPublisher() {
  const { default: mqtt } = await import('mqtt');
  const client = await mqtt.connectAsync('mqtt://127.0.0.1:1883', { clientId: `sluice-bench-pub-${process.pid}`, clean: true, protocolVersion: 5, reconnectPeriod: 0 });
  return {
    // Every message of the slice PUBACKed by the broker; mqtt.js keeps within the broker's Receive Maximum itself.
    publish: (count) => Promise.all(reader.next(count).map((m) => client.publishAsync(target, m, { qos: 1 }))),
    close: () => client.endAsync(),
  };
}

const pub = kind === 'nats' ? await natsPublisher() : kind === 'mqtt' ? await mqttPublisher() : undefined;
if (!pub) throw new Error(`unknown publisher kind '${kind}'`);
process.send({ ready: true });
await go;
const t0 = performance.now();
let sent = 0;
while (sent < n) {
  const allowed = Math.min(n, written + window);
  if (allowed <= sent) {
    await credit();
    continue;
  }
  await pub.publish(allowed - sent);
  sent = allowed;
}
const seconds = (performance.now() - t0) / 1000;
await pub.close();
reader.close();
process.stdout.write(JSON.stringify({ published: sent, seconds }) + '\n');
process.disconnect();
