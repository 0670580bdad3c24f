// What the websocket-* scenarios share besides the feed server: a pipeline they can stop themselves (a WebSocket
// source never ends on its own, so bench/lib/sluice.mjs's run-to-completion helper does not fit), and RSS sampling.

import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadRuntime, merge, pipelineOverrides } from './sluice.mjs';


/**
 * Compile `config` the way `sluice run` does (CLI logger, SQLite state store in `dataDir`). `start()` starts it and
 * returns the handle plus `end()`, which stops the pipeline gracefully (drain, commit, close) and closes the state
 * store. Loading and compiling happen here, before the caller starts its clock, as in bench/lib/sluice.mjs.
 */
export async function prepareSluice(config, { dataDir, onWritten }) {
  const rt = await loadRuntime();
  mkdirSync(dataDir, { recursive: true });
  const overrides = pipelineOverrides();
  const doc = rt.loadConfigText(JSON.stringify(overrides ? merge(config, overrides) : config), join(dataDir, 'bench.yaml'), { env: {} });
  const { log, flush } = rt.createLogger({ format: 'json', level: process.env.SLUICE_BENCH_LOG_LEVEL ?? 'warn' });
  const state = rt.sqliteStateStore(join(dataDir, 'state.db'));
  const env = {
    log,
    state,
    dataDir,
    connector(name) {
      const c = rt.findConnector(name);
      if (!c) throw new Error(`unknown connector '${name}'`);
      return onWritten && c.sink ? observedSink(c, onWritten) : c;
    },
  };
  return {
    start() {
      const handle = rt.startPipeline(doc.pipelines[0], env, {});
      return {
        handle,
        async end() {
          const result = await handle.stop();
          await state.close();
          await flush();
          if (result.status !== 'stopped' && result.status !== 'completed') {
            throw new Error(`pipeline ended '${result.status}': ${result.error?.message ?? 'no error given'}`);
          }
          return result;
        },
      };
    },
  };
}

/**
 * The connector with its sink wrapped: `onWritten(records)` runs after each write resolved, i.e. once the sink
 * acknowledged the batch (for the file sink: written to the file). The latency scenarios take their clock reading there.
 */
function observedSink(spec, onWritten) {
  return {
    ...spec,
    sink: {
      ...spec.sink,
      create(options, info) {
        const inner = spec.sink.create(options, info);
        return {
          open: (ctx) => inner.open(ctx),
          async write(records) {
            await inner.write(records);
            onWritten(records);
          },
          close: inner.close ? () => inner.close() : undefined,
        };
      },
    },
  };
}

/**
 * Percentiles (ms) of the latencies in `lat` (a Float64Array, sorted in place) from index `skip` (warm-up: the first
 * second of the feed, while the JIT compiles the hot paths of both implementations) to `count`.
 */
export function latencySummary(lat, count, skip = 0) {
  const from = Math.min(skip, count);
  const xs = lat.subarray(from, count).sort();
  count -= from;
  const q = (p) => (count ? xs[Math.min(count - 1, Math.floor(p * count))] : undefined);
  const r = (x) => (x === undefined ? undefined : Math.round(x * 100) / 100);
  return { latency_warmup_skipped: from, latency_samples: count, latency_p50_ms: r(q(0.5)), latency_p99_ms: r(q(0.99)), latency_p999_ms: r(q(0.999)), latency_max_ms: r(xs[count - 1]) };
}

/**
 * Resolve once `done()` is true, checking every millisecond or so; reject if `failed` settles first (a pipeline that
 * died must not leave the worker waiting until the parent's timeout).
 */
export function until(done, failed) {
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      if (done()) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
    failed?.then(
      (r) => {
        clearInterval(timer);
        reject(new Error(`pipeline ended '${r.status}' before the expected records arrived: ${r.error?.message ?? 'no error given'}`));
      },
      (e) => {
        clearInterval(timer);
        reject(e);
      },
    );
  });
}

/** `process.memoryUsage().rss` every `everyMs`; `stop()` returns the samples as [seconds since start, MB]. */
export function sampleRss(everyMs = 100) {
  const t0 = performance.now();
  const samples = [];
  const take = () => samples.push([(performance.now() - t0) / 1000, process.memoryUsage().rss / 2 ** 20]);
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}

/** Max RSS, and the least-squares slope (MB/s) over the second half of the samples: growth that warm-up cannot explain. */
export function rssSummary(samples) {
  const end = samples.at(-1)[0];
  const late = samples.filter(([t]) => t >= end / 2);
  const n = late.length;
  const mt = late.reduce((s, [t]) => s + t, 0) / n;
  const mr = late.reduce((s, [, r]) => s + r, 0) / n;
  let num = 0;
  let den = 0;
  for (const [t, r] of late) {
    num += (t - mt) * (r - mr);
    den += (t - mt) ** 2;
  }
  const round = (x) => Math.round(x * 10) / 10;
  return {
    rss_samples: samples.length,
    rss_max_mb: round(Math.max(...samples.map(([, r]) => r))),
    rss_second_half_mean_mb: round(mr),
    rss_slope_mb_per_s: Math.round((den ? num / den : 0) * 100) / 100,
  };
}

/** Bytes in every file under `dir` (the durable buffer's segments). */
export function dirBytes(dir) {
  let total = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? dirBytes(p) : e.isFile() ? statSync(p).size : 0;
  }
  return total;
}

/**
 * Starts a prepared pipeline and runs it until its sink wrote `n` records, then stops it gracefully. The clock and
 * the RSS sampling cover exactly that: start, run, drain, commit, close.
 */
export async function runUntilWritten(prepared, n) {
  const rss = sampleRss();
  const t0 = performance.now();
  const run = prepared.start();
  await until(() => run.handle.stats.records_out >= n, run.handle.done);
  const { stats } = await run.end();
  const seconds = (performance.now() - t0) / 1000;
  return { stats, seconds, mem: rssSummary(rss.stop()) };
}
