// The PostgreSQL sink against the local server: insert, upsert, Debezium deletes, create_table, big batches, errors,
// exactly-once bookkeeping, and acknowledgement of a postgres source only after the sink accepted.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import pg from 'pg';
import { startPipeline } from '../../core/runtime.js';
import { memoryStateStore } from '../../core/state.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { SluiceRecord, SinkContext } from '../../core/types.js';
import { ensureService } from '../../testing/services.js';
import { endpointDef, newRecordingSink, parsedOptions, pipelineDef, recordingEndpoint, recordingEnv, sinkContext, waitFor } from '../../testing/harness.js';
import { pgAdmin, unique } from '../sqldb/testkit.js';
import { sinkOptions, sourceOptions, spec } from './index.js';

const CONN = { host: '127.0.0.1', user: 'postgres', database: 'test' };
let admin: pg.Client;
const tables: string[] = [];
const noEncoder = { encode: () => '', encodeStream: () => '', extension: 'json' };
// The real query, which the spy below calls with the client as `this`.
const originalQuery = pg.Client.prototype.query;

beforeAll(async () => {
  await ensureService('postgres');
  admin = await pgAdmin();
});
afterAll(async () => {
  for (const t of tables) await admin.query(`DROP TABLE IF EXISTS "${t}"`);
  await admin.end();
});

async function table(ddl?: string): Promise<string> {
  const t = unique('sl_pg_sink');
  tables.push(t);
  if (ddl) await admin.query(`CREATE TABLE "${t}" ${ddl}`);
  return t;
}

async function openSink(o: Record<string, unknown>, info: EndpointInfo = { format: 'json' }, ctx: Partial<SinkContext> = {}) {
  const sink = spec.sink!.create(parsedOptions(sinkOptions(), { ...CONN, ...o }), info);
  await sink.open({ ...sinkContext(noEncoder), ...ctx });
  return sink;
}

const recs = (...values: Record<string, unknown>[]): SluiceRecord[] => values.map((value) => ({ value }));
const select = async (t: string) => (await admin.query(`SELECT * FROM "${t}" ORDER BY id`)).rows;

describe('postgres sink', () => {
  it('upserts on the primary key and applies Debezium delete markers in order', async () => {
    const t = await table('(id int PRIMARY KEY, name text, qty int)');
    const sink = await openSink({ table: t, mode: 'upsert' });
    try {
      await sink.write(recs({ id: 1, name: 'a', qty: 1 }, { id: 2, name: 'b', qty: 2 }, { id: 3, name: 'c', qty: 3 }));
      await sink.write(
        recs(
          { id: 1, name: 'a2', qty: 10, __op: 'u' },
          { id: 1, name: 'a3', qty: 11, __op: 'u' },
          { id: 2, __op: 'd', __deleted: true },
          { id: 4, name: 'd', qty: 4, __op: 'c' },
          { id: 3, __op: 'd', __deleted: true },
          { id: 3, name: 'c again', qty: 30, __op: 'c' },
        ),
      );
    } finally {
      await sink.close!();
    }
    expect(await select(t)).toEqual([
      { id: 1, name: 'a3', qty: 11 },
      { id: 3, name: 'c again', qty: 30 },
      { id: 4, name: 'd', qty: 4 },
    ]);
  });

  it('inserts with create_table from the schema, mapping types both ways', async () => {
    const t = await table();
    const info: EndpointInfo = {
      format: 'json',
      schema: {
        fields: [
          { name: 'id', type: 'int64', nullable: false },
          { name: 'price', type: 'decimal', precision: 12, scale: 2 },
          { name: 'at', type: 'timestamp' },
          { name: 'tags', type: 'array', items: { type: 'string' } },
          { name: 'doc', type: 'json' },
          { name: 'raw', type: 'bytes' },
          { name: 'ok', type: 'boolean' },
        ],
        primary_key: ['id'],
      } as EndpointInfo['schema'],
    };
    const sink = await openSink({ table: t, create_table: true }, info);
    try {
      await sink.write(recs({ id: 1, price: '12.50', at: new Date('2024-01-02T03:04:05.678Z'), tags: ['x', 'y'], doc: { a: 1 }, raw: new Uint8Array([1, 2]), ok: true }));
    } finally {
      await sink.close!();
    }
    const cols = await admin.query(`SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`, [t]);
    expect(cols.rows.map((r) => `${r.column_name}:${r.data_type}`)).toEqual([
      'id:bigint',
      'price:numeric',
      'at:timestamp with time zone',
      'tags:jsonb',
      'doc:jsonb',
      'raw:bytea',
      'ok:boolean',
    ]);
    const [row] = await select(t);
    expect(row).toEqual({ id: '1', price: '12.50', at: new Date('2024-01-02T03:04:05.678Z'), tags: ['x', 'y'], doc: { a: 1 }, raw: Buffer.from([1, 2]), ok: true });
  });

  it('writes a batch of 10k rows in one write', async () => {
    const t = await table('(id int PRIMARY KEY, name text, v double precision, at timestamptz)');
    const sink = await openSink({ table: t });
    const batch: SluiceRecord[] = [];
    for (let i = 0; i < 10_000; i++) batch.push({ value: { id: i, name: `n${i}`, v: i / 2, at: new Date(1_700_000_000_000 + i) } });
    try {
      const t0 = performance.now();
      await sink.write(batch);
      const ms = performance.now() - t0;
      expect(ms).toBeLessThan(10_000);
    } finally {
      await sink.close!();
    }
    const r = await admin.query(`SELECT count(*)::int AS n, sum(id)::bigint AS s FROM "${t}"`);
    expect(r.rows[0]).toEqual({ n: 10_000, s: String((9_999 * 10_000) / 2) });
  });

  it('writes the same values column-wise (one array per column) as one parameter per value; a table with an array column takes a list as an array', async () => {
    const cols = '(id int PRIMARY KEY, big bigint, name text, v double precision, price numeric(12, 2), ok boolean, doc jsonb, raw bytea, at timestamptz, note text';
    const wise = await table(`${cols})`);
    // An array column: unnest() would flatten it, so this table is written one parameter per value.
    const perValue = await table(`${cols}, tags text[])`);
    const rows: Record<string, unknown>[] = [
      { id: 1, big: 9_007_199_254_740_993n, name: 'quote " backslash \\ comma , braces {x} ünï', v: 1.5, price: '12.50', ok: true, doc: { a: [1, 'two'] }, raw: new Uint8Array([0, 1, 255]), at: new Date('2024-01-02T03:04:05.678Z'), note: 42 },
      { id: 2, big: '17', name: '', v: -0.25, price: 3, ok: false, doc: '{"from":"text"}', raw: null, at: '2024-05-06T07:08:09Z', note: { k: 'v' } },
      { id: 3, name: 'NULL', doc: [1, 2], note: null },
      { id: 4, big: -5, name: 'line\nbreak\ttab', v: 1e300, doc: '"a JSON string"', at: null },
    ];
    const sql: string[] = [];
    const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
      const q = args[0] as string | { text?: string };
      sql.push(typeof q === 'string' ? q : (q.text ?? ''));
      return originalQuery.apply(this, args as never);
    } as never);
    try {
      for (const [t, withTags] of [[wise, false], [perValue, true]] as const) {
        const sink = await openSink({ table: t });
        try {
          await sink.write(recs(...rows.map((r) => (withTags ? { ...r, tags: ['a', 'b'] } : r))));
        } finally {
          await sink.close!();
        }
      }
    } finally {
      spy.mockRestore();
    }
    expect(sql.find((q) => q.includes(`INTO "${wise}"`))).toMatch(/SELECT \* FROM unnest\(\$1::integer\[\], \$2::bigint\[\]/);
    expect(sql.find((q) => q.includes(`INTO "${perValue}"`))).toMatch(/VALUES \(\$1, \$2/);
    const a = await select(wise);
    const b = (await select(perValue)).map(({ tags, ...r }) => (expect(tags).toEqual(['a', 'b']), r));
    expect(a).toEqual(b);
    // The admin client reads int8 as text.
    expect(a[0]).toMatchObject({ big: '9007199254740993', name: 'quote " backslash \\ comma , braces {x} ünï', raw: Buffer.from([0, 1, 255]), note: '42' });
    expect(a[1]).toMatchObject({ big: '17', name: '', doc: { from: 'text' }, price: '3.00', note: '{"k":"v"}' });
    expect(a[2]).toMatchObject({ name: 'NULL', big: null, doc: [1, 2], note: null });
    expect(a[3]).toMatchObject({ name: 'line\nbreak\ttab', doc: 'a JSON string', at: null });
  });

  it('rejects a NOT NULL violation with the table and column named, writing nothing of the batch', async () => {
    const t = await table('(id int PRIMARY KEY, name text NOT NULL)');
    const sink = await openSink({ table: t });
    try {
      const err = await sink.write(recs({ id: 1, name: 'ok' }, { id: 2, name: null })).then(
        () => undefined,
        (e: Error & { code?: string; retriable?: boolean }) => e,
      );
      expect(err?.message).toContain(`table '${t}'`);
      expect(err?.message).toContain("column 'name'");
      expect(err?.retriable).toBe(false);
    } finally {
      await sink.close!();
    }
    expect(await select(t)).toEqual([]);
  });

  it('exactly_once stores the source position with each batch in the same transaction and hands it back after a reopen', async () => {
    const t = await table('(id int PRIMARY KEY, v text)');
    const pipeline = unique('eo');
    try {
      let sink = await openSink({ table: t, mode: 'upsert', exactly_once: true }, { format: 'json' }, { pipeline });
      expect(sink.exactlyOnce).toBe(true);
      expect(await sink.position!()).toBeUndefined();
      await sink.write([{ value: { id: 1, v: 'a' }, meta: { _path: '/in.jsonl', _offset: 0 } }], { '/in.jsonl': { offset: 10 } });
      await sink.write([{ value: { id: 2, v: 'b' }, meta: { _path: '/in.jsonl', _offset: 10 } }], { '/in.jsonl': { offset: 20 } });
      // A failed batch rolls back the rows and leaves the position where it was.
      await expect(sink.write(recs({ id: 3, v: 'c' }, { id: 'x', v: 'bad' }), { '/in.jsonl': { offset: 99 } })).rejects.toThrow(t);
      await sink.close!();
      sink = await openSink({ table: t, mode: 'upsert', exactly_once: true }, { format: 'json' }, { pipeline });
      // What a restarted pipeline hands its source: the position of the last committed batch.
      expect(await sink.position!()).toEqual({ '/in.jsonl': { offset: 20 } });
      await sink.write([{ value: { id: 3, v: 'c' }, meta: { _path: '/in.jsonl', _offset: 20 } }], { '/in.jsonl': { offset: 30 } });
      await sink.close!();
      const pos = await admin.query('SELECT position FROM sluice_offsets WHERE pipeline = $1', [pipeline]);
      expect(pos.rows[0].position).toEqual({ seq: 3, records: 1, last: { _path: '/in.jsonl', _offset: 20 }, source: { '/in.jsonl': { offset: 30 } } });
      expect((await select(t)).map((r) => r.id)).toEqual([1, 2, 3]);
    } finally {
      await admin.query('DELETE FROM sluice_offsets WHERE pipeline = $1', [pipeline]).catch(() => {});
    }
  });

  it('a postgres source commits its cursor only after the sink accepted: a failing sink leaves it unacknowledged', async () => {
    const t = await table('(id int PRIMARY KEY, v text)');
    await admin.query(`INSERT INTO "${t}" SELECT g, 'v' FROM generate_series(1, 50) g`);
    const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-ack-'));
    const state = memoryStateStore();
    const sinks = { out: newRecordingSink() };
    sinks.out.down = true;
    const src = endpointDef('postgres', parsedOptions(sourceOptions(), { ...CONN, table: t, incremental_column: 'id', interval: '20ms', batch_size: 10 }));
    try {
      const def = pipelineDef(unique('ack'), src, recordingEndpoint('out'), { retry: { max_attempts: 3 } });
      let h = startPipeline(def, recordingEnv(sinks, { state, dataDir: dir }));
      const failed = await h.done;
      expect(failed.status).toBe('failed');
      expect(sinks.out.writes).toBe(3);
      expect(sinks.out.written).toEqual([]);
      expect(await state.scope(def.name, 'source').get('cursor')).toBeUndefined();
      // The sink comes back: a fresh run delivers all 50 and commits the last id.
      sinks.out.down = false;
      h = startPipeline(def, recordingEnv(sinks, { state, dataDir: dir }));
      await waitFor(() => sinks.out.written.length >= 50, 'all rows written', 10_000);
      await waitFor(async () => (await state.scope(def.name, 'source').get<{ v: number }>('cursor'))?.v === 50, 'the cursor committed at 50', 10_000);
      await h.stop();
      expect(sinks.out.written.map((r) => (r.value as { id: number }).id)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reconnects after the server dropped its connections; a failed write is retriable and a retry writes it', async () => {
    const t = await table('(id int PRIMARY KEY)');
    const app = unique('sluice_sink_kill');
    const sink = await openSink({ url: `postgres://postgres@127.0.0.1:5432/test?application_name=${app}`, table: t, mode: 'upsert' });
    try {
      await sink.write(recs({ id: 1 }));
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [app]);
      // What the runtime does: retry a retriable failure.
      for (let attempt = 1; ; attempt++) {
        try {
          await sink.write(recs({ id: 2 }, { id: 3 }));
          break;
        } catch (e) {
          expect((e as { retriable?: boolean }).retriable).toBe(true);
          expect(attempt).toBeLessThan(3);
        }
      }
    } finally {
      await sink.close!();
    }
    expect((await select(t)).map((r) => r.id)).toEqual([1, 2, 3]);
  });

  it('test() reports the connection and whether the table exists', async () => {
    const t = await table('(id int PRIMARY KEY)');
    const steps: string[] = [];
    await spec.test!({ ...CONN, table: t, mode: 'upsert' }, 'sink', (s) => steps.push(s.message), AbortSignal.timeout(5000));
    expect(steps).toEqual(['connected to PostgreSQL at 127.0.0.1', `table '${t}' exists`]);
    const missing: string[] = [];
    await expect(
      spec.test!({ ...CONN, table: 'no_such_table_here', incremental_column: 'id' }, 'source', (s) => missing.push(s.message), AbortSignal.timeout(5000)),
    ).rejects.toThrow("table 'no_such_table_here' does not exist");
    await expect(spec.test!({ host: '127.0.0.1', port: 1, table: 'x', mode: 'snapshot' }, 'source', () => {}, AbortSignal.timeout(5000))).rejects.toThrow(
      /cannot connect to 127.0.0.1/,
    );
  });
});
