// The MQTT sink: each record becomes one PUBLISH; write() resolves once every publish of the batch completed
// (QoS 0: written to the socket; QoS 1: PUBACK; QoS 2: PUBCOMP). At most `max_inflight` publishes await their
// acknowledgement at once.

import type { IClientPublishOptions } from 'mqtt';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { Counter, Encoder, SluiceRecord, Sink, SinkContext } from '../../core/types.js';
import { acquireConnection, releaseConnection, type MqttConnection } from './connection.js';
import type { MqttSinkOptions } from './options.js';
import { compileFieldTemplate, type FieldTemplate } from './template.js';
import { payloadTemplate, type PayloadTemplate } from '../../core/data-template.js';
import { encodeRecord } from '../../core/encode.js';
import { asBuffer } from '../../formats/util.js';

/** How long a batch may wait for the broker before the write fails (and the runtime retries it). */
const WRITE_TIMEOUT_MS = 30_000;

export class MqttSink implements Sink {
  private conn?: MqttConnection;
  private encoder!: Encoder;
  private readonly topic: FieldTemplate;
  private readonly props: Array<[string, FieldTemplate]>;
  private readonly payload?: PayloadTemplate;
  private ctx!: SinkContext;
  private published!: Counter;
  private failedPublishes!: Counter;

  // State of the batch being written; one write at a time (the runtime awaits each write).
  private outstanding = 0;
  private firstError?: Error;
  private wake?: () => void;

  constructor(
    readonly options: MqttSinkOptions,
    private readonly info: EndpointInfo = { format: 'json' },
  ) {
    this.topic = compileFieldTemplate(options.topic, 'topic');
    this.props = Object.entries(options.user_properties ?? {}).map(([k, v]) => [k, compileFieldTemplate(v, `user_properties.${k}`)]);
    this.payload = payloadTemplate(options);
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    this.encoder = ctx.encoder;
    this.published = ctx.metrics.counter('messages_published', 'MQTT messages published (and acknowledged for QoS 1/2)');
    this.failedPublishes = ctx.metrics.counter('publish_errors', 'publishes that failed');
    this.conn = acquireConnection(this.options, this.info.profile, ctx.log);
    try {
      await this.conn.whenConnected(this.options.connect_timeout, ctx.signal);
    } catch (e) {
      // The runtime fails the pipeline on an open error; the write path retries, so only a refusal is fatal here.
      if (this.conn.fatal) throw this.conn.fatal;
      ctx.log.warn({ server: this.conn.shown, err: errorMessage(e) }, 'mqtt sink: broker not reachable yet; writes wait and retry');
    }
  }

  private readonly onPublished = (err?: Error) => {
    if (err) {
      this.failedPublishes.inc();
      this.firstError ??= err;
    }
    this.outstanding--;
    // The waiter re-arms itself when its limit is not reached yet.
    const w = this.wake;
    this.wake = undefined;
    w?.();
  };

  private waitBelow(limit: number, deadline: number): Promise<void> {
    if (this.outstanding <= limit) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        reject(new SluiceError('SINK', `mqtt broker ${this.conn!.shown}: ${this.outstanding} publish(es) not acknowledged within ${WRITE_TIMEOUT_MS} ms`, { retriable: true }));
      }, Math.max(1, deadline - Date.now()));
      const check = () => {
        if (this.outstanding <= limit) {
          clearTimeout(t);
          resolve();
        } else this.wake = check;
      };
      this.wake = check;
    });
  }

  async write(records: SluiceRecord[]): Promise<void> {
    const c = this.conn;
    if (!c) throw new SluiceError('INTERNAL', 'mqtt sink: write before open');
    if (c.fatal) throw c.fatal;
    if (!c.client.connected) {
      throw new SluiceError('CONNECT', `mqtt broker ${c.shown} is not connected (reconnecting every ${this.options.reconnect_interval} ms)`, { retriable: true });
    }
    const o = this.options;
    const v5 = o.protocol_version === '5';
    const base: IClientPublishOptions = { qos: o.qos, retain: o.retain };
    const withProps = v5 && (this.props.length > 0 || o.headers_from_record);
    this.firstError = undefined;
    const deadline = Date.now() + WRITE_TIMEOUT_MS;
    // Exceeding the broker's Receive Maximum is a protocol error (Mosquitto answers "quota exceeded").
    const limit = o.qos === 0 ? Infinity : Math.min(o.max_inflight, c.brokerReceiveMaximum);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      let topic: string;
      let payload: string | Uint8Array;
      let opts = base;
      try {
        topic = this.topic.render(r);
        payload = this.payload ? this.payload(r) : encodeRecord(this.encoder, r);
        if (withProps) opts = { qos: o.qos, retain: o.retain, properties: { userProperties: this.userProperties(r) } };
      } catch (e) {
        await this.waitBelow(0, deadline).catch(() => undefined);
        if (e instanceof SluiceError) throw e;
        throw new SluiceError('SCHEMA', `mqtt sink: record ${i} of the batch cannot be published: ${errorMessage(e)}`, { cause: e });
      }
      if (this.outstanding >= limit) await this.waitBelow(limit - 1, deadline);
      if (this.firstError) break;
      this.outstanding++;
      // Raw payloads passed through may be plain Uint8Arrays (NATS hands those over); mqtt.js takes Buffers.
      c.client.publish(topic, typeof payload === 'string' ? payload : asBuffer(payload), opts, this.onPublished);
    }
    await this.waitBelow(0, deadline);
    if (this.firstError) {
      const e = this.firstError;
      this.firstError = undefined;
      throw new SluiceError('SINK', `mqtt broker ${c.shown}: publishing failed: ${errorMessage(e)}`, { cause: e, retriable: true });
    }
    this.published.inc(records.length);
  }

  private userProperties(r: SluiceRecord): Record<string, string> {
    const out: Record<string, string> = {};
    if (this.options.headers_from_record && r.headers) {
      for (const k in r.headers) {
        const v = r.headers[k]!;
        out[k] = typeof v === 'string' ? v : Buffer.from(v).toString('utf8');
      }
    }
    for (const [k, t] of this.props) out[k] = t.render(r);
    return out;
  }

  async close(): Promise<void> {
    const c = this.conn;
    this.conn = undefined;
    if (c) await releaseConnection(c);
  }
}
