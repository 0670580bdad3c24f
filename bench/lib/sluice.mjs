// Runs one pipeline in-process through the compiled runtime in dist/, the way `sluice run` does (same logger, same
// SQLite state store), so a measurement includes checkpoint commits and everything else a real run pays for.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const dist = new URL('../../dist/', import.meta.url);

/** The compiled runtime's entry points (shared by every bench helper that runs a pipeline in-process). */
export async function loadRuntime() {
  try {
    const [load, runtime, state, connectors, logging, heap] = await Promise.all([
      import(new URL('config/load.js', dist).href),
      import(new URL('core/runtime.js', dist).href),
      import(new URL('core/state.js', dist).href),
      import(new URL('connectors/index.js', dist).href),
      import(new URL('cli/logging.js', dist).href),
      import(new URL('cli/heap.js', dist).href),
    ]);
    // The same heap setting `sluice run` applies at start-up, so the bench measures what users get.
    heap.tuneHeap();
    return { ...load, ...runtime, ...state, ...connectors, ...logging };
  } catch (e) {
    throw new Error(`cannot load the compiled runtime from dist/ (run \`npm run build\` first): ${e.message}`);
  }
}

let overrides;

/** Merged into every pipeline this process runs (`--pipeline-json`): tries a setting without touching a scenario. */
export function setPipelineOverrides(o) {
  overrides = o;
}

/** What `--pipeline-json` asked to merge into every pipeline of this worker. */
export function pipelineOverrides() {
  return overrides;
}

export function merge(base, over) {
  if (over === null || typeof over !== 'object' || Array.isArray(over)) return over;
  const out = { ...(base && typeof base === 'object' && !Array.isArray(base) ? base : {}) };
  for (const [k, v] of Object.entries(over)) out[k] = merge(out[k], v);
  return out;
}

/**
 * Compile `config` (a pipeline as a plain object; JSON is YAML) and run it to completion in `dataDir`.
 * The clock starts after compiling and stops once `handle.done` resolves, i.e. after the sink closed.
 */
export async function runPipeline(config, { dataDir, state: stateKind = 'sqlite' }) {
  const rt = await loadRuntime();
  mkdirSync(dataDir, { recursive: true });
  const doc = rt.loadConfigText(JSON.stringify(overrides ? merge(config, overrides) : config), join(dataDir, 'bench.yaml'), { env: {} });
  const def = doc.pipelines[0];
  // Warnings still reach stderr: a benchmark that logs per record would be measuring the logger.
  const { log, flush } = rt.createLogger({ format: 'json', level: process.env.SLUICE_BENCH_LOG_LEVEL ?? 'warn' });
  const state = stateKind === 'memory' ? rt.memoryStateStore() : rt.sqliteStateStore(join(dataDir, 'state.db'));
  const env = {
    log,
    state,
    dataDir,
    connector(name) {
      const c = rt.findConnector(name);
      if (!c) throw new Error(`unknown connector '${name}'`);
      return c;
    },
  };
  const t0 = performance.now();
  const handle = rt.startPipeline(def, env, {});
  const result = await handle.done;
  const seconds = (performance.now() - t0) / 1000;
  await state.close();
  await flush();
  if (result.status !== 'completed') {
    throw new Error(`pipeline ended '${result.status}': ${result.error?.message ?? 'no error given'}`);
  }
  return { seconds, stats: { ...result.stats } };
}
