// Checkpoints and small connector state. SQLite (better-sqlite3) by default; a PostgreSQL store implements the same
// interface for the control plane.

import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { StateScope } from './types.js';

export interface StateStore {
  /** State of one connector of one pipeline, e.g. scope('trades', 'source'). */
  scope(pipeline: string, name: string): StateScope;
  close(): Promise<void>;
}

export function memoryStateStore(): StateStore {
  const data = new Map<string, Map<string, unknown>>();
  return {
    scope(pipeline, name) {
      const id = `${pipeline}\u0000${name}`;
      let m = data.get(id);
      if (!m) data.set(id, (m = new Map()));
      return mapScope(m);
    },
    async close() {},
  };
}

export function mapScope(m: Map<string, unknown>): StateScope {
  return {
    async get<T>(k: string) {
      return structuredClone(m.get(k)) as T | undefined;
    },
    async set(k, v) {
      m.set(k, structuredClone(v));
    },
    async delete(k) {
      m.delete(k);
    },
    async entries() {
      return [...m].map(([k, v]) => [k, structuredClone(v)] as [string, unknown]);
    },
  };
}

/** SQLite in WAL mode; every `set` is a committed transaction, so positions survive kill -9. */
export function sqliteStateStore(path: string): StateStore {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec(`CREATE TABLE IF NOT EXISTS state (
    pipeline TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    updated_at INTEGER NOT NULL, PRIMARY KEY (pipeline, scope, key))`);
  const get = db.prepare<[string, string, string], { value: string }>('SELECT value FROM state WHERE pipeline=? AND scope=? AND key=?');
  const put = db.prepare(
    'INSERT INTO state (pipeline, scope, key, value, updated_at) VALUES (?,?,?,?,?) ON CONFLICT(pipeline, scope, key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at',
  );
  const del = db.prepare('DELETE FROM state WHERE pipeline=? AND scope=? AND key=?');
  const all = db.prepare<[string, string], { key: string; value: string }>('SELECT key, value FROM state WHERE pipeline=? AND scope=?');
  let closed = false;
  return {
    scope(pipeline, name) {
      return {
        async get<T>(k: string) {
          const row = get.get(pipeline, name, k);
          return row ? (JSON.parse(row.value) as T) : undefined;
        },
        async set(k, v) {
          put.run(pipeline, name, k, JSON.stringify(v), Date.now());
        },
        async delete(k) {
          del.run(pipeline, name, k);
        },
        async entries() {
          return all.all(pipeline, name).map((r) => [r.key, JSON.parse(r.value)] as [string, unknown]);
        },
      };
    },
    async close() {
      if (!closed) db.close();
      closed = true;
    },
  };
}
