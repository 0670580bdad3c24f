// In-process counters per pipeline and connector. Cheap enough for hot paths (plain number fields); the control
// plane exports the same numbers through prom-client.

import type { ConnectorMetrics, Counter, Encoder, Gauge, Sink, SluiceRecord } from './types.js';

export interface PipelineStats {
  /** Records that entered the pipeline (decoded rows plus records that failed decoding). */
  records_in: number;
  /** Records the sink accepted. */
  records_out: number;
  bytes_in: number;
  /** Bytes the outputs' formats encoded for writes the sinks accepted (sinks that write rows, not bytes, add 0). */
  bytes_out: number;
  /** Records that failed decoding or schema validation. */
  errors: number;
  /** Bad records dropped by `bad_data: drop`. */
  dropped: number;
  /** Records written to the dead-letter sink. */
  dlq: number;
  /** Failed sink writes that were retried. */
  sink_retries: number;
  /** Records waiting between source and sink. */
  queued: number;
  /** Records no route took, with no default sink to take them. */
  unrouted: number;
  /** Records a transform's WHERE left out. */
  filtered: number;
  /** Records a sink refused for good (RejectedRecordsError); they then count as dlq or dropped. */
  sink_rejected: number;
  /** Milliseconds outputs spent paused under `retry.on_exhausted: pause` (summed over outputs). */
  paused_ms: number;
  /** Records the source delivered again that an earlier delivery may already have written (its `redelivered` counter). */
  redelivered: number;
}

export function newStats(): PipelineStats {
  return { records_in: 0, records_out: 0, bytes_in: 0, bytes_out: 0, errors: 0, dropped: 0, dlq: 0, sink_retries: 0, queued: 0, unrouted: 0, filtered: 0, sink_rejected: 0, paused_ms: 0, redelivered: 0 };
}

export interface MetricValue {
  name: string;
  help: string;
  kind: 'counter' | 'gauge';
  value: number;
}

/**
 * A fixed-bucket histogram (cumulative on export). Observing is a short linear scan, cheap enough per record; the
 * exporter turns it into a Prometheus histogram at scrape time.
 */
export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    /** Upper bounds, ascending; values above the last go only into +Inf (the count). */
    readonly bounds: readonly number[],
  ) {
    this.counts = new Array<number>(bounds.length).fill(0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }
}

/** Seconds: 1 ms to 1 min, for sink write durations and end-to-end lag. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

/** Metrics a connector registers (`messages_received`, `connection_state`, ...), readable by exporters. */
export class MetricSet implements ConnectorMetrics {
  readonly values = new Map<string, MetricValue>();
  readonly histograms = new Map<string, Histogram>();
  /** Bytes the output's encoder produced since the current write began (see meterOutput). */
  encoded = 0;
  counter(name: string, help = ''): Counter {
    const m = this.get(name, help, 'counter');
    return { inc: (n = 1) => void (m.value += n) };
  }
  gauge(name: string, help = ''): Gauge {
    const m = this.get(name, help, 'gauge');
    return { set: (v: number) => void (m.value = v) };
  }
  histogram(name: string, help = '', bounds: readonly number[] = LATENCY_BUCKETS): Histogram {
    let h = this.histograms.get(name);
    if (!h) this.histograms.set(name, (h = new Histogram(name, help, bounds)));
    return h;
  }
  private get(name: string, help: string, kind: 'counter' | 'gauge'): MetricValue {
    let m = this.values.get(name);
    if (!m) this.values.set(name, (m = { name, help, kind, value: 0 }));
    return m;
  }
  snapshot(): Record<string, number> {
    const o: Record<string, number> = {};
    for (const [k, v] of this.values) o[k] = v.value;
    return o;
  }
}

/** Every member of `enc` (own and inherited, up to Object.prototype), methods bound to it, values as they are now. */
function forwardAll<T extends object>(enc: T): T {
  const out: Record<string, unknown> = {};
  for (let o: object | null = enc; o && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k === 'constructor' || k in out) continue;
      const v = (enc as Record<string, unknown>)[k];
      out[k] = typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(enc) : v;
    }
  }
  return out as T;
}

/**
 * The encoder, counting the bytes it produces into `m.encoded`. Every other member is forwarded as is, so an optional
 * Encoder member added later reaches the sink without a change here.
 */
export function countingEncoder(enc: Encoder, m: MetricSet): Encoder {
  // Called per record by message sinks: fixed-arity wrappers, no rest-argument array per call.
  const count = <R extends string | Uint8Array>(b: R): R => {
    m.encoded += typeof b === 'string' ? Buffer.byteLength(b) : b.byteLength;
    return b;
  };
  const out = forwardAll(enc);
  out.encode = (v) => count(enc.encode(v));
  out.encodeStream = (v, first) => count(enc.encodeStream(v, first));
  if (enc.encodeRecords) out.encodeRecords = (r, first) => count(enc.encodeRecords!(r, first));
  if (enc.encodeRecord) out.encodeRecord = (r) => count(enc.encodeRecord!(r));
  if (enc.forTopic) out.forTopic = (topic) => enc.forTopic!(topic).then((e) => countingEncoder(e, m));
  if (enc.fileWriter) {
    out.fileWriter = () => {
      const w = enc.fileWriter!();
      return { ...forwardAll(w), write: (v: unknown[]) => count(w.write(v)), finish: () => count(w.finish()) };
    };
  }
  return out;
}

/**
 * The sink, measured: each accepted write adds the bytes its encoder produced to `bytes_out` (and `onBytes`), and
 * observes how long the write took (`write_seconds`) and, for records with an event time, the end-to-end lag at the
 * moment the sink acknowledged them (`lag_seconds`). Failed attempts are not observed; retries show in sink_retries.
 */
export function meterOutput(sink: Sink, m: MetricSet, onBytes: (n: number) => void): Sink {
  const bytesOut = m.counter('bytes_out', 'bytes encoded for writes the sink accepted');
  const writes = m.histogram('write_seconds', 'duration of one accepted sink write (one batch)');
  const lag = m.histogram('lag_seconds', 'now minus the record timestamp when the sink acknowledged the record');
  const write = async (records: SluiceRecord[], ...rest: unknown[]) => {
    m.encoded = 0;
    const t0 = performance.now();
    await (sink.write as (r: SluiceRecord[], ...a: unknown[]) => Promise<void>).call(sink, records, ...rest);
    const now = Date.now();
    writes.observe((performance.now() - t0) / 1000);
    if (m.encoded) {
      bytesOut.inc(m.encoded);
      onBytes(m.encoded);
      m.encoded = 0;
    }
    for (let i = 0; i < records.length; i++) {
      const ts = records[i]!.timestamp;
      if (ts !== undefined) lag.observe(Math.max(0, now - ts) / 1000);
    }
  };
  return new Proxy(sink, {
    get(target, prop) {
      if (prop === 'write') return write;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
