// Prometheus metrics (prom-client), read from the pipelines' own counters at scrape time, so the hot path pays
// nothing for them. Used by `sluice serve` (GET /metrics) and by `sluice run --metrics-port` (startMetricsServer).

import { createServer, type Server } from 'node:http';
import client from 'prom-client';
import type { PipelineHandle } from '../core/runtime.js';
import type { PipelineStats } from '../core/metrics.js';
import type { MetricSet } from '../core/metrics.js';

export interface PipelineRun {
  name: string;
  /** `running`, `failed`, ...; the handle's own status when absent. */
  state?: string;
  restarts?: number;
  handle?: PipelineHandle;
}

const STATES = ['starting', 'running', 'paused', 'draining', 'completed', 'stopped', 'failed', 'restarting'];

const COUNTERS: Array<[keyof PipelineStats, string, string]> = [
  ['records_in', 'sluice_pipeline_records_in_total', 'Records that entered the pipeline (decoded rows plus records that failed decoding).'],
  ['records_out', 'sluice_pipeline_records_out_total', 'Records the outputs accepted.'],
  ['bytes_in', 'sluice_pipeline_bytes_in_total', 'Payload bytes read from the source.'],
  ['bytes_out', 'sluice_pipeline_bytes_out_total', "Bytes the outputs' formats encoded for writes the sinks accepted (0 for sinks that write rows, such as SQL databases)."],
  ['errors', 'sluice_pipeline_errors_total', 'Records that failed decoding or schema validation.'],
  ['dropped', 'sluice_pipeline_dropped_total', 'Bad records dropped by bad_data: drop.'],
  ['dlq', 'sluice_pipeline_dlq_total', 'Records written to the dead-letter sink.'],
  ['unrouted', 'sluice_pipeline_unrouted_total', 'Records no route took, with no default sink.'],
  ['sink_retries', 'sluice_pipeline_sink_retries_total', 'Sink writes that failed and were retried.'],
  ['sink_rejected', 'sluice_pipeline_sink_rejected_total', 'Records a sink refused permanently (they followed bad_data).'],
  ['filtered', 'sluice_pipeline_filtered_total', 'Records a transform filtered out (WHERE).'],
  ['redelivered', 'sluice_pipeline_redelivered_total', 'Records the source delivered again that may already have been written (possible duplicates).'],
];

/** A registry whose values come from `runs()` on every scrape; counters restart from 0 when a pipeline restarts. */
export function createMetricsRegistry(runs: () => PipelineRun[], o: { processMetrics?: boolean } = {}): client.Registry {
  const registry = new client.Registry();
  if (o.processMetrics !== false) client.collectDefaultMetrics({ register: registry, prefix: 'sluice_' });
  for (const [key, name, help] of COUNTERS) {
    new client.Counter({
      name,
      help,
      labelNames: ['pipeline'],
      registers: [registry],
      collect() {
        this.reset();
        for (const r of runs()) if (r.handle) this.inc({ pipeline: r.name }, r.handle.stats[key]);
      },
    });
  }
  new client.Counter({
    name: 'sluice_pipeline_paused_seconds_total',
    help: 'Time outputs spent paused under retry.on_exhausted: pause (summed over outputs).',
    labelNames: ['pipeline'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of runs()) if (r.handle) this.inc({ pipeline: r.name }, r.handle.stats.paused_ms / 1000);
    },
  });
  new client.Gauge({
    name: 'sluice_pipeline_queue_depth',
    help: 'Records waiting between source and outputs.',
    labelNames: ['pipeline'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of runs()) if (r.handle) this.set({ pipeline: r.name }, r.handle.stats.queued);
    },
  });
  new client.Gauge({
    name: 'sluice_pipeline_state',
    help: 'The pipeline state: 1 for the current state, 0 for the others.',
    labelNames: ['pipeline', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of runs()) {
        const cur = r.state ?? r.handle?.status() ?? 'stopped';
        for (const s of STATES) this.set({ pipeline: r.name, state: s }, s === cur ? 1 : 0);
      }
    },
  });
  new client.Gauge({
    name: 'sluice_pipeline_restarts',
    help: 'Automatic restarts after failures since the server started.',
    labelNames: ['pipeline'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of runs()) this.set({ pipeline: r.name }, r.restarts ?? 0);
    },
  });
  // The common connector metrics under one name each, whatever the connector calls them.
  const endpointSets = (h: PipelineHandle): Array<[string, string, MetricSet | undefined]> => [['source', h.def.source.connector, h.metrics.source], ...outputsOf(h)];
  // Calls `fn` for each endpoint of every running pipeline, with the labels the connector families share.
  const forEachEndpoint = (fn: (labels: { pipeline: string; endpoint: string; connector: string }, set: MetricSet | undefined) => void) => {
    for (const r of runs()) {
      if (!r.handle) continue;
      for (const [endpoint, connector, set] of endpointSets(r.handle)) fn({ pipeline: r.name, endpoint, connector }, set);
    }
  };
  new client.Gauge({
    name: 'sluice_connector_connected',
    help: '1 while the endpoint is connected to its system, 0 otherwise; only for connectors that report a connection state.',
    labelNames: ['pipeline', 'endpoint', 'connector'],
    registers: [registry],
    collect() {
      this.reset();
      forEachEndpoint((labels, set) => {
        const connected = set?.values.get('connected')?.value;
        const state = set?.values.get('connection_state')?.value;
        if (connected !== undefined) this.set(labels, connected > 0 ? 1 : 0);
        else if (state !== undefined) this.set(labels, state >= 2 ? 1 : 0);
      });
    },
  });
  new client.Counter({
    name: 'sluice_connector_reconnects_total',
    help: 'Reconnections of the endpoint to its system; only for connectors that count them.',
    labelNames: ['pipeline', 'endpoint', 'connector'],
    registers: [registry],
    collect() {
      this.reset();
      forEachEndpoint((labels, set) => {
        const v = set?.values.get('reconnects')?.value;
        if (v !== undefined) this.inc(labels, v);
      });
    },
  });
  registerHistogram(registry, runs, 'write_seconds', 'sluice_sink_write_duration_seconds', 'Duration of one accepted sink write (one batch), per output.');
  registerHistogram(registry, runs, 'lag_seconds', 'sluice_pipeline_lag_seconds', 'End-to-end lag: time from the record timestamp (event time set by the source) to the sink acknowledging the record, per output.');
  // Connector metrics have names only the connector knows (`messages_received`, `connection_state`, `reconnects`),
  // so they are one family with the connector's name as a label.
  new client.Gauge({
    name: 'sluice_connector_metric',
    help: 'Metrics a connector reports, per pipeline and endpoint (source, each output, dlq); `metric` names it and `kind` says whether it only grows (counter).',
    labelNames: ['pipeline', 'endpoint', 'connector', 'metric', 'kind'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of runs()) {
        const h = r.handle;
        if (!h) continue;
        const sets = endpointSets(h);
        for (const [endpoint, connector, set] of sets) {
          if (!set) continue;
          for (const v of set.values.values()) this.set({ pipeline: r.name, endpoint, connector, metric: v.name, kind: v.kind }, v.value);
        }
      }
    },
  });
  return registry;
}

/** The outputs of a run with their connector names: `sink`, each route, and `dlq`. */
function outputsOf(h: PipelineHandle): Array<[string, string, MetricSet | undefined]> {
  return [
    ...Object.entries(h.metrics.outputs).map(([n, m]): [string, string, MetricSet] => [n, (n === 'sink' ? h.def.sink?.connector : h.def.routes?.find((x) => x.name === n)?.sink.connector) ?? 'unknown', m]),
    ['dlq', h.def.dlq?.connector ?? 'unknown', h.metrics.dlq],
  ];
}

/**
 * A Prometheus histogram read from the runtime's own fixed-bucket histograms at scrape time (prom-client's Histogram
 * can only be fed observations, which would put prom-client on the hot path).
 */
function registerHistogram(registry: client.Registry, runs: () => PipelineRun[], key: string, name: string, help: string) {
  registry.registerMetric({
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    async get() {
      const values: Array<{ value: number; labels: Record<string, string | number>; metricName: string }> = [];
      for (const r of runs()) {
        const h = r.handle;
        if (!h) continue;
        for (const [endpoint, connector, set] of outputsOf(h)) {
          const hist = set?.histograms.get(key);
          if (!hist) continue;
          const labels = { pipeline: r.name, endpoint, connector };
          let acc = 0;
          hist.bounds.forEach((le, i) => {
            acc += hist.counts[i]!;
            values.push({ value: acc, labels: { ...labels, le }, metricName: `${name}_bucket` });
          });
          values.push({ value: hist.count, labels: { ...labels, le: '+Inf' }, metricName: `${name}_bucket` });
          values.push({ value: hist.sum, labels, metricName: `${name}_sum` });
          values.push({ value: hist.count, labels, metricName: `${name}_count` });
        }
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    },
  } as unknown as client.Metric);
}

/**
 * A bare HTTP server with `/metrics` and `/healthz`, for `sluice run --metrics-port`. Binds to 127.0.0.1 unless a host
 * is given; resolves once listening.
 */
export async function startMetricsServer(port: number, getHandles: () => PipelineHandle[], host = '127.0.0.1'): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const registry = createMetricsRegistry(() => getHandles().map((h) => ({ name: h.name, handle: h })));
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      registry.metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(body);
        },
        () => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end('metrics collection failed\n');
        },
      );
      return;
    }
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"status":"ok"}\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return {
    server,
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
