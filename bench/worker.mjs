// One measurement in a fresh process, so that peak RSS belongs to one implementation and JIT state does not leak
// between runs.
//   node bench/worker.mjs <scenario> <impl> <n> [--fixture-dir DIR] [--fsync] [--pipeline-json JSON] [--module FILE]
// Prints one JSON line on stdout: {records, seconds, records_per_sec, peak_rss_mb, ...}. Exit 1 on failure.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setPipelineOverrides } from './lib/sluice.mjs';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { 'fixture-dir': { type: 'string' }, fsync: { type: 'boolean', default: false }, 'pipeline-json': { type: 'string' }, module: { type: 'string' } },
});
const [name, impl, nText] = positionals;
// With --module (what the parent passes) only that scenario's module is loaded: importing every scenario would load
// every broker's client library into this process and add tens of MB to the RSS being measured.
let scenario;
if (values.module) scenario = (await import(new URL(`./scenarios/${values.module}`, import.meta.url).href)).default;
const all = scenario?.name === name ? undefined : await import('./scenarios.mjs');
if (all) scenario = all.findScenario(name ?? '');
const n = Number(nText);
if (!scenario || !scenario.impls[impl] || !Number.isInteger(n) || n < 1) {
  const names = all ? all.SCENARIOS.map((s) => s.name).join(', ') : name;
  process.stderr.write(`usage: node bench/worker.mjs <scenario> <impl> <n> [--fixture-dir DIR] [--fsync] [--pipeline-json JSON] [--module FILE]\nscenarios: ${names}\n`);
  process.exit(2);
}

const workDir = mkdtempSync(join(tmpdir(), 'sluice-bench-w-'));
// Standalone use (no parent): make the fixtures here and throw them away afterwards.
const fixtureDir = values['fixture-dir'] ?? join(workDir, 'fixture');
let code = 0;
try {
  if (values['pipeline-json']) setPipelineOverrides(JSON.parse(values['pipeline-json']));
  if (!values['fixture-dir'] && scenario.prepare) {
    mkdirSync(fixtureDir, { recursive: true });
    await scenario.prepare({ fixtureDir, n });
  }
  // getrusage's maxRSS survives exec on Linux, so a worker forked from a large parent would report the parent's peak:
  // sample our own RSS instead (every 20 ms, plus once at the end).
  let peakRss = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    const v = process.memoryUsage.rss();
    if (v > peakRss) peakRss = v;
  }, 20);
  sampler.unref();
  const r = await scenario.impls[impl]({ n, fixtureDir, workDir, fsync: values.fsync });
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  const ru = process.resourceUsage();
  const line = {
    scenario: scenario.name,
    impl,
    n,
    ...r,
    records_per_sec: r.records / r.seconds,
    mb_per_sec: r.bytes ? r.bytes / 1e6 / r.seconds : undefined,
    peak_rss_mb: Math.round((peakRss / 1024 / 1024) * 10) / 10,
    cpu_user_s: ru.userCPUTime / 1e6,
    cpu_system_s: ru.systemCPUTime / 1e6,
  };
  process.stdout.write(JSON.stringify(line) + '\n');
} catch (e) {
  process.stderr.write(`${scenario.name} ${impl}: ${e?.stack ?? e}\n`);
  code = 1;
} finally {
  if (!values['fixture-dir']) await scenario.teardown?.({ fixtureDir, n }).catch((e) => process.stderr.write(`${scenario.name}: teardown: ${e?.message ?? e}\n`));
  rmSync(workDir, { recursive: true, force: true });
}
process.exitCode = code;
