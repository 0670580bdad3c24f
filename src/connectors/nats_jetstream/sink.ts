// The JetStream sink: every message is published with acknowledgement (the stream's PubAck), the publishes of a batch
// concurrently (publisher.ts: one inbox subscription and one timer per batch instead of a js.publish request per
// message), and the write resolves once all of them were acknowledged. With `msg_id_field` each message carries a
// `Nats-Msg-Id`, so a batch retried after a partial failure is stored once (within the stream's duplicate window).

import { jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { nanos, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { Counter, Sink, SinkContext, SluiceRecord } from '../../core/types.js';
import { acquireNats, connectError, describeServers, fieldGetter, watchStatus, type NatsLease } from '../nats/connection.js';
import type { EndpointInfo } from '../../core/spec.js';
import { checkPublishSubject, compileFieldTemplate, type FieldTemplate } from '../nats/fields.js';
import { HeaderBuilder } from '../nats/sink.js';
import type { JetStreamSinkOptions } from './options.js';
import { payloadTemplate, type PayloadTemplate } from '../../core/data-template.js';
import { encodeRecord } from '../../core/encode.js';
import { isNotFound } from './source.js';
import { AckPublisher, type AckResult, type OutMessage } from './publisher.js';

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
  private lease?: NatsLease;
  private pub?: AckPublisher;
  private readonly subject: FieldTemplate;
  private readonly headers: HeaderBuilder;
  private readonly msgId?: (rec: SluiceRecord) => unknown;
  private closedWith?: SluiceError;
  private m!: { published: Counter; duplicates: Counter };
  private readonly payload?: PayloadTemplate;

  constructor(
    readonly options: JetStreamSinkOptions,
    private readonly info: EndpointInfo = { format: 'json' },
  ) {
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
    this.lease = await acquireNats(o, this.info.profile, `sluice:${ctx.pipeline}:${ctx.role}`);
    const nc = (this.nc = this.lease.nc);
    void watchStatus(nc, o, ctx.log).then((e) => {
      this.closedWith = e ?? new SluiceError('SINK', `the NATS connection to ${describeServers(o)} is closed`, { retriable: true });
      // Batches still waiting for PubAcks fail now instead of at publish_timeout.
      this.pub?.failAll();
    });
    try {
      if (await ensureStream(nc, o)) ctx.log.info({ stream: o.create_stream!.name }, 'created JetStream stream');
    } catch (e) {
      this.nc = undefined;
      const l = this.lease;
      this.lease = undefined;
      await l!.release('close');
      throw e instanceof SluiceError ? e : connectError(o, e, `checking JetStream stream '${o.create_stream?.name}'`);
    }
    this.pub = new AckPublisher(nc);
  }

  async write(records: SluiceRecord[]): Promise<void> {
    const nc = this.nc!;
    if (this.closedWith || nc.isClosed()) {
      throw this.closedWith ?? new SluiceError('SINK', `the NATS connection to ${describeServers(this.options)} is closed`, { retriable: true });
    }
    const enc = this.ctx.encoder;
    const subj = this.subject;
    const o = this.options;
    const msgs = new Array<OutMessage>(records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const subject = subj.render(r);
      if (!subj.constant) checkPublishSubject(subject, 'subject', subj.source);
      let id: string | undefined;
      if (this.msgId) {
        const v = this.msgId(r);
        if (v === undefined || v === null || v === '') {
          throw new SluiceError('SINK', `msg_id_field '${o.msg_id_field}' is missing or empty in a record published to '${subject}'`, {
            hint: 'every record needs the de-duplication id; fix the field path or the data',
          });
        }
        id = String(v);
      }
      const h = id !== undefined || o.expect_stream ? this.headers.build(r, (hd) => setPublishHeaders(hd, id, o.expect_stream)) : this.headers.build(r);
      msgs[i] = { subject, payload: this.payload ? this.payload(r) : encodeRecord(enc, r), headers: h };
    }
    const results = await this.pub!.publish(msgs, o.publish_timeout);
    let dup = 0;
    let failed: { i: number; r: AckResult | undefined } | undefined;
    let bad = 0;
    for (let i = 0; i < results.length; i++) {
      const x = results[i];
      if (x === undefined || !x.ok) {
        failed ??= { i, r: x };
        bad++;
      } else if (x.duplicate) dup++;
    }
    if (dup) this.m.duplicates.inc(dup);
    if (failed) {
      const subject = msgs[failed.i]!.subject;
      const closed = this.closedWith as SluiceError | undefined;
      const msg = failed.r ? (failed.r as { error: string }).error : closed ? closed.message : `no acknowledgement within ${o.publish_timeout} ms (publish_timeout)`;
      const hint = /no responders|503/i.test(msg) ? `no stream captures subject '${subject}' (or JetStream is unavailable)` : msg;
      // Retrying is safe: with msg_id_field the stream drops the copies that did arrive; without it they are duplicated.
      throw new SluiceError('SINK', `publishing to JetStream subject '${subject}' was not acknowledged (${bad} of ${results.length} failed): ${hint}`, {
        retriable: true,
      });
    }
    this.m.published.inc(records.length - dup);
  }

  async close(): Promise<void> {
    this.nc = undefined;
    this.pub?.close();
    const l = this.lease;
    this.lease = undefined;
    if (l) await l.release('drain');
  }
}

/** The headers js.publish would set for a de-duplication id and an expected stream. */
function setPublishHeaders(h: MsgHdrs, msgId: string | undefined, expectStream: string | undefined): void {
  if (msgId !== undefined) h.set('Nats-Msg-Id', msgId);
  if (expectStream) h.set('Nats-Expected-Stream', expectStream);
}
