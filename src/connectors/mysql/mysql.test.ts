// The MySQL/MariaDB source and sink against the local MariaDB.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type mysql from 'mysql2/promise';
import type { SluiceRecord } from '../../core/types.js';
import { ensureService } from '../../testing/services.js';
import { parsedOptions, sinkContext } from '../../testing/harness.js';
import { myAdmin, newState, pull, rows, unique } from '../sqldb/testkit.js';
import { sinkOptions, sourceOptions, spec } from './index.js';

const CONN = { host: '127.0.0.1', user: 'root', database: 'test' };
let admin: mysql.Connection;
const tables: string[] = [];
const noEncoder = { encode: () => '', encodeStream: () => '', extension: 'json' };

beforeAll(async () => {
  await ensureService('mariadb');
  admin = await myAdmin();
});
afterAll(async () => {
  for (const t of tables) await admin.query(`DROP TABLE IF EXISTS \`${t}\``);
  await admin.end();
});

async function table(ddl?: string): Promise<string> {
  const t = unique('sl_my');
  tables.push(t);
  if (ddl) await admin.query(`CREATE TABLE \`${t}\` ${ddl}`);
  return t;
}

const source = (o: Record<string, unknown>) => spec.source!.create(parsedOptions(sourceOptions(), { ...CONN, interval: '20ms', ...o }), { format: 'json' });
const recs = (...values: Record<string, unknown>[]): SluiceRecord[] => values.map((value) => ({ value }));
const select = async (t: string) => (await admin.query(`SELECT * FROM \`${t}\` ORDER BY id`))[0] as Record<string, unknown>[];

describe('mysql source', () => {
  it('polls by id and resumes from the committed cursor after a restart', async () => {
    const t = await table('(id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20))');
    const values = Array.from({ length: 150 }, (_, i) => `('r${i}')`).join(',');
    await admin.query(`INSERT INTO \`${t}\` (name) VALUES ${values}`);
    const state = newState();
    const a = await pull(source({ url: 'mysql://root@127.0.0.1:3306/test', table: t, indexField: 'id', limit: 40 }), { state, until: (g) => g.length >= 80 });
    expect(rows(a.records).map((r) => r.id)).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));
    await admin.query(`INSERT INTO \`${t}\` (name) VALUES ('late')`);
    const b = await pull(source({ table: t, incremental_column: 'id', batch_size: 40 }), { state, until: (g) => g.length >= 71 });
    expect(rows(b.records).map((r) => r.id)).toEqual(Array.from({ length: 71 }, (_, i) => i + 81));
    expect(b.records[0]!.meta).toEqual({ _table: t });
  });

  it('reads microsecond timestamps with ties across batches using a tiebreaker, and maps types', async () => {
    const t = await table('(id INT PRIMARY KEY, ts DATETIME(6) NOT NULL, big BIGINT, d DECIMAL(20,4), b VARBINARY(8))');
    const values = Array.from({ length: 40 }, (_, i) => `(${i + 1}, '2024-01-01 00:00:00.${String(Math.floor((i + 1) / 10) + 1).padStart(6, '0')}', 9007199254740993, 1.5, x'01ff')`).join(',');
    await admin.query(`INSERT INTO \`${t}\` VALUES ${values}`);
    const state = newState();
    const o = { table: t, incremental_column: 'ts', tiebreaker_column: 'id', batch_size: 7 };
    const a = await pull(source(o), { state, until: (g) => g.length >= 21 });
    const b = await pull(source(o), { state, until: (g) => g.length >= 19 });
    expect([...rows(a.records), ...rows(b.records)].map((r) => r.id)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    const row = rows(a.records)[0]!;
    expect(row.ts).toBeInstanceOf(Date);
    expect((row.ts as Date).toISOString()).toBe('2024-01-01T00:00:00.000Z');
    expect(row.big).toBe(9007199254740993n);
    expect(row.d).toBe('1.5000');
    expect(row.b).toEqual(Buffer.from([1, 255]));
  });

  it('binds {{ cursor }} in a query as a parameter', async () => {
    const t = await table('(id INT PRIMARY KEY)');
    await admin.query(`INSERT INTO \`${t}\` VALUES ${Array.from({ length: 12 }, (_, i) => `(${i + 1})`).join(',')}`);
    const q = `SELECT id FROM \`${t}\` WHERE id > {{ cursor }} ORDER BY id LIMIT {{ limit }}`;
    const r = await pull(source({ query: q, incremental_column: 'id', start_value: 5, batch_size: 3 }), { state: newState(), until: (g) => g.length >= 7 });
    expect(rows(r.records).map((x) => x.id)).toEqual([6, 7, 8, 9, 10, 11, 12]);
  });
  it('survives its connections being killed by the server mid-stream without loss or duplicates', async () => {
    // A database of its own, so that only this source's connections are killed and no one else's.
    const db = unique('sl_mydb');
    await admin.query(`CREATE DATABASE \`${db}\``);
    try {
      await admin.query(`CREATE TABLE \`${db}\`.t (id INT PRIMARY KEY)`);
      await admin.query(`INSERT INTO \`${db}\`.t VALUES ${Array.from({ length: 200 }, (_, i) => `(${i + 1})`).join(',')}`);
      const r = await pull(source({ database: db, table: 't', incremental_column: 'id', batch_size: 50 }), {
        state: newState(),
        until: (g) => g.length >= 300,
        ms: 20_000,
        onBatch: async (n) => {
          if (n !== 2) return;
          const [procs] = (await admin.query('SELECT ID AS id FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()', [db])) as unknown as [Array<{ id: number }>];
          for (const p of procs) await admin.query(`KILL ${Number(p.id)}`).catch(() => {});
          await admin.query(`INSERT INTO \`${db}\`.t VALUES ${Array.from({ length: 100 }, (_, i) => `(${i + 201})`).join(',')}`);
        },
      });
      expect(rows(r.records).map((x) => x.id)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
    }
  });
});

describe('mysql sink', () => {
  it('upserts with ON DUPLICATE KEY UPDATE and applies Debezium deletes in order', async () => {
    const t = await table('(id INT PRIMARY KEY, name VARCHAR(20), qty INT)');
    const sink = spec.sink!.create(parsedOptions(sinkOptions(), { ...CONN, table: t, mode: 'upsert' }), { format: 'json' });
    await sink.open(sinkContext(noEncoder));
    try {
      await sink.write(recs({ id: 1, name: 'a', qty: 1 }, { id: 2, name: 'b', qty: 2 }));
      await sink.write(recs({ id: 1, name: 'a2', qty: 5, __op: 'u' }, { id: 2, __op: 'd', __deleted: true }, { id: 3, name: 'c', qty: 3 }));
    } finally {
      await sink.close!();
    }
    expect(await select(t)).toEqual([
      { id: 1, name: 'a2', qty: 5 },
      { id: 3, name: 'c', qty: 3 },
    ]);
  });

  it('creates the table from the schema and writes 10k rows in one write', async () => {
    const t = await table();
    const info = {
      format: 'json',
      schema: {
        fields: [
          { name: 'id', type: 'string' as const, nullable: false },
          { name: 'at', type: 'timestamp' as const },
          { name: 'doc', type: 'json' as const },
          { name: 'v', type: 'float64' as const },
        ],
        primary_key: ['id'],
      },
    };
    const sink = spec.sink!.create(parsedOptions(sinkOptions(), { ...CONN, table: t, create_table: true }), info);
    await sink.open(sinkContext(noEncoder));
    const batch: SluiceRecord[] = [];
    for (let i = 0; i < 10_000; i++) batch.push({ value: { id: `k${i}`, at: new Date(1_700_000_000_000 + i), doc: { i }, v: i / 4 } });
    try {
      await sink.write(batch);
    } finally {
      await sink.close!();
    }
    const [r] = (await admin.query(`SELECT COUNT(*) AS n, SUM(v) AS s FROM \`${t}\``))[0] as Array<{ n: number; s: number }>;
    expect(Number(r!.n)).toBe(10_000);
    const [one] = (await admin.query(`SELECT * FROM \`${t}\` WHERE id = 'k7'`))[0] as Array<Record<string, unknown>>;
    expect((one!.at as Date).toISOString()).toBe(new Date(1_700_000_000_007).toISOString());
    expect(one!.doc).toEqual({ i: 7 });
  });

  it('rejects a NOT NULL violation with the table and column named, writing nothing of the batch', async () => {
    const t = await table('(id INT PRIMARY KEY, name VARCHAR(20) NOT NULL)');
    const sink = spec.sink!.create(parsedOptions(sinkOptions(), { ...CONN, table: t }), { format: 'json' });
    await sink.open(sinkContext(noEncoder));
    try {
      const err = await sink.write(recs({ id: 1, name: 'ok' }, { id: 2, name: null })).then(
        () => undefined,
        (e: Error & { retriable?: boolean }) => e,
      );
      expect(err?.message).toContain(`table '${t}'`);
      expect(err?.message).toContain("column 'name'");
      expect(err?.retriable).toBe(false);
    } finally {
      await sink.close!();
    }
    expect(await select(t)).toEqual([]);
  });
});
