// The Kafka sink: one `sendBatch` (or one transaction) per pipeline write, grouped by topic, resolved only once the
// brokers acknowledged it with the configured `acks`.

import type { Logger } from 'pino';
import { SluiceError, errorMessage } from '../../core/errors.js';
import type { EndpointInfo } from '../../core/spec.js';
import type { Encoder, SluiceRecord, Sink, SinkContext } from '../../core/types.js';
import { backend, CompressionTypes, connectError, isRetriable, Partitioners, rootCause, type IHeaders, type Message, type Producer } from './client.js';
import { registryConfig, type KafkaSinkOptions, type RegistryConfig } from './options.js';
import { compileFieldTemplate, fieldAt, valueText, type FieldTemplate } from './template.js';
import { payloadTemplate, type PayloadTemplate } from '../../core/data-template.js';
import { encodeRecord } from '../../core/encode.js';
import { asBuffer } from '../../formats/util.js';

const ACKS = { all: -1, '1': 1, '0': 0 } as const;

/** Event time in ms from a field value: epoch ms, a Date, or an ISO 8601 string. */
function toMillis(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof Date) return v.getTime();
  if (typeof v === 'string') {
    if (/^\d+$/.test(v)) return Number(v);
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : t;
  }
  return undefined;
}

const randomPartitioner = () => ({ partitionMetadata }: { partitionMetadata: Array<{ partitionId: number }> }) =>
  partitionMetadata[Math.floor(Math.random() * partitionMetadata.length)]!.partitionId;

export class KafkaSink implements Sink {
  readonly registry?: RegistryConfig;
  private producer?: Producer;
  private encoder!: Encoder;
  private log!: Logger;
  private readonly topic: FieldTemplate;
  private readonly key?: FieldTemplate;
  private readonly keyPath?: string[];
  private readonly tsPath?: string[];
  private readonly headerTemplates: Array<[string, FieldTemplate]>;
  private readonly headerFields: Array<[string, string[]]>;
  private readonly payload?: PayloadTemplate;

  constructor(
    readonly options: KafkaSinkOptions,
    readonly info?: EndpointInfo,
  ) {
    this.registry = registryConfig(options);
    this.topic = compileFieldTemplate(options.topic, 'topic');
    if (options.key) this.key = compileFieldTemplate(options.key, 'key');
    if (options.key_field) this.keyPath = options.key_field.split('.');
    if (options.timestamp_field) this.tsPath = options.timestamp_field.split('.');
    this.headerTemplates = Object.entries(options.headers ?? {}).map(([k, t]) => [k, compileFieldTemplate(t, `header '${k}'`)]);
    this.headerFields = (options.header_fields ?? []).map((f) => [f, f.split('.')]);
    this.payload = payloadTemplate(options);
  }

  async open(ctx: SinkContext): Promise<void> {
    const o = this.options;
    this.encoder = ctx.encoder;
    this.log = ctx.log;
    const client = backend.client(o, ctx.log);
    const exactlyOnce = o.commit_mode === 'exactly_once';
    const producer = client.producer({
      createPartitioner:
        o.partitioner === 'legacy' ? Partitioners.LegacyPartitioner : o.partitioner === 'random' ? (randomPartitioner as never) : Partitioners.DefaultPartitioner,
      idempotent: o.idempotent || exactlyOnce,
      transactionalId: exactlyOnce ? (o.transactional_id ?? `sluice-${ctx.pipeline}-sink`) : undefined,
      maxInFlightRequests: o.idempotent || exactlyOnce ? 1 : undefined,
      allowAutoTopicCreation: false,
      retry: { retries: o.retries, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
    try {
      await producer.connect();
    } catch (e) {
      await producer.disconnect().catch(() => undefined);
      throw connectError(e, o, 'kafka sink');
    }
    this.producer = producer;
    ctx.log.info({ topic: o.topic, commit_mode: o.commit_mode }, 'kafka sink connected');
  }

  /** The Kafka message of one record: value encoded by the pipeline's format, key, timestamp and headers. */
  private message(r: SluiceRecord, encoder: Encoder): Message {
    const o = this.options;
    const value = this.payload ? this.payload(r) : encodeRecord(encoder, r);
    const m: Message = { value: typeof value === 'string' ? value : asBuffer(value) };
    if (this.key) m.key = this.key.render(r);
    else if (this.keyPath) {
      const k = fieldAt(r.value, this.keyPath);
      if (k !== undefined && k !== null) m.key = valueText(k);
    } else if (r.key !== undefined && r.key !== null) m.key = typeof r.key === 'string' ? r.key : Buffer.from(r.key);
    const ts = this.tsPath ? toMillis(fieldAt(r.value, this.tsPath)) : r.timestamp;
    if (ts !== undefined) m.timestamp = String(Math.trunc(ts));
    let headers: IHeaders | undefined;
    if (o.forward_headers && r.headers) {
      headers = {};
      for (const k in r.headers) {
        const v = r.headers[k]!;
        headers[k] = typeof v === 'string' ? v : Buffer.from(v);
      }
    }
    for (const [name, path] of this.headerFields) {
      const v = fieldAt(r.value, path);
      if (v !== undefined && v !== null) (headers ??= {})[name] = valueText(v);
    }
    for (const [name, t] of this.headerTemplates) (headers ??= {})[name] = t.render(r);
    if (headers) m.headers = headers;
    return m;
  }

  async write(records: SluiceRecord[]): Promise<void> {
    const producer = this.producer;
    if (!producer) throw new SluiceError('SINK', 'kafka sink is not open', { retriable: false });
    const o = this.options;
    const topicMessages: Array<{ topic: string; messages: Message[] }> = [];
    if (this.topic.constant !== undefined) {
      const messages = new Array<Message>(records.length);
      for (let i = 0; i < records.length; i++) messages[i] = this.message(records[i]!, this.encoder);
      topicMessages.push({ topic: this.topic.constant, messages });
    } else if (this.encoder.forTopic && !this.payload) {
      // The registry subject follows the topic: group first, then encode each topic's records with its own writer id.
      const byTopic = new Map<string, SluiceRecord[]>();
      for (const r of records) {
        const t = this.topic.render(r);
        let l = byTopic.get(t);
        if (!l) byTopic.set(t, (l = []));
        l.push(r);
      }
      for (const [topic, recs] of byTopic) {
        const enc = await this.encoder.forTopic(topic);
        topicMessages.push({ topic, messages: recs.map((r) => this.message(r, enc)) });
      }
    } else {
      const byTopic = new Map<string, Message[]>();
      for (const r of records) {
        const t = this.topic.render(r);
        let l = byTopic.get(t);
        if (!l) byTopic.set(t, (l = []));
        l.push(this.message(r, this.encoder));
      }
      for (const [topic, messages] of byTopic) topicMessages.push({ topic, messages });
    }
    const req = {
      topicMessages,
      acks: ACKS[o.acks],
      timeout: o.ack_timeout,
      compression: o.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
    };
    try {
      if (o.commit_mode === 'exactly_once') await this.writeTransaction(producer, req, records);
      else await producer.sendBatch(req);
    } catch (e) {
      if (e instanceof SluiceError) throw e;
      const cause = rootCause(e);
      const topics = topicMessages.map((t) => t.topic).join(', ');
      const unknown = /does not host this topic-partition|UNKNOWN_TOPIC|unknown topic/i.test(cause);
      throw new SluiceError('SINK', `writing ${records.length} record(s) to topic ${topics} on brokers ${o.brokers.join(',')} failed: ${cause}`, {
        cause: e,
        retriable: unknown || isRetriable(e) || !(e as { name?: string }).name?.startsWith('KafkaJS'),
        hint: unknown ? `check that topic ${topics} exists (the sink never creates topics)` : undefined,
      });
    }
  }

  /** One transaction per write; with `source_group`, the source offsets of these records commit atomically with them. */
  private async writeTransaction(producer: Producer, req: Parameters<Producer['sendBatch']>[0], records: SluiceRecord[]): Promise<void> {
    const tx = await producer.transaction();
    try {
      await tx.sendBatch(req);
      if (this.options.source_group) {
        const offsets = new Map<string, { topic: string; partition: number; offset: number }>();
        for (const r of records) {
          const m = r.meta;
          if (!m || typeof m._topic !== 'string' || typeof m._partition !== 'number' || typeof m._offset !== 'number') continue;
          const k = `${m._topic}\u0000${m._partition}`;
          const cur = offsets.get(k);
          if (!cur || cur.offset < m._offset) offsets.set(k, { topic: m._topic, partition: m._partition, offset: m._offset });
        }
        if (offsets.size) {
          const topics = new Map<string, Array<{ partition: number; offset: string }>>();
          for (const v of offsets.values()) {
            let l = topics.get(v.topic);
            if (!l) topics.set(v.topic, (l = []));
            l.push({ partition: v.partition, offset: String(v.offset + 1) });
          }
          await tx.sendOffsets({ consumerGroupId: this.options.source_group, topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })) });
        }
      }
      await tx.commit();
    } catch (e) {
      await tx.abort().catch((a) => this.log.warn({ err: errorMessage(a) }, 'aborting the kafka transaction failed'));
      throw e;
    }
  }

  async close(): Promise<void> {
    const p = this.producer;
    this.producer = undefined;
    await p?.disconnect().catch((e) => this.log.debug({ err: errorMessage(e) }, 'kafka producer disconnect failed'));
  }
}
