// commit_mode: exactly_once across kill -9: `sluice run` copying 120k JSON lines from two files into rotated output
// files is killed at random points and restarted until it finishes; the output directory then holds every record
// exactly once, in order. After every kill, what the commit manifest declares committed is a gap-free prefix of the
// input.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../testing/harness.js';
import { loadConfigText } from '../../config/load.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const CLI = join(ROOT, 'bin', 'sluice.js');
const children: ChildProcess[] = [];

function run(file: string, dataDir: string): { child: ChildProcess; exited: Promise<number | null>; output: () => string } {
  const child = spawn(process.execPath, [CLI, 'run', file, '--data-dir', dataDir, '--log-format', 'json', '--no-status'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, exited: new Promise((r) => child.once('exit', (c) => r(c))), output: () => out.slice(-3000) };
}

const ids = (text: string) =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { id: number }).id);

/** Lines in the output directory, in-progress files included (committed or not). */
function linesWritten(out: string): number {
  if (!existsSync(out)) return 0;
  let n = 0;
  for (const f of readdirSync(out)) {
    const b = readFileSync(join(out, f));
    for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) n++;
  }
  return n;
}

/** Final files in series order (out.jsonl, out.1.jsonl, ...). */
function finals(out: string): string[] {
  const num = (f: string) => (f === 'out.jsonl' ? 0 : Number(/^out\.(\d+)\.jsonl$/.exec(f)![1]));
  return readdirSync(out)
    .filter((f) => !f.startsWith('.'))
    .sort((a, b) => num(a) - num(b));
}

describe('exactly-once config checks', () => {
  const sink = "sink: { connector: file, config: { path: out.jsonl, commit_mode: exactly_once } }";
  it('refuses an exactly-once sink beside a dlq sink or routes, naming the sink', () => {
    const withDlq = ['source: { connector: file, config: { path: in.jsonl } }', sink, 'dlq: { connector: file, config: { path: dead.jsonl } }', ''].join('\n');
    expect(() => loadConfigText(withDlq, 'p.yaml')).toThrow(/p\.yaml:2:\d+: sink: an exactly-once sink cannot be combined with a `dlq:` sink/);
    const withRoutes = [
      'source: { connector: file, config: { path: in.jsonl } }',
      sink,
      'routes:',
      '  - { name: a, when: { field: t, equals: a }, sink: { connector: file, config: { path: a.jsonl } } }',
      '',
    ].join('\n');
    expect(() => loadConfigText(withRoutes, 'p.yaml')).toThrow(/exactly-once sink cannot be combined with `routes`/);
    expect(() => loadConfigText(['source: { connector: file, config: { path: in.jsonl } }', sink, ''].join('\n'), 'p.yaml')).not.toThrow();
  });
});

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

describe.skipIf(!existsSync(join(ROOT, 'dist', 'cli', 'main.js')))('file sink commit_mode: exactly_once across kill -9', () => {
  it('120k records, killed 6 times at random points: every record exactly once, in order', async () => {
    const N = 120_000;
    const dir = mkdtempSync(join(tmpdir(), 'sluice-file-eo-'));
    try {
      let a = '';
      let b = '';
      for (let i = 0; i < N / 2; i++) a += `{"id":${i},"v":"value ${i}"}\n`;
      for (let i = N / 2; i < N; i++) b += `{"id":${i},"v":"value ${i}"}\n`;
      writeFileSync(join(dir, 'in-a.jsonl'), a);
      writeFileSync(join(dir, 'in-b.jsonl'), b);
      const out = join(dir, 'out');
      const yaml = [
        'name: eo',
        `source: { connector: file, config: { path: ${JSON.stringify(join(dir, 'in-*.jsonl'))} }, format: json }`,
        `sink: { connector: file, config: { path: ${JSON.stringify(join(out, 'out.jsonl'))}, rotate_size: 512KiB, commit_mode: exactly_once }, format: json }`,
        'batch: { max_records: 700, linger: 1ms }',
        '',
      ].join('\n');
      const file = join(dir, 'p.yaml');
      writeFileSync(file, yaml);
      loadConfigText(yaml, file);
      const data = join(dir, 'data');
      const manifest = join(data, 'pipelines', 'eo', 'file-sink-sink.commit.json');
      let committed = 0;
      for (let k = 0; k < 6; k++) {
        const p = run(file, data);
        if (k % 3 === 2) {
          // A kill at a random moment of start-up and recovery rather than mid-stream.
          await new Promise((r) => setTimeout(r, Math.random() * 400));
        } else {
          const target = Math.min(N - 2000, committed + 1000 + Math.floor(Math.random() * ((N - committed) / 5)));
          await waitFor(() => linesWritten(out) >= target || p.child.exitCode !== null, `${target} lines written (${p.output()})`, 60_000, 5);
        }
        p.child.kill('SIGKILL');
        await p.exited;
        // Committed = the final files plus the in-progress file up to the length the manifest names.
        const m = JSON.parse(readFileSync(manifest, 'utf8')) as { open?: { tmp: string; length: number }; renaming?: { tmp: string; final: string } };
        let text = '';
        for (const f of finals(out)) text += readFileSync(join(out, f), 'utf8');
        if (m.renaming && existsSync(m.renaming.tmp)) text += readFileSync(m.renaming.tmp, 'utf8');
        if (m.open) text += readFileSync(m.open.tmp).subarray(0, m.open.length).toString('utf8');
        const got = ids(text);
        expect(got.length, `kill ${k}`).toBeGreaterThanOrEqual(committed);
        expect(got.every((id, i) => id === i), `kill ${k}: committed output is the input's first ${got.length} records`).toBe(true);
        committed = got.length;
        // The source's own checkpoints trail the sink's by a moment, so a kill rarely falls between them; dropping
        // them (the state store, not the sink's manifest) shows the source resumes from the position in the manifest.
        if (k % 2 === 1) for (const f of readdirSync(data)) if (f.startsWith('state.db')) rmSync(join(data, f));
      }
      const last = run(file, data);
      expect(await last.exited, last.output()).toBe(0);
      // Everything is final now: no in-progress file is left, and the series holds each record once, in order.
      expect(readdirSync(out).filter((f) => f.startsWith('.'))).toEqual([]);
      let text = '';
      for (const f of finals(out)) text += readFileSync(join(out, f), 'utf8');
      const got = ids(text);
      expect(got.length).toBe(N);
      expect(got.every((id, i) => id === i)).toBe(true);
      expect(finals(out).length).toBeGreaterThan(5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
