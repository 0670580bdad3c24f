// Exactly-once into PostgreSQL across kill -9: `sluice run` is killed at random points and restarted until the input
// is through; the table (plain INSERT, no key to deduplicate on) ends with every id exactly once. Between runs the
// rows and the stored source position are checked to agree.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { findConnector } from '../index.js';
import { ensureService } from '../../testing/services.js';
import { waitFor } from '../../testing/harness.js';
import { writeIdInputs } from '../../testing/file-output.js';
import { pgAdmin, unique } from '../sqldb/testkit.js';
import { startTestBroker, uniqueName, type TestBroker } from '../kafka/test-broker.js';
import { CLI_BUILT, runPipeline, stopChildren, type CliChild } from '../../testing/cli-child.js';

const URL = 'postgres://postgres@127.0.0.1:5432/test';

let admin: pg.Client;
const tables: string[] = [];
const pipelines: string[] = [];

const count = async (t: string) => (await admin.query(`SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM "${t}"`)).rows[0] as { n: number; d: number };

async function killAt(p: CliChild, table: string, rows: number): Promise<{ n: number; d: number }> {
  await waitFor(async () => (await count(table)).n >= rows || p.child.exitCode !== null, `${rows} rows before the kill (${p.output()})`, 60_000, 5);
  p.child.kill('SIGKILL');
  await p.exited;
  return count(table);
}

const built = CLI_BUILT && !!findConnector('postgres');

describe.skipIf(!built)('exactly-once into postgres across kill -9', () => {
  beforeAll(async () => {
    await ensureService('postgres');
    admin = await pgAdmin();
  });
  afterAll(async () => {
    await stopChildren();
    for (const t of tables) await admin.query(`DROP TABLE IF EXISTS "${t}"`);
    for (const p of pipelines) await admin.query('DELETE FROM sluice_offsets WHERE pipeline = $1', [p]).catch(() => {});
    await admin.end();
  });

  it('file -> postgres (insert mode): 100k rows, killed 5 times, every id exactly once', async () => {
    const N = 100_000;
    const table = unique('sl_pg_eo_file');
    const name = unique('eo_file');
    tables.push(table);
    pipelines.push(name);
    await admin.query(`CREATE TABLE "${table}" (id int, v text)`);
    const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-eo-'));
    try {
      // Two files, so the position holds one entry per file and the first file's end must survive later kills.
      const input = writeIdInputs(dir, N);
      const file = join(dir, 'p.yaml');
      writeFileSync(
        file,
        [
          `name: ${name}`,
          `source: { connector: file, config: { path: ${JSON.stringify(input)} }, format: json }`,
          `sink: { connector: postgres, config: { url: '${URL}', table: ${table}, mode: insert, exactly_once: true } }`,
          // Batches larger than the source's (1000 records): a write then completes several source batches at once.
          'batch: { max_records: 1500, linger: 2ms }',
          '',
        ].join('\n'),
      );
      const data = join(dir, 'data');
      let done = 0;
      for (let k = 0; k < 5; k++) {
        // Random kill points, spread over the whole input.
        const target = Math.min(N - 1000, done + 2000 + Math.floor(Math.random() * ((N - done) / 4)));
        const at = await killAt(runPipeline(file, data), table, target);
        expect(at.n, `kill ${k}: no duplicate`).toBe(at.d);
        const pos = (await admin.query('SELECT position FROM sluice_offsets WHERE pipeline = $1', [name])).rows[0]?.position as
          | { source: Record<string, { line: number }> }
          | undefined;
        // The stored position names exactly the rows in the table: lines read per file = rows present.
        const lines = Object.values(pos?.source ?? {}).reduce((s, a) => s + a.line - 1, 0);
        expect(lines, `kill ${k}: position agrees with the rows`).toBe(at.n);
        done = at.n;
        // The source's own checkpoints trail the sink's by a moment only, so a kill rarely falls between them; losing
        // them altogether (a wiped --data-dir) shows that the position stored with the rows is what the source resumes from.
        if (k % 2 === 1) rmSync(data, { recursive: true, force: true });
      }
      const last = runPipeline(file, data);
      expect(await last.exited, last.output()).toBe(0);
      expect(await count(table)).toEqual({ n: N, d: N });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);

  // The emulator by default; a real cluster with KAFKA_BROKERS.
  describe('kafka -> postgres', () => {
    let broker: TestBroker;
    beforeAll(async () => {
      broker = await startTestBroker();
    }, 30_000);
    afterAll(async () => {
      await broker?.stop();
    });

    it('30k messages on 2 partitions, killed 4 times, every id exactly once', async () => {
      const N = 30_000;
      const topic = uniqueName('eo-pg');
      await broker.createTopic(topic, 2);
      for (let from = 0; from < N; from += 5000) {
        await broker.produce(
          topic,
          Array.from({ length: 5000 }, (_, i) => ({ partition: (from + i) % 2, value: JSON.stringify({ id: from + i, v: `value ${from + i}` }) })),
        );
      }
      const table = unique('sl_pg_eo_kafka');
      const name = unique('eo_kafka');
      tables.push(table);
      pipelines.push(name);
      await admin.query(`CREATE TABLE "${table}" (id int, v text)`);
      const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-eo-kafka-'));
      try {
        const file = join(dir, 'p.yaml');
        writeFileSync(
          file,
          [
            `name: ${name}`,
            `source: { connector: kafka, config: { brokers: '${broker.brokers}', topic: ${topic}, offset: group, offset_reset: earliest, group: ${uniqueName('g')}, max_wait: 100ms }, format: json }`,
            `sink: { connector: postgres, config: { url: '${URL}', table: ${table}, mode: insert, exactly_once: true } }`,
            'batch: { max_records: 700, linger: 2ms }',
            '',
          ].join('\n'),
        );
        const data = join(dir, 'data');
        let done = 0;
        for (let k = 0; k < 4; k++) {
          const target = Math.min(N - 500, done + 500 + Math.floor(Math.random() * ((N - done) / 3)));
          const at = await killAt(runPipeline(file, data), table, target);
          expect(at.n, `kill ${k}: no duplicate`).toBe(at.d);
          done = at.n;
        }
        const last = runPipeline(file, data);
        await waitFor(async () => (await count(table)).n >= N, `all ${N} rows (${last.output()})`, 90_000, 50);
        last.child.kill('SIGTERM');
        expect(await last.exited, last.output()).toBe(0);
        expect(await count(table)).toEqual({ n: N, d: N });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 240_000);
  });
});
