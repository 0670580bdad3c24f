// file -> JetStream with `msg_id_field` across kill -9 of `sluice run`: whatever a restarted run sends again is
// recognised by its Nats-Msg-Id within the stream's duplicate window, so the stream ends with every record once.

import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { ensureService } from '../../testing/services.js';
import { waitFor } from '../../testing/harness.js';
import { NATS_URL, uniq } from '../nats/testkit.js';
import { CLI_BUILT, runPipeline, stopChildren } from '../../testing/cli-child.js';

let nc: NatsConnection;
let jsm: JetStreamManager;
const streams: string[] = [];

beforeAll(async () => {
  await ensureService('nats');
  nc = await connect({ servers: NATS_URL });
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  await stopChildren();
  for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  await nc?.close();
});

describe.skipIf(!CLI_BUILT)('file -> nats_jetstream across kill -9', () => {
  it('100k records, killed 5 times, the source replaying from scratch twice: the stream stores each id once', async () => {
    const N = 100_000;
    const name = uniq('EO').toUpperCase();
    streams.push(name);
    const dir = mkdtempSync(join(tmpdir(), 'sluice-js-eo-'));
    try {
      let s = '';
      for (let i = 0; i < N; i++) s += `{"id":"r${i}","v":${i}}\n`;
      writeFileSync(join(dir, 'in.jsonl'), s);
      const file = join(dir, 'p.yaml');
      writeFileSync(
        file,
        [
          'name: js_eo',
          `source: { connector: file, config: { path: ${JSON.stringify(join(dir, 'in.jsonl'))} }, format: json }`,
          `sink: { connector: nats_jetstream, config: { url: '${NATS_URL}', subject: ${name}.x, msg_id_field: id, create_stream: { name: ${name}, subjects: ['${name}.>'], duplicate_window: 5m } }, format: json }`,
          'batch: { max_records: 1000, linger: 1ms }',
          '',
        ].join('\n'),
      );
      const data = join(dir, 'data');
      const stored = async () => (await jsm.streams.info(name).catch(() => undefined))?.state.messages ?? 0;
      let before = 0;
      for (let k = 0; k < 5; k++) {
        const p = runPipeline(file, data);
        const target = Math.min(N - 1000, before + 1000 + Math.floor(Math.random() * ((N - before) / 4)));
        await waitFor(async () => (await stored()) >= target || p.child.exitCode !== null, `${target} messages stored (${p.output()})`, 60_000, 5);
        p.child.kill('SIGKILL');
        await p.exited;
        const now = await stored();
        expect(now, `kill ${k}: nothing was stored twice`).toBeLessThanOrEqual(N);
        before = now;
        // Losing the source's checkpoints makes the next run send everything from the first record again: far more
        // than a kill's usual overlap, and all of it must be recognised as already stored.
        if (k === 1 || k === 3) for (const f of readdirSync(data)) if (f.startsWith('state.db')) rmSync(join(data, f));
      }
      const last = runPipeline(file, data);
      expect(await last.exited, last.output()).toBe(0);
      // Every id is stored once: N messages with N distinct ids (the stream keeps at most one per id in the window).
      expect(await stored()).toBe(N);
      const info = await jsm.streams.info(name);
      expect(info.state.last_seq).toBe(N);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
