// `sluice dlq replay` through the built CLI: dead letters from a real run, corrected in the file and replayed; what
// is still bad (or malformed) stays in a remainder file; a dry run writes nothing.

import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, tempDir } from './support/cli.js';

let tmp: ReturnType<typeof tempDir>;
afterEach(() => tmp?.cleanup());

const lines = (p: string) => readFileSync(p, 'utf8').split('\n').filter(Boolean);
const rows = (p: string) => lines(p).map((l) => JSON.parse(l) as Record<string, unknown>);

const PIPELINE = `
name: prices
source:
  connector: file
  config: { path: in.jsonl }
  format: json
  schema: { fields: { id: int64, price: float64 } }
  metadata_fields: [_line]
sink: { connector: file, config: { path: out.jsonl } }
dlq: { connector: file, config: { path: dead.jsonl } }
`;

describe('sluice dlq replay', () => {
  it('replays corrected entries into the sink, keeps what is still bad in a remainder file, and reports each line', async () => {
    tmp = tempDir();
    tmp.write('p.yaml', PIPELINE);
    tmp.write('in.jsonl', ['{"id":1,"price":1.5}', '{"id":2,"price":"abc"}', '{"id":3,"price":', '{"id":4,"price":4}'].join('\n') + '\n');
    const run = await runCli(['run', 'p.yaml', '--log-format', 'json'], { cwd: tmp.dir });
    expect(run.code).toBe(0);
    expect(rows(join(tmp.dir, 'out.jsonl')).map((r) => r.id)).toEqual([1, 4]);
    const dead = rows(join(tmp.dir, 'dead.jsonl'));
    expect(dead.map((d) => d.raw)).toEqual(['{"id":2,"price":"abc"}', '{"id":3,"price":']);
    expect(dead[0]).toMatchObject({ stage: 'source', field: 'price', error_class: 'SCHEMA', pipeline: 'prices', metadata: { _line: 2 } });

    // The user corrects the first entry, leaves the second as it is, and a stray line sneaks in.
    const fixed = { ...dead[0], raw: '{"id":2,"price":2.5}' };
    writeFileSync(join(tmp.dir, 'dead.jsonl'), [JSON.stringify(fixed), JSON.stringify(dead[1]), 'oops, not an entry', '{"raw":7}'].join('\n') + '\n');

    const dry = await runCli(['dlq', 'replay', 'p.yaml', '--from', 'dead.jsonl', '--dry-run'], { cwd: tmp.dir });
    expect(dry.stderr).toBe('');
    expect(dry.stdout).toContain('dead.jsonl:1: would be written\n');
    expect(dry.stdout).toMatch(/dead\.jsonl:2: still bad: .*JSON/);
    expect(dry.code).toBe(1);
    expect(rows(join(tmp.dir, 'out.jsonl')).map((r) => r.id)).toEqual([1, 4]);
    expect(existsSync(join(tmp.dir, 'dead.remainder.jsonl'))).toBe(false);

    const r = await runCli(['dlq', 'replay', 'p.yaml', '--from', 'dead.jsonl'], { cwd: tmp.dir });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('dead.jsonl:1: written\n');
    expect(r.stdout).toMatch(/dead\.jsonl:2: still bad: /);
    expect(r.stdout).toMatch(/dead\.jsonl:3: malformed: not valid JSON/);
    expect(r.stdout).toContain("dead.jsonl:4: malformed: 'raw' must be a string");
    expect(r.stdout).toContain('4 entries: 1 written, 1 still bad, 2 malformed; 3 kept in dead.remainder.jsonl');
    // The replayed record went through the schema and took its original metadata along.
    expect(rows(join(tmp.dir, 'out.jsonl'))).toEqual([
      { id: 1, price: 1.5, _line: 1 },
      { id: 4, price: 4, _line: 4 },
      { id: 2, price: 2.5, _line: 2 },
    ]);
    const rest = lines(join(tmp.dir, 'dead.remainder.jsonl'));
    expect(rest).toHaveLength(3);
    expect(JSON.parse(rest[0]!)).toMatchObject({ raw: '{"id":3,"price":', stage: 'source', attempts: 2, metadata: { _line: 3 } });
    expect(rest.slice(1)).toEqual(['oops, not an entry', '{"raw":7}']);

    // Corrected again, the remainder replays cleanly and exits 0.
    writeFileSync(join(tmp.dir, 'dead.remainder.jsonl'), JSON.stringify({ ...JSON.parse(rest[0]!), raw: '{"id":3,"price":3}' }) + '\n');
    const again = await runCli(['dlq', 'replay', 'p.yaml', '--from', 'dead.remainder.jsonl'], { cwd: tmp.dir });
    expect(again.stdout).toContain('1 entries: 1 written, 0 still bad, 0 malformed');
    expect(again.code).toBe(0);
    expect(rows(join(tmp.dir, 'out.jsonl')).map((x) => x.id)).toEqual([1, 4, 2, 3]);
  });

  it('sends rows a sink refused to their own output, decodes base64 payloads, and skips entries of other pipelines', async () => {
    tmp = tempDir();
    tmp.write('p.yaml', `
name: split
source: { connector: file, config: { path: in.jsonl }, format: json }
routes:
  - name: cheap
    when: { field: kind, equals: cheap }
    sink: { connector: file, config: { path: cheap.jsonl } }
sink: { connector: file, config: { path: other.jsonl } }
`);
    tmp.write('in.jsonl', '');
    const entries = [
      { raw: '{"kind":"cheap","id":1}', raw_encoding: 'utf8', raw_kind: 'row', stage: 'sink', output: 'cheap', pipeline: 'split', attempts: 3 },
      { raw: Buffer.from('{"kind":"dear","id":2}').toString('base64'), raw_encoding: 'base64', stage: 'source', pipeline: 'split' },
      { raw: '{"id":3}', pipeline: 'another' },
      { raw: '{"id":4}', raw_kind: 'row', output: 'gone', pipeline: 'split' },
      { raw: '{"id":5}', raw_encoding: 'hex' },
    ];
    tmp.write('dead.jsonl', entries.map((e) => JSON.stringify(e)).join('\n') + '\n');
    const r = await runCli(['dlq', 'replay', 'p.yaml', '--from', 'dead.jsonl', '--remainder', 'left.jsonl'], { cwd: tmp.dir });
    expect(r.stdout).toContain('dead.jsonl:1: written\n');
    expect(r.stdout).toContain('dead.jsonl:2: written\n');
    expect(r.stdout).toContain("dead.jsonl:3: skipped: it is from pipeline 'another'");
    expect(r.stdout).toContain("dead.jsonl:4: skipped: pipeline 'split' has no output 'gone'");
    expect(r.stdout).toContain("dead.jsonl:5: malformed: raw_encoding must be 'utf8' or 'base64', got \"hex\"");
    expect(r.code).toBe(1);
    expect(rows(join(tmp.dir, 'cheap.jsonl'))).toEqual([{ kind: 'cheap', id: 1 }]);
    expect(rows(join(tmp.dir, 'other.jsonl'))).toEqual([{ kind: 'dear', id: 2 }]);
    expect(lines(join(tmp.dir, 'left.jsonl')).map((l) => JSON.parse(l).raw)).toEqual(['{"id":3}', '{"id":4}', '{"id":5}']);
  });

  it('usage errors exit 2 with a clear message', async () => {
    tmp = tempDir();
    tmp.write('p.yaml', PIPELINE);
    const noFrom = await runCli(['dlq', 'replay', 'p.yaml'], { cwd: tmp.dir });
    expect(noFrom.code).toBe(2);
    expect(noFrom.stderr).toMatch(/--from <path>/);
    const missing = await runCli(['dlq', 'replay', 'p.yaml', '--from', 'nope.jsonl'], { cwd: tmp.dir });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('sluice: --from nope.jsonl: file not found');
  });
});
