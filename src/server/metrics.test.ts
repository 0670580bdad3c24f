// /metrics of `sluice run --metrics-port` (the same registry `sluice serve` uses): bytes out, sink write-duration and
// end-to-end lag histograms, read from a real pipeline run.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigText } from '../config/load.js';
import { findConnector } from '../connectors/index.js';
import { startPipeline, type PipelineHandle, type RuntimeEnv } from '../core/runtime.js';
import { memoryStateStore } from '../core/state.js';
import { silentLog } from '../testing/harness.js';
import { startMetricsServer } from './metrics.js';

describe('metrics: bytes out, write duration and lag histograms', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-metrics-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('exports what the sink accepted, per pipeline and output', async () => {
    const out = join(dir, 'out.jsonl');
    const doc = loadConfigText(
      `name: m1
source: { connector: generator, config: { count: 200, interval: 0, template: sequence } }
sink: { connector: file, config: { path: '${out}' } }
batch: { max_records: 50 }
`,
      'm1.yaml',
    );
    const env: RuntimeEnv = { log: silentLog, state: memoryStateStore(), dataDir: join(dir, 'data'), connector: (n) => findConnector(n)! };
    const h: PipelineHandle = startPipeline(doc.pipelines[0]!, env);
    const server = await startMetricsServer(0, () => [h]);
    try {
      const r = await h.done;
      expect(r.status).toBe('completed');
      const written = readFileSync(out).byteLength;
      expect(r.stats.bytes_out).toBe(written);
      const text = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
      expect(text).toContain(`sluice_pipeline_bytes_out_total{pipeline="m1"} ${written}`);
      expect(text).toContain(`sluice_connector_metric{pipeline="m1",endpoint="sink",connector="file",metric="bytes_out",kind="counter"} ${written}`);
      // 200 records in batches of at most 50: at least 4 writes, each observed once.
      const count = Number(/sluice_sink_write_duration_seconds_count\{pipeline="m1",endpoint="sink",connector="file"\} (\d+)/.exec(text)?.[1]);
      expect(count).toBeGreaterThanOrEqual(4);
      expect(text).toContain(`sluice_sink_write_duration_seconds_bucket{pipeline="m1",endpoint="sink",connector="file",le="+Inf"} ${count}`);
      expect(text).toMatch(/# TYPE sluice_sink_write_duration_seconds histogram/);
      // Every generated record has an event time: 200 lag observations, cumulative buckets ending at the count.
      expect(text).toContain('sluice_pipeline_lag_seconds_count{pipeline="m1",endpoint="sink",connector="file"} 200');
      const buckets = [...text.matchAll(/sluice_pipeline_lag_seconds_bucket\{pipeline="m1",endpoint="sink",connector="file",le="([^"]+)"\} (\d+)/g)].map((m) => Number(m[2]));
      expect(buckets.length).toBeGreaterThan(5);
      expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
      expect(buckets.at(-1)).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('shows a paused pipeline: state paused, paused time and retries counted', async () => {
    // Port 1 on loopback refuses connections: a retriable failure, so on_exhausted: pause holds the pipeline.
    const doc = loadConfigText(
      `name: p1
source: { connector: generator, config: { interval: 10ms, template: sequence } }
sink: { connector: webhook, config: { url: 'http://127.0.0.1:1/in', max_attempts: 1 } }
retry: { max_attempts: 1, initial_backoff: 10ms, max_backoff: 100ms, on_exhausted: pause }
`,
      'p1.yaml',
    );
    const env: RuntimeEnv = { log: silentLog, state: memoryStateStore(), dataDir: join(dir, 'data'), connector: (n) => findConnector(n)! };
    // Stopping a paused pipeline gives up on the drain after this long; the records stay unacknowledged.
    const h: PipelineHandle = startPipeline(doc.pipelines[0]!, env, { drainTimeoutMs: 200 });
    const server = await startMetricsServer(0, () => [h]);
    try {
      await expect.poll(() => h.status(), { timeout: 10_000 }).toBe('paused');
      await expect.poll(() => h.stats.paused_ms, { timeout: 10_000 }).toBeGreaterThan(0);
      const text = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
      expect(text).toContain('sluice_pipeline_state{pipeline="p1",state="paused"} 1');
      expect(text).toContain('sluice_pipeline_state{pipeline="p1",state="running"} 0');
      expect(Number(/sluice_pipeline_paused_seconds_total\{pipeline="p1"\} ([\d.e-]+)/.exec(text)?.[1])).toBeGreaterThan(0);
      expect(Number(/sluice_pipeline_sink_retries_total\{pipeline="p1"\} (\d+)/.exec(text)?.[1])).toBeGreaterThan(0);
      expect(h.pausedReason()).toMatch(/sink 'webhook'/);
    } finally {
      await h.stop();
      await server.close();
    }
  });
});
