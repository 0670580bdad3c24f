// Start-up cost: loading the connector registry and the format table must not load any client library. A pipeline
// that uses none of them (generator -> file) would otherwise pay tens of MB and hundreds of ms for them (issue 9).
// Runs against dist/ (npm test builds it first) in a fresh node process, so nothing else has loaded them already.

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const DIST = join(ROOT, 'dist');

const CLIENT_LIBRARIES = ['kafkajs', 'mqtt', 'redis', '@redis/client', 'rabbitmq-client', '@nats-io/transport-node', '@nats-io/jetstream', 'ws', 'avsc', 'protobufjs'];
// Libraries loaded on first use by what needs them: the CSV format's decoder/encoder, and a file source's glob.
const ON_FIRST_USE = ['csv-parse', 'csv-stringify', 'tinyglobby', 'fdir', 'picomatch'];

// Every module the loader loads (ESM, and CommonJS imported from ESM) is reported by a load hook through a message
// port; modules loaded with require() show up in require.cache. A last sentinel import flushes the hook's messages,
// which arrive in order on the one port.
const HOOK = `
let port;
export function initialize(data) { port = data.port; }
export async function load(url, context, next) { port.postMessage(url); return next(url, context); }
`;

const CHILD = `
import * as mod from 'node:module';
const { createRequire, register } = mod;
import { MessageChannel } from 'node:worker_threads';
const [connectors, formats] = JSON.parse(process.argv[1]);
const seen = [];
const { port1, port2 } = new MessageChannel();
const sentinel = 'data:text/javascript,export default 1';
const flushed = new Promise((done) => port1.on('message', (url) => (url === sentinel ? done() : seen.push(url))));
if (register) register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOK)}), { data: { port: port2 }, transferList: [port2] });
const before = process.memoryUsage().rss;
await import(connectors);
await import(formats);
const rss = process.memoryUsage().rss - before;
if (register) {
  await import(sentinel);
  await flushed;
}
port1.close();
const cjs = Object.keys(createRequire(process.cwd() + '/').cache).map((p) => 'file://' + p);
console.log(JSON.stringify({ hooked: !!register, loaded: [...seen, ...cjs], rss }));
`;

/** The packages among `urls`, by name (`@scope/name` or `name`), from their node_modules path. */
function packagesOf(urls: string[]): Set<string> {
  const out = new Set<string>();
  for (const u of urls) {
    const parts = u.split('/node_modules/');
    if (parts.length < 2) continue;
    const m = /^((?:@[^/]+\/)?[^/]+)/.exec(parts[parts.length - 1]!);
    if (m) out.add(m[1]!);
  }
  return out;
}

// For `sluice run`: the same load hook, registered with --import, appends each module URL to a file (the hook runs
// on the loader thread, so it writes itself); at exit the require() cache is appended too, and the labels of the
// connector option schemas that were built (spec.js is the module instance the CLI uses: same URL, same process).
const RUN_HOOK = `
import { appendFileSync } from 'node:fs';
let log;
export function initialize(data) { log = data.log; }
export async function load(url, context, next) { appendFileSync(log, url + '\\n'); return next(url, context); }
`;
const RUN_REGISTER = `
import { createRequire, register } from 'node:module';
import { appendFileSync } from 'node:fs';
const log = process.env.SLUICE_TEST_MODULE_LOG;
if (register) register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(RUN_HOOK)}), { data: { log } });
const spec = await import(process.env.SLUICE_TEST_SPEC_MODULE);
process.on('exit', () => {
  appendFileSync(log, Object.keys(createRequire(process.cwd() + '/').cache).map((p) => 'file://' + p).join('\\n') + '\\n');
  appendFileSync(log, 'schemas:' + JSON.stringify(spec.builtOptionSchemas()) + '\\n');
});
`;

/** Runs `sluice run` on `yaml` (written into `dir`) under RUN_REGISTER: the module URLs it loaded, and the schemas built. */
async function runLoading(dir: string, yaml: string): Promise<{ urls: string[]; built: string[] }> {
  const modules = join(dir, 'modules.txt');
  writeFileSync(modules, '');
  writeFileSync(join(dir, 'p.yaml'), yaml);
  await promisify(execFile)(
    process.execPath,
    ['--no-warnings', '--import', 'data:text/javascript,' + encodeURIComponent(RUN_REGISTER), join(ROOT, 'bin', 'sluice.js'), '--log-format', 'json', 'run', '--data-dir', join(dir, 'data'), join(dir, 'p.yaml')],
    { cwd: ROOT, timeout: 60_000, env: { ...process.env, SLUICE_TEST_MODULE_LOG: modules, SLUICE_TEST_SPEC_MODULE: pathToFileURL(join(DIST, 'core', 'spec.js')).href } },
  );
  const lines = readFileSync(modules, 'utf8').split('\n').filter(Boolean);
  return {
    urls: lines.filter((l) => !l.startsWith('schemas:')),
    built: JSON.parse(lines.find((l) => l.startsWith('schemas:'))!.slice('schemas:'.length)) as string[],
  };
}

describe.skipIf(!existsSync(join(DIST, 'connectors', 'index.js')))('start-up', () => {
  it('`sluice run` of a generator -> file pipeline loads no client library, no CSV or glob library, no HTTP client, no pretty-printer, no SQL or server module, and builds no other connector\'s options', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-startup-'));
    try {
      const out = join(dir, 'out.jsonl');
      const { urls, built } = await runLoading(
        dir,
        `name: startup\nsource:\n  connector: generator\n  config: { template: iot, count: 3, seed: 1 }\nsink:\n  connector: file\n  config: { path: ${JSON.stringify(out)} }\n`,
      );
      // The pipeline really ran, so what it loaded is what a user's run loads.
      expect(readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(3);
      const packages = packagesOf(urls);
      expect(packages.has('pino')).toBe(true);
      expect([...CLIENT_LIBRARIES, ...ON_FIRST_USE, 'undici', 'pino-pretty'].filter((p) => packages.has(p))).toEqual([]);
      // The SQL compiler loads only for a transform or a .sql file, dead-letter replay and the server only for their
      // commands (server/command.js is the `serve` command's definition, which registers it with commander).
      const own = urls.filter((u) => u.startsWith(pathToFileURL(DIST).href + '/')).map((u) => u.slice(pathToFileURL(DIST).href.length + 1));
      expect(own).toContain('cli/main.js');
      expect(own.filter((m) => m.startsWith('sql/') || (m.startsWith('server/') && m !== 'server/command.js') || m === 'cli/dlq.js')).toEqual([]);
      // The file connector's reader loads only for a file source.
      expect(own).not.toContain('connectors/file/source.js');
      // Connector and format modules load on first use: only the two connectors named, and the JSON format.
      expect(own.filter((m) => m.startsWith('connectors/') && !/^connectors\/(index|generator\/.*|file\/.*)\.js$/.test(m))).toEqual([]);
      expect(own.filter((m) => m.startsWith('formats/') && !['formats/index.js', 'formats/json.js', 'formats/util.js'].includes(m))).toEqual([]);
      // Neither keeps state, so the SQLite state store is never opened (src/cli/state.ts).
      expect(packages.has('better-sqlite3')).toBe(false);
      // Option schemas are built for the connectors the pipeline uses only (labels are `connector:part`).
      expect(built).toEqual(expect.arrayContaining(['generator:source', 'file:sink']));
      expect(built.filter((label) => !['generator', 'file', 'core'].includes(label.split(':')[0]!))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a CSV pipeline reading a glob loads the CSV libraries, the glob library and the file reader when it needs them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-startup-'));
    try {
      writeFileSync(join(dir, 'in-1.csv'), 'id,name\n1,a\n2,b\n');
      const out = join(dir, 'out.csv');
      const { urls } = await runLoading(
        dir,
        `name: csv\nsource:\n  connector: file\n  config: { path: ${JSON.stringify(join(dir, 'in-*.csv'))} }\n  format: csv\nsink:\n  connector: file\n  config: { path: ${JSON.stringify(out)} }\n  format: csv\n`,
      );
      expect(readFileSync(out, 'utf8')).toBe('id,name\n1,a\n2,b\n');
      // The check above sees these packages when they are loaded, so its empty list is not an accident of the hook.
      expect(ON_FIRST_USE.filter((p) => !packagesOf(urls).has(p))).toEqual([]);
      expect(urls).toContain(pathToFileURL(join(DIST, 'connectors', 'file', 'source.js')).href);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('importing the connector registry and the format table loads no client library', async () => {
    const args = JSON.stringify([pathToFileURL(join(DIST, 'connectors', 'index.js')).href, pathToFileURL(join(DIST, 'formats', 'index.js')).href]);
    const { stdout } = await promisify(execFile)(process.execPath, ['--no-warnings', '--input-type=module', '-e', CHILD, args], { cwd: ROOT });
    const r = JSON.parse(stdout) as { hooked: boolean; loaded: string[]; rss: number };
    const packages = packagesOf(r.loaded);
    // The check has to see modules at all, or an empty list would pass for the wrong reason (load hooks need 20.6).
    if (r.hooked) expect(packages.has('zod')).toBe(true);
    expect([...CLIENT_LIBRARIES, ...ON_FIRST_USE].filter((p) => packages.has(p))).toEqual([]);
    // Measured: ~24 MB (mostly zod) with lazy clients, ~60 MB with every client loaded.
    expect(r.rss / 1048576).toBeLessThan(40);
  });
});
