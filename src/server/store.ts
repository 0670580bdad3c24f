// The control plane's store: connection profiles, tables, pipelines (with their desired state and every version of
// their definition) and pipeline checkpoints, in embedded SQLite or in PostgreSQL behind one async interface.
// Schema changes are numbered migrations applied at start, each in its own transaction.

import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pg from 'pg';
import type { StateStore } from '../core/state.js';
import { sqliteStateStore } from '../core/state.js';
import type { StateScope } from '../core/types.js';

export interface ProfileRow {
  id: string;
  name: string;
  connector: string;
  config: Record<string, unknown>;
  description?: string;
  created_at: number;
  updated_at: number;
}

export interface TableRow {
  id: string;
  name: string;
  connector: string;
  profile_id?: string;
  config: Record<string, unknown>;
  /** `{format, fields?, bad_data?, metadata_fields?, payload_path?}` as written. */
  schema: Record<string, unknown>;
  created_at: number;
  updated_at: number;
}

export interface PipelineRow {
  id: string;
  name: string;
  /** `json`: a YAML-equivalent pipeline definition; `sql`: the query text. */
  kind: 'json' | 'sql';
  definition: unknown;
  desired_state: 'running' | 'stopped';
  /** A finite pipeline that ran to its end is not started again at server start. */
  finished: boolean;
  version: number;
  created_at: number;
  updated_at: number;
}

/** The statements every dialect shares; `?` placeholders. */
interface Db {
  dialect: 'sqlite' | 'postgres';
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Runs `fn` in one transaction; `fn` must only use the Db it is given. */
  tx<T>(fn: (db: Db) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

const MIGRATIONS: Array<{ version: number; up: (d: Db['dialect']) => string[] }> = [
  {
    version: 1,
    up: () => [
      `CREATE TABLE profiles (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, connector TEXT NOT NULL, config TEXT NOT NULL,
        description TEXT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)`,
      `CREATE TABLE conn_tables (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, connector TEXT NOT NULL, profile_id TEXT,
        config TEXT NOT NULL, schema_def TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)`,
      `CREATE TABLE pipelines (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, definition TEXT NOT NULL,
        desired_state TEXT NOT NULL, finished INTEGER NOT NULL DEFAULT 0, version INTEGER NOT NULL,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)`,
      `CREATE TABLE pipeline_versions (pipeline_id TEXT NOT NULL, version INTEGER NOT NULL, definition TEXT NOT NULL,
        created_at BIGINT NOT NULL, PRIMARY KEY (pipeline_id, version))`,
    ],
  },
  {
    version: 2,
    // SQLite keeps checkpoints in the `state` table that sqliteStateStore creates itself.
    up: (d) =>
      d === 'postgres'
        ? [
            `CREATE TABLE state (pipeline TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
              updated_at BIGINT NOT NULL, PRIMARY KEY (pipeline, scope, key))`,
          ]
        : [],
  },
];

function sqliteDb(path: string): Db {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  let depth = 0;
  const self: Db = {
    dialect: 'sqlite',
    async query<T>(sql: string, params: unknown[] = []) {
      const st = db.prepare(sql);
      const p = params.map((v) => (typeof v === 'boolean' ? Number(v) : v));
      if (st.reader) return st.all(...p) as T[];
      st.run(...p);
      return [];
    },
    // better-sqlite3 is synchronous, so the awaits inside `fn` only wait on microtasks: no other request can run
    // statements in between.
    async tx(fn) {
      if (depth) return fn(self);
      depth++;
      db.exec('BEGIN IMMEDIATE');
      try {
        const r = await fn(self);
        db.exec('COMMIT');
        return r;
      } catch (e) {
        db.exec('ROLLBACK');
        throw e;
      } finally {
        depth--;
      }
    },
    async close() {
      db.close();
    },
  };
  return self;
}

const toPg = (sql: string) => {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
};

function pgDb(pool: pg.Pool): Db {
  const on = (c: pg.Pool | pg.PoolClient): Db => ({
    dialect: 'postgres',
    async query<T>(sql: string, params: unknown[] = []) {
      const r = await c.query(toPg(sql), params.map((v) => (typeof v === 'boolean' ? Number(v) : v)));
      return r.rows as T[];
    },
    async tx(fn) {
      if (c !== pool) return fn(on(c));
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const r = await fn(on(client));
        await client.query('COMMIT');
        return r;
      } catch (e) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw e;
      } finally {
        client.release();
      }
    },
    async close() {
      await pool.end();
    },
  });
  return on(pool);
}

/** `postgres://...?schema=name` keeps every table in that schema (created when missing). */
export function parsePgUrl(url: string): { connectionString: string; schema?: string } {
  const u = new URL(url);
  const schema = u.searchParams.get('schema') ?? undefined;
  u.searchParams.delete('schema');
  if (schema !== undefined && !/^[a-z_][a-z0-9_]*$/i.test(schema)) throw new Error(`--store: schema '${schema}' must be a plain identifier`);
  return { connectionString: u.toString(), schema };
}

function pgStateStore(pool: pg.Pool): StateStore {
  return {
    scope(pipeline, name): StateScope {
      return {
        async get<T>(k: string) {
          const r = await pool.query('SELECT value FROM state WHERE pipeline=$1 AND scope=$2 AND key=$3', [pipeline, name, k]);
          return r.rows[0] ? (JSON.parse(r.rows[0].value) as T) : undefined;
        },
        async set(k, v) {
          await pool.query(
            `INSERT INTO state (pipeline, scope, key, value, updated_at) VALUES ($1,$2,$3,$4,$5)
             ON CONFLICT (pipeline, scope, key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at`,
            [pipeline, name, k, JSON.stringify(v), Date.now()],
          );
        },
        async delete(k) {
          await pool.query('DELETE FROM state WHERE pipeline=$1 AND scope=$2 AND key=$3', [pipeline, name, k]);
        },
        async entries() {
          const r = await pool.query('SELECT key, value FROM state WHERE pipeline=$1 AND scope=$2', [pipeline, name]);
          return r.rows.map((x) => [x.key as string, JSON.parse(x.value as string)] as [string, unknown]);
        },
      };
    },
    // The pool belongs to the control store, which closes it.
    async close() {},
  };
}

const json = (v: unknown) => JSON.stringify(v);
const parse = <T>(s: unknown): T => JSON.parse(String(s)) as T;
const num = (v: unknown) => Number(v);

function profileOf(r: Record<string, unknown>): ProfileRow {
  return { id: String(r.id), name: String(r.name), connector: String(r.connector), config: parse(r.config), description: (r.description as string | null) ?? undefined, created_at: num(r.created_at), updated_at: num(r.updated_at) };
}
function tableOf(r: Record<string, unknown>): TableRow {
  return { id: String(r.id), name: String(r.name), connector: String(r.connector), profile_id: (r.profile_id as string | null) ?? undefined, config: parse(r.config), schema: parse(r.schema_def), created_at: num(r.created_at), updated_at: num(r.updated_at) };
}
function pipelineOf(r: Record<string, unknown>): PipelineRow {
  return { id: String(r.id), name: String(r.name), kind: r.kind as PipelineRow['kind'], definition: parse(r.definition), desired_state: r.desired_state as PipelineRow['desired_state'], finished: !!num(r.finished), version: num(r.version), created_at: num(r.created_at), updated_at: num(r.updated_at) };
}

/** Reads and writes of the control objects; the same methods work inside a transaction. */
export class ControlTx {
  constructor(protected readonly db: Db) {}

  async listProfiles(): Promise<ProfileRow[]> {
    return (await this.db.query('SELECT * FROM profiles ORDER BY name')).map(profileOf);
  }
  async getProfile(id: string): Promise<ProfileRow | undefined> {
    const [r] = await this.db.query('SELECT * FROM profiles WHERE id=?', [id]);
    return r && profileOf(r);
  }
  async putProfile(p: ProfileRow): Promise<void> {
    await this.db.query('DELETE FROM profiles WHERE id=?', [p.id]);
    await this.db.query('INSERT INTO profiles (id, name, connector, config, description, created_at, updated_at) VALUES (?,?,?,?,?,?,?)', [p.id, p.name, p.connector, json(p.config), p.description ?? null, p.created_at, p.updated_at]);
  }
  async deleteProfile(id: string): Promise<void> {
    await this.db.query('DELETE FROM profiles WHERE id=?', [id]);
  }

  async listTables(): Promise<TableRow[]> {
    return (await this.db.query('SELECT * FROM conn_tables ORDER BY name')).map(tableOf);
  }
  async getTable(id: string): Promise<TableRow | undefined> {
    const [r] = await this.db.query('SELECT * FROM conn_tables WHERE id=?', [id]);
    return r && tableOf(r);
  }
  async putTable(t: TableRow): Promise<void> {
    await this.db.query('DELETE FROM conn_tables WHERE id=?', [t.id]);
    await this.db.query('INSERT INTO conn_tables (id, name, connector, profile_id, config, schema_def, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)', [t.id, t.name, t.connector, t.profile_id ?? null, json(t.config), json(t.schema), t.created_at, t.updated_at]);
  }
  async deleteTable(id: string): Promise<void> {
    await this.db.query('DELETE FROM conn_tables WHERE id=?', [id]);
  }

  async listPipelines(): Promise<PipelineRow[]> {
    return (await this.db.query('SELECT * FROM pipelines ORDER BY name')).map(pipelineOf);
  }
  async getPipeline(id: string): Promise<PipelineRow | undefined> {
    const [r] = await this.db.query('SELECT * FROM pipelines WHERE id=?', [id]);
    return r && pipelineOf(r);
  }
  /** Inserts or replaces; a changed definition gets a new version, and every version is kept. */
  async putPipeline(p: Omit<PipelineRow, 'version'> & { version?: number }): Promise<PipelineRow> {
    const prev = await this.getPipeline(p.id);
    const changed = !prev || json(prev.definition) !== json(p.definition) || prev.kind !== p.kind;
    const version = prev ? (changed ? prev.version + 1 : prev.version) : 1;
    const row: PipelineRow = { ...p, version };
    await this.db.query('DELETE FROM pipelines WHERE id=?', [p.id]);
    await this.db.query('INSERT INTO pipelines (id, name, kind, definition, desired_state, finished, version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)', [row.id, row.name, row.kind, json(row.definition), row.desired_state, row.finished ? 1 : 0, version, row.created_at, row.updated_at]);
    if (changed) await this.db.query('INSERT INTO pipeline_versions (pipeline_id, version, definition, created_at) VALUES (?,?,?,?)', [row.id, version, json({ kind: row.kind, definition: row.definition }), row.updated_at]);
    return row;
  }
  async setPipelineState(id: string, s: { desired_state?: PipelineRow['desired_state']; finished?: boolean }): Promise<void> {
    if (s.desired_state !== undefined) await this.db.query('UPDATE pipelines SET desired_state=?, updated_at=? WHERE id=?', [s.desired_state, Date.now(), id]);
    if (s.finished !== undefined) await this.db.query('UPDATE pipelines SET finished=? WHERE id=?', [s.finished ? 1 : 0, id]);
  }
  async deletePipeline(id: string): Promise<void> {
    await this.db.query('DELETE FROM pipelines WHERE id=?', [id]);
    await this.db.query('DELETE FROM pipeline_versions WHERE pipeline_id=?', [id]);
  }
  async pipelineVersions(id: string): Promise<number> {
    const [r] = await this.db.query<{ n: unknown }>('SELECT COUNT(*) AS n FROM pipeline_versions WHERE pipeline_id=?', [id]);
    return num(r?.n ?? 0);
  }
  /** Checkpoints and connector state of a pipeline, by name (positions are kept per pipeline name). */
  async deleteState(pipeline: string): Promise<void> {
    await this.db.query('DELETE FROM state WHERE pipeline=?', [pipeline]);
  }
}

export class ControlStore extends ControlTx {
  constructor(
    db: Db,
    /** Pipeline checkpoints, in the same database. */
    readonly state: StateStore,
    readonly description: string,
  ) {
    super(db);
  }

  tx<T>(fn: (t: ControlTx) => Promise<T>): Promise<T> {
    return this.db.tx((d) => fn(new ControlTx(d)));
  }

  async ping(): Promise<void> {
    await this.db.query('SELECT 1 AS ok');
  }

  async close(): Promise<void> {
    await this.state.close();
    await this.db.close();
  }

  async migrate(): Promise<number[]> {
    await this.db.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
    const done = new Set((await this.db.query<{ version: unknown }>('SELECT version FROM schema_migrations')).map((r) => num(r.version)));
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await this.db.tx(async (d) => {
        for (const s of m.up(d.dialect)) await d.query(s);
        await d.query('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)', [m.version, Date.now()]);
      });
      applied.push(m.version);
    }
    return applied;
  }
}

/** `sqlite:<path>` or `postgres://...` (`postgresql://` too). */
export async function openStore(spec: string): Promise<ControlStore> {
  if (/^postgres(ql)?:\/\//.test(spec)) {
    const { connectionString, schema } = parsePgUrl(spec);
    const pool = new pg.Pool({ connectionString, max: 8 });
    // A store that cannot be reached must fail the start, not hang it.
    pool.on('error', () => undefined);
    if (schema) {
      await pool.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
      pool.on('connect', (c) => void c.query(`SET search_path TO "${schema}"`).catch(() => undefined));
      await pool.end();
      const scoped = new pg.Pool({ connectionString, max: 8, options: `-c search_path=${schema}` });
      scoped.on('error', () => undefined);
      const s = new ControlStore(pgDb(scoped), pgStateStore(scoped), `postgres (schema ${schema})`);
      await s.migrate();
      return s;
    }
    const s = new ControlStore(pgDb(pool), pgStateStore(pool), 'postgres');
    await s.migrate();
    return s;
  }
  const path = spec.replace(/^sqlite:/, '');
  const db = sqliteDb(path);
  // The checkpoint store opens its own connection to the same file: its `state` table lives beside ours.
  const state = sqliteStateStore(path);
  const s = new ControlStore(db, state, `sqlite ${path}`);
  await s.migrate();
  return s;
}
