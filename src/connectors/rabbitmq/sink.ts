// RabbitMQ sink: publish each batch with publisher confirms; write() resolves once the broker confirmed every message.

import type { Channel, Connection, Envelope, ReturnedMessage } from 'rabbitmq-client';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { Encoder, Sink, SinkContext, SluiceRecord } from '../../core/types.js';
import { amqpError, isPermanent, openConnection } from './connection.js';
import { closeQuietly } from './source.js';
import { compileTemplate, type FieldTemplate } from './template.js';
import type { RabbitSinkOptions } from './options.js';
import { payloadTemplate, type PayloadTemplate } from '../../core/data-template.js';
import { encodeRecord } from '../../core/encode.js';
import { asBuffer } from '../../formats/util.js';

const CONTENT_TYPES: Record<string, string> = {
  json: 'application/json',
  text: 'text/plain',
  csv: 'text/csv',
  bytes: 'application/octet-stream',
  raw: 'application/octet-stream',
  avro: 'application/avro',
  protobuf: 'application/x-protobuf',
};

const toBuffer = (v: string | Uint8Array): Buffer => (typeof v === 'string' ? Buffer.from(v, 'utf8') : asBuffer(v));

export class RabbitSink implements Sink {
  private ctx?: SinkContext;
  private encoder?: Encoder;
  private conn?: Connection;
  private ch?: Channel;
  private where = '';
  private readonly routingKey: FieldTemplate;
  private readonly headers: Array<[string, FieldTemplate]>;
  private readonly messageId?: FieldTemplate;
  private readonly correlationId?: FieldTemplate;
  private readonly contentType?: string;
  private readonly payload?: PayloadTemplate;
  /** Messages the broker returned as unroutable during the current write (mandatory: true). */
  private returned: ReturnedMessage[] = [];

  constructor(
    readonly options: RabbitSinkOptions,
    info: EndpointInfo = { format: 'json' },
  ) {
    this.routingKey = compileTemplate(options.routing_key, 'routing_key');
    this.headers = Object.entries(options.headers ?? {}).map(([k, v]) => [k, compileTemplate(v, `headers.${k}`)]);
    this.messageId = options.message_id === undefined ? undefined : compileTemplate(options.message_id, 'message_id');
    this.correlationId = options.correlation_id === undefined ? undefined : compileTemplate(options.correlation_id, 'correlation_id');
    this.contentType = options.content_type ?? CONTENT_TYPES[info.format];
    this.payload = payloadTemplate(options);
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    this.encoder = ctx.encoder;
    const { conn, where } = openConnection(this.options);
    this.conn = conn;
    this.where = where;
    let refused: ((e: unknown) => void) | undefined;
    const denied = new Promise<never>((_r, reject) => (refused = reject));
    denied.catch(() => undefined);
    conn.on('error', (e: unknown) => {
      if (isPermanent(e)) refused?.(e);
      ctx.log.warn({ server: where, err: errorMessage(e) }, 'rabbitmq connection error; reconnecting');
    });
    try {
      // Wrong credentials or vhost fail the open at once instead of waiting out the connection timeout.
      await Promise.race([conn.onConnect(this.options.connection_timeout, true), denied]);
      refused = undefined;
      await this.channel();
    } catch (e) {
      await closeQuietly(this.ch, conn, 2000);
      this.ch = undefined;
      this.conn = undefined;
      throw e instanceof SluiceError ? e : amqpError('connecting the sink', where, e);
    }
  }

  /** The publishing channel, (re)created with the declarations and confirm mode after a connection loss. */
  private async channel(): Promise<Channel> {
    if (this.ch?.active) return this.ch;
    const o = this.options;
    const ch = await this.conn!.acquire({ emitErrorsFromChannel: true });
    ch.on('error', (e: unknown) => this.ctx?.log.warn({ server: this.where, err: errorMessage(e) }, 'rabbitmq channel error'));
    ch.on('basic.return', (m: ReturnedMessage) => this.returned.push(m));
    try {
      if (o.exchange_type && o.exchange) {
        await step(`declaring exchange '${o.exchange}' (${o.exchange_type})`, this.where, ch.exchangeDeclare({ exchange: o.exchange, type: o.exchange_type, durable: true }));
      }
      if (o.queue) {
        await step(`declaring queue '${o.queue}'`, this.where, ch.queueDeclare({ queue: o.queue, durable: true }));
        if (o.exchange) await step(`binding queue '${o.queue}' to '${o.exchange}'`, this.where, ch.queueBind({ queue: o.queue, exchange: o.exchange, routingKey: o.bind_key }));
      }
      if (o.exchange && !o.exchange_type) {
        // A missing exchange would otherwise only show up as a closed channel on the first publish.
        await step(`checking exchange '${o.exchange}' exists`, this.where, ch.exchangeDeclare({ exchange: o.exchange, passive: true }));
      }
      await step('enabling publisher confirms', this.where, ch.confirmSelect());
    } catch (e) {
      void ch.close().catch(() => undefined);
      throw e;
    }
    this.ch = ch;
    return ch;
  }

  async write(records: SluiceRecord[]): Promise<void> {
    const o = this.options;
    const enc = this.encoder!;
    let ch: Channel;
    try {
      ch = await this.channel();
    } catch (e) {
      throw e instanceof SluiceError ? e : amqpError('opening a publishing channel', this.where, e);
    }
    this.returned = [];
    const exchange = o.exchange;
    const nowSec = Math.floor(Date.now() / 1000);
    const expiration = o.expiration === undefined ? undefined : String(o.expiration);
    // rabbitmq-client returns one confirm promise per publish; they are collected and awaited together.
    const confirms = new Array<Promise<void>>(records.length);
    let first: unknown;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const env: Envelope = {
        exchange,
        routingKey: this.routingKey.constant ? o.routing_key : this.routingKey.render(r),
        durable: o.persistent,
        mandatory: o.mandatory,
        timestamp: r.timestamp !== undefined ? Math.floor(r.timestamp / 1000) : nowSec,
      };
      if (this.contentType) env.contentType = this.contentType;
      if (expiration) env.expiration = expiration;
      if (o.priority !== undefined) env.priority = o.priority;
      if (this.messageId) env.messageId = this.messageId.render(r);
      if (this.correlationId) env.correlationId = this.correlationId.render(r);
      if (this.headers.length || (o.forward_headers && r.headers)) {
        const h: Record<string, unknown> = {};
        if (o.forward_headers && r.headers) for (const k in r.headers) h[k] = typeof r.headers[k] === 'string' ? r.headers[k] : toBuffer(r.headers[k]!);
        for (const [k, t] of this.headers) h[k] = t.render(r);
        env.headers = h;
      }
      // Always a Buffer: the client replaces the content type of string bodies with text/plain.
      confirms[i] = ch.basicPublish(env, toBuffer(this.payload ? this.payload(r) : encodeRecord(enc, r))).catch((e: unknown) => {
        first ??= e;
      });
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), o.confirm_timeout)));
    const outcome = await Promise.race([Promise.all(confirms), timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      // Confirms still pending on this channel would resolve into a later batch's accounting: start a fresh one.
      this.ch = undefined;
      void ch.close().catch(() => undefined);
      throw new SluiceError('SINK', `rabbitmq sink on ${this.where}: the broker did not confirm ${records.length} message(s) to exchange '${exchange}' within ${o.confirm_timeout} ms`, { retriable: true });
    }
    if (first !== undefined) {
      const err = amqpError(`publishing to exchange '${exchange || '(default)'}'`, this.where, first);
      throw new SluiceError('SINK', err.message, { cause: first, retriable: !isPermanent(first) || !ch.active });
    }
    // The client emits basic.return from a setImmediate, after the confirm that follows it has resolved.
    if (o.mandatory) await new Promise<void>((r) => setImmediate(r));
    if (this.returned.length) {
      const m = this.returned[0]!;
      const n = this.returned.length;
      this.returned = [];
      throw new SluiceError(
        'SINK',
        `rabbitmq sink on ${this.where}: ${n} message(s) could not be routed (mandatory: true); first: exchange '${m.exchange || '(default)'}', routing key '${m.routingKey}': ${m.replyText}`,
        { hint: 'bind a queue for these routing keys, or set mandatory: false to let the broker drop unroutable messages' },
      );
    }
  }

  async close(): Promise<void> {
    const ch = this.ch;
    const conn = this.conn;
    this.ch = undefined;
    this.conn = undefined;
    await closeQuietly(ch, conn);
  }
}

async function step<T>(what: string, where: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw amqpError(what, where, e);
  }
}
