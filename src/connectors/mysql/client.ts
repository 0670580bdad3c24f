// The mysql2 pool behind the SqlClient interface, with the type mapping rows are emitted with.

import mysql from 'mysql2/promise';
import type { SqlClient } from '../sqldb/dialect.js';
import type { ConnectionOpts } from '../sqldb/options.js';

// BIGINT as a number while exact, a BigInt beyond 2^53 (mysql2 would give a string); DECIMAL stays text.
function typeCast(field: { type: string; string(): string | null }, next: () => unknown): unknown {
  if (field.type === 'LONGLONG') {
    const s = field.string();
    if (s === null) return null;
    const n = Number(s);
    return Number.isSafeInteger(n) ? n : BigInt(s);
  }
  return next();
}

export function connectMysql(o: ConnectionOpts): SqlClient {
  const base: mysql.PoolOptions = {
    connectionLimit: 2,
    connectTimeout: o.connect_timeout,
    supportBigNumbers: true,
    bigNumberStrings: true,
    // Dates are sent and read in UTC; the session time zone is set to match below.
    timezone: 'Z',
    typeCast: typeCast as mysql.PoolOptions['typeCast'],
  };
  const cfg: mysql.PoolOptions = o.url ? { ...base, uri: o.url } : { ...base, host: o.host ?? '127.0.0.1', user: o.user ?? 'root' };
  if (o.host) cfg.host = o.host;
  if (o.port) cfg.port = o.port;
  if (o.user) cfg.user = o.user;
  if (o.password !== undefined) cfg.password = o.password;
  if (o.database) cfg.database = o.database;
  const pool = mysql.createPool(cfg);
  // Strict mode makes a multi-row INSERT reject a NULL in a NOT NULL column instead of storing a default with a warning.
  pool.pool.on('connection', (c: { query(sql: string): unknown }) => {
    c.query("SET time_zone = '+00:00', sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')");
  });
  return {
    async acquire() {
      const c = await pool.getConnection();
      let broken = false;
      return {
        async query(sql, params) {
          try {
            const [rows] = await c.query(sql, params);
            return Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [];
          } catch (e) {
            if (!(e as { sqlState?: string }).sqlState) broken = true;
            throw e;
          }
        },
        release: () => (broken ? c.destroy() : c.release()),
      };
    },
    async query(sql, params) {
      const [rows] = await pool.query(sql, params);
      return Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [];
    },
    end: () => pool.end(),
  };
}
