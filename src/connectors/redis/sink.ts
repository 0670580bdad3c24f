// The Redis sink: every batch is one pipelined round trip (MULTI without the transaction, sent together and
// answered together); write() resolves once Redis replied to every command of the batch.
//
// Modes: set (SET key value [PX ttl]), hash (HSET of the row's fields, or one field per record with hash_field),
// list (one RPUSH/LPUSH per key with all of the batch's values for it, then LTRIM with max_len), stream (XADD with
// MAXLEN ~), publish (PUBLISH).

import { SluiceError } from '../../core/errors.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { Encoder, SluiceRecord, Sink, SinkContext } from '../../core/types.js';
import { acquireClient, commandError, endpointOf, type Client, type ClientLease, type Endpoint } from './client.js';
import type { RedisSinkOptions } from './options.js';
import { compileKeyTemplate, fieldOf, valueText, type KeyTemplate } from './template.js';
import { payloadTemplate, type PayloadTemplate } from '../../core/data-template.js';
import { encodeRecord } from '../../core/encode.js';
import { asBuffer } from '../../formats/util.js';

type Arg = string | Buffer;

function asArg(v: string | Uint8Array): Arg {
  return typeof v === 'string' ? v : asBuffer(v);
}

/** A row's fields as Redis field/value pairs: scalars as text, objects as JSON, nulls left out. */
function rowFields(row: unknown, what: string): Record<string, Arg> {
  if (row === null || typeof row !== 'object' || Array.isArray(row) || row instanceof Uint8Array) {
    throw new SluiceError('CONFIG', `${what} needs rows with fields, got ${Array.isArray(row) ? 'a list' : typeof row}; use a structured format or payload_field`);
  }
  const out: Record<string, Arg> = {};
  for (const k in row as Record<string, unknown>) {
    const v = (row as Record<string, unknown>)[k];
    if (v === null || v === undefined) continue;
    out[k] = Buffer.isBuffer(v) ? v : valueText(v);
  }
  return out;
}

function nonEmpty(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

export class RedisSink implements Sink {
  private client?: Client;
  private lease?: ClientLease;
  private encoder!: Encoder;
  private ctx!: SinkContext;
  private readonly ep: Endpoint;
  private readonly template?: KeyTemplate;
  private readonly keyPath?: string[];
  private readonly payload?: PayloadTemplate;

  constructor(
    readonly options: RedisSinkOptions,
    private readonly info: EndpointInfo = { format: 'json' },
  ) {
    this.ep = endpointOf(options);
    if (options.key !== undefined) this.template = compileKeyTemplate(options.key, 'key');
    if (options.key_field !== undefined) this.keyPath = options.key_field.split('.');
    this.payload = payloadTemplate(options);
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    this.encoder = ctx.encoder;
    this.lease = await acquireClient(this.options, this.info.profile, { name: `sluice-${ctx.pipeline}-sink`.replace(/\s/g, '_'), log: ctx.log, failWhileOffline: true });
    this.client = this.lease.client;
    ctx.log.info({ server: this.ep.shown, mode: this.options.mode, key: this.options.key ?? this.options.key_field }, 'redis sink connected');
  }

  /** The target key of one record. */
  private keyOf(rec: SluiceRecord): string {
    const o = this.options;
    const prefix = o.key_prefix ?? '';
    if (this.template) return prefix + this.template.render(rec);
    if (this.keyPath) {
      const v = fieldOf(rec, this.keyPath);
      if (v === undefined || v === null) throw new SluiceError('CONFIG', `key_field '${o.key_field}': the record has no such field (or it is null)`);
      return prefix + valueText(v);
    }
    if (rec.key === undefined || rec.key === null) {
      throw new SluiceError('CONFIG', `mode '${o.mode}': the record has no key; set \`key\` (a template such as 'user:{{ id }}') or \`key_field\``);
    }
    return prefix + (typeof rec.key === 'string' ? rec.key : Buffer.from(rec.key).toString('utf8'));
  }

  async write(records: SluiceRecord[]): Promise<void> {
    const c = this.client;
    if (!c) throw new SluiceError('INTERNAL', 'redis sink: write before open');
    if (!records.length) return;
    const o = this.options;
    // A connection of our own refuses commands while offline; a shared one queues them, so refuse here instead.
    if (this.lease?.shared && !c.isReady) {
      throw commandError(`writing ${records.length} records (mode ${o.mode}${o.key ? `, key '${o.key}'` : ''})`, this.ep, new Error('the connection is down (reconnecting)'));
    }
    const multi = c.multi();
    const enc = this.encoder;
    const tpl = this.payload;
    switch (o.mode) {
      case 'set': {
        const ttl = o.ttl;
        for (let i = 0; i < records.length; i++) {
          const r = records[i]!;
          const v = asArg(tpl ? tpl(r) : encodeRecord(enc, r));
          if (ttl !== undefined) multi.set(this.keyOf(r), v, { expiration: { type: 'PX', value: ttl } });
          else multi.set(this.keyOf(r), v);
        }
        break;
      }
      case 'hash': {
        for (let i = 0; i < records.length; i++) {
          const r = records[i]!;
          const key = this.keyOf(r);
          if (o.hash_field !== undefined) {
            const f = fieldOf(r, o.hash_field.split('.'));
            if (f === undefined || f === null) throw new SluiceError('CONFIG', `hash_field '${o.hash_field}': the record has no such field (or it is null)`);
            multi.hSet(key, valueText(f), asArg(tpl ? tpl(r) : encodeRecord(enc, r)));
          } else {
            const fields = rowFields(r.value, "mode 'hash'");
            // HSET with no field is a syntax error; a row of nulls writes nothing.
            if (nonEmpty(fields)) multi.hSet(key, fields);
          }
          if (o.ttl !== undefined) multi.pExpire(key, o.ttl);
        }
        break;
      }
      case 'list': {
        // Consecutive records for the same list go out as one RPUSH/LPUSH with many values.
        let key: string | undefined;
        let values: Arg[] = [];
        const flush = () => {
          if (key === undefined || !values.length) return;
          if (o.push === 'right') multi.rPush(key, values);
          else multi.lPush(key, values);
          if (o.max_len !== undefined) {
            if (o.push === 'right') multi.lTrim(key, -o.max_len, -1);
            else multi.lTrim(key, 0, o.max_len - 1);
          }
          values = [];
        };
        for (let i = 0; i < records.length; i++) {
          const r = records[i]!;
          const k = this.keyOf(r);
          if (k !== key) {
            flush();
            key = k;
          }
          values.push(asArg(tpl ? tpl(r) : encodeRecord(enc, r)));
        }
        flush();
        break;
      }
      case 'stream': {
        const trim = o.max_len === undefined ? undefined : { TRIM: { strategy: 'MAXLEN' as const, strategyModifier: '~' as const, threshold: o.max_len } };
        const field = o.payload_field;
        for (let i = 0; i < records.length; i++) {
          const r = records[i]!;
          const fields = field === null ? rowFields(r.value, "mode 'stream' with payload_field '*'") : { [field]: asArg(tpl ? tpl(r) : encodeRecord(enc, r)) };
          multi.xAdd(this.keyOf(r), '*', fields, trim);
        }
        break;
      }
      case 'publish': {
        for (let i = 0; i < records.length; i++) {
          const r = records[i]!;
          multi.publish(this.keyOf(r), asArg(tpl ? tpl(r) : encodeRecord(enc, r)));
        }
        break;
      }
    }
    try {
      await multi.execAsPipeline();
    } catch (e) {
      throw commandError(`writing ${records.length} records (mode ${o.mode}${o.key ? `, key '${o.key}'` : ''})`, this.ep, firstError(e));
    }
  }

  async close(): Promise<void> {
    this.client = undefined;
    const l = this.lease;
    this.lease = undefined;
    await l?.release();
  }
}

/** node-redis reports a failed pipeline as one error with the replies; the first command error is the useful part. */
function firstError(e: unknown): unknown {
  const replies = (e as { replies?: unknown[] }).replies;
  if (Array.isArray(replies)) for (const r of replies) if (r instanceof Error) return r;
  return e;
}

