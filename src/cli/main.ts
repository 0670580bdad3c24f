// `sluice` command line. Exit codes: 0 success, 1 runtime failure, 2 invalid config or usage.

import { Command, CommanderError, Option } from 'commander';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, SluiceError, errorMessage } from '../core/errors.js';
import { loadConfigTextAsync, readConfigFile } from '../config/yaml.js';
import type { CompiledDocument } from '../config/compile.js';
import { allConnectors, findConnector, loadConnectors } from '../connectors/index.js';
import { whenLoaded } from '../core/loading.js';
import { describeOptions, toJsonSchema, type OptionDoc } from '../core/spec.js';
import { startPipeline, type PipelineHandle, type RunOptions, type RuntimeEnv } from '../core/runtime.js';
import type { StateStore } from '../core/state.js';
import { lazySqliteStateStore } from './state.js';
import type { StateScope, SluiceRecord } from '../core/types.js';
import type { PipelineDef } from '../core/model.js';
import { createLogger, scrubUrlCredentials, type LogFormat } from './logging.js';
import { StatusLine } from './status.js';
import { createFormat } from '../formats/index.js';
import { inferSchema, describeSchema } from '../core/schema.js';
import { parseDuration } from '../core/units.js';
import { registerServeCommand } from '../server/command.js';
import { tuneHeap } from './heap.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

class UsageError extends Error {}

// The SQL compiler and runtime load only for SQL files and pipelines with a `transform:` (~15 ms and a few MB that a
// plain `sluice run` does not need); the other sub-commands' implementations load inside their actions.
const sqlModule = () => import('../sql/index.js');

async function loadSqlFile(file: string): Promise<CompiledDocument> {
  const text = readConfigFile(file);
  return (await sqlModule()).loadSqlText(text, file);
}

async function loadYamlFile(file: string): Promise<CompiledDocument> {
  const parsed = await loadConfigTextAsync(readConfigFile(file), file);
  if (parsed.hasTransforms) {
    const { checkTransform } = await sqlModule();
    await whenLoaded(() => parsed.checkTransforms(checkTransform));
  }
  return parsed.doc;
}

/** The transform factory of each pipeline, from the SQL runtime loaded only when a pipeline has a transform. */
async function transformFactories(doc: CompiledDocument): Promise<(def: PipelineDef) => RunOptions['makeTransform']> {
  if (!doc.pipelines.some((p) => p.transform)) return () => undefined;
  const { transformFactory } = await sqlModule();
  return (def) => transformFactory(def, { tables: doc.tables, profiles: doc.profiles });
}

async function loadAll(files: string[]): Promise<Array<{ file: string; doc: CompiledDocument }>> {
  const out: Array<{ file: string; doc: CompiledDocument }> = [];
  const issues: ConfigError['issues'] = [];
  for (const f of files) {
    try {
      out.push({ file: f, doc: f.toLowerCase().endsWith('.sql') ? await loadSqlFile(f) : await loadYamlFile(f) });
    } catch (e) {
      if (e instanceof ConfigError) issues.push(...e.issues);
      else throw e;
    }
  }
  if (issues.length) throw new ConfigError(issues);
  return out;
}

function lookupConnector(name: string) {
  const c = findConnector(name);
  if (!c) throw new SluiceError('CONFIG', `unknown connector '${name}'`);
  return c;
}

function runtimeEnv(log: ReturnType<typeof createLogger>['log'], state: StateStore, dataDir: string): RuntimeEnv {
  return { log, state, dataDir, connector: lookupConnector };
}

interface GlobalOpts {
  logFormat?: LogFormat;
  logLevel: string;
}

async function cmdRun(files: string[], o: { dataDir: string; drainTimeout: string; status: boolean; statsInterval: string; metricsPort?: string; statsFile?: string }, g: GlobalOpts): Promise<number> {
  const docs = await loadAll(files);
  const defs = docs.flatMap((d) => d.doc.pipelines);
  if (!defs.length) throw new UsageError('no pipeline to run in the given files');
  const drainTimeoutMs = parseDuration(o.drainTimeout);
  if (drainTimeoutMs === undefined) throw new UsageError(`--drain-timeout: '${o.drainTimeout}' is not a duration`);
  const status = o.status && process.stderr.isTTY ? new StatusLine(process.stderr) : undefined;
  const { log, flush } = createLogger({ format: g.logFormat, level: g.logLevel, status });
  const state = lazySqliteStateStore(join(o.dataDir, 'state.db'));
  const env = runtimeEnv(log, state, o.dataDir);
  const handles: PipelineHandle[] = [];
  let stopping = false;
  const stopAll = (signal: string) => {
    if (stopping) {
      process.stderr.write(`\nsluice: second ${signal}; exiting without draining\n`);
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'stopping: draining in-flight records');
    for (const h of handles) void h.stop();
  };
  const onSigint = () => stopAll('SIGINT');
  const onSigterm = () => stopAll('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  for (const { doc } of docs) {
    const transformOf = await transformFactories(doc);
    for (const def of doc.pipelines) handles.push(startPipeline(def, env, { drainTimeoutMs, makeTransform: transformOf(def) }));
  }
  // prom-client loads only when metrics are asked for.
  const metrics = o.metricsPort !== undefined ? await (await import('../server/metrics.js')).startMetricsServer(Number(o.metricsPort), () => handles) : undefined;
  if (metrics) log.info({ port: metrics.port }, 'metrics on /metrics');
  status?.start(handles);
  const statsMs = parseDuration(o.statsInterval) ?? 10_000;
  const statsTimer = !status && statsMs > 0
    ? setInterval(() => {
        for (const h of handles) log.info({ pipeline: h.name, ...h.stats, state: h.status(), paused_reason: h.pausedReason(), source: h.metrics.source.snapshot() }, 'progress');
      }, statsMs)
    : undefined;
  const results = await Promise.all(handles.map((h) => h.done));
  if (statsTimer) clearInterval(statsTimer);
  status?.stop();
  process.off('SIGINT', onSigint);
  process.off('SIGTERM', onSigterm);
  await metrics?.close();
  await state.close();
  let code = 0;
  results.forEach((r, i) => {
    const h = handles[i]!;
    if (r.status === 'failed') {
      code = 1;
      const hint = r.error instanceof SluiceError && r.error.hint ? `\n  hint: ${r.error.hint}` : '';
      process.stderr.write(scrubUrlCredentials(`sluice: pipeline '${h.name}' failed: ${errorMessage(r.error)}${hint}\n`));
    }
  });
  if (o.statsFile) {
    // Final counters per pipeline, for scripts and the fault-injection tests (in = out + dlq + dropped + ...).
    const pipelines = Object.fromEntries(results.map((r, i) => [handles[i]!.name, { status: r.status, ...r.stats, source: handles[i]!.metrics.source.snapshot() }]));
    writeFileSync(o.statsFile, JSON.stringify({ pipelines }) + '\n');
  }
  const s = results.reduce((a, r) => ({ in: a.in + r.stats.records_in, out: a.out + r.stats.records_out }), { in: 0, out: 0 });
  log.info({ records_in: s.in, records_out: s.out, peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) }, 'done');
  await flush();
  return code;
}

async function cmdCheck(files: string[]): Promise<number> {
  const docs = await loadAll(files);
  if (docs.some(({ doc }) => doc.pipelines.some((p) => p.transform))) {
    const { checkTransform } = await sqlModule();
    const issues = docs.flatMap(({ file, doc }) => doc.pipelines.flatMap((p) => checkTransform(p, { tables: doc.tables, profiles: doc.profiles, file })));
    if (issues.length) throw new ConfigError(issues);
  }
  for (const { file, doc } of docs) {
    for (const p of doc.pipelines) {
      const outs = [...(p.routes ?? []).map((r) => `${r.name}: ${r.sink.connector} (${r.sink.format.name})`), ...(p.sink ? [`${p.sink.connector} (${p.sink.format.name})`] : [])];
      process.stdout.write(`${file}: pipeline '${p.name}': ${p.source.connector} (${p.source.format.name}) -> ${outs.join(', ')}${p.dlq ? `, dead letters -> ${p.dlq.connector}` : ''}\n`);
    }
  }
  process.stdout.write('ok\n');
  return 0;
}

function formatOptions(docs: OptionDoc[], indent = '  '): string {
  let s = '';
  for (const d of docs) {
    const flags = [d.required ? 'required' : '', d.default !== undefined ? `default ${JSON.stringify(d.default)}` : '', d.secret ? 'secret' : '']
      .filter(Boolean)
      .join(', ');
    s += `${indent}${d.name} (${d.type})${flags ? ` [${flags}]` : ''}\n`;
    if (d.aliases.length) s += `${indent}    aliases: ${d.aliases.join(', ')}\n`;
    if (d.description) s += `${indent}    ${d.description}\n`;
    if (d.children) s += formatOptions(d.children, indent + '    ');
  }
  return s;
}

async function cmdConnectors(name: string | undefined, o: { json?: boolean }): Promise<number> {
  if (!name) {
    const connectors = await allConnectors();
    if (o.json) {
      process.stdout.write(
        JSON.stringify(
          connectors.map((c) => ({ name: c.name, aliases: c.aliases ?? [], title: c.title, description: c.description, source: !!c.source, sink: !!c.sink })),
          null,
          2,
        ) + '\n',
      );
      return 0;
    }
    for (const c of connectors) {
      const roles = [c.source ? 'source' : '', c.sink ? 'sink' : ''].filter(Boolean).join('+');
      process.stdout.write(`${c.name.padEnd(14)} ${roles.padEnd(12)} ${c.description}${c.aliases?.length ? ` (aliases: ${c.aliases.join(', ')})` : ''}\n`);
    }
    return 0;
  }
  await loadConnectors([name]);
  const c = findConnector(name);
  if (!c) throw new UsageError(`unknown connector '${name}'; run 'sluice connectors' for the list`);
  if (o.json) {
    process.stdout.write(
      JSON.stringify(
        {
          name: c.name,
          aliases: c.aliases ?? [],
          title: c.title,
          description: c.description,
          source: c.source ? { options: toJsonSchema(c.source.options), metadata: c.source.metadata ?? {} } : null,
          sink: c.sink ? { options: toJsonSchema(c.sink.options) } : null,
        },
        null,
        2,
      ) + '\n',
    );
    return 0;
  }
  let s = `${c.name} — ${c.title}\n${c.description}\n`;
  if (c.aliases?.length) s += `aliases: ${c.aliases.join(', ')}\n`;
  if (c.source) {
    s += `\nsource options:\n${formatOptions(describeOptions(c.source.options)) || '  (none)\n'}`;
    const meta = Object.entries(c.source.metadata ?? {});
    if (meta.length) s += `\nsource metadata fields:\n${meta.map(([k, v]) => `  ${k}: ${v}\n`).join('')}`;
  }
  if (c.sink) s += `\nsink options:\n${formatOptions(describeOptions(c.sink.options)) || '  (none)\n'}`;
  process.stdout.write(s);
  return 0;
}

/** Reads committed positions but never writes them: previewing must not move a pipeline forward. */
function readOnlyState(store: StateStore): StateStore {
  return {
    scope(p, n) {
      const s = store.scope(p, n);
      const ro: StateScope = { get: (k) => s.get(k), entries: () => s.entries(), set: async () => undefined, delete: async () => undefined };
      return ro;
    },
    close: () => store.close(),
  };
}

async function cmdDlqReplay(file: string, o: { from: string; pipeline?: string; remainder?: string; dryRun?: boolean }, g: GlobalOpts): Promise<number> {
  const [{ doc }] = (await loadAll([file])) as [{ file: string; doc: CompiledDocument }];
  const def = o.pipeline ? doc.pipelines.find((p) => p.name === o.pipeline) : doc.pipelines[0];
  if (!def) throw new UsageError(o.pipeline ? `no pipeline named '${o.pipeline}' in ${file} (it has: ${doc.pipelines.map((p) => p.name).join(', ')})` : `no pipeline in ${file}`);
  // dead.jsonl -> dead.remainder.jsonl
  const remainder = o.remainder ?? o.from.replace(/(\.[^./\\]*)?$/, (ext) => `.remainder${ext}`);
  const { log, flush } = createLogger({ format: g.logFormat, level: g.logLevel === 'info' ? 'warn' : g.logLevel });
  const { replayDlq } = await import('./dlq.js');
  const makeTransform = (await transformFactories(doc))(def);
  try {
    return await replayDlq(def, {
      from: o.from,
      remainder,
      dryRun: !!o.dryRun,
      log,
      connector: lookupConnector,
      makeTransform,
      write: (line) => void process.stdout.write(line),
    });
  } catch (e) {
    if (e instanceof SluiceError && e.code === 'CONFIG') throw new UsageError(e.message);
    throw e;
  } finally {
    await flush();
  }
}

async function cmdPreview(file: string, o: { limit: string; pipeline?: string; dataDir: string; timeout: string }, g: GlobalOpts): Promise<number> {
  const limit = Number(o.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit: expected a positive whole number, got '${o.limit}'`);
  const timeoutMs = parseDuration(o.timeout);
  if (timeoutMs === undefined) throw new UsageError(`--timeout: '${o.timeout}' is not a duration`);
  const [{ doc }] = (await loadAll([file])) as [{ file: string; doc: CompiledDocument }];
  const def = o.pipeline ? doc.pipelines.find((p) => p.name === o.pipeline) : doc.pipelines[0];
  if (!def) throw new UsageError(o.pipeline ? `no pipeline named '${o.pipeline}' in ${file} (it has: ${doc.pipelines.map((p) => p.name).join(', ')})` : `no pipeline in ${file}`);
  const { log, flush } = createLogger({ format: g.logFormat, level: g.logLevel === 'info' ? 'warn' : g.logLevel });
  const state = readOnlyState(lazySqliteStateStore(join(o.dataDir, 'state.db')));
  const enc = createFormat({ name: 'json', options: {} }).encoder();
  const sample: unknown[] = [];
  let shown = 0;
  const h = startPipeline({ ...def, batch: { ...def.batch, linger_ms: 0 } }, runtimeEnv(log, state, o.dataDir), {
    preview: {
      limit,
      onRecords(records: SluiceRecord[]) {
        const take = records.slice(0, Math.max(0, limit - shown));
        shown += take.length;
        for (const r of take) sample.push(r.value);
        if (take.length) process.stdout.write(enc.encodeStream(take.map((r) => r.value), false));
      },
    },
  });
  const timer = setTimeout(() => void h.stop(), timeoutMs);
  const r = await h.done;
  clearTimeout(timer);
  await state.close();
  if (sample.length && !def.source.schema) {
    // CSV and text values are all strings; look inside them for numbers, booleans and timestamps.
    const parseStrings = def.source.format.name === 'csv';
    process.stderr.write(`# inferred schema: ${describeSchema(inferSchema(sample, { parseStrings }))}\n`);
  }
  await flush();
  if (r.status === 'failed') {
    process.stderr.write(`sluice: preview of '${def.name}' failed: ${errorMessage(r.error)}\n`);
    return 1;
  }
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  tuneHeap();
  const program = new Command();
  let exitCode = 0;
  program
    .name('sluice')
    .description('Streaming connector runtime: move event streams between systems with schemas, formats and delivery guarantees.')
    .version(pkg.version, '-V, --version')
    .addOption(new Option('--log-format <format>', 'log format (default: pretty on a terminal, json otherwise)').choices(['json', 'pretty']))
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'))
    .exitOverride()
    .showHelpAfterError('(run sluice --help for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  const g = () => program.opts<GlobalOpts>();

  program
    .command('run')
    .description('run the pipelines in the given files in the foreground; exits when every source is finished, or drains and exits on SIGINT/SIGTERM')
    .argument('<files...>', 'pipeline files (YAML)')
    .option('--data-dir <dir>', 'where checkpoints and buffers live', './.sluice')
    .option('--drain-timeout <duration>', 'how long a stop may take to drain in-flight records', '30s')
    .option('--no-status', 'no live status line on a terminal')
    .option('--stats-interval <duration>', 'how often to log progress when not on a terminal (0 = never)', '10s')
    .option('--metrics-port <port>', 'serve Prometheus metrics on 127.0.0.1:<port>/metrics')
    .option('--stats-file <path>', "on exit, write each pipeline's final counters (records in/out, dlq, dropped, ...) to this file as JSON")
    .action(async (files: string[], o) => {
      exitCode = await cmdRun(files, o, g());
    });
  program
    .command('check')
    .description('validate pipeline files; prints each problem as file:line:col: message and exits 2 on any')
    .argument('<files...>', 'pipeline files (YAML)')
    .action(async (files: string[]) => {
      exitCode = await cmdCheck(files);
    });
  program
    .command('connectors')
    .description("list connectors, or one connector's options with types, defaults, aliases and descriptions")
    .argument('[name]', 'connector name')
    .option('--json', 'machine-readable output (the options as JSON Schema)')
    .action(async (name: string | undefined, o) => {
      exitCode = await cmdConnectors(name, o);
    });
  program
    .command('preview')
    .description("print decoded records from a pipeline's source without writing to its sink or moving its checkpoints")
    .argument('<file>', 'pipeline file (YAML)')
    .option('--limit <n>', 'how many records to print', '10')
    .option('--pipeline <name>', 'which pipeline of the file (default: the first)')
    .option('--data-dir <dir>', 'where checkpoints live (read only)', './.sluice')
    .option('--timeout <duration>', 'stop waiting for records after this long', '30s')
    .action(async (file: string, o) => {
      exitCode = await cmdPreview(file, o, g());
    });

  const dlq = program.command('dlq').description('work with dead-letter entries');
  dlq
    .command('replay')
    .description(
      "re-inject dead-letter entries into a pipeline: each entry's original payload is decoded, validated and transformed as the pipeline does, then written to its sink; entries that are still bad go to a remainder file",
    )
    .argument('<file>', 'pipeline file (YAML or SQL)')
    .requiredOption('--from <path>', 'the dead-letter entries: JSON lines, as a file dlq: sink writes them (correct them in place first)')
    .option('--pipeline <name>', 'which pipeline of the file (default: the first)')
    .option('--remainder <path>', 'where entries that are still bad or malformed go (default: <from> with .remainder before the extension)')
    .option('--dry-run', 'decode, validate and transform, report per entry, write nothing')
    .action(async (file: string, o) => {
      exitCode = await cmdDlqReplay(file, o, g());
    });

  registerServeCommand(program);

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return 2;
    }
    if (e instanceof ConfigError) {
      for (const i of e.message.split('\n')) process.stderr.write(`${i}\n`);
      return 2;
    }
    if (e instanceof UsageError) {
      process.stderr.write(`sluice: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(scrubUrlCredentials(`sluice: ${errorMessage(e)}\n`));
    return 1;
  }
}

const code = await main(process.argv.slice(2));
// Exit explicitly: a misbehaving connector must not keep a finished run alive (stdio is synchronous on Linux)
process.exit(code);
