// The pg pool behind the SqlClient interface, with the type mapping rows are emitted with.

import pg from 'pg';
import type { SqlClient } from '../sqldb/dialect.js';
import type { ConnectionOpts } from '../sqldb/options.js';

const INT8 = 20;
const MAX = BigInt(Number.MAX_SAFE_INTEGER);
const MIN = BigInt(Number.MIN_SAFE_INTEGER);

// int8 as a number while it is exact, a BigInt beyond 2^53; numeric stays text (pg's default) so no digit is lost.
const types = {
  getTypeParser(oid: number, format?: string): any {
    if (oid === INT8 && format !== 'binary') {
      return (s: string) => {
        const b = BigInt(s);
        return b > MAX || b < MIN ? b : Number(s);
      };
    }
    return (pg.types.getTypeParser as (o: number, f?: string) => unknown)(oid, format as 'text');
  },
};

export function pgConfig(o: ConnectionOpts): pg.PoolConfig {
  const c: pg.PoolConfig = {
    host: o.host ?? (o.url ? undefined : '127.0.0.1'),
    port: o.port,
    user: o.user ?? (o.url ? undefined : 'postgres'),
    database: o.database,
    password: o.password,
    connectionTimeoutMillis: o.connect_timeout,
    max: 2,
    types,
  };
  if (o.url) c.connectionString = o.url;
  for (const k of Object.keys(c) as (keyof pg.PoolConfig)[]) if (c[k] === undefined) delete c[k];
  return c;
}

export function connectPg(o: ConnectionOpts): SqlClient {
  const pool = new pg.Pool(pgConfig(o));
  // An idle client losing its connection (a server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  return {
    async acquire() {
      const c = await pool.connect();
      let broken: Error | undefined;
      // A checked-out client has no pool listener: a server that dies between two statements of a transaction would
      // emit an unhandled 'error' and crash the process. Keep it as the reason the connection is discarded instead.
      const onError = (e: Error) => void (broken ??= e);
      c.on('error', onError);
      return {
        async query(sql, params) {
          try {
            return (await c.query({ text: sql, values: params as unknown[] })).rows;
          } catch (e) {
            // A server-side error (it has an SQLSTATE) leaves the connection usable; anything else may not.
            if (!(e as { code?: unknown }).code || /^(08|57P)/.test(String((e as { code?: unknown }).code))) broken = e as Error;
            throw e;
          }
        },
        release: () => {
          c.off('error', onError);
          c.release(broken);
        },
      };
    },
    async query(sql, params) {
      return (await pool.query({ text: sql, values: params as unknown[] })).rows;
    },
    end: () => pool.end(),
  };
}
