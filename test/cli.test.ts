import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { logLines, runCli, startCli, tempDir, waitFor } from './support/cli.js';

let tmp: ReturnType<typeof tempDir>;
afterEach(() => tmp?.cleanup());

const lines = (p: string) => readFileSync(p, 'utf8').split('\n').filter(Boolean);

describe('sluice CLI', () => {
  it('--version and --help exit 0; a bad command exits 2', async () => {
    tmp = tempDir();
    const v = await runCli(['--version'], { cwd: tmp.dir });
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const h = await runCli(['--help'], { cwd: tmp.dir });
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/run .*check .*connectors .*preview/s);
    const bad = await runCli(['frobnicate'], { cwd: tmp.dir });
    expect(bad.code).toBe(2);
  });

  it('run: generator -> file writes exactly `count` records and exits 0 by itself', async () => {
    tmp = tempDir();
    tmp.write('p.yaml', `
name: gen
source: { connector: generator, config: { template: iot, count: 25000, interval: 0, seed: 7 } }
sink: { connector: file, config: { path: out.jsonl } }
`);
    const r = await runCli(['run', 'p.yaml', '--log-format', 'json'], { cwd: tmp.dir });
    expect(r.stderr).not.toMatch(/"level":50/);
    expect(r.code).toBe(0);
    const out = lines(join(tmp.dir, 'out.jsonl'));
    expect(out).toHaveLength(25000);
    const first = JSON.parse(out[0]!);
    expect(first).toHaveProperty('device');
    const done = logLines(r.stderr).find((l) => l.msg === 'done')!;
    expect(done).toMatchObject({ records_in: 25000, records_out: 25000 });
  });

  it('check: prints every error as file:line:col and exits 2; a valid file exits 0', async () => {
    tmp = tempDir();
    tmp.write('bad.yaml', `name: x
source:
  connector: generator
  config: { templat: iot }
sink: { connector: nowhere }
`);
    const r = await runCli(['check', 'bad.yaml'], { cwd: tmp.dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("bad.yaml:4:13: source.config.templat: unknown option 'templat'; did you mean 'template'?");
    expect(r.stderr).toMatch(/bad\.yaml:5:\d+: sink\.connector: unknown connector 'nowhere'/);
    tmp.write('good.yaml', 'source: { connector: generator }\nsink: { connector: blackhole }\n');
    const ok = await runCli(['check', 'good.yaml'], { cwd: tmp.dir });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/generator \(json\) -> blackhole/);
    const missing = await runCli(['check', 'nope.yaml'], { cwd: tmp.dir });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('nope.yaml:1:1: file not found');
  });

  it('connectors: lists connectors and one connector as text and JSON Schema', async () => {
    tmp = tempDir();
    const all = await runCli(['connectors'], { cwd: tmp.dir });
    expect(all.code).toBe(0);
    for (const n of ['generator', 'file', 'memory', 'stdout', 'blackhole']) expect(all.stdout).toContain(n);
    const one = await runCli(['connectors', 'generator'], { cwd: tmp.dir });
    expect(one.stdout).toMatch(/interval \(duration\) \[default "200ms"\]/);
    expect(one.stdout).toMatch(/aliases: .*message_count/);
    const js = await runCli(['connectors', 'file', '--json'], { cwd: tmp.dir });
    const doc = JSON.parse(js.stdout);
    expect(doc.source.options.type).toBe('object');
    expect(doc.source.options.properties.path.aliases).toContain('paths');
    const unknown = await runCli(['connectors', 'kafkaa'], { cwd: tmp.dir });
    expect(unknown.code).toBe(2);
  });

  it('preview: prints decoded records without writing to the sink or committing', async () => {
    tmp = tempDir();
    tmp.write('in.csv', 'id,name\n1,a\n2,b\n3,c\n');
    tmp.write('p.yaml', `
source: { connector: file, config: { path: in.csv }, format: csv }
sink: { connector: file, config: { path: out.jsonl } }
`);
    const r = await runCli(['preview', 'p.yaml', '--limit', '2'], { cwd: tmp.dir });
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual([
      { id: '1', name: 'a' },
      { id: '2', name: 'b' },
    ]);
    expect(r.stderr).toMatch(/inferred schema: id int64 NOT NULL, name string NOT NULL/);
    expect(existsSync(join(tmp.dir, 'out.jsonl'))).toBe(false);
    // The real run afterwards still sees every record: preview moved no checkpoint.
    const run = await runCli(['run', 'p.yaml', '--log-format', 'json'], { cwd: tmp.dir });
    expect(run.code).toBe(0);
    expect(lines(join(tmp.dir, 'out.jsonl'))).toHaveLength(3);
  });
});

describe('bad data policies on a CSV file with bad rows', () => {
  const csv = 'id,price\n1,10.5\n2,abc\n3,7\n4\n5,1.25\n';
  const pipeline = (policy: string) => `
source:
  connector: file
  config: { path: in.csv }
  format: csv
  schema: { fields: [{ name: id, type: int64 }, { name: price, type: float64 }] }
  bad_data: ${policy}
sink: { connector: file, config: { path: out.jsonl } }
${policy === 'dlq' ? 'dlq: { connector: file, config: { path: dead.jsonl } }' : ''}
`;

  it('fail: stops with exit 1 naming the file and line', async () => {
    tmp = tempDir();
    tmp.write('in.csv', csv);
    tmp.write('p.yaml', pipeline('fail'));
    const r = await runCli(['run', 'p.yaml', '--log-format', 'json'], { cwd: tmp.dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/in\.csv:3: field 'price': expected float64, got string 'abc'/);
    // The batch holding the bad row is not acknowledged, so nothing at or after it was written.
    const written = lines(join(tmp.dir, 'out.jsonl')).map((l) => JSON.parse(l).id);
    expect(written).not.toContain(2);
    expect(written).not.toContain(3);
  });

  it('drop: keeps the good rows and counts the bad ones', async () => {
    tmp = tempDir();
    tmp.write('in.csv', csv);
    tmp.write('p.yaml', pipeline('drop'));
    const r = await runCli(['run', 'p.yaml', '--log-format', 'json'], { cwd: tmp.dir });
    expect(r.code).toBe(0);
    expect(lines(join(tmp.dir, 'out.jsonl')).map((l) => JSON.parse(l))).toEqual([
      { id: 1, price: 10.5 },
      { id: 3, price: 7 },
      { id: 5, price: 1.25 },
    ]);
    expect(r.stderr).toMatch(/dropped bad records/);
  });

  it('dlq: writes each bad row with its original text, error, field and position', async () => {
    tmp = tempDir();
    tmp.write('in.csv', csv);
    tmp.write('p.yaml', pipeline('dlq'));
    const r = await runCli(['run', 'p.yaml', '--log-format', 'json'], { cwd: tmp.dir });
    expect(r.code).toBe(0);
    expect(lines(join(tmp.dir, 'out.jsonl'))).toHaveLength(3);
    const dead = lines(join(tmp.dir, 'dead.jsonl')).map((l) => JSON.parse(l));
    expect(dead).toHaveLength(2);
    expect(dead[0]).toMatchObject({ raw: '2,abc', field: 'price', error_class: 'SCHEMA', metadata: { _line: 3 } });
    expect(dead[1]).toMatchObject({ raw: '4', error_class: 'DECODE', metadata: { _line: 5 } });
  });
});

describe('shutdown and backpressure', () => {
  it('SIGTERM drains in-flight records and commits; a restart resumes without loss or duplicates', async () => {
    tmp = tempDir();
    const n = 200_000;
    let text = '';
    for (let i = 0; i < n; i++) text += `{"id":${i}}\n`;
    writeFileSync(join(tmp.dir, 'in.jsonl'), text);
    // The sink is slowed down so the stop lands mid-file.
    tmp.write('p.yaml', `
name: copy
source: { connector: file, config: { path: in.jsonl } }
sink: { connector: file, config: { path: out.jsonl, fsync: false } }
batch: { max_records: 500 }
`);
    tmp.write('slow.yaml', `
name: copy
source: { connector: file, config: { path: in.jsonl } }
sink: { connector: file, config: { path: out.jsonl, fsync: true } }
batch: { max_records: 50 }
`);
    const first = startCli(['run', 'slow.yaml', '--log-format', 'json', '--stats-interval', '0'], { cwd: tmp.dir });
    await waitFor(() => existsSync(join(tmp.dir, 'out.jsonl')) && readFileSync(join(tmp.dir, 'out.jsonl')).length > 10_000, 30_000, 'first records');
    first.child.kill('SIGTERM');
    const r1 = await first.result;
    expect(r1.code).toBe(0);
    const done1 = logLines(r1.stderr).find((l) => l.msg === 'done')!;
    const afterStop = lines(join(tmp.dir, 'out.jsonl')).length;
    expect(afterStop).toBe(done1.records_out);
    expect(afterStop).toBeLessThan(n);
    const r2 = await runCli(['run', 'p.yaml', '--log-format', 'json'], { cwd: tmp.dir });
    expect(r2.code).toBe(0);
    const ids = lines(join(tmp.dir, 'out.jsonl')).map((l) => JSON.parse(l).id as number);
    expect(ids).toHaveLength(n);
    expect(ids).toEqual(Array.from({ length: n }, (_, i) => i));
  });

  it('a sink 10x slower than the source keeps memory bounded', async () => {
    tmp = tempDir();
    tmp.write('p.yaml', `
name: slow
source: { connector: generator, config: { template: iot, interval: 0 } }
sink: { connector: blackhole, config: { delay_per_batch: 20ms } }
buffer: { max_records: 5000 }
`);
    const run = startCli(['run', 'p.yaml', '--log-format', 'json', '--stats-interval', '200ms'], { cwd: tmp.dir });
    let stderr = '';
    run.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor(() => logLines(stderr).filter((l) => l.msg === 'progress' && (l.records_out as number) > 20_000).length >= 3, 30_000, 'progress');
    run.child.kill('SIGTERM');
    const r = await run.result;
    expect(r.code).toBe(0);
    const progress = logLines(r.stderr).filter((l) => l.msg === 'progress');
    // The source is held back: what entered never runs far ahead of what the sink took.
    for (const p of progress) expect((p.records_in as number) - (p.records_out as number)).toBeLessThanOrEqual(5000 + 1000);
    const done = logLines(r.stderr).find((l) => l.msg === 'done')!;
    expect(done.peak_rss_mb as number).toBeLessThan(200);
  });
});

describe('SQL pipelines', () => {
  it('run: a .sql file with CREATE TABLE ... WITH and INSERT INTO ... SELECT, and a YAML transform', async () => {
    tmp = tempDir();
    tmp.write('p.sql', `
-- Numbers, doubled and labelled; rows up to 5 are filtered out.
CREATE TABLE gen (id BIGINT) WITH (connector = 'generator', template = 'sequence', count = '10', interval = '0', type = 'source');
CREATE TABLE out WITH (connector = 'file', path = 'out.jsonl', type = 'sink');
INSERT INTO out SELECT id * 2 AS twice, CASE WHEN id % 2 = 0 THEN 'even' ELSE 'odd' END AS parity FROM gen WHERE id > 5;
`);
    const r = await runCli(['run', 'p.sql', '--log-format', 'json'], { cwd: tmp.dir });
    expect(r.code).toBe(0);
    expect(lines(join(tmp.dir, 'out.jsonl')).map((l) => JSON.parse(l))).toEqual([
      { twice: 12, parity: 'even' },
      { twice: 14, parity: 'odd' },
      { twice: 16, parity: 'even' },
      { twice: 18, parity: 'odd' },
    ]);
    tmp.write('t.yaml', `
source: { connector: generator, config: { template: sequence, count: 4, interval: 0 }, bad_data: dlq }
transform: "SELECT id, 10 / (id - 2) AS x"
sink: { connector: file, config: { path: t.jsonl } }
dlq: { connector: file, config: { path: dead.jsonl } }
`);
    const t = await runCli(['run', 't.yaml', '--log-format', 'json'], { cwd: tmp.dir });
    expect(t.code).toBe(0);
    expect(lines(join(tmp.dir, 't.jsonl')).map((l) => JSON.parse(l))).toEqual([
      { id: 0, x: -5 },
      { id: 1, x: -10 },
      { id: 3, x: 10 },
    ]);
    expect(JSON.parse(lines(join(tmp.dir, 'dead.jsonl'))[0]!)).toMatchObject({ error: 'division by zero' });
  });

  it('check: a SQL syntax error and an unknown column in a YAML transform point at their positions', async () => {
    tmp = tempDir();
    tmp.write('bad.sql', "CREATE TABLE t (id BIGINT\nWITH (connector = 'generator');\n");
    const r = await runCli(['check', 'bad.sql'], { cwd: tmp.dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.sql:2:1: .*expected/);
    tmp.write('t.yaml', 'source: { connector: generator, config: { template: sequence }, schema: { fields: { id: int64 } } }\ntransform: "SELECT idd"\nsink: { connector: blackhole }\n');
    const c = await runCli(['check', 't.yaml'], { cwd: tmp.dir });
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/unknown column 'idd'; did you mean 'id'\?/);
  });
});
