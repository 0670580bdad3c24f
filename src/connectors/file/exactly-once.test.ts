// commit_mode: exactly_once across kill -9: `sluice run` copying 120k JSON lines from two files into rotated output
// files is killed at random points and restarted until it finishes; the output directory then holds every record
// exactly once, in order. After every kill, what the commit manifest declares committed is a gap-free prefix of the
// input.

import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parsedOptions, sinkContext, waitFor } from '../../testing/harness.js';
import { createFormat } from '../../formats/index.js';
import { spec } from './index.js';
import { loadConfigText } from '../../config/load.js';
import { CLI_BUILT, runPipeline, stopChildren } from '../../testing/cli-child.js';
import { finals, linesWritten, writeIdInputs } from '../../testing/file-output.js';


const ids = (text: string) =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { id: number }).id);

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

// ---- the sink on its own: recovery after a crash at each step ----------------------------------------------------

const sinkOf = (options: Record<string, unknown>) => spec.sink!.create(parsedOptions(spec.sink!.options, options), { format: 'json' });
const jsonCtx = (dataDir: string, format = 'json') => sinkContext(createFormat({ name: format, options: {} }).encoder(), { dataDir });
const recs = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ value: { id: from + i } }));

describe('file sink commit_mode: exactly_once, recovery', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'sluice-file-eo-unit-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('keeps the file hidden until it rotates or stops; a reopened sink cuts an uncommitted tail and returns the stored position', async () => {
    const dir = tmp();
    const out = join(dir, 'out', 'o.jsonl');
    const data = join(dir, 'data');
    const sink = sinkOf({ path: out, commit_mode: 'exactly_once' });
    expect(sink.exactlyOnce).toBe(true);
    await sink.open(jsonCtx(data));
    expect(await sink.position!()).toBeUndefined();
    await sink.write(recs(0, 3), { f: { offset: 3 } });
    await sink.write(recs(3, 2), { f: { offset: 5 } });
    expect(readdirSync(join(dir, 'out'))).toEqual(['.o.jsonl.inprogress']);
    // A crash after bytes were written but before the manifest moved: garbage past the committed length.
    appendFileSync(join(dir, 'out', '.o.jsonl.inprogress'), '{"id":99}\n{"id":');
    const again = sinkOf({ path: out, commit_mode: 'exactly_once' });
    await again.open(jsonCtx(data));
    expect(await again.position!()).toEqual({ f: { offset: 5 } });
    await again.write(recs(5, 1), { f: { offset: 6 } });
    await again.close!();
    expect(readdirSync(join(dir, 'out'))).toEqual(['o.jsonl']);
    expect(ids(readFileSync(out, 'utf8'))).toEqual([0, 1, 2, 3, 4, 5]);
    // A final file is never written again: the next run starts the next one in the series.
    const third = sinkOf({ path: out, commit_mode: 'exactly_once' });
    await third.open(jsonCtx(data));
    expect(await third.position!()).toEqual({ f: { offset: 6 } });
    await third.write(recs(6, 1), { f: { offset: 7 } });
    await third.close!();
    expect(readdirSync(join(dir, 'out')).sort()).toEqual(['o.1.jsonl', 'o.jsonl']);
    expect(ids(readFileSync(join(dir, 'out', 'o.1.jsonl'), 'utf8'))).toEqual([6]);
  });

  it('finishes a rename the crash interrupted, and rotates by size with a CSV header in every file', async () => {
    const dir = tmp();
    const out = join(dir, 'r.csv');
    const data = join(dir, 'data');
    const sink = sinkOf({ path: out, commit_mode: 'exactly_once', rotate_size: 8 });
    await sink.open(jsonCtx(data, 'csv'));
    await sink.write(recs(0, 3), { p: 1 });
    await sink.write(recs(3, 3), { p: 2 });
    // Each batch passes 8 bytes: two complete files, each with its header.
    expect(readdirSync(dir).filter((f) => f.endsWith('.csv')).sort()).toEqual(['r.1.csv', 'r.csv']);
    expect(readFileSync(out, 'utf8')).toBe('id\n0\n1\n2\n');
    expect(readFileSync(join(dir, 'r.1.csv'), 'utf8')).toBe('id\n3\n4\n5\n');
    // A crash between the manifest's "renaming" entry and the rename itself: the next start completes it.
    const manifest = join(data, 'file-sink-sink.commit.json');
    const m = JSON.parse(readFileSync(manifest, 'utf8')) as Record<string, unknown>;
    renameSync(join(dir, 'r.1.csv'), join(dir, '.r.1.csv.inprogress'));
    writeFileSync(manifest, JSON.stringify({ ...m, renaming: { tmp: join(dir, '.r.1.csv.inprogress'), final: join(dir, 'r.1.csv') } }));
    const again = sinkOf({ path: out, commit_mode: 'exactly_once', rotate_size: 8 });
    await again.open(jsonCtx(data, 'csv'));
    expect(readdirSync(dir).filter((f) => f.endsWith('.csv') || f.endsWith('.inprogress')).sort()).toEqual(['r.1.csv', 'r.csv']);
    expect(await again.position!()).toEqual({ p: 2 });
    await again.close!();
  });

  it('Parquet: one complete file per batch, committed with its position', async () => {
    const dir = tmp();
    const data = join(dir, 'data');
    const sink = sinkOf({ path: join(dir, 'p.parquet'), commit_mode: 'exactly_once' });
    await sink.open(jsonCtx(data, 'parquet'));
    await sink.write(recs(0, 3), { p: 1 });
    await sink.write(recs(3, 2), { p: 2 });
    await sink.close!();
    expect(readdirSync(dir).filter((f) => f !== 'data').sort()).toEqual(['p.1.parquet', 'p.parquet']);
    const rows: unknown[] = [];
    const dec = createFormat({ name: 'parquet', options: {} }).decoder();
    for (const f of ['p.parquet', 'p.1.parquet']) dec.decode(readFileSync(join(dir, f)), rows, (e) => { throw e; });
    expect(rows.map((r) => Number((r as { id: unknown }).id))).toEqual([0, 1, 2, 3, 4]);
    const again = sinkOf({ path: join(dir, 'p.parquet'), commit_mode: 'exactly_once' });
    await again.open(jsonCtx(data, 'parquet'));
    expect(await again.position!()).toEqual({ p: 2 });
    await again.close!();
  });

  it('a failed write commits nothing and its retry writes the batch once; a broken manifest is a clear error', async () => {
    const dir = tmp();
    const out = join(dir, 'sub', 'f.jsonl');
    const data = join(dir, 'data');
    const sink = sinkOf({ path: out, commit_mode: 'exactly_once' });
    await sink.open(jsonCtx(data));
    await sink.write(recs(0, 2), { p: 1 });
    // The manifest cannot be written (a directory where its temporary copy goes): the write fails, nothing commits.
    const blocker = join(data, 'file-sink-sink.commit.json.tmp');
    mkdirSync(blocker);
    await expect(sink.write(recs(2, 2), { p: 2 })).rejects.toThrow(/cannot write the commit manifest/);
    rmdirSync(blocker);
    await sink.write(recs(2, 2), { p: 2 });
    await sink.close!();
    expect(ids(readFileSync(out, 'utf8'))).toEqual([0, 1, 2, 3]);
    writeFileSync(join(data, 'file-sink-sink.commit.json'), '{"v":1,');
    const broken = sinkOf({ path: out, commit_mode: 'exactly_once' });
    await expect(broken.open(jsonCtx(data))).rejects.toThrow(/commit manifest .* is not valid JSON/);
  });
});

afterAll(stopChildren);

describe.skipIf(!CLI_BUILT)('file sink commit_mode: exactly_once across kill -9', () => {
  it('120k records, killed 6 times at random points: every record exactly once, in order', async () => {
    const N = 120_000;
    const dir = mkdtempSync(join(tmpdir(), 'sluice-file-eo-'));
    try {
      const input = writeIdInputs(dir, N);
      const out = join(dir, 'out');
      const yaml = [
        'name: eo',
        `source: { connector: file, config: { path: ${JSON.stringify(input)} }, format: json }`,
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
        const p = runPipeline(file, data);
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
      const last = runPipeline(file, data);
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
