// Polls a table or a query by an incremental column; the committed cursor is the resume position.

import { SluiceError, errorMessage } from '../../core/errors.js';
import type { SluiceRecord, Source, SourceContext } from '../../core/types.js';
import { qualified, type Dialect, type SqlClient } from './dialect.js';
import type { SourceOpts } from './options.js';

/** The position: the cursor column's value as text (full precision) and the tiebreaker's, if any. */
export interface SqlCursor {
  v: string | number;
  t?: string | number;
}

const CUR = '__sluice_cursor';
const TIE = '__sluice_tie';
const STATE_KEY = 'cursor';

export class SqlSource implements Source {
  private client?: SqlClient;
  private readonly meta: Record<string, unknown>;

  constructor(
    private readonly o: SourceOpts,
    private readonly d: Dialect,
    private readonly connect: () => Promise<SqlClient>,
  ) {
    this.meta = { _table: o.table ?? null };
  }

  async run(ctx: SourceContext): Promise<void> {
    const o = this.o;
    this.client = await this.connect();
    this.state = ctx.state;
    this.ctx = ctx;
    // An exactly-once sink's stored position (batches carry no partition, so it is under '') wins over our own.
    const resumed = ctx.resume?.[''];
    let cursor = isCursor(resumed) ? resumed : await ctx.state.get<SqlCursor>(STATE_KEY);
    if (cursor === undefined && o.start_value !== undefined) cursor = { v: o.start_value };
    if (o.table && o.incremental_column) await this.chooseCursorForm();
    if (cursor === undefined && o.mode === 'incremental' && o.table) cursor = await this.currentMax();
    while (!ctx.signal.aborted) {
      const c = cursor;
      const rows = await this.retrying(() => this.fetch(c));
      if (ctx.signal.aborted) return;
      if (rows.length > 0) {
        const next = this.cursorOf(rows[rows.length - 1]!, cursor);
        if (next) cursor = next;
        const records: SluiceRecord[] = new Array(rows.length);
        const text = this.textCursor && !o.query;
        for (let i = 0; i < rows.length; i++) {
          const row = rows[i]!;
          if (text) {
            delete row[CUR];
            delete row[TIE];
          }
          records[i] = { value: row, meta: this.meta };
        }
        const p = ctx.emit({ records, decoded: true, ack: next, position: next });
        if (p) await p;
      }
      if (o.mode === 'snapshot' && !this.paged) return;
      if (rows.length === 0 || (this.limited && rows.length < o.batch_size)) {
        if (o.mode === 'snapshot') return;
        await sleep(o.interval, ctx.signal);
      }
    }
  }

  /** Advance the committed cursor to the newest acknowledged batch's last row. */
  async commit(acks: unknown[]): Promise<void> {
    for (let i = acks.length - 1; i >= 0; i--) {
      if (acks[i] !== undefined) {
        await this.state?.set(STATE_KEY, acks[i]);
        return;
      }
    }
  }

  private state?: SourceContext['state'];
  /** Each query returns at most batch_size rows, so a short result means caught up. */
  private get limited(): boolean {
    return !this.o.query || /\{\{\s*limit\s*\}\}/.test(this.o.query);
  }
  /** Repeated queries move forward (a cursor), as opposed to returning the same rows again. */
  private get paged(): boolean {
    return this.o.query ? /\{\{\s*cursor\s*\}\}/.test(this.o.query) : !!this.o.incremental_column;
  }

  async close(): Promise<void> {
    await this.client?.end().catch(() => {});
    this.client = undefined;
  }

  /** The label used in errors: connector and table or query. */
  private label(): string {
    return `${this.d.name} source ${this.o.table ? `table '${this.o.table}'` : 'query'}`;
  }

  private describe(e: unknown): SluiceError {
    if (e instanceof SluiceError) return e;
    const code = (e as { code?: string }).code ?? '';
    const connection = /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|PROTOCOL_CONNECTION_LOST|57P01|57P02|57P03|08\d\d\d)$/.test(code) || /Connection terminated|closed state|connection is in closed/i.test(errorMessage(e));
    return new SluiceError(connection ? 'CONNECT' : 'CONFIG', `${this.label()}: ${errorMessage(e)}`, { retriable: connection, cause: e });
  }

  /**
   * Numbers and strings are exact as the driver returns them; timestamps are not (a Date holds milliseconds, the
   * database microseconds), so those cursors are read as the database's text of the value in an extra column.
   */
  private async chooseCursorForm(): Promise<void> {
    const d = this.d;
    const cols = [this.o.incremental_column!, this.o.tiebreaker_column].filter((c): c is string => !!c);
    const rows = await this.retrying(() => this.client!.query(`SELECT ${cols.map((c) => d.ident(c)).join(', ')} FROM ${qualified(d, this.o.table!)} LIMIT 1`));
    const r = rows[0];
    this.textCursor = !r || cols.some((c) => r[c] !== null && typeof r[c] === 'object');
  }

  private textCursor = true;
  private ctx?: SourceContext;

  /** Runs a query until it succeeds, retrying while the server is unreachable (a restart); [] once stopped. */
  private async retrying(fn: () => Promise<Record<string, unknown>[]>): Promise<Record<string, unknown>[]> {
    const ctx = this.ctx!;
    for (let failures = 1; !ctx.signal.aborted; failures++) {
      try {
        return await fn();
      } catch (e) {
        const err = this.describe(e);
        if (!err.retriable) throw err;
        // The cursor has not moved, so polling again after the outage loses nothing.
        ctx.log.warn({ err: err.message, attempt: failures }, `${this.label()}: query failed; retrying`);
        await sleep(Math.min(10_000, 100 * 2 ** Math.min(failures, 7)), ctx.signal);
      }
    }
    return [];
  }

  private async currentMax(): Promise<SqlCursor | undefined> {
    const d = this.d;
    const col = d.ident(this.o.incremental_column!);
    const t = qualified(d, this.o.table!);
    const tie = this.o.tiebreaker_column ? d.ident(this.o.tiebreaker_column) : undefined;
    const sql = `SELECT ${d.asText(col)} AS ${d.ident(CUR)}${tie ? `, ${d.asText(tie)} AS ${d.ident(TIE)}` : ''} FROM ${t} ORDER BY ${col} DESC${tie ? `, ${tie} DESC` : ''} LIMIT 1`;
    const rows = await this.retrying(() => this.client!.query(sql));
    const r = rows[0];
    if (!r || r[CUR] == null) return undefined;
    return tie ? { v: r[CUR] as string, t: r[TIE] as string } : { v: r[CUR] as string };
  }

  private async fetch(cursor: SqlCursor | undefined): Promise<Record<string, unknown>[]> {
    const o = this.o;
    const d = this.d;
    if (o.query) {
      const params: unknown[] = [];
      const sql = o.query.replace(/\{\{\s*(cursor|limit)\s*\}\}/g, (_m, what: string) => {
        params.push(what === 'limit' ? o.batch_size : this.typed(cursor?.v));
        return d.param(params.length);
      });
      return this.client!.query(sql, params);
    }
    const t = qualified(d, o.table!);
    if (!o.incremental_column) return this.client!.query(`SELECT * FROM ${t}`);
    const col = d.ident(o.incremental_column);
    const tie = o.tiebreaker_column ? d.ident(o.tiebreaker_column) : undefined;
    const select = this.textCursor
      ? `SELECT *, ${d.asText(col)} AS ${d.ident(CUR)}${tie ? `, ${d.asText(tie)} AS ${d.ident(TIE)}` : ''} FROM ${t}`
      : `SELECT * FROM ${t}`;
    const order = ` ORDER BY ${col}${tie ? `, ${tie}` : ''} LIMIT ${o.batch_size}`;
    if (cursor === undefined) return this.client!.query(select + ` WHERE ${col} IS NOT NULL` + order);
    if (tie && cursor.t !== undefined) {
      // A row comparison, so that an index on (col, tie) serves both the condition and the order.
      return this.client!.query(`${select} WHERE (${col}, ${tie}) > (${d.param(1)}, ${d.param(2)})${order}`, [cursor.v, cursor.t]);
    }
    return this.client!.query(`${select} WHERE ${col} > ${d.param(1)}${order}`, [cursor.v]);
  }

  /** The cursor sent with a user query: the row's value as read, or as `cursor_type` says. */
  private typed(v: string | number | undefined): unknown {
    if (v === undefined) return null;
    switch (this.o.cursor_type) {
      case 'number':
        return typeof v === 'number' ? v : Number(v);
      case 'timestamp':
        return new Date(v);
      case 'string':
        return String(v);
      default:
        return v;
    }
  }

  private cursorOf(row: Record<string, unknown>, prev: SqlCursor | undefined): SqlCursor | undefined {
    const o = this.o;
    if (!o.incremental_column) return undefined;
    if (o.table && this.textCursor) {
      const v = row[CUR];
      if (v == null) return prev;
      return o.tiebreaker_column ? { v: v as string, t: row[TIE] as string } : { v: v as string };
    }
    if (o.table && o.tiebreaker_column) {
      const v = row[o.incremental_column];
      if (v == null) return prev;
      return { v: plain(v), t: plain(row[o.tiebreaker_column]) };
    }
    const v = row[o.incremental_column];
    if (v === undefined) {
      throw new SluiceError('CONFIG', `${this.label()}: the result has no column '${o.incremental_column}' (incremental_column)`);
    }
    if (v == null) return prev;
    return { v: plain(v) };
  }

}

function isCursor(v: unknown): v is SqlCursor {
  return !!v && typeof v === 'object' && (typeof (v as SqlCursor).v === 'string' || typeof (v as SqlCursor).v === 'number');
}

/** A cursor value that survives the JSON checkpoint store. */
function plain(v: unknown): string | number {
  return v instanceof Date ? v.toISOString() : typeof v === 'bigint' ? v.toString() : (v as string | number);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
