// `sluice test` for the SQL connectors: connect, then check the table.

import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { parseOptions, z, type TestReporter } from '../../core/spec.js';
import type { SqlClient } from './dialect.js';
import type { ConnectionOpts, SinkOpts, SourceOpts } from './options.js';

export interface ProbeTarget {
  title: string;
  sourceOptions: z.ZodType;
  sinkOptions: z.ZodType;
  connect(o: ConnectionOpts): Promise<SqlClient>;
  /** A query answering one row with a truthy `t` when the table exists. */
  tableExists(table: string): { sql: string; params: unknown[] };
}

export async function probeSql(p: ProbeTarget, options: unknown, role: 'source' | 'sink', report: TestReporter): Promise<void> {
  const r = parseOptions<unknown>(role === 'source' ? p.sourceOptions : p.sinkOptions, options);
  if (!r.ok) throw new ConfigError(r.issues);
  const o = r.value as SourceOpts | SinkOpts;
  const where = o.host ?? (o.url ? "the URL's host" : '127.0.0.1');
  const c = await p.connect(o);
  try {
    try {
      await c.query('SELECT 1');
      report({ message: `connected to ${p.title} at ${where}`, done: true });
    } catch (e) {
      report({ message: `cannot connect to ${p.title} at ${where}: ${errorMessage(e)}`, error: true });
      throw new SluiceError('CONNECT', `${p.title}: cannot connect to ${where}: ${errorMessage(e)}`, { cause: e });
    }
    if (o.table) {
      const q = p.tableExists(o.table);
      const rows = await c.query(q.sql, q.params);
      if (!rows[0]?.t || rows[0].t === '0') {
        const later = role === 'sink' && (o as SinkOpts).create_table;
        report({ message: `table '${o.table}' does not exist${later ? '; create_table will create it' : ''}`, error: !later, done: later });
        if (!later) throw new SluiceError('CONFIG', `${p.title}: table '${o.table}' does not exist`);
      } else report({ message: `table '${o.table}' exists`, done: true });
    }
  } finally {
    await c.end();
  }
}
