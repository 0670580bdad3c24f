// The durable buffer across kill -9: run the CLI on websocket -> file, kill it while messages stream in, restart it,
// and check that every message the buffer had appended before the kill reaches the file.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findConnector } from '../index.js';
import { startServer, waitFor, type TestServer } from './testkit.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const CLI = join(ROOT, 'bin', 'sluice.js');

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

interface Run {
  child: ChildProcess;
  /** The newest `buffer_appended` reported in a progress line. */
  appended: number;
  output: string;
  exited: Promise<number | null>;
}

function runCli(file: string, dataDir: string): Run {
  const child = spawn(process.execPath, [CLI, 'run', file, '--data-dir', dataDir, '--log-format', 'json', '--stats-interval', '50ms', '--no-status'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const r: Run = { child, appended: 0, output: '', exited: new Promise((res) => child.once('exit', (code) => res(code))) };
  let buf = '';
  const onData = (d: Buffer) => {
    r.output += d.toString();
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        const j = JSON.parse(line) as { msg?: string; source?: { buffer_appended?: number } };
        if (j.msg === 'progress' && typeof j.source?.buffer_appended === 'number') r.appended = Math.max(r.appended, j.source.buffer_appended);
      } catch {
        // not a log line
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  cleanup.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await r.exited;
  });
  return r;
}

function delivered(path: string): Set<number> {
  if (!existsSync(path)) return new Set();
  const out = new Set<number>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.add((JSON.parse(line) as { n: number }).n);
    } catch {
      // a torn last line from the kill
    }
  }
  return out;
}

// Needs the compiled CLI with the connector registered (`npm test` builds it first).
describe.skipIf(!existsSync(join(ROOT, 'dist', 'cli', 'main.js')) || !findConnector('websocket'))('durable buffer across kill -9', () => {
  it('delivers every message the buffer appended before the kill after a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-ws-crash-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const s: TestServer = await startServer();
    cleanup.push(() => s.close());
    let n = 0;
    let streaming = true;
    // A steady stream on whichever connection is open; numbering goes on across connections.
    const pump = setInterval(() => {
      if (!streaming) return;
      for (const c of s.live()) for (let i = 0; i < 200; i++) c.ws.send(JSON.stringify({ n: n++, pad: 'x'.repeat(100) }));
    }, 5);
    cleanup.push(() => clearInterval(pump));
    const out = join(dir, 'out.jsonl');
    const file = join(dir, 'p.yaml');
    writeFileSync(
      file,
      [
        'name: crash',
        'source:',
        '  connector: websocket',
        '  config:',
        `    url: ${s.url}`,
        '    buffer: durable',
        '    buffer_fsync: never',
        '    reconnect: { initial: 20ms, max: 200ms }',
        '  format: json',
        'sink:',
        '  connector: file',
        `  config: { path: ${JSON.stringify(out)} }`,
        '',
      ].join('\n'),
    );
    const data = join(dir, 'data');
    const first = runCli(file, data);
    await waitFor(() => first.appended >= 5000, `the buffer appends (output so far: ${first.output.slice(-500)})`, 20_000);
    first.child.kill('SIGKILL');
    await first.exited;
    const appendedBeforeKill = first.appended;
    streaming = false;

    const second = runCli(file, data);
    const want = () => {
      const got = delivered(out);
      for (let i = 0; i < appendedBeforeKill; i++) if (!got.has(i)) return false;
      return true;
    };
    await waitFor(() => second.output.includes('pipeline started'), 'the restarted pipeline runs', 20_000);
    await waitFor(want, `all ${appendedBeforeKill} appended messages in the file after the restart`, 20_000);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 60_000);
});
