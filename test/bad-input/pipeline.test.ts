// Bad records through real pipelines (file source or a scripted byte source -> schema -> file sink, with a file
// dead-letter sink): every bad record becomes one dead-letter entry naming what is wrong and where, every good record
// reaches the sink in order, the pipeline completes in bounded time, and its counters add up.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import avro from 'avsc';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { startPipeline, type PipelineResult } from '../../src/core/runtime.js';
import { parseSchemaConfig } from '../../src/core/schema.js';
import type { ConnectorSpec } from '../../src/core/spec.js';
import type { SchemaSpec, SluiceRecord, Source } from '../../src/core/types.js';
import { createFormat } from '../../src/formats/index.js';
import { spec as fileSpec } from '../../src/connectors/file/index.js';
import { endpointDef, parsedOptions, pipelineDef, pipelineEnv } from '../../src/testing/harness.js';
import { FakeSchemaRegistry } from '../../src/testing/schema-registry.js';
import { expectReadable, mutatedBytes, params } from './support.js';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'sluice-bad-input-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

let runNo = 0;
const utf8 = (s: string) => Buffer.from(s, 'utf8');

function schemaOf(input: unknown): SchemaSpec {
  const r = parseSchemaConfig(input);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.value;
}

interface DlqEntry {
  error: string;
  error_class: string;
  field: string | null;
  raw: string;
  raw_encoding: string;
  metadata: Record<string, unknown>;
}

function readJsonLines(dir: string): Record<string, unknown>[] {
  let files: string[];
  try {
    files = readdirSync(dir).sort();
  } catch {
    return [];
  }
  const out: Record<string, unknown>[] = [];
  for (const f of files) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) if (line) out.push(JSON.parse(line) as Record<string, unknown>);
  }
  return out;
}

/** Runs one pipeline to completion (bounded) into a JSON file sink and a JSON file dead-letter sink. */
async function run(
  source: ReturnType<typeof endpointDef>,
  extra: ConnectorSpec[] = [],
): Promise<{ result: PipelineResult; rows: Record<string, unknown>[]; dead: DlqEntry[] }> {
  const dir = join(root, `run-${++runNo}`);
  const sink = endpointDef('file', parsedOptions(fileSpec.sink!.options, { path: join(dir, 'out', 'rows.jsonl') }));
  const dlq = endpointDef('file', parsedOptions(fileSpec.sink!.options, { path: join(dir, 'dlq', 'dead.jsonl') }));
  const env = pipelineEnv({ dataDir: join(dir, 'data'), extra: [fileSpec, ...extra] });
  const h = startPipeline(pipelineDef(`bad-${runNo}`, source, sink, { dlq, batch: { max_records: 50 } }), env);
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    h.done,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('pipeline did not finish within 20 s')), 20_000))),
  ]).finally(() => clearTimeout(timer));
  return { result, rows: readJsonLines(join(dir, 'out')), dead: readJsonLines(join(dir, 'dlq')) as unknown as DlqEntry[] };
}

/** The invariants every run must keep, whatever the input. */
function expectAccounted(r: Awaited<ReturnType<typeof run>>, good: number, bad: number) {
  expect(r.result.error?.message).toBeUndefined();
  expect(r.result.status).toBe('completed');
  expect(r.rows).toHaveLength(good);
  expect(r.dead).toHaveLength(bad);
  const s = r.result.stats;
  expect(s.records_out).toBe(good);
  expect(s.dlq).toBe(bad);
  expect(s.errors).toBe(bad);
  expect(s.records_in).toBe(s.records_out + s.dlq + s.dropped + s.filtered + s.unrouted);
  for (const d of r.dead) {
    expectReadable(d.error);
    expect(['DECODE', 'SCHEMA']).toContain(d.error_class);
    expect(['utf8', 'base64']).toContain(d.raw_encoding);
  }
}

// ---- line-framed files ----------------------------------------------------------------------------------------

type Line = { kind: 'good'; id: number; bytes: Buffer } | { kind: 'bad'; why: RegExp; field?: string; bytes: Buffer };

const validRow = (id: number) => `{"id":${id},"name":"n${id}","price":${id}.5}`;

/** JSON lines that must be rejected, each with the error it must give. */
const badJsonLine: fc.Arbitrary<Omit<Line & { kind: 'bad' }, 'kind'>> = fc.oneof(
  fc.nat({ max: 1000 }).chain((id) => fc.integer({ min: 1, max: validRow(id).length - 1 }).map((cut) => ({ why: /^invalid JSON (on line \d+ )?at position \d+/, bytes: utf8(validRow(id).slice(0, cut)) }))),
  fc.string({ minLength: 1, maxLength: 20 }).map((s) => ({ why: /^invalid JSON (on line \d+ )?at position \d+/, bytes: utf8(`#${s.replace(/[\r\n]/g, '')}`) })),
  fc.constantFrom([0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80]).map((b) => ({ why: /^invalid UTF-8 at byte \d+$/, bytes: Buffer.concat([utf8('{"id":'), Buffer.from(b), utf8('}')]) })),
  fc.constant({ why: /^JSON nested more than 1000 levels deep/, bytes: utf8(`${'{"a":'.repeat(40_000)}1${'}'.repeat(40_000)}`) }),
  fc.constant({ why: /exceeds max_line_bytes|longer than|too long/i, bytes: utf8(`{"id":1,"blob":"${'x'.repeat(300_000)}"}`) }),
  fc.integer().map((n) => ({ why: /^expected a JSON object, got number/, bytes: utf8(String(n)) })),
  fc.string({ minLength: 1, maxLength: 8 }).map((s) => ({ why: /^field 'price': /, field: 'price', bytes: utf8(`{"id":1,"name":"x","price":${JSON.stringify(`x${s}`)}}`) })),
  fc.constant({ why: /^field 'id': /, field: 'id', bytes: utf8(`{"id":"9223372036854775808","name":"x","price":1}`) }),
);

const jsonSchema = { fields: [{ name: 'id', type: 'int64', nullable: false }, { name: 'name', type: 'string' }, { name: 'price', type: 'float64' }] };

function linesFile(lines: Line[], header?: string): string {
  const path = join(root, `in-${++runNo}.txt`);
  const parts: Buffer[] = header ? [utf8(header + '\n')] : [];
  for (const l of lines) parts.push(l.bytes, utf8('\n'));
  writeFileSync(path, Buffer.concat(parts));
  return path;
}

function fileSource(path: string, format: string, schema?: SchemaSpec, formatOptions: Record<string, unknown> = {}) {
  return endpointDef('file', parsedOptions(fileSpec.source!.options, { path, max_line_bytes: '256KiB' }), {
    format: { name: format, options: formatOptions },
    schema,
    bad_data: 'dlq',
  });
}

/** The dead-letter entries name each bad line by its file line number, in file order. */
function expectLines(r: Awaited<ReturnType<typeof run>>, lines: Line[], firstLine: number) {
  const bad = lines.map((l, i) => ({ l, line: i + firstLine })).filter((x) => x.l.kind === 'bad');
  expect(r.dead.map((d) => Number(d.metadata._line))).toEqual(bad.map((b) => b.line));
  bad.forEach((b, i) => {
    const d = r.dead[i]!;
    const l = b.l as Line & { kind: 'bad' };
    expect(d.error).toMatch(l.why);
    if (l.field) expect(d.field).toBe(l.field);
    expect(String(d.metadata._path)).toContain('in-');
  });
  expect(r.rows.map((x) => x.id)).toEqual(lines.filter((l) => l.kind === 'good').map((l) => (l as { id: number }).id));
}

describe('a file pipeline with bad_data: dlq', () => {
  it('json: every bad line is one dead-letter entry with its line number and reason; good lines arrive in order', async () => {
    const line = fc.oneof(
      { weight: 3, arbitrary: fc.nat({ max: 1_000_000 }).map((id): Line => ({ kind: 'good', id, bytes: utf8(validRow(id)) })) },
      { weight: 2, arbitrary: badJsonLine.map((b): Line => ({ kind: 'bad', ...b })) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(line, { minLength: 1, maxLength: 40 }), async (lines) => {
        const r = await run(fileSource(linesFile(lines), 'json', schemaOf(jsonSchema)));
        expectAccounted(r, lines.filter((l) => l.kind === 'good').length, lines.filter((l) => l.kind === 'bad').length);
        expectLines(r, lines, 1);
      }),
      params(12),
    );
  });

  it('csv: wrong column counts, wrong types and invalid UTF-8 are dead letters naming the line and field', async () => {
    const csvSchema = schemaOf(jsonSchema);
    const line = fc.oneof(
      { weight: 3, arbitrary: fc.nat({ max: 1_000_000 }).map((id): Line => ({ kind: 'good', id, bytes: utf8(`${id},n${id},${id}.5`) })) },
      {
        weight: 2,
        arbitrary: fc.oneof(
          fc.array(fc.stringMatching(/^[a-z0-9]{1,4}$/), { minLength: 1, maxLength: 6 }).filter((a) => a.length !== 3).map((a): Line => ({ kind: 'bad', why: new RegExp(`^row has ${a.length} fields?, header has 3$`), bytes: utf8(a.join(',')) })),
          fc.stringMatching(/^[a-z]{1,5}$/).map((s): Line => ({ kind: 'bad', why: /^field 'price': /, field: 'price', bytes: utf8(`1,x,${s}`) })),
          fc.constant<Line>({ kind: 'bad', why: /^invalid UTF-8 at byte \d+$/, bytes: Buffer.from([0x31, 0x2c, 0xff, 0x2c, 0x31]) }),
        ),
      },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(line, { minLength: 1, maxLength: 40 }), async (lines) => {
        const r = await run(fileSource(linesFile(lines, 'id,name,price'), 'csv', csvSchema));
        expectAccounted(r, lines.filter((l) => l.kind === 'good').length, lines.filter((l) => l.kind === 'bad').length);
        expectLines(r, lines, 2);
      }),
      params(10),
    );
  });

  it('text: invalid UTF-8 lines are dead letters with the raw bytes in base64', async () => {
    const lines: Line[] = [
      { kind: 'good', id: 1, bytes: utf8('one') },
      { kind: 'bad', why: /^invalid UTF-8 at byte 2$/, bytes: Buffer.from([0x61, 0x62, 0xfe, 0x63]) },
      { kind: 'good', id: 3, bytes: utf8('three') },
    ];
    const r = await run(fileSource(linesFile(lines), 'text', undefined));
    expectAccounted(r, 2, 1);
    expect(r.rows.map((x) => x.value)).toEqual(['one', 'three']);
    expect(r.dead[0]).toMatchObject({ metadata: { _line: 2 }, raw_encoding: 'base64', raw: Buffer.from([0x61, 0x62, 0xfe, 0x63]).toString('base64') });
  });
});

describe('a parquet file pipeline with bad_data: dlq', () => {
  it('a corrupt file is one dead letter naming its path; the good file before it arrives whole', async () => {
    const f = createFormat({ name: 'parquet', options: {} });
    const good = f.encoder().encodeStream(Array.from({ length: 20 }, (_, i) => ({ id: i, name: `n${i}` })), true) as Uint8Array;
    const dir = join(root, `pq-${++runNo}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'a-good.parquet'), good);
    // Cut short: the footer (and the trailing magic) is gone, as after a crashed writer.
    writeFileSync(join(dir, 'b-bad.parquet'), good.subarray(0, Math.floor(good.length / 2)));
    writeFileSync(join(dir, 'c-random.parquet'), Buffer.from('PAR1 not really PAR1'));
    const r = await run(endpointDef('file', parsedOptions(fileSpec.source!.options, { path: join(dir, '*.parquet') }), { format: { name: 'parquet', options: {} }, bad_data: 'dlq' }));
    expectAccounted(r, 20, 2);
    expect(r.dead.map((d) => String(d.metadata._path).split('/').pop())).toEqual(['b-bad.parquet', 'c-random.parquet']);
    for (const d of r.dead) expect(d.error).toMatch(/Parquet/);
  });
});

// ---- binary payloads from a scripted source ---------------------------------------------------------------------

const scripts = new Map<string, Uint8Array[]>();
/** Emits the payloads registered under `name` in batches of 7, each with its index as `_offset`. */
const scripted: ConnectorSpec = {
  name: 'scripted',
  title: 'Scripted payloads (tests)',
  description: 'Emits fixed raw payloads.',
  source: {
    options: z.object({ name: z.string() }),
    create: (o: { name: string }): Source => ({
      async run(ctx) {
        const all = scripts.get(o.name)!;
        for (let i = 0; i < all.length; i += 7) {
          const records: SluiceRecord[] = all.slice(i, i + 7).map((value, k) => ({ value, meta: { _offset: i + k } }));
          await ctx.emit({ records, ack: i });
        }
      },
    }),
  },
} as unknown as ConnectorSpec;

function scriptedSource(payloads: Uint8Array[], format: string, options: Record<string, unknown>, schema?: SchemaSpec) {
  const name = `s${++runNo}`;
  scripts.set(name, payloads);
  return endpointDef('scripted', { name }, { format: { name: format, options }, schema, bad_data: 'dlq' });
}

/**
 * Mixes valid payloads with mutated ones; which mutations still decode is the decoder's business, so the property is
 * that every payload is accounted for exactly once (a row or a dead letter naming its offset) and valid ones arrive.
 */
async function binaryProperty(format: string, options: Record<string, unknown>, valid: (i: number) => Uint8Array, prepare?: () => Promise<void>) {
  const sample = valid(0);
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.oneof({ weight: 2, arbitrary: fc.nat({ max: 100_000 }).map((i) => ({ good: i })) }, { weight: 1, arbitrary: mutatedBytes(sample).map((b) => ({ bad: b })) }), {
        minLength: 1,
        maxLength: 30,
      }),
      async (items) => {
        await prepare?.();
        const payloads = items.map((x) => ('good' in x ? valid(x.good) : x.bad));
        const r = await run(scriptedSource(payloads, format, options), [scripted]);
        expect(r.result.status).toBe('completed');
        const s = r.result.stats;
        expect(s.records_in).toBe(s.records_out + s.dlq);
        expect(r.rows).toHaveLength(s.records_out);
        expect(r.dead).toHaveLength(s.dlq);
        for (const d of r.dead) {
          expectReadable(d.error);
          expect(['utf8', 'base64']).toContain(d.raw_encoding);
          expect(typeof d.metadata._offset).toBe('number');
        }
        // Every valid payload arrived (mutants that happen to decode may add rows, never remove one).
        const goodIds = items.filter((x) => 'good' in x).map((x) => (x as { good: number }).good);
        const seen = new Set(r.rows.map((x) => x.id));
        for (const id of goodIds) expect(seen.has(id)).toBe(true);
        // A payload either decoded or is a dead letter; never both silently lost.
        const deadOffsets = new Set(r.dead.map((d) => d.metadata._offset));
        items.forEach((x, i) => {
          if ('good' in x) expect(deadOffsets.has(i)).toBe(false);
        });
      },
    ),
    params(8),
  );
}

const avroSchema = {
  type: 'record',
  name: 'Row',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'name', type: 'string' },
    { name: 'tags', type: { type: 'array', items: 'string' } },
    { name: 'attrs', type: { type: 'map', values: 'double' } },
  ],
};
const avroType = avro.Type.forSchema(avroSchema as avro.Schema);
const avroBody = (i: number) => new Uint8Array(avroType.toBuffer({ id: i, name: `n${i}`, tags: ['a', String(i)], attrs: { x: i } }));

describe('binary formats in a pipeline with bad_data: dlq', () => {
  const reg = new FakeSchemaRegistry();
  let regId = 0;
  beforeAll(async () => {
    await reg.start();
    regId = reg.add('rows-value', avroSchema);
  });
  afterAll(async () => {
    await reg.stop();
  });

  it('raw avro: truncated, flipped and random payloads', async () => {
    await binaryProperty('avro', { schema: avroSchema, confluent_wire_format: false }, avroBody);
  });

  it('avro in the Confluent wire format with a registry: damaged headers (unknown ids) and bodies', async () => {
    const framed = (i: number) => {
      const body = avroBody(i);
      const out = new Uint8Array(5 + body.length);
      new DataView(out.buffer).setUint32(1, regId);
      out.set(body, 5);
      return out;
    };
    await binaryProperty('avro', { schema_registry_address: reg.url }, framed);
  });

  it('debezium-json: truncated, flipped and random change events', async () => {
    const source = { version: '2.5.0', connector: 'postgresql', name: 'db', ts_ms: 1, db: 'inv', schema: 'public', table: 't' };
    const event = (i: number) => utf8(JSON.stringify({ before: null, after: { id: i, email: `u${i}@x` }, source, op: 'c', ts_ms: 2 }));
    await binaryProperty('debezium-json', {}, event);
  });

  it('protobuf: truncated, flipped and random payloads', async () => {
    const proto = 'syntax = "proto3"; message Row { int64 id = 1; string name = 2; repeated string tags = 3; map<string, double> attrs = 4; }';
    const enc = createFormat({ name: 'protobuf', options: { proto, message: 'Row' } }).encoder();
    await binaryProperty('protobuf', { proto, message: 'Row' }, (i) => enc.encode({ id: i, name: `n${i}`, tags: ['a'], attrs: { x: i } }) as Uint8Array);
  });
});
