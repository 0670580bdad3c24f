// Fills a broker with the trade ticks before a measurement, as its own short-lived process (see fillInChild in
// brokers.mjs), so the measured worker never holds the payloads or the publishing client's buffers:
//   node bench/lib/brokers-fill.mjs <redis|rabbitmq> <stream-key-or-queue> <n> <fixture-dir>
// redis: XADD of each tick as field `payload` to the stream (created by the first XADD).
// rabbitmq: declares the durable queue and publishes each tick as a persistent message with publisher confirms.
// Checks that the stream or queue then holds exactly n, and prints {filled, seconds}.

import { payloadReader } from './brokers.mjs';

const [kind, target, nText, fixtureDir] = process.argv.slice(2);
const n = Number(nText);
const SLICE = 1000;

async function fillRedis() {
  const { createClient } = await import('redis');
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });
  await redis.connect();
  const reader = payloadReader(fixtureDir, n);
  try {
    for (let msgs = reader.next(SLICE); msgs.length; msgs = reader.next(SLICE)) {
      const m = redis.multi();
      for (const p of msgs) m.xAdd(target, '*', { payload: p });
      await m.execAsPipeline();
    }
    return await redis.xLen(target);
  } finally {
    reader.close();
    await redis.quit();
  }
}

async function fillRabbit() {
  const { Connection } = await import('rabbitmq-client');
  const rabbit = new Connection({ url: 'amqp://guest:guest@127.0.0.1:5672', connectionName: 'sluice-bench-fill' });
  const reader = payloadReader(fixtureDir, n);
  try {
    await rabbit.queueDeclare({ queue: target, durable: true });
    const pub = rabbit.createPublisher({ confirm: true, maxAttempts: 1 });
    try {
      for (let msgs = reader.next(SLICE); msgs.length; msgs = reader.next(SLICE)) {
        await Promise.all(msgs.map((body) => pub.send({ routingKey: target, durable: true }, body)));
      }
    } finally {
      await pub.close();
    }
    return (await rabbit.queueDeclare({ queue: target, passive: true })).messageCount;
  } finally {
    reader.close();
    await rabbit.close();
  }
}

const t0 = performance.now();
const fill = kind === 'redis' ? fillRedis : kind === 'rabbitmq' ? fillRabbit : undefined;
if (!fill) throw new Error(`unknown broker kind '${kind}' (expected redis or rabbitmq)`);
const held = await fill();
if (held !== n) throw new Error(`${kind} '${target}' holds ${held} messages after filling, expected ${n}`);
process.stdout.write(JSON.stringify({ filled: held, seconds: (performance.now() - t0) / 1000 }) + '\n');
