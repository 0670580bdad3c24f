// The JetStream sink: every message is published with acknowledgement (the stream's PubAck), the publishes of a batch
// concurrently, and the write resolves once all of them were acknowledged. With `msg_id_field` each message carries a
// `Nats-Msg-Id`, so a batch retried after a partial failure is stored once (within the stream's duplicate window).

import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamPublishOptions, type PubAck, type StreamConfig } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { Counter, Sink, SinkContext, SluiceRecord } from '../../core/types.js';
import { connectError, describeServers, fieldGetter, openNats, watchStatus } from '../nats/connection.js';
import { checkPublishSubject, compileFieldTemplate, type FieldTemplate } from '../nats/fields.js';
import { HeaderBuilder } from '../nats/sink.js';
import type { JetStreamSinkOptions } from './options.js';
import { payloadTemplate, type PayloadTemplate } from '../../core/data-template.js';
import { isNotFound } from './source.js';

/** Creates the stream of `create_stream` unless it exists; returns whether it was created. */
export async function ensureStream(nc: NatsConnection, o: JetStreamSinkOptions): Promise<boolean> {
  const c = o.create_stream;
  if (!c) return false;
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(c.name);
    return false;
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
  const cfg: Partial<StreamConfig> & { name: string } = {
    name: c.name,
    subjects: c.subjects?.length ? c.subjects : [o.subject],
    storage: c.storage,
    retention: c.retention,
    num_replicas: c.replicas,
    ...(c.max_age !== undefined ? { max_age: nanos(c.max_age) } : {}),
    ...(c.max_bytes !== undefined ? { max_bytes: c.max_bytes } : {}),
    ...(c.max_msgs !== undefined ? { max_msgs: c.max_msgs } : {}),
    ...(c.duplicate_window !== undefined ? { duplicate_window: nanos(c.duplicate_window) } : {}),
  };
  try {
    await jsm.streams.add(cfg);
  } catch (e) {
    // Another pipeline may have created it in the meantime.
    if (/already in use|already exists/i.test(errorMessage(e))) return false;
    throw new SluiceError('CONFIG', `creating JetStream stream '${c.name}' (subjects ${cfg.subjects!.join(', ')}) failed: ${errorMessage(e)}`, { cause: e });
  }
  return true;
}

export class JetStreamSink implements Sink {
  private ctx!: SinkContext;
  private nc?: NatsConnection;
  private js!: JetStreamClient;
  private readonly subject: FieldTemplate;
  private readonly headers: HeaderBuilder;
  private readonly msgId?: (rec: SluiceRecord) => unknown;
  private closedWith?: SluiceError;
  private m!: { published: Counter; duplicates: Counter };
  private readonly payload?: PayloadTemplate;

  constructor(readonly options: JetStreamSinkOptions) {
    this.subject = compileFieldTemplate(options.subject, 'subject');
    this.payload = payloadTemplate(options);
    if (this.subject.constant) checkPublishSubject(options.subject, 'subject', options.subject);
    this.headers = new HeaderBuilder(options.headers, options.forward_headers);
    const f = options.msg_id_field;
    if (f === '_key') this.msgId = (r) => (r.key == null ? undefined : typeof r.key === 'string' ? r.key : Buffer.from(r.key).toString('utf8'));
    else if (f !== undefined) {
      const get = fieldGetter(f);
      this.msgId = (r) => get(r.value);
    }
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    this.m = {
      published: ctx.metrics.counter('messages_published', 'messages stored by JetStream'),
      duplicates: ctx.metrics.counter('duplicates', 'messages JetStream recognised by Nats-Msg-Id and did not store again'),
    };
    const o = this.options;
    const nc = (this.nc = await openNats(o, `sluice:${ctx.pipeline}:${ctx.role}`));
    void watchStatus(nc, o, ctx.log).then((e) => (this.closedWith = e));
    try {
      if (await ensureStream(nc, o)) ctx.log.info({ stream: o.create_stream!.name }, 'created JetStream stream');
    } catch (e) {
      await nc.close().catch(() => undefined);
      throw e instanceof SluiceError ? e : connectError(o, e, `checking JetStream stream '${o.create_stream?.name}'`);
    }
    this.js = jetstream(nc, { timeout: o.publish_timeout });
  }

  async write(records: SluiceRecord[]): Promise<void> {
    const nc = this.nc!;
    if (this.closedWith || nc.isClosed()) {
      throw this.closedWith ?? new SluiceError('SINK', `the NATS connection to ${describeServers(this.options)} is closed`, { retriable: true });
    }
    const enc = this.ctx.encoder;
    const subj = this.subject;
    const o = this.options;
    const acks = new Array<Promise<PubAck>>(records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const subject = subj.render(r);
      if (!subj.constant) checkPublishSubject(subject, 'subject', subj.source);
      const opts: Partial<JetStreamPublishOptions> = { timeout: o.publish_timeout };
      if (this.msgId) {
        const id = this.msgId(r);
        if (id === undefined || id === null || id === '') {
          throw new SluiceError('SINK', `msg_id_field '${o.msg_id_field}' is missing or empty in a record published to '${subject}'`, {
            hint: 'every record needs the de-duplication id; fix the field path or the data',
          });
        }
        opts.msgID = String(id);
      }
      const h = this.headers.build(r);
      if (h) opts.headers = h;
      if (o.expect_stream) opts.expect = { streamName: o.expect_stream };
      acks[i] = this.js.publish(subject, this.payload ? this.payload(r) : enc.encode(r.value), opts);
    }
    const results = await Promise.allSettled(acks);
    let dup = 0;
    let failed: { i: number; e: unknown } | undefined;
    for (let i = 0; i < results.length; i++) {
      const x = results[i]!;
      if (x.status === 'rejected') failed ??= { i, e: x.reason };
      else if (x.value.duplicate) dup++;
    }
    if (dup) this.m.duplicates.inc(dup);
    if (failed) {
      const subject = subj.constant ? subj.source : subj.render(records[failed.i]!);
      const msg = errorMessage(failed.e);
      const hint = /no responders|503/i.test(msg) ? `no stream captures subject '${subject}' (or JetStream is unavailable)` : msg;
      // Retrying is safe: with msg_id_field the stream drops the copies that did arrive; without it they are duplicated.
      throw new SluiceError('SINK', `publishing to JetStream subject '${subject}' was not acknowledged (${results.length - countOk(results)} of ${results.length} failed): ${hint}`, {
        cause: failed.e,
        retriable: true,
      });
    }
    this.m.published.inc(records.length - dup);
  }

  async close(): Promise<void> {
    const nc = this.nc;
    this.nc = undefined;
    if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close());
  }
}

function countOk(results: PromiseSettledResult<unknown>[]): number {
  let n = 0;
  for (const r of results) if (r.status === 'fulfilled') n++;
  return n;
}
