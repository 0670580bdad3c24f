// Writes batches as multi-row INSERT / upsert / DELETE statements, all of one batch in one transaction. Where the
// dialect can (PostgreSQL), an INSERT carries one array per column instead of one parameter per value.

import { SluiceError, errorMessage } from '../../core/errors.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { FieldSpec, SchemaSpec, Sink, SinkContext, SluiceRecord, SourcePosition } from '../../core/types.js';
import { qualified, type Dialect, type SqlClient, type SqlConn } from './dialect.js';
import type { SinkOpts } from './options.js';
import { asBuffer } from '../../formats/util.js';

type Row = Record<string, unknown>;

export const OFFSETS_TABLE = 'sluice_offsets';

export class SqlSink implements Sink {
  private client?: SqlClient;
  private ctx?: SinkContext;
  private keys: string[] = [];
  private readonly fields?: FieldSpec[];
  private readonly schemaKey?: string[];
  private readonly table: string;
  /** Batches written by this sink instance, continuing from the stored sequence (exactly-once bookkeeping). */
  private seq = 0;
  /** The source position stored with the last committed batch (exactly-once). */
  private stored?: SourcePosition;
  /**
   * Column -> SQL type for the dialect's column-wise insert, read when the sink opens; null for a column it cannot
   * carry (an array type: unnest() would flatten it). A column missing here is written the per-value way.
   */
  private columnTypes?: Map<string, string | null>;

  constructor(
    private readonly o: SinkOpts,
    private readonly d: Dialect,
    private readonly connect: () => Promise<SqlClient>,
    info: EndpointInfo,
  ) {
    this.fields = info.schema?.fields?.filter((f) => !f.name.startsWith('__'));
    this.schemaKey = (info.schema as SchemaSpec | undefined)?.primary_key;
    this.table = qualified(d, o.table);
  }

  private label(): string {
    return `${this.d.name} sink table '${this.o.table}'`;
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    this.client = await this.connect();
    try {
      if (this.o.create_table) await this.createTable();
      this.keys = this.o.key_columns ?? this.schemaKey ?? [];
      if (this.keys.length === 0) {
        const q = this.d.primaryKeyQuery(this.o.table);
        const rows = await this.client.query(q.sql, q.params);
        this.keys = rows.map((r) => String(r.column_name ?? r.COLUMN_NAME));
      }
      if (this.d.columnWise) {
        const q = this.d.columnWise.typesQuery(this.o.table);
        const rows = await this.client.query(q.sql, q.params);
        this.columnTypes = new Map(rows.map((r) => [String(r.column_name), r.is_array ? null : String(r.type)]));
      }
      if (this.o.mode === 'upsert' && this.keys.length === 0) {
        throw new SluiceError('CONFIG', `${this.label()}: upsert needs key columns; the table has no primary key, so set 'key_columns'`);
      }
      if (this.o.exactly_once) {
        await this.client.query(
          `CREATE TABLE IF NOT EXISTS ${OFFSETS_TABLE} (pipeline text PRIMARY KEY, position jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`,
        );
        const rows = await this.client.query(`SELECT position FROM ${OFFSETS_TABLE} WHERE pipeline = $1`, [ctx.pipeline]);
        const pos = rows[0]?.position as StoredPosition | undefined;
        this.seq = pos?.seq ?? 0;
        this.stored = pos?.source ?? undefined;
      }
    } catch (e) {
      throw this.describe(e);
    }
  }

  get exactlyOnce(): boolean {
    return !!this.o.exactly_once;
  }

  async position(): Promise<SourcePosition | undefined> {
    return this.stored;
  }

  async write(records: SluiceRecord[], source?: SourcePosition): Promise<void> {
    if (records.length === 0) return;
    const conn = await this.client!.acquire().catch((e) => {
      throw this.describe(e);
    });
    let inTx = false;
    try {
      // A batch that fits one INSERT is atomic without a transaction: BEGIN/COMMIT would triple the round trips.
      if (!this.o.exactly_once && !records.some((r) => isDelete(r.value as Row))) {
        const cols = this.columnsFor(records, 0, records.length);
        const types = this.arrayTypes(cols);
        if (types || records.length <= Math.floor(this.d.maxParams / Math.max(1, cols.length))) {
          await this.writeRun(conn, records, 0, records.length, cols, types);
          return;
        }
      }
      await conn.query('BEGIN');
      inTx = true;
      // Order matters between an upsert and a delete of the same key: consecutive runs of one kind keep it.
      let start = 0;
      let del = isDelete(records[0]!.value as Row);
      for (let i = 1; i <= records.length; i++) {
        const d = i < records.length ? isDelete(records[i]!.value as Row) : !del;
        if (d !== del || i === records.length) {
          if (del) await this.deleteRun(conn, records, start, i);
          else await this.writeRun(conn, records, start, i);
          start = i;
          del = d;
        }
      }
      if (this.o.exactly_once) {
        const last = records[records.length - 1]!;
        // `source` is what the source resumes from after a restart; seq and last are for people reading the table.
        const stored: StoredPosition = { seq: this.seq + 1, records: records.length, last: last.meta ?? null, source: source ?? this.stored ?? null };
        const position = JSON.stringify(stored);
        await conn.query(
          `INSERT INTO ${OFFSETS_TABLE} (pipeline, position) VALUES ($1, $2) ON CONFLICT (pipeline) DO UPDATE SET position = EXCLUDED.position, updated_at = now()`,
          [this.ctx!.pipeline, position],
        );
      }
      await conn.query('COMMIT');
      inTx = false;
      if (this.o.exactly_once) {
        this.seq++;
        if (source) this.stored = source;
      }
    } catch (e) {
      if (inTx) await conn.query('ROLLBACK').catch(() => {});
      throw this.describe(e);
    } finally {
      conn.release();
    }
  }

  async close(): Promise<void> {
    await this.client?.end().catch(() => {});
    this.client = undefined;
  }

  private columnsFor(records: SluiceRecord[], a: number, b: number): string[] {
    if (this.o.columns) return this.o.columns;
    if (this.fields?.length) return this.fields.map((f) => f.name);
    const seen = new Set<string>();
    for (let i = a; i < b; i++) {
      const v = records[i]!.value;
      if (v === null || typeof v !== 'object') continue;
      for (const k in v as Row) if (!k.startsWith('__')) seen.add(k);
    }
    return [...seen];
  }

  private async writeRun(
    conn: SqlConn,
    records: SluiceRecord[],
    a: number,
    b: number,
    cols = this.columnsFor(records, a, b),
    types = this.arrayTypes(cols),
  ): Promise<void> {
    if (cols.length === 0) throw new SluiceError('SCHEMA', `${this.label()}: the rows have no columns to write`);
    let rows: Row[] = [];
    for (let i = a; i < b; i++) {
      const v = records[i]!.value;
      if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) {
        throw new SluiceError('SCHEMA', `${this.label()}: record ${i + 1} of the batch is not a row (use a format that decodes to objects, such as json)`);
      }
      rows.push(v as Row);
    }
    // One statement cannot touch the same key twice in an upsert (PostgreSQL refuses); the last write wins anyway.
    if (this.o.mode === 'upsert') rows = lastPerKey(rows, this.keys);
    const tail = this.o.mode === 'upsert' ? this.d.upsertSuffix(this.keys, cols) : '';
    if (types) {
      const arrays: unknown[][] = new Array(cols.length);
      for (let c = 0; c < cols.length; c++) {
        const col = cols[c]!;
        const values = (arrays[c] = new Array(rows.length));
        for (let r = 0; r < rows.length; r++) values[r] = toParam(rows[r]![col]);
      }
      await conn.query(this.d.columnWise!.insert(this.table, cols, types) + tail, arrays);
      return;
    }
    const head = `INSERT INTO ${this.table} (${cols.map((c) => this.d.ident(c)).join(', ')}) VALUES `;
    // A list for an array-typed column goes to the driver as a list (pg writes an array literal), not as JSON text.
    const arrayCol = cols.map((c) => this.columnTypes?.get(c) === null);
    const per = Math.max(1, Math.floor(this.d.maxParams / cols.length));
    for (let s = 0; s < rows.length; s += per) {
      const e = Math.min(rows.length, s + per);
      const params: unknown[] = new Array((e - s) * cols.length);
      const tuples: string[] = new Array(e - s);
      let n = 0;
      for (let r = s; r < e; r++) {
        const row = rows[r]!;
        let t = '(';
        for (let c = 0; c < cols.length; c++) {
          const v = row[cols[c]!];
          params[n++] = arrayCol[c] && Array.isArray(v) ? v : toParam(v);
          t += c === 0 ? this.d.param(n) : ', ' + this.d.param(n);
        }
        tuples[r - s] = t + ')';
      }
      await conn.query(head + tuples.join(', ') + tail, params);
    }
  }

  /** The SQL types of `cols` when every one can go column-wise (`Dialect.columnWise`), else undefined. */
  private arrayTypes(cols: string[]): string[] | undefined {
    const known = this.columnTypes;
    if (!known || cols.length === 0) return undefined;
    const types = new Array<string>(cols.length);
    for (let i = 0; i < cols.length; i++) {
      const t = known.get(cols[i]!);
      if (!t) return undefined;
      types[i] = t;
    }
    return types;
  }

  private async deleteRun(conn: SqlConn, records: SluiceRecord[], a: number, b: number): Promise<void> {
    const keys = this.keys;
    if (keys.length === 0) {
      throw new SluiceError('CONFIG', `${this.label()}: a delete marker arrived but no key columns are known; set 'key_columns'`);
    }
    const per = Math.max(1, Math.floor(this.d.maxParams / keys.length));
    const kl = keys.length === 1 ? this.d.ident(keys[0]!) : `(${keys.map((k) => this.d.ident(k)).join(', ')})`;
    for (let s = a; s < b; s += per) {
      const e = Math.min(b, s + per);
      const params: unknown[] = [];
      const tuples: string[] = [];
      for (let i = s; i < e; i++) {
        const row = records[i]!.value as Row;
        let t = keys.length === 1 ? '' : '(';
        for (let k = 0; k < keys.length; k++) {
          const v = row[keys[k]!];
          if (v === undefined) throw new SluiceError('SCHEMA', `${this.label()}: delete marker without key column '${keys[k]}'`);
          params.push(toParam(v));
          t += (k === 0 ? '' : ', ') + this.d.param(params.length);
        }
        tuples.push(keys.length === 1 ? t : t + ')');
      }
      await conn.query(`DELETE FROM ${this.table} WHERE ${kl} IN (${tuples.join(', ')})`, params);
    }
  }

  private async createTable(): Promise<void> {
    const fields = this.fields;
    if (!fields?.length) {
      throw new SluiceError('CONFIG', `${this.label()}: create_table needs a pipeline schema (the columns and their types come from it)`);
    }
    const pk = this.o.key_columns ?? this.schemaKey ?? [];
    const cols = fields.map((f) => {
      const notNull = f.nullable === false || pk.includes(f.name);
      return `${this.d.ident(f.name)} ${this.d.columnType(f, pk.includes(f.name))}${notNull ? ' NOT NULL' : ''}`;
    });
    if (pk.length) cols.push(`PRIMARY KEY (${pk.map((k) => this.d.ident(k)).join(', ')})`);
    await this.client!.query(`CREATE TABLE IF NOT EXISTS ${this.table} (${cols.join(', ')})`);
  }

  private describe(e: unknown): SluiceError {
    if (e instanceof SluiceError) return e;
    const { message, data } = this.d.describeError(e, this.o.table);
    // Data errors (constraint violations, bad values) fail the same way on every retry.
    return new SluiceError(data ? 'SCHEMA' : 'SINK', `${this.label()}: ${message}`, { retriable: !data, cause: e });
  }
}

/** The `position` column of `sluice_offsets`. */
interface StoredPosition {
  seq: number;
  records: number;
  last: Record<string, unknown> | null;
  /** Per source partition, the ack of the last batch written (see SourcePosition). */
  source: SourcePosition | null;
}

function isDelete(row: Row | null | undefined): boolean {
  return !!row && typeof row === 'object' && (row.__op === 'd' || row.__deleted === true || row.__deleted === 'true');
}

function lastPerKey(rows: Row[], keys: string[]): Row[] {
  if (keys.length === 0) return rows;
  const at = new Map<string, number>();
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    const k = keys.length === 1 ? keyText(r[keys[0]!]) : keys.map((c) => keyText(r[c])).join('\u0000');
    at.set(k, i);
  }
  if (at.size === rows.length) return rows;
  const keep = [...at.values()].sort((x, y) => x - y);
  return keep.map((i) => rows[i]!);
}

function keyText(v: unknown): string {
  return v instanceof Date ? v.toISOString() : String(v);
}

/** A row value as a driver parameter: nested values as JSON text, bytes as Buffer, big integers as text. */
export function toParam(v: unknown): unknown {
  if (v === undefined || v === null) return null;
  switch (typeof v) {
    case 'object':
      if (v instanceof Date || Buffer.isBuffer(v)) return v;
      if (v instanceof Uint8Array) return asBuffer(v);
      return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
    case 'bigint':
      return v.toString();
    default:
      return v;
  }
}

export { errorMessage };
