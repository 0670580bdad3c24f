// `npm run bench`: every scenario in bench/scenarios.mjs, Sluice beside a bare Node baseline, each run in its own
// worker process. Prints a table and writes bench-results/latest.json. See docs/benchmarks.md. Before them, the
// start-up measurement `startup` (issue 9: `sluice run` to its first record under 300 ms).
//
//   node scripts/bench.mjs [--runs N] [--quick] [--only NAME]... [--records N] [--fsync] [--profile] [--timeout S]
//                          [--pipeline-json JSON] [--startup-runs N]

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as nodeModule from 'node:module';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { IMPLS, MODULE_OF, SCENARIOS } from '../bench/scenarios.mjs';

// import.meta.dirname needs Node 20.11; the package promises 20.
const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
const workerPath = join(root, 'bench', 'worker.mjs');
const resultsDir = join(root, 'bench-results');
/** Issue 9: peak RSS of a Sluice worker under this in every scenario. */
const PEAK_RSS_TARGET_MB = 150;
/** Issue 9: `sluice run` from spawn to its first record on stdout under this. */
const STARTUP_TARGET_MS = 300;
/** The name `--only` selects the start-up measurement by; it is not a scenario of bench/scenarios.mjs. */
const STARTUP = 'startup';

const USAGE = `usage: node scripts/bench.mjs [options]
  --runs N        runs per implementation (default 3; the median is reported)
  --quick         smoke check: 100000 records, 1 run
  --only NAME     run only this scenario (repeatable, or comma-separated)
  --records N     records per scenario (default: each scenario's own, 1M)
  --fsync         fsync after every batch in the file scenarios, in Sluice and the baseline alike (default: never)
  --profile       run workers under --cpu-prof; profiles go to bench-results/profiles/
  --timeout S     give up on a run after S seconds (default 600)
  --pipeline-json JSON
                  merged into every Sluice pipeline, e.g. '{"buffer":{"max_records":2000}}' (for tuning experiments)
  --startup-runs N
                  spawns per start-up measurement (default 11; 5 with --quick)
scenarios: ${STARTUP} (start-up time), ${SCENARIOS.map((s) => s.name).join(', ')}`;

let args;
try {
  args = parseArgs({
    options: {
      runs: { type: 'string' },
      quick: { type: 'boolean', default: false },
      only: { type: 'string', multiple: true },
      records: { type: 'string' },
      fsync: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      timeout: { type: 'string', default: '600' },
      'pipeline-json': { type: 'string' },
      'startup-runs': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

const positiveInt = (flag, text) => {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 1) {
    console.error(`${flag}: expected a positive whole number, got '${text}'`);
    process.exit(2);
  }
  return v;
};
const runs = args.runs !== undefined ? positiveInt('--runs', args.runs) : args.quick ? 1 : 3;
const recordsOverride = args.records !== undefined ? positiveInt('--records', args.records) : args.quick ? 100_000 : undefined;
const timeoutMs = positiveInt('--timeout', args.timeout) * 1000;
const startupRuns = args['startup-runs'] !== undefined ? positiveInt('--startup-runs', args['startup-runs']) : args.quick ? 5 : 11;

const wanted = (args.only ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
for (const w of wanted) {
  if (w !== STARTUP && !SCENARIOS.some((s) => s.name === w)) {
    console.error(`--only: no scenario named '${w}'\n${USAGE}`);
    process.exit(2);
  }
}
if (args['pipeline-json'] !== undefined) {
  try {
    JSON.parse(args['pipeline-json']);
  } catch (e) {
    console.error(`--pipeline-json: ${e.message}`);
    process.exit(2);
  }
}
const selected = wanted.length ? SCENARIOS.filter((s) => wanted.includes(s.name)) : SCENARIOS;
const measureStartup = !wanted.length || wanted.includes(STARTUP);

function machineInfo() {
  const cpus = os.cpus();
  let model = cpus[0]?.model;
  try {
    // os.cpus() can come back empty in some containers; /proc/cpuinfo is the source it reads anyway.
    model ??= /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
  } catch {}
  return {
    cpu_model: model ?? 'unknown',
    cores: os.availableParallelism?.() ?? cpus.length,
    memory_gb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    date: new Date().toISOString(),
    load_avg_1m: Math.round(os.loadavg()[0] * 100) / 100,
  };
}

function runWorker(scenario, impl, n, fixtureDir) {
  const nodeArgs = args.profile
    ? ['--cpu-prof', '--cpu-prof-dir', join(resultsDir, 'profiles'), '--cpu-prof-name', `${scenario.name.replace(/[^\w.-]+/g, '_')}.${impl}.${Date.now()}.cpuprofile`]
    : [];
  const argv = [...nodeArgs, workerPath, scenario.name, impl, String(n), '--fixture-dir', fixtureDir, '--module', MODULE_OF.get(scenario)];
  if (args.fsync) argv.push('--fsync');
  if (args['pipeline-json'] !== undefined) argv.push('--pipeline-json', args['pipeline-json']);
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, argv, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${timeoutMs / 1000} s)`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = stdout.trim().split('\n').pop();
      let result;
      try {
        result = last ? JSON.parse(last) : undefined;
      } catch {}
      if (code === 0 && result) resolvePromise({ ok: true, result, stderr });
      else resolvePromise({ ok: false, error: `worker exited ${signal ?? code}: ${stderr.trim() || stdout.trim() || 'no output'}` });
    });
  });
}

const median = (xs) => {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function summarize(results) {
  const rate = median(results.map((r) => r.records_per_sec));
  const mbs = results.every((r) => r.mb_per_sec !== undefined) ? median(results.map((r) => r.mb_per_sec)) : undefined;
  return {
    records: results[0]?.records,
    median_records_per_sec: rate,
    median_seconds: median(results.map((r) => r.seconds)),
    median_mb_per_sec: mbs,
    peak_rss_mb: Math.max(...results.map((r) => r.peak_rss_mb)),
    median_cpu_s: median(results.map((r) => r.cpu_user_s + r.cpu_system_s)),
    // Paced scenarios: the median over runs of each run's percentiles.
    median_latency_p50_ms: results.every((r) => r.latency_p50_ms !== undefined) ? median(results.map((r) => r.latency_p50_ms)) : undefined,
    median_latency_p99_ms: results.every((r) => r.latency_p99_ms !== undefined) ? median(results.map((r) => r.latency_p99_ms)) : undefined,
    runs: results,
  };
}

const fmtInt = (x) => (x === undefined ? '-' : Math.round(x).toLocaleString('en-US'));
const fmt1 = (x) => (x === undefined ? '-' : x.toFixed(1));

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  const right = (i) => i >= 2;
  const line = (r) => r.map((c, i) => (right(i) ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i]))).join('  ').trimEnd();
  return [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

// ---- Start-up (issue 9): `sluice run` from spawn to its first record line on stdout, beside the floor of any Node
// program (`node -e` printing one line) timed the same way, and `sluice --version` (the CLI's module loading alone).

/** A start-up spawn that has not written its line within this is killed and the measurement fails. */
const STARTUP_SPAWN_TIMEOUT_MS = 30_000;
/** Start-up children still running, so an interrupted bench does not leave them behind. */
const startupChildren = new Set();

let clockTicks;
/** User+system CPU milliseconds `pid` has used so far, from /proc (Linux); undefined elsewhere. */
function cpuMsOf(pid) {
  try {
    // Fields after the command name, which is in parentheses and may itself contain spaces: utime, stime are 14, 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    clockTicks ??= 100; // USER_HZ: 100 on every Linux architecture Node supports
    return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks;
  } catch {
    return undefined;
  }
}

/** Spawns `node argv`, and kills it by PID as soon as its first stdout line arrives: milliseconds from spawn to it. */
function timeToFirstLine(argv) {
  return new Promise((resolvePromise) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, argv, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    startupChildren.add(child);
    let ms;
    let cpuMs;
    let stdout = '';
    let stderr = '';
    const kill = () => {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {} // already gone
    };
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${STARTUP_SPAWN_TIMEOUT_MS / 1000} s without a line on stdout)`;
      kill();
    }, STARTUP_SPAWN_TIMEOUT_MS);
    child.stdout.on('data', (d) => {
      if (ms !== undefined) return;
      stdout += d;
      if (!stdout.includes('\n')) return;
      ms = performance.now() - t0;
      // Read before the kill: afterwards /proc no longer has the process.
      cpuMs = cpuMsOf(child.pid);
      kill();
    });
    child.stderr.on('data', (d) => {
      if (stderr.length < 8192) stderr += d;
    });
    child.on('error', (e) => (stderr += `\n${e.message}`));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      startupChildren.delete(child);
      if (ms !== undefined) resolvePromise({ ok: true, ms, cpu_ms: cpuMs, line: stdout.slice(0, stdout.indexOf('\n')) });
      else resolvePromise({ ok: false, error: `exited ${signal ?? code} before its first line: ${stderr.trim() || 'no output'}` });
    });
  });
}

async function measureStartupTimes(dir) {
  const yaml = join(dir, 'startup.yaml');
  writeFileSync(yaml, 'name: startup\nsource:\n  connector: generator\n  config: { template: iot, count: 1, seed: 1 }\nsink:\n  connector: stdout\n');
  const bin = join(root, 'bin', 'sluice.js');
  let spawnNo = 0;
  const cases = [
    // Each run its own data directory: a first run, with no checkpoint that could make the generator resume.
    { key: 'run', label: 'sluice run (generator -> stdout)', argv: () => [bin, 'run', '--data-dir', join(dir, `data-${spawnNo++}`), yaml] },
    { key: 'version', label: 'sluice --version', argv: () => [bin, '--version'] },
    { key: 'floor', label: "node -e 'console.log(1)' (floor)", argv: () => ['-e', 'console.log(1)'] },
  ];
  const samples = Object.fromEntries(cases.map((c) => [c.key, []]));
  const entry = {
    name: STARTUP,
    target_ms: STARTUP_TARGET_MS,
    spawns: startupRuns,
    // Node 22.1+: bin/sluice.js turns on the V8 compile cache, which the warm-up spawn fills.
    compile_cache: typeof nodeModule.enableCompileCache === 'function' && !process.env.NODE_DISABLE_COMPILE_CACHE,
    load_avg_1m_before: Math.round(os.loadavg()[0] * 100) / 100,
    cases: {},
  };
  console.log(`${STARTUP} (${startupRuns} spawns each after one warm-up, alternating; ms from spawn to the first stdout line)`);
  try {
    // Round 0 warms the page cache (and the compile cache) and is not counted; alternating the cases spreads noise.
    for (let round = 0; round <= startupRuns; round++) {
      for (const c of cases) {
        const r = await timeToFirstLine(c.argv());
        if (!r.ok) throw new Error(`${c.label}: ${r.error}`);
        if (round > 0) samples[c.key].push(r);
        if (round === 1 && c.key === 'run' && !r.line.startsWith('{')) throw new Error(`${c.label}: the first stdout line is not a record: ${r.line}`);
      }
    }
    for (const c of cases) {
      const xs = samples[c.key];
      const ms = xs.map((x) => x.ms);
      const cpu = xs.every((x) => x.cpu_ms !== undefined) ? median(xs.map((x) => x.cpu_ms)) : undefined;
      entry.cases[c.key] = { label: c.label, median_ms: median(ms), min_ms: Math.min(...ms), max_ms: Math.max(...ms), median_cpu_ms: cpu, samples_ms: ms.map((x) => Math.round(x * 10) / 10) };
    }
    entry.over_floor_ms = entry.cases.run.median_ms - entry.cases.floor.median_ms;
    entry.meets = { startup_ms: entry.cases.run.median_ms < STARTUP_TARGET_MS };
    entry.status = 'ok';
  } catch (e) {
    entry.status = 'failed';
    entry.error = e.message;
    console.log(`  FAILED: ${e.message}`);
  }
  entry.load_avg_1m_after = Math.round(os.loadavg()[0] * 100) / 100;
  return entry;
}

function startupRows(e) {
  const rows = [['start-up', 'median ms', 'min ms', 'max ms', 'cpu ms', 'target']];
  if (e.status !== 'ok') return [...rows, [e.name, 'FAILED', '-', '-', '-', '-']];
  for (const [key, c] of Object.entries(e.cases)) {
    const target = key === 'run' ? `<${e.target_ms}ms ${e.meets.startup_ms ? 'met' : 'MISSED'}` : '';
    rows.push([c.label, c.median_ms.toFixed(0), c.min_ms.toFixed(0), c.max_ms.toFixed(0), c.median_cpu_ms === undefined ? '-' : c.median_cpu_ms.toFixed(0), target]);
  }
  return rows;
}

const machine = machineInfo();
console.log(`sluice bench: ${machine.cpu_model}, ${machine.cores} cores, ${machine.memory_gb} GB, node ${machine.node}, load average ${machine.load_avg_1m}`);
// Other processes competing for the cores skew every number here; say so rather than let it pass unnoticed.
if (machine.load_avg_1m > machine.cores / 4) {
  console.log(`warning: load average ${machine.load_avg_1m} on ${machine.cores} cores before starting; results will be noisy`);
}
console.log(
  `runs ${runs}${recordsOverride ? `, ${recordsOverride} records` : ''}, fsync ${args.fsync ? 'after every batch (both)' : 'never (both)'}${args['pipeline-json'] ? `, pipeline overrides ${args['pipeline-json']}` : ''}\n`,
);

const fixtureDir = mkdtempSync(join(os.tmpdir(), 'sluice-bench-'));
const cleanup = () => rmSync(fixtureDir, { recursive: true, force: true });
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const child of startupChildren) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {}
    }
    cleanup();
    process.exit(130);
  });
}

const report = [];
let startup;
try {
  if (measureStartup) {
    startup = await measureStartupTimes(fixtureDir);
    if (startup.status === 'ok') {
      const { run, floor } = startup.cases;
      console.log(`  sluice run ${run.median_ms.toFixed(0)} ms (cpu ${run.median_cpu_ms?.toFixed(0) ?? '-'} ms), node -e floor ${floor.median_ms.toFixed(0)} ms (cpu ${floor.median_cpu_ms?.toFixed(0) ?? '-'} ms): start-up < ${STARTUP_TARGET_MS} ms ${startup.meets.startup_ms ? 'met' : 'MISSED'}`);
    }
    console.log('');
  }
  for (const scenario of selected) {
    const n = recordsOverride ?? scenario.records;
    const entry = {
      name: scenario.name,
      summary: scenario.summary,
      baseline: scenario.baseline,
      records: n,
      fsync: args.fsync,
      target: scenario.target ?? null,
      paced: !!scenario.paced,
      load_avg_1m_before: Math.round(os.loadavg()[0] * 100) / 100,
      impls: {},
    };
    report.push(entry);
    console.log(`${scenario.name} (${n.toLocaleString('en-US')} records)`);
    try {
      const reason = await scenario.skip?.({ n });
      if (reason) {
        entry.status = 'skipped';
        entry.error = reason;
        console.log(`  skipped: ${reason}\n`);
        continue;
      }
      if (scenario.prepare) {
        const t0 = performance.now();
        const fx = await scenario.prepare({ fixtureDir, n });
        entry.input_bytes = fx?.bytes;
        console.log(`  fixture ready in ${((performance.now() - t0) / 1000).toFixed(1)} s${fx?.bytes ? ` (${(fx.bytes / 1e6).toFixed(1)} MB)` : ''}`);
      }
      const results = Object.fromEntries(IMPLS.map((i) => [i, []]));
      // Alternating implementations spreads machine noise (other load, thermal) over both instead of one.
      for (let run = 1; run <= runs; run++) {
        for (const impl of IMPLS) {
          const r = await runWorker(scenario, impl, n, fixtureDir);
          if (!r.ok) throw new Error(`${impl} run ${run}: ${r.error}`);
          results[impl].push(r.result);
          const x = r.result;
          console.log(
            `  ${impl.padEnd(6)} run ${run}/${runs}: ${fmtInt(x.records_per_sec).padStart(11)} records/s  ${x.seconds.toFixed(2)} s  ${x.mb_per_sec !== undefined ? `${fmt1(x.mb_per_sec)} MB/s  ` : ''}peak RSS ${fmt1(x.peak_rss_mb)} MB${x.latency_p99_ms !== undefined ? `  latency p50 ${x.latency_p50_ms} ms p99 ${x.latency_p99_ms} ms` : ''}`,
          );
          if (r.stderr.trim()) console.log(r.stderr.trim().replace(/^/gm, `    ${impl} stderr: `));
        }
      }
      entry.load_avg_1m_after = Math.round(os.loadavg()[0] * 100) / 100;
      for (const impl of IMPLS) entry.impls[impl] = summarize(results[impl]);
      const [a, b] = IMPLS.map((i) => entry.impls[i].median_records_per_sec);
      entry.ratio = a / b;
      const firsts = IMPLS.map((i) => results[i][0]?.first_line);
      // Paced scenarios stamp each record with its send time, so their lines differ by design.
      if (!scenario.paced && firsts.every((f) => f !== undefined) && new Set(firsts).size > 1) {
        entry.output_differs = Object.fromEntries(IMPLS.map((i, k) => [i, firsts[k]]));
        console.log(`  note: first output lines differ:\n${IMPLS.map((i, k) => `    ${i}: ${firsts[k]}`).join('\n')}`);
      }
      // A paced scenario runs at the offered rate on both sides: the ratio of rates says nothing, latency does.
      // Issue 9: peak RSS under 150 MB in every scenario. `rival: false` marks a bare program that is a reference, not
      // a rival (an empty loop, or one that keeps no log), so no throughput ratio target is claimed against it.
      entry.meets = {
        ...(scenario.paced || scenario.rival === false ? {} : { baseline: entry.ratio >= 1 }),
        peak_rss_mb: entry.impls[IMPLS[0]].peak_rss_mb < PEAK_RSS_TARGET_MB,
        ...(scenario.target?.records_per_sec ? { records_per_sec: a >= scenario.target.records_per_sec } : {}),
        ...(scenario.target?.latency_p99_ms ? { latency_p99_ms: entry.impls[IMPLS[0]].median_latency_p99_ms < scenario.target.latency_p99_ms } : {}),
      };
      entry.status = 'ok';
    } catch (e) {
      entry.status = 'failed';
      entry.error = e.message;
      console.log(`  FAILED: ${e.message}`);
    } finally {
      // What `prepare` created outside the fixture directory (a broker's stream or queue) goes away with the scenario.
      await scenario.teardown?.({ fixtureDir, n }).catch((e) => console.log(`  teardown failed: ${e.message}`));
    }
    console.log('');
  }
} finally {
  cleanup();
}

if (startup) {
  console.log(table(startupRows(startup)));
  console.log(`median of ${startup.spawns} spawn(s) each; ms from spawn to the first line on stdout (the process is then killed); cpu ms: user+system CPU of the process up to that line (10 ms resolution)${startup.compile_cache ? '; V8 compile cache on' : ''}\n`);
}
const rows = [['scenario', 'impl', 'records/s', 'MB/s', 'peak RSS MB', 'cpu s', 'p50 ms', 'p99 ms', 'sluice/bare', 'target']];
for (const e of report) {
  if (e.status !== 'ok') {
    rows.push([e.name, e.status === 'skipped' ? 'skipped' : 'FAILED', '-', '-', '-', '-', '-', '-', '-', '-']);
    continue;
  }
  IMPLS.forEach((impl, k) => {
    const s = e.impls[impl];
    const targets = [];
    if (k === 0) {
      if (e.target?.records_per_sec) targets.push(`>=${(e.target.records_per_sec / 1e6).toFixed(0)}M/s ${e.meets.records_per_sec ? 'met' : 'MISSED'}`);
      if (e.target?.latency_p99_ms) targets.push(`p99<${e.target.latency_p99_ms}ms ${e.meets.latency_p99_ms ? 'met' : 'MISSED'}`);
      if (e.meets.baseline !== undefined) targets.push(`>=bare ${e.meets.baseline ? 'met' : 'MISSED'}`);
      if (e.meets.peak_rss_mb !== undefined) targets.push(`RSS<${PEAK_RSS_TARGET_MB}MB ${e.meets.peak_rss_mb ? 'met' : 'MISSED'}`);
    }
    const ratio = k === 0 && !e.paced ? `${e.ratio.toFixed(2)}x` : '';
    const ms = (x) => (x === undefined ? '-' : x.toFixed(2));
    rows.push([k === 0 ? e.name : '', impl, fmtInt(s.median_records_per_sec), fmt1(s.median_mb_per_sec), fmt1(s.peak_rss_mb), s.median_cpu_s.toFixed(2), ms(s.median_latency_p50_ms), ms(s.median_latency_p99_ms), ratio, targets.join(', ')]);
  });
}
if (report.length) console.log(table(rows));
if (report.length) console.log(`\nmedian of ${runs} run(s) each; peak RSS is the highest of the runs; cpu s: median user+system CPU seconds of a whole worker process; p50/p99: end-to-end latency of paced scenarios`);

mkdirSync(resultsDir, { recursive: true });
const out = join(resultsDir, 'latest.json');
writeFileSync(out, JSON.stringify({ machine, options: { runs, records: recordsOverride ?? null, fsync: args.fsync, quick: args.quick, only: wanted, pipeline_json: args['pipeline-json'] ?? null, startup_runs: startupRuns }, startup: startup ?? null, scenarios: report }, null, 2) + '\n');
// The same table as Markdown, ready for docs/benchmarks.md.
const md = [rows[0], rows[0].map((_, i) => (i >= 2 && i < rows[0].length - 1 ? '---:' : '---')), ...rows.slice(1)].map((r) => `| ${r.join(' | ')} |`).join('\n');
const loads = [...(startup ? [startup] : []), ...report].flatMap((e) => [e.load_avg_1m_before, e.load_avg_1m_after ?? e.load_avg_1m_before]);
const about = `${machine.date.slice(0, 10)}: ${machine.cpu_model}, ${machine.cores} cores, ${machine.memory_gb} GB RAM, ${machine.platform}, Node.js ${machine.node}; load average ${Math.min(...loads)} to ${Math.max(...loads)} (1 min, before and after each scenario); ${runs} run(s), median${recordsOverride ? `, ${recordsOverride} records` : ''}${args.fsync ? ', fsync after every batch' : ''}${args['pipeline-json'] ? `, pipeline overrides \`${args['pipeline-json']}\`` : ''}`;
const startupMd = startup
  ? `${startupRows(startup).flatMap((r, k) => (k === 0 ? [r, r.map((_, i) => (i >= 1 && i < r.length - 1 ? '---:' : '---'))] : [r])).map((r) => `| ${r.join(' | ')} |`).join('\n')}\n\n`
  : '';
writeFileSync(join(resultsDir, 'latest.md'), `${about}\n\n${startupMd}${report.length ? `${md}\n` : ''}`);
console.log(`results: ${out} (table: bench-results/latest.md)`);
process.exitCode = report.some((e) => e.status === 'failed') || startup?.status === 'failed' ? 1 : 0;
