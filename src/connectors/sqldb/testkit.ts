// Test helpers for the SQL connectors: admin connections to the local servers and unique table names.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { mapScope } from '../../core/state.js';
import type { SluiceRecord, Source, SourcePosition, StateScope } from '../../core/types.js';
import { testContext } from '../../testing/harness.js';

export const PG = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };
export const MY = { host: '127.0.0.1', port: 3306, user: 'root', password: '', database: 'test' };

export const unique = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;

export async function pgAdmin(): Promise<pg.Client> {
  const c = new pg.Client(PG);
  await c.connect();
  return c;
}

export async function myAdmin(): Promise<mysql.Connection> {
  return mysql.createConnection({ ...MY, timezone: 'Z' });
}

export const rows = (records: SluiceRecord[]) => records.map((r) => r.value as Record<string, unknown>);

/**
 * Runs a source until `until` holds for what it emitted (or `ms` pass), committing each batch's ack after emit as the
 * runtime does once the sink accepted it; `commit: false` never commits.
 */
export async function pull(
  source: Source,
  o: { state: StateScope; until: (got: SluiceRecord[]) => boolean; ms?: number; commit?: boolean; onBatch?: (n: number) => Promise<void> | void; resume?: SourcePosition },
): Promise<{ records: SluiceRecord[]; acks: unknown[]; positions: unknown[] }> {
  const ac = new AbortController();
  const records: SluiceRecord[] = [];
  const acks: unknown[] = [];
  const positions: unknown[] = [];
  const timer = setTimeout(() => ac.abort(), o.ms ?? 15_000);
  let batches = 0;
  const ctx = {
    ...testContext('source', { signal: ac.signal, state: o.state }),
    resume: o.resume,
    emit(b: { records: SluiceRecord[]; ack?: unknown; position?: unknown }) {
      records.push(...b.records);
      acks.push(b.ack);
      positions.push(b.position);
      const after = async () => {
        if (o.commit !== false) await source.commit?.([b.ack]);
        await o.onBatch?.(++batches);
        if (o.until(records)) ac.abort();
      };
      return after();
    },
    bad() {},
    decoder(): never {
      throw new Error('no decoder');
    },
  };
  try {
    const run = source.run(ctx);
    await run;
  } finally {
    clearTimeout(timer);
    await source.close?.();
  }
  return { records, acks, positions };
}

export const newState = (): StateScope => mapScope(new Map());
