// kill -9 of `sluice run` while a file streams into PostgreSQL, then a restart: nothing is lost; upsert mode leaves no
// duplicate, insert mode may repeat only what was written but not yet committed at the kill.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { findConnector } from '../index.js';
import { ensureService } from '../../testing/services.js';
import { waitFor } from '../../testing/harness.js';
import { pgAdmin, unique } from '../sqldb/testkit.js';
import { CLI_BUILT, runPipeline, stopChildren } from '../../testing/cli-child.js';

const N = 60_000;

let admin: pg.Client;

const count = async (t: string) => (await admin.query(`SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM "${t}"`)).rows[0] as { n: number; d: number };

// Needs the compiled CLI with the connector registered (`npm test` builds it first).
describe.skipIf(!CLI_BUILT || !findConnector('postgres'))('file -> postgres across kill -9', () => {
  const upsertT = unique('sl_pg_crash_u');
  const insertT = unique('sl_pg_crash_i');
  const eoT = unique('sl_pg_crash_e');
  const eoName = unique('eo');
  beforeAll(async () => {
    await ensureService('postgres');
    admin = await pgAdmin();
    await admin.query(`CREATE TABLE "${upsertT}" (id int PRIMARY KEY, v text)`);
    await admin.query(`CREATE TABLE "${insertT}" (id int, v text)`);
    await admin.query(`CREATE TABLE "${eoT}" (id int, v text)`);
  });
  afterAll(async () => {
    await stopChildren();
    await admin.query(`DROP TABLE IF EXISTS "${upsertT}"`);
    await admin.query(`DROP TABLE IF EXISTS "${insertT}"`);
    await admin.query(`DROP TABLE IF EXISTS "${eoT}"`);
    await admin.query('DELETE FROM sluice_offsets WHERE pipeline = $1', [eoName]).catch(() => {});
    await admin.end();
  });

  it('loses nothing; upsert has no duplicates; an exactly_once position always matches the rows in the table', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-crash-'));
    try {
      const input = join(dir, 'in.jsonl');
      let s = '';
      for (let i = 0; i < N; i++) s += `{"id":${i},"v":"value ${i}"}\n`;
      writeFileSync(input, s);
      const pipeline = (name: string, table: string, mode: string, extra = '') => [
        `  - name: ${name}`,
        `    source: { connector: file, config: { path: ${JSON.stringify(input)} }, format: json }`,
        `    sink: { connector: postgres, config: { url: 'postgres://postgres@127.0.0.1:5432/test', table: ${table}, mode: ${mode}${extra} } }`,
        '    batch: { max_records: 200, linger: 1ms }',
      ];
      const file = join(dir, 'p.yaml');
      writeFileSync(file, ['pipelines:', ...pipeline('up', upsertT, 'upsert'), ...pipeline('ins', insertT, 'insert'), ...pipeline(eoName, eoT, 'insert', ', exactly_once: true'), ''].join('\n'));
      const data = join(dir, 'data');
      const first = runPipeline(file, data);
      await waitFor(async () => (await count(upsertT)).n >= 3000 && (await count(insertT)).n >= 3000 && (await count(eoT)).n >= 3000, 'rows written before the kill', 20_000, 5);
      first.child.kill('SIGKILL');
      await first.exited;
      const atKill = await count(upsertT);
      expect(atKill.n).toBeLessThan(N);
      // The recorded position and the rows were committed together: the last line recorded is the last row present.
      const eoRows = await count(eoT);
      const pos = (await admin.query('SELECT position FROM sluice_offsets WHERE pipeline = $1', [eoName])).rows[0]?.position as
        | { seq: number; last: { _line: number } }
        | undefined;
      expect(pos?.last._line).toBe(eoRows.n);
      const max = (await admin.query(`SELECT max(id)::int AS m FROM "${eoT}"`)).rows[0].m as number;
      expect(max + 1).toBe(eoRows.n);

      const second = runPipeline(file, data);
      await waitFor(async () => (await count(upsertT)).n >= N && (await count(insertT)).d >= N && (await count(eoT)).d >= N, `all ${N} rows after the restart (${second.output()})`, 40_000, 50);
      second.child.kill('SIGTERM');
      await second.exited;
      expect(await count(upsertT)).toEqual({ n: N, d: N });
      const ins = await count(insertT);
      expect(ins.d).toBe(N);
      expect(ins.n).toBeGreaterThanOrEqual(N);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
