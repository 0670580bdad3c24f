// Core NATS in, JetStream out: the nats source's subscription and batching, JSON decode/encode, and the
// nats_jetstream sink's acknowledged publishes (one PubAck per message, a batch's publishes concurrent), against the
// local nats-server. A publisher process sends the trade ticks on core NATS while the run goes on, at most WINDOW
// ahead of what the measured side reports written (see bench/lib/brokers-publisher.mjs). Each run uses its own
// subjects and a file-backed stream, which it deletes afterwards.

import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { join } from 'node:path';
import { payloadBytes, runUntil, startPublisher, uniqueName, unreachable } from '../lib/brokers.mjs';

const URL = 'nats://127.0.0.1:4222';
const WINDOW = 10_000;
const BATCH = 1000;

async function withStream(fixtureDir, n, fn) {
  const nc = await connect({ servers: URL, name: 'sluice-bench-setup' });
  const jsm = await jetstreamManager(nc);
  const id = uniqueName('bench').replace(/[^\w-]/g, '_');
  const stream = id.replace(/-/g, '_');
  const inSubject = `bench.in.${id}`;
  const outSubject = `bench.js.${id}`;
  const bytes = payloadBytes(fixtureDir, n);
  const publisher = startPublisher('nats', inSubject, n, WINDOW, fixtureDir);
  try {
    await jsm.streams.add({ name: stream, subjects: [outSubject], storage: 'file' });
    await publisher.ready;
    const r = await fn({ inSubject, outSubject, publisher, bytes });
    const pub = await publisher.done;
    const stored = (await jsm.streams.info(stream)).state.messages;
    if (stored !== n) throw new Error(`stream holds ${stored} messages, expected ${n}`);
    return { ...r, published: pub.published, stream_messages: stored };
  } finally {
    publisher.kill();
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
}

export default {
  name: 'nats->jetstream',
  summary: `nats source (core subscription, format json) into the nats_jetstream sink (format json, a PubAck awaited per message, a batch's publishes concurrent; default batch 1000/5 ms); a publisher process sends ~150-byte trade ticks at most ${WINDOW} ahead`,
  baseline: `@nats-io/transport-node subscription with a callback queueing messages; a loop takes up to ${BATCH} queued, JSON.parse + JSON.stringify each, js.publish each concurrently and awaits every PubAck, then takes the next; same publisher and window`,
  records: 100_000,
  bytes: true,

  skip: () => unreachable('NATS', 4222),
  // The ticks file for the publisher process; the measured worker only needs its byte count, not the payloads.
  prepare: ({ fixtureDir, n }) => ({ bytes: payloadBytes(fixtureDir, n) }),

  impls: {
    async sluice({ n, fixtureDir, workDir }) {
      return withStream(fixtureDir, n, async ({ inSubject, outSubject, publisher, bytes }) => {
        const { seconds, stats } = await runUntil(
          {
            name: 'bench',
            source: { connector: 'nats', config: { url: [URL], subject: inSubject }, format: 'json' },
            sink: { connector: 'nats_jetstream', config: { url: [URL], subject: outSubject }, format: 'json' },
          },
          { dataDir: join(workDir, 'data'), n, go: () => publisher.go(), progress: (w) => publisher.progress(w) },
        );
        if (stats.records_out !== n) throw new Error(`sink wrote ${stats.records_out} records, expected ${n}`);
        return { records: stats.records_out, seconds, bytes };
      });
    },

    async bare({ n, fixtureDir }) {
      return withStream(fixtureDir, n, async ({ inSubject, outSubject, publisher, bytes }) => {
        const nc = await connect({ servers: URL, name: 'sluice-bench-bare' });
        const js = jetstream(nc, { timeout: 5000 });
        const td = new TextDecoder();
        let queue = [];
        let wake;
        const sub = nc.subscribe(inSubject, {
          callback: (err, m) => {
            if (err) throw err;
            queue.push(m.data);
            wake?.();
          },
        });
        await nc.flush();
        const t0 = performance.now();
        publisher.go();
        let written = 0;
        while (written < n) {
          if (!queue.length) {
            await new Promise((r) => (wake = r));
            wake = undefined;
            continue;
          }
          const batch = queue.length <= BATCH ? queue : queue.slice(0, BATCH);
          queue = queue.length <= BATCH ? [] : queue.slice(BATCH);
          const acks = batch.map((data) => js.publish(outSubject, JSON.stringify(JSON.parse(td.decode(data)))));
          const results = await Promise.allSettled(acks);
          const failed = results.filter((x) => x.status === 'rejected');
          if (failed.length) throw new Error(`${failed.length} JetStream publishes failed: ${failed[0].reason}`);
          written += batch.length;
          publisher.progress(written);
        }
        sub.unsubscribe();
        await nc.drain();
        const seconds = (performance.now() - t0) / 1000;
        return { records: written, seconds, bytes };
      });
    },
  },
};
