// The PostgreSQL source against the local server: incremental polling, resume from the committed cursor, types.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { ensureService } from '../../testing/services.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPipeline } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import { endpointDef, newRecordingSink, parsedOptions, pipelineDef, recordingEndpoint, recordingEnv, waitFor } from '../../testing/harness.js';
import { newState, pgAdmin, pull, rows, unique } from '../sqldb/testkit.js';
import { sourceOptions, spec } from './index.js';

const CONN = { host: '127.0.0.1', user: 'postgres', database: 'test' };
let admin: pg.Client;
const tables: string[] = [];

beforeAll(async () => {
  await ensureService('postgres');
  admin = await pgAdmin();
});
afterAll(async () => {
  for (const t of tables) await admin.query(`DROP TABLE IF EXISTS "${t}"`);
  await admin.end();
});

async function table(ddl: string): Promise<string> {
  const t = unique('sl_pg_src');
  tables.push(t);
  await admin.query(`CREATE TABLE "${t}" ${ddl}`);
  return t;
}

const source = (o: Record<string, unknown>) => spec.source!.create(parsedOptions(sourceOptions(), { ...CONN, interval: '20ms', ...o }), { format: 'json' });

describe('postgres source', () => {
  it('polls by id, resumes from the committed cursor after a restart, and never acks what was not committed', async () => {
    const t = await table('(id bigserial PRIMARY KEY, name text)');
    await admin.query(`INSERT INTO "${t}" (name) SELECT 'r' || g FROM generate_series(1, 250) g`);
    const state = newState();
    // First run: emit but never commit; a restart must then read everything again.
    const first = await pull(source({ table: t, incremental_column: 'id', batch_size: 100 }), { state, commit: false, until: (g) => g.length >= 100 });
    expect(first.records.length).toBeGreaterThanOrEqual(100);
    expect(await state.get('cursor')).toBeUndefined();
    // Second run: commits as it goes, stops after 200 rows.
    const second = await pull(source({ table: t, incremental_column: 'id', batch_size: 100 }), { state, until: (g) => g.length >= 200 });
    expect(rows(second.records).map((r) => r.id)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(second.records[0]!.meta).toEqual({ _table: t });
    await admin.query(`INSERT INTO "${t}" (name) SELECT 'n' || g FROM generate_series(1, 30) g`);
    const third = await pull(source({ table: t, incremental_column: 'id', batch_size: 100 }), { state, until: (g) => g.length >= 80 });
    expect(rows(third.records).map((r) => r.id)).toEqual(Array.from({ length: 80 }, (_, i) => i + 201));
  });

  it("resumes from an exactly-once sink's stored position rather than its own committed cursor", async () => {
    const t = await table('(id bigserial PRIMARY KEY, name text)');
    await admin.query(`INSERT INTO "${t}" (name) SELECT 'r' || g FROM generate_series(1, 300) g`);
    const state = newState();
    const committed = await pull(source({ table: t, incremental_column: 'id', batch_size: 50 }), { state, until: (g) => g.length >= 100 });
    expect(committed.positions).toEqual(committed.acks);
    // The sink holds rows up to 150, the source's own cursor says 100: the sink's position wins.
    const ahead = await pull(source({ table: t, incremental_column: 'id', batch_size: 50 }), { state: newState(), commit: false, until: (g) => g.length >= 150 });
    const resumed = await pull(source({ table: t, incremental_column: 'id', batch_size: 50 }), { state, resume: { '': ahead.positions.at(-1) }, until: (g) => g.length >= 50 });
    expect(rows(resumed.records).map((r) => Number(r.id))).toEqual(Array.from({ length: 50 }, (_, i) => i + 151));
    // A position it does not recognise (another source's) is ignored.
    const other = await pull(source({ table: t, incremental_column: 'id', batch_size: 50 }), { state: newState(), resume: { '/in.jsonl': { offset: 3 } }, until: (g) => g.length >= 50 });
    expect(Number(rows(other.records)[0]!.id)).toBe(1);
  });

  it('reads rows sharing a timestamp across batch boundaries with a tiebreaker column, without loss or duplicates', async () => {
    const t = await table('(id int PRIMARY KEY, ts timestamptz NOT NULL, v text)');
    // Microsecond timestamps, 10 rows per timestamp: a batch of 7 always ends in the middle of a tie.
    await admin.query(
      `INSERT INTO "${t}" SELECT g, timestamptz '2024-01-01 00:00:00.000001+00' + ((g / 10) || ' microseconds')::interval, 'v' FROM generate_series(1, 95) g`,
    );
    const state = newState();
    const o = { table: t, incremental_column: 'ts', tiebreaker_column: 'id', batch_size: 7 };
    const a = await pull(source(o), { state, until: (g) => g.length >= 49 });
    await admin.query(`INSERT INTO "${t}" VALUES (1000, timestamptz '2030-01-01 00:00:00+00', 'late')`);
    const b = await pull(source(o), { state, until: (g) => g.some((r) => (r.value as { id: number }).id === 1000) });
    const ids = [...rows(a.records), ...rows(b.records)].map((r) => r.id);
    expect(ids).toEqual([...Array.from({ length: 95 }, (_, i) => i + 1), 1000]);
    expect(rows(a.records)[0]!.ts).toBeInstanceOf(Date);
  });

  it('snapshot_then_incremental reads existing rows then new ones; incremental starts at the current end; snapshot finishes', async () => {
    const t = await table('(id int PRIMARY KEY, v text)');
    await admin.query(`INSERT INTO "${t}" SELECT g, 'old' FROM generate_series(1, 5) g`);
    const s1 = pull(source({ table: t, incremental_column: 'id' }), {
      state: newState(),
      until: (g) => g.length >= 7,
      onBatch: async (n) => {
        if (n === 1) await admin.query(`INSERT INTO "${t}" VALUES (6, 'new'), (7, 'new')`);
      },
    });
    expect(rows((await s1).records).map((r) => r.id)).toEqual([1, 2, 3, 4, 5, 6, 7]);

    // Rows keep arriving until the source sees one: whichever it sees first, nothing from before its start comes.
    let next = 8;
    const feeder = setInterval(() => void admin.query(`INSERT INTO "${t}" VALUES (${next++}, 'later')`), 50);
    const inc = await pull(source({ table: t, incremental_column: 'id', mode: 'incremental' }), { state: newState(), until: (g) => g.length >= 2 });
    clearInterval(feeder);
    const ids = rows(inc.records).map((r) => r.id as number);
    expect(ids[0]).toBeGreaterThan(7);
    expect(ids[1]).toBe(ids[0]! + 1);
    await admin.query(`DELETE FROM "${t}" WHERE id > 8`);

    const snap = await pull(source({ table: t, incremental_column: 'id', mode: 'snapshot', batch_size: 3 }), { state: newState(), until: () => false });
    expect(rows(snap.records).map((r) => r.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('binds {{ cursor }} in a query as a parameter', async () => {
    const t = await table('(id int PRIMARY KEY, v text)');
    await admin.query(`INSERT INTO "${t}" SELECT g, 'q' FROM generate_series(1, 20) g`);
    const state = newState();
    const q = `SELECT id, v FROM "${t}" WHERE id > {{ cursor }} AND v <> 'x''; DROP TABLE nothing' ORDER BY id LIMIT {{ limit }}`;
    const r = await pull(source({ query: q, incremental_column: 'id', start_value: 10, batch_size: 4 }), { state, until: (g) => g.length >= 10 });
    expect(rows(r.records).map((x) => x.id)).toEqual([11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    expect(r.records[0]!.meta).toEqual({ _table: null });
    expect(await state.get('cursor')).toEqual({ v: 20 });
  });

  it('maps column types: int8 beyond 2^53 as BigInt, numeric as text, json as objects, bytea as Buffer', async () => {
    const t = await table('(id int PRIMARY KEY, big bigint, small bigint, n numeric(30,10), j jsonb, b bytea, ts timestamptz, f double precision, ok boolean)');
    await admin.query(
      `INSERT INTO "${t}" VALUES (1, 9007199254740993, 42, 12345678901234567890.0123456789, '{"a":[1,2]}', '\\x0102ff', '2024-05-01T12:00:00.123Z', 1.5, true)`,
    );
    const r = await pull(source({ table: t, incremental_column: 'id' }), { state: newState(), until: (g) => g.length >= 1 });
    const row = rows(r.records)[0]!;
    expect(row.big).toBe(9007199254740993n);
    expect(row.small).toBe(42);
    expect(row.n).toBe('12345678901234567890.0123456789');
    expect(row.j).toEqual({ a: [1, 2] });
    expect(row.b).toEqual(Buffer.from([1, 2, 255]));
    expect((row.ts as Date).toISOString()).toBe('2024-05-01T12:00:00.123Z');
    expect(row.f).toBe(1.5);
    expect(row.ok).toBe(true);
  });

  it('survives its connections being killed by the server mid-stream without loss or duplicates', async () => {
    const t = await table('(id int PRIMARY KEY, v text)');
    await admin.query(`INSERT INTO "${t}" SELECT g, 'k' FROM generate_series(1, 300) g`);
    const appName = unique('sluice_kill');
    const r = await pull(source({ url: `postgres://postgres@127.0.0.1:5432/test?application_name=${appName}`, table: t, incremental_column: 'id', batch_size: 50 }), {
      state: newState(),
      until: (g) => g.length >= 400,
      ms: 20_000,
      onBatch: async (n) => {
        if (n === 2) {
          // What a server restart looks like to the client, without restarting the server other tests share.
          await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [appName]);
          await admin.query(`INSERT INTO "${t}" SELECT g, 'k' FROM generate_series(301, 400) g`);
        }
      },
    });
    expect(rows(r.records).map((x) => x.id)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
  });

  it('rows that do not fit the schema follow bad_data (dlq) and the cursor still moves past them', async () => {
    const t = await table('(id int PRIMARY KEY, qty text)');
    await admin.query(`INSERT INTO "${t}" VALUES (1, '10'), (2, 'abc'), (3, '30')`);
    const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-bad-'));
    const state = memoryStateStore();
    const sinks = { out: newRecordingSink(), dlq: newRecordingSink() };
    const src = endpointDef('postgres', parsedOptions(sourceOptions(), { ...CONN, table: t, incremental_column: 'id', interval: '20ms' }), {
      bad_data: 'dlq',
      schema: { fields: [{ name: 'id', type: 'int32' }, { name: 'qty', type: 'int32' }] },
    });
    const def = pipelineDef(unique('bad'), src, recordingEndpoint('out'), { dlq: recordingEndpoint('dlq') });
    const h = startPipeline(def, recordingEnv(sinks, { state, dataDir: dir }));
    try {
      await waitFor(async () => (await state.scope(def.name, 'source').get<{ v: number }>('cursor'))?.v === 3, 'the cursor committed at 3', 10_000);
      expect(sinks.out.written.map((r) => r.value)).toEqual([
        { id: 1, qty: 10 },
        { id: 3, qty: 30 },
      ]);
      expect(sinks.dlq.written).toHaveLength(1);
      expect(JSON.stringify(sinks.dlq.written[0]!.value)).toContain('qty');
    } finally {
      await h.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
