// The core NATS sink: publishes each record to a fixed or templated subject. A write resolves once the server has
// received every message of the batch (a flush round trip), or, in request-reply mode, once every request has its reply.

import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { Counter, SinkContext, Sink, SluiceRecord } from '../../core/types.js';
import { acquireNats, connectError, describeServers, watchStatus, type ConnectionOptions, type NatsLease } from './connection.js';
import type { EndpointInfo } from '../../core/spec.js';
import { checkPublishSubject, compileFieldTemplate, type FieldTemplate } from './fields.js';
import type { NatsSinkOptions } from './options.js';
import { payloadTemplate, type PayloadTemplate } from '../../core/data-template.js';
import { encodeRecord } from '../../core/encode.js';

/** Header templates plus the record's own headers, as nats.js headers; undefined when there are none. */
export class HeaderBuilder {
  private readonly templates: Array<[string, FieldTemplate]>;
  constructor(
    spec: Record<string, string> | undefined,
    private readonly forward: boolean,
  ) {
    this.templates = Object.entries(spec ?? {}).map(([k, v]) => [k, compileFieldTemplate(v, `header '${k}'`)]);
  }

  build(rec: SluiceRecord, extra?: (h: MsgHdrs) => void): MsgHdrs | undefined {
    const own = this.forward ? rec.headers : undefined;
    if (!this.templates.length && !own && !extra) return undefined;
    const h = natsHeaders();
    if (own) for (const k in own) {
      const v = own[k]!;
      h.set(k, typeof v === 'string' ? v : Buffer.from(v).toString('utf8'));
    }
    for (const [k, t] of this.templates) h.set(k, t.render(rec));
    extra?.(h);
    return h;
  }
}

/** Flush with a deadline: a dead connection must fail the write (so it is retried), not hang it. */
export async function flushWithin(nc: NatsConnection, ms: number, o: ConnectionOptions): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new SluiceError('SINK', `the NATS server (${describeServers(o)}) did not confirm the batch within ${ms} ms (flush_timeout); is it reachable?`, { retriable: true })),
      ms,
    );
  });
  try {
    await Promise.race([nc.flush(), timeout]);
  } catch (e) {
    throw e instanceof SluiceError ? e : connectError(o, e, 'flushing to NATS');
  } finally {
    clearTimeout(timer);
  }
}

export class NatsSink implements Sink {
  private ctx!: SinkContext;
  private nc?: NatsConnection;
  private lease?: NatsLease;
  private readonly subject: FieldTemplate;
  private readonly headers: HeaderBuilder;
  private closedWith?: SluiceError;
  private m!: { published: Counter; replies: Counter };
  private readonly payload?: PayloadTemplate;

  constructor(
    readonly options: NatsSinkOptions,
    private readonly info: EndpointInfo = { format: 'json' },
  ) {
    this.subject = compileFieldTemplate(options.subject, 'subject');
    this.payload = payloadTemplate(options);
    if (this.subject.constant) checkPublishSubject(options.subject, 'subject', options.subject);
    this.headers = new HeaderBuilder(options.headers, options.forward_headers);
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    this.m = {
      published: ctx.metrics.counter('messages_published', 'messages published to NATS'),
      replies: ctx.metrics.counter('replies', 'replies received in request-reply mode'),
    };
    this.lease = await acquireNats(this.options, this.info.profile, `sluice:${ctx.pipeline}:${ctx.role}`);
    const nc = (this.nc = this.lease.nc);
    void watchStatus(nc, this.options, ctx.log).then((e) => (this.closedWith = e));
  }

  async write(records: SluiceRecord[]): Promise<void> {
    const nc = this.nc!;
    if (this.closedWith || nc.isClosed()) {
      throw this.closedWith ?? new SluiceError('SINK', `the NATS connection to ${describeServers(this.options)} is closed`, { retriable: true });
    }
    const enc = this.ctx.encoder;
    const subj = this.subject;
    if (this.options.request) return this.requestAll(nc, records);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const subject = subj.render(r);
      if (!subj.constant) checkPublishSubject(subject, 'subject', subj.source);
      const h = this.headers.build(r);
      try {
        nc.publish(subject, this.payload ? this.payload(r) : encodeRecord(enc, r), h ? { headers: h } : undefined);
      } catch (e) {
        throw new SluiceError('SINK', `publishing to subject '${subject}' failed: ${errorMessage(e)}`, { cause: e, retriable: true });
      }
    }
    await flushWithin(nc, this.options.flush_timeout, this.options);
    this.m.published.inc(records.length);
  }

  private async requestAll(nc: NatsConnection, records: SluiceRecord[]): Promise<void> {
    const enc = this.ctx.encoder;
    const timeout = this.options.request_timeout;
    const pending = new Array<Promise<unknown>>(records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const subject = this.subject.render(r);
      if (!this.subject.constant) checkPublishSubject(subject, 'subject', this.subject.source);
      const h = this.headers.build(r);
      pending[i] = nc.request(subject, this.payload ? this.payload(r) : encodeRecord(enc, r), h ? { timeout, headers: h } : { timeout }).catch((e: unknown) => {
        throw new SluiceError('SINK', `request to subject '${subject}' got no reply: ${errorMessage(e)}`, { cause: e, retriable: true });
      });
    }
    const results = await Promise.allSettled(pending);
    const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
    this.m.replies.inc(records.length);
    this.m.published.inc(records.length);
  }

  async close(): Promise<void> {
    this.nc = undefined;
    const l = this.lease;
    this.lease = undefined;
    // Drains (flushes what is still buffered) and closes, unless other endpoints of the profile still use it.
    if (l) await l.release('drain');
  }
}
