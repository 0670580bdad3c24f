// What the broker scenarios (kafka, mqtt, nats, redis, rabbitmq) share: a pipeline run that stops itself once N
// records reached the sink (broker sources never end on their own), reachability checks for `skip`, the payloads,
// and the Kafka emulator, which a scenario's `prepare` starts in the parent and the parent's exit stops.

import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonlFixture } from './data.mjs';
import { loadRuntime, merge, pipelineOverrides } from './sluice.mjs';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

export const HOST = '127.0.0.1';

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port, timeoutMs = 1000) {
  return new Promise((res) => {
    const s = connect({ port, host: HOST });
    const done = (ok) => {
      s.destroy();
      res(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** A `skip` reason when a local server is not listening, so a machine without it skips instead of failing. */
export async function unreachable(what, port) {
  return (await portOpen(port)) ? undefined : `${what} is not reachable on ${HOST}:${port}`;
}

/** A name no earlier run used, so runs never see each other's messages, groups or consumers. */
export function uniqueName(prefix) {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
}

/**
 * The trade ticks of the file scenarios (~150-byte JSON lines), identical for both impls, read in order from
 * `trades-<n>.jsonl` in `fixtureDir`: `next(count)` returns up to `count` messages (one Buffer each, fewer at the end).
 * Reads 1 MiB at a time, so a filler or publisher holds one chunk and one slice of messages, never all N.
 */
export function payloadReader(fixtureDir, n) {
  const { path } = jsonlFixture(fixtureDir, n);
  const fd = openSync(path, 'r');
  const chunk = Buffer.allocUnsafe(1 << 20);
  let carry = Buffer.alloc(0);
  let eof = false;
  return {
    next(count) {
      const out = [];
      while (out.length < count) {
        const nl = carry.indexOf(10);
        if (nl !== -1) {
          // A copy, so the message does not keep the whole chunk alive.
          out.push(Buffer.from(carry.subarray(0, nl)));
          carry = carry.subarray(nl + 1);
          continue;
        }
        if (eof) break;
        const got = readSync(fd, chunk, 0, chunk.length, null);
        if (got === 0) eof = true;
        else carry = Buffer.concat([carry, chunk.subarray(0, got)]);
      }
      return out;
    },
    close: () => closeSync(fd),
  };
}

/** The payload bytes of the n ticks (the fixture's size without its newlines), without reading them. */
export function payloadBytes(fixtureDir, n) {
  return jsonlFixture(fixtureDir, n).bytes - n;
}

/**
 * Fill a Redis stream or a RabbitMQ queue with the n ticks in a short-lived child process (bench/lib/brokers-fill.mjs),
 * so neither the payloads nor the publishing client's buffers count toward the measured worker's peak RSS.
 */
export function fillInChild(kind, target, n, fixtureDir) {
  const child = spawn(process.execPath, [join(root, 'bench', 'lib', 'brokers-fill.mjs'), kind, target, String(n), fixtureDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((res, rej) => {
    child.on('error', rej);
    child.on('close', (code, signal) => (code === 0 ? res(JSON.parse(out.trim().split('\n').pop())) : rej(new Error(`filling ${kind} '${target}' failed (${signal ?? code}): ${err.trim() || out.trim()}`))));
  });
}

// ---- Sluice ------------------------------------------------------------------------------------------------------

/**
 * Compile `config` as `sluice run` would (CLI logger, SQLite state store), then time it until `n` records were written
 * by the sink and a graceful stop (drain, commit, close) returned, as bench/lib/sluice.mjs times a pipeline that ends
 * by itself. The clock starts at `startPipeline`, or, with `go` (push sources, whose input must not be published
 * before they subscribed), once the pipeline ran for `graceMs` and `go()` (which starts the publisher) returned.
 * `progress(written)` is called on every check (every millisecond or so, which bounds what the check adds).
 * `first_record_s` (when the sink had written something) separates connecting and joining from the flow itself.
 */
export async function runUntil(config, { dataDir, n, timeoutMs = 120_000, go, graceMs = 300, progress }) {
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
      return c;
    },
  };
  let t0 = performance.now();
  const handle = rt.startPipeline(doc.pipelines[0], env, {});
  let ended;
  handle.done.then((r) => (ended = r));
  if (go) {
    // Sources subscribe in run(), right after the pipeline reports 'running'; on 127.0.0.1 that takes a few ms.
    await until(() => handle.status() === 'running' || ended !== undefined, 'the pipeline to run', 30_000);
    await new Promise((r) => setTimeout(r, graceMs));
    t0 = performance.now();
    await go();
  }
  const deadline = Date.now() + timeoutMs;
  let first;
  while (handle.stats.records_out < n && !ended) {
    if (first === undefined && handle.stats.records_out > 0) first = performance.now();
    progress?.(handle.stats.records_out);
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 1));
  }
  const stopAt = performance.now();
  const result = ended ?? (await handle.stop());
  const end = performance.now();
  const seconds = (end - t0) / 1000;
  await state.close();
  await flush();
  if (result.status !== 'stopped' && result.status !== 'completed') {
    throw new Error(`pipeline ended '${result.status}': ${result.error?.message ?? 'no error given'}`);
  }
  if (handle.stats.records_out < n) throw new Error(`sink wrote ${handle.stats.records_out} records in ${timeoutMs / 1000} s, expected ${n}`);
  return { seconds, stats: { ...result.stats }, metrics: handle.metrics, first_record_s: first === undefined ? undefined : (first - t0) / 1000, stop_s: (end - stopAt) / 1000 };
}

/** Await `cond()` (checked every `everyMs`), or throw naming `what` after `timeoutMs`. */
export async function until(cond, what, timeoutMs = 60_000, everyMs = 1) {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

// ---- child publishers --------------------------------------------------------------------------------------------

/**
 * Start the publisher (bench/lib/brokers-publisher.mjs) in its own process, so publishing competes with the measured
 * process for the cores, not for its event loop. `ready` resolves once it is connected; `go()` starts it; `progress(written)`
 * grants it credit; `done` resolves with its summary line once it exits 0. `kill` stops it by PID.
 */
export function startPublisher(kind, target, n, window, fixtureDir) {
  const child = spawn(process.execPath, [join(root, 'bench', 'lib', 'brokers-publisher.mjs'), kind, target, String(n), String(window), fixtureDir], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  // Credit sent while the publisher finishes can meet a closed channel; it no longer needs it.
  child.on('error', () => undefined);
  const ignore = () => undefined;
  const done = new Promise((res, rej) =>
    child.on('close', (code, signal) => (code === 0 ? res(JSON.parse(out.trim().split('\n').pop())) : rej(new Error(`publisher exited ${signal ?? code}: ${err.trim() || out.trim()}`)))),
  );
  done.catch(() => undefined);
  const ready = new Promise((res, rej) => {
    child.on('message', (m) => m?.ready && res());
    done.then(() => rej(new Error('publisher exited before it was ready')), rej);
  });
  ready.catch(() => undefined);
  let last = -1;
  return {
    ready,
    done,
    go() {
      child.send({ go: true }, ignore);
    },
    progress(written) {
      if (written !== last && child.connected) {
        last = written;
        child.send({ written }, ignore);
      }
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
    },
  };
}

// ---- Kafka emulator ----------------------------------------------------------------------------------------------

export const MOKAPI_BIN = join(root, 'node_modules/@go-mokapi/linux-x64/bin/mokapi');

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.once('error', rej);
    s.listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

// The emulator takes topics only from an AsyncAPI file, which it re-reads within about a second of a change.
function asyncapi(port, topics) {
  const lines = ['asyncapi: 3.0.0', "info: { title: sluice-bench, version: '1' }", 'servers:', `  local: { host: '${HOST}:${port}', protocol: kafka }`];
  if (!topics.length) return [...lines, 'channels: {}'].join('\n') + '\n';
  lines.push('channels:');
  for (const t of topics) {
    lines.push(`  ${JSON.stringify(t)}:`, `    address: ${JSON.stringify(t)}`, '    bindings: { kafka: { partitions: 1 } }', '    messages:', '      m: { contentType: application/octet-stream, payload: {} }');
  }
  return lines.join('\n') + '\n';
}

let emulator;

/**
 * Start a fresh emulator from the platform binary (the npm wrapper leaves its child running when killed) and record
 * where it is in `<fixtureDir>/kafka-emulator.json` for the workers. A scenario starting one stops the previous one,
 * so each starts with empty memory (it keeps ~4 KB per message); the last one is stopped by PID when the parent exits.
 */
export async function startKafkaEmulator(fixtureDir, topics = []) {
  stopKafkaEmulator();
  const port = await freePort();
  const dir = join(fixtureDir, 'kafka-emulator');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'kafka.yaml'), asyncapi(port, topics));
  const child = spawn(
    MOKAPI_BIN,
    ['--providers-file-directory', dir, '--api-port', String(await freePort()), '--health-port', String(await freePort()), '--mcp-server-enabled=false', '--api-search-enabled=false', '--api-dashboard=false', '--log-level', 'warn'],
    { stdio: 'ignore' },
  );
  // Unreferenced, so the parent can still exit when it is done, which is what stops the emulator.
  child.unref();
  emulator = child;
  if (!startKafkaEmulator.hooked) {
    startKafkaEmulator.hooked = true;
    // process.kill is synchronous, so it still runs in 'exit' (also reached through the parent's SIGINT handler).
    process.on('exit', stopKafkaEmulator);
  }
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`the Kafka emulator exited with code ${child.exitCode}`);
    return portOpen(port, 200);
  }, `the Kafka emulator on ${HOST}:${port}`, 15_000, 100);
  const info = { brokers: `${HOST}:${port}`, dir, pid: child.pid };
  writeFileSync(join(fixtureDir, 'kafka-emulator.json'), JSON.stringify(info));
  return info;
}

export function stopKafkaEmulator() {
  if (emulator && emulator.exitCode === null && emulator.signalCode === null) {
    try {
      process.kill(emulator.pid, 'SIGKILL');
    } catch {}
  }
  emulator = undefined;
}

export function kafkaEmulatorInfo(fixtureDir) {
  try {
    return JSON.parse(readFileSync(join(fixtureDir, 'kafka-emulator.json'), 'utf8'));
  } catch {
    throw new Error(`no Kafka emulator recorded in ${fixtureDir}: run this scenario through scripts/bench.mjs (its prepare step starts one)`);
  }
}

/** Declare or drop (`present: false`) a topic in the emulator's file and wait until the admin API agrees. */
export async function setKafkaTopic(info, admin, topic, present = true) {
  const file = join(info.dir, 'kafka.yaml');
  const text = readFileSync(file, 'utf8');
  const port = Number(info.brokers.split(':')[1]);
  const topics = [...text.matchAll(/^\s+address: (".*")$/gm)].map((m) => JSON.parse(m[1])).filter((t) => t !== topic);
  if (present) topics.push(topic);
  writeFileSync(file, asyncapi(port, topics));
  await until(async () => (await admin.listTopics()).includes(topic) === present, `topic '${topic}' to ${present ? 'appear' : 'go away'}`, 20_000, 100);
}
