// The RabbitMQ source's consume path: deliveries batched per socket read, JSON decoding, and one multiple-ack per
// batch after the sink accepted it, against the local RabbitMQ. Consuming empties a queue, so each run gets a durable
// queue of its own, filled by a short-lived child process before the measured part (outside the measured process's
// memory too), and deletes it afterwards.

import { Connection } from 'rabbitmq-client';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fillInChild, payloadBytes, runUntil, uniqueName, unreachable } from '../lib/brokers.mjs';
import { loadRuntime } from '../lib/sluice.mjs';

const URL = 'amqp://guest:guest@127.0.0.1:5672';
// The source's defaults (`prefetch`, `max_batch`), so both sides keep as much unacknowledged.
const PREFETCH = 2000;
const MAX_BATCH = 500;
// The broker keeps working on a freshly filled queue for up to about a second after the last publisher confirm
// (2026-12-06, 100k messages, broker CPU during the bare consume): starting 0.2 s after the fill, 4.5-6.5 CPU s and
// 8-15k msg/s; starting 1, 3 or 6 s after, 1.7-2.3 CPU s and 16-25k msg/s. The bare side used to start at once and
// Sluice after loading its runtime (0.3-1 s under load), so the ratio measured how much of that work each run
// overlapped. Both now start the same settle time after the fill (no broker event says when it is done).
const SETTLE_MS = 2000;

/**
 * CPU seconds (user + system) the local broker (the beam.smp process) has used so far, read from /proc; undefined
 * where there is none (another OS, a remote or containerised broker). The consumers are not the only thing that sets
 * the rate: in runs where it fell to ~20k msg/s, on either side, the broker spent about twice its usual CPU on the same
 * 100k messages while the consumer's own CPU was unchanged (2026-12-06: 2.9 s against 1.5-1.8 s), so each run reports it.
 */
function brokerCpuSeconds() {
  try {
    brokerCpuSeconds.pid ??= readdirSync('/proc').find((d) => {
      if (!/^\d+$/.test(d)) return false;
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'latin1').split('\0')[0].endsWith('beam.smp');
      } catch {
        return false;
      }
    });
    if (!brokerCpuSeconds.pid) return undefined;
    // Fields after the command name: utime and stime are the 12th and 13th, in clock ticks (100 per second on Linux).
    const f = readFileSync(`/proc/${brokerCpuSeconds.pid}/stat`, 'latin1').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return undefined;
  }
}

/** A fresh durable queue holding the n trade ticks as persistent messages with no content type (bodies stay bytes). */
async function withQueue(fixtureDir, n, fn) {
  const queue = uniqueName('bench-rabbit');
  const rabbit = new Connection({ url: URL, connectionName: 'sluice-bench-check' });
  try {
    await fillInChild('rabbitmq', queue, n, fixtureDir);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const cpu0 = brokerCpuSeconds();
    const r = await fn(queue, payloadBytes(fixtureDir, n));
    const cpu1 = brokerCpuSeconds();
    // From the settle's end to the consumer's close: its connection, the timed consume, its acks.
    if (cpu0 !== undefined && cpu1 !== undefined) r.broker_cpu_s = Math.round((cpu1 - cpu0) * 100) / 100;
    const left = (await rabbit.queueDeclare({ queue, passive: true })).messageCount;
    if (left !== 0) throw new Error(`${left} messages left in the queue after the run (not acknowledged)`);
    return r;
  } finally {
    await rabbit.queueDelete({ queue }).catch(() => undefined);
    await rabbit.close();
  }
}

export default {
  name: 'rabbitmq->blackhole',
  summary: `rabbitmq source (a durable queue per run, pre-filled by a child process with the ~150-byte trade ticks, prefetch ${PREFETCH}, max_batch ${MAX_BATCH}, format json) into the blackhole sink; local RabbitMQ`,
  baseline: `rabbitmq-client raw channel: basicQos ${PREFETCH}, basicConsume, deliveries gathered until the end of the socket read (setImmediate) or ${MAX_BATCH}, JSON.parse each, then one basicAck multiple=true per batch`,
  records: 100_000,
  bytes: true,

  skip: () => unreachable('RabbitMQ', 5672),
  // The ticks file the filler reads; each run fills its own queue from it.
  prepare: ({ fixtureDir, n }) => ({ bytes: payloadBytes(fixtureDir, n) }),

  impls: {
    async sluice({ n, fixtureDir, workDir }) {
      // Loaded before the fill, so it does not delay the start after the settle time (runUntil reuses the modules).
      await loadRuntime();
      return withQueue(fixtureDir, n, async (queue, bytes) => {
        const { seconds, stats } = await runUntil(
          {
            name: 'bench',
            source: { connector: 'rabbitmq', config: { url: URL, queue, prefetch: PREFETCH, max_batch: MAX_BATCH }, format: 'json' },
            sink: { connector: 'blackhole' },
          },
          { dataDir: join(workDir, 'data'), n },
        );
        if (stats.records_out !== n) throw new Error(`blackhole received ${stats.records_out} records, expected ${n}`);
        return { records: stats.records_out, seconds, bytes };
      });
    },

    async bare({ n, fixtureDir }) {
      return withQueue(fixtureDir, n, async (queue, bytes) => {
        const t0 = performance.now();
        const rabbit = new Connection({ url: URL, connectionName: 'sluice-bench-bare' });
        const ch = await rabbit.acquire();
        await ch.basicQos({ prefetchCount: PREFETCH });
        let held = [];
        let acked = 0;
        let parsed = 0;
        let scheduled = false;
        let finish;
        const done = new Promise((r) => (finish = r));
        const flush = () => {
          scheduled = false;
          if (!held.length) return;
          const batch = held;
          held = [];
          // Counting a field keeps the parse from being optimised away, as the blackhole counts records.
          for (const m of batch) if (JSON.parse(m.body).e) parsed++;
          ch.basicAck({ deliveryTag: batch[batch.length - 1].deliveryTag, multiple: true });
          acked += batch.length;
          if (acked >= n) finish();
        };
        const { consumerTag } = await ch.basicConsume({ queue, noAck: false }, (m) => {
          held.push(m);
          if (held.length >= MAX_BATCH) flush();
          else if (!scheduled) {
            scheduled = true;
            setImmediate(flush);
          }
        });
        await done;
        await ch.basicCancel({ consumerTag });
        await ch.close();
        await rabbit.close();
        const seconds = (performance.now() - t0) / 1000;
        if (acked !== n || parsed !== n) throw new Error(`consumer acknowledged ${acked} messages (${parsed} parsed), expected ${n}`);
        return { records: acked, seconds, bytes };
      });
    },
  },
};
