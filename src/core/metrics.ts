// In-process counters per pipeline and connector. Cheap enough for hot paths (plain number fields); the control
// plane exports the same numbers through prom-client.

import type { ConnectorMetrics, Counter, Gauge } from './types.js';

export interface PipelineStats {
  /** Records that entered the pipeline (decoded rows plus records that failed decoding). */
  records_in: number;
  /** Records the sink accepted. */
  records_out: number;
  bytes_in: number;
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
}

export function newStats(): PipelineStats {
  return { records_in: 0, records_out: 0, bytes_in: 0, errors: 0, dropped: 0, dlq: 0, sink_retries: 0, queued: 0, unrouted: 0, filtered: 0, sink_rejected: 0, paused_ms: 0 };
}

export interface MetricValue {
  name: string;
  help: string;
  kind: 'counter' | 'gauge';
  value: number;
}

/** Metrics a connector registers (`messages_received`, `connection_state`, ...), readable by exporters. */
export class MetricSet implements ConnectorMetrics {
  readonly values = new Map<string, MetricValue>();
  counter(name: string, help = ''): Counter {
    const m = this.get(name, help, 'counter');
    return { inc: (n = 1) => void (m.value += n) };
  }
  gauge(name: string, help = ''): Gauge {
    const m = this.get(name, help, 'gauge');
    return { set: (v: number) => void (m.value = v) };
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
