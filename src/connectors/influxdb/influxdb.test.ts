import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { startPipeline } from '../../core/runtime.js';
import type { ConnectorSpec } from '../../core/spec.js';
import type { SluiceRecord, SourceContext } from '../../core/types.js';
import { SluiceError, formatIssue } from '../../core/errors.js';
import { endpointDef, parsedOptions, pipelineDef, pipelineEnv, sinkContext, waitFor } from '../../testing/harness.js';
import { parseOptions } from '../../core/spec.js';
import { spec } from './index.js';

// ---- a strict line-protocol parser, written from the InfluxDB reference independently of the encoder -------------

interface Point {
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, string | number | boolean | { int: string }>;
  timestamp?: string;
}

function parseLine(line: string): Point {
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`bad line protocol at ${i}: ${why}: ${JSON.stringify(line)}`);
  };
  // Reads an unquoted token; `stops` end it unless backslash-escaped; a backslash before anything else is literal.
  const token = (stops: string, escapable: string): string => {
    let out = '';
    while (i < line.length && !stops.includes(line[i]!)) {
      const c = line[i]!;
      if (c === '\\' && i + 1 < line.length && escapable.includes(line[i + 1]!)) {
        out += line[i + 1];
        i += 2;
      } else if (c === '\n') fail('newline');
      else {
        out += c;
        i++;
      }
    }
    return out;
  };
  const measurement = token(', ', ', ');
  if (!measurement) fail('empty measurement');
  const tags: Record<string, string> = {};
  while (line[i] === ',') {
    i++;
    const k = token('=', ', =');
    if (line[i] !== '=') fail('tag without =');
    i++;
    const v = token(', ', ', =');
    if (!k || !v) fail('empty tag key or value');
    tags[k] = v;
  }
  if (line[i] !== ' ') fail('expected a space before the fields');
  i++;
  const fields: Point['fields'] = {};
  for (;;) {
    const k = token('=', ', =');
    if (!k || line[i] !== '=') fail('field without key or =');
    i++;
    if (line[i] === '"') {
      i++;
      let s = '';
      for (;;) {
        if (i >= line.length) fail('unterminated string');
        const c = line[i]!;
        if (c === '\\' && (line[i + 1] === '"' || line[i + 1] === '\\')) {
          s += line[i + 1];
          i += 2;
        } else if (c === '"') {
          i++;
          break;
        } else if (c === '\\') fail('lone backslash in a string field');
        else {
          s += c;
          i++;
        }
      }
      fields[k] = s;
    } else {
      const raw = token(', ', '');
      if (/^-?\d+i$/.test(raw)) fields[k] = { int: raw.slice(0, -1) };
      else if (/^(t|T|true|True|TRUE)$/.test(raw)) fields[k] = true;
      else if (/^(f|F|false|False|FALSE)$/.test(raw)) fields[k] = false;
      else if (/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) fields[k] = Number(raw);
      else fail(`unparseable field value ${raw}`);
    }
    if (line[i] === ',') {
      i++;
      continue;
    }
    break;
  }
  let timestamp: string | undefined;
  if (line[i] === ' ') {
    i++;
    timestamp = line.slice(i);
    if (!/^-?\d+$/.test(timestamp)) fail('timestamp is not an integer');
    i = line.length;
  }
  if (i !== line.length) fail('trailing characters');
  return { measurement, tags, fields, timestamp };
}

/** Lines end at newlines outside quoted string field values. */
function splitLines(body: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  let inFields = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === '\\') i++;
    else if (c === ' ' && !quoted) inFields = true;
    else if (c === '"' && inFields) quoted = !quoted;
    else if (c === '\n' && !quoted) {
      out.push(body.slice(start, i));
      start = i + 1;
      inFields = false;
    }
  }
  out.push(body.slice(start));
  return out;
}

// ---- the InfluxDB double --------------------------------------------------------------------------------------------

interface Received {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  points: Point[];
}

interface Double {
  url: string;
  requests: Received[];
  /** Answers for the next requests, in order; then 204. */
  script: Array<{ status: number; body?: string; headers?: Record<string, string> }>;
  /** While true every write gets a 503. */
  down: boolean;
  /** Why bodies were rejected as invalid line protocol. */
  invalid: string[];
  close(): Promise<void>;
}

async function influxDouble(): Promise<Double> {
  const d: Double = { url: '', requests: [], script: [], down: false, invalid: [], close: async () => {} };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const u = new URL(req.url!, 'http://x');
      const body = Buffer.concat(chunks).toString('utf8');
      if (u.pathname === '/ping') {
        res.writeHead(204, { 'x-influxdb-version': 'double-1.0' }).end();
        return;
      }
      let points: Point[];
      try {
        points = body === '' ? [] : splitLines(body).map(parseLine);
      } catch (e) {
        d.invalid.push((e as Error).message);
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'invalid', message: (e as Error).message }));
        return;
      }
      d.requests.push({ method: req.method!, path: u.pathname, query: u.searchParams, headers: req.headers, points });
      const next = d.down ? { status: 503, body: '{"message":"down"}' } : d.script.shift();
      if (next) res.writeHead(next.status, { 'content-type': 'application/json', ...next.headers }).end(next.body ?? '');
      else res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  d.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  d.close = () => new Promise((r) => server.close(() => r()));
  return d;
}

function options(input: Record<string, unknown>) {
  return parsedOptions(spec.sink!.options, input);
}

async function openSink(input: Record<string, unknown>, schema?: { fields: any[] }) {
  const sink = spec.sink!.create(options(input), { format: 'json', schema });
  await sink.open(sinkContext({ encode: () => '', encodeStream: () => '', extension: 'json' }));
  return sink;
}

const rec = (value: unknown, timestamp?: number): SluiceRecord => ({ value, timestamp });

describe('influxdb sink', () => {
  let d: Double;
  beforeAll(async () => {
    d = await influxDouble();
  });
  afterAll(async () => {
    await d.close();
  });
  afterEach(() => {
    d.requests.length = 0;
    d.script.length = 0;
    d.down = false;
    // Every body the sink sent must have been valid line protocol.
    expect(d.invalid).toEqual([]);
  });

  it('validates options: seed aliases, v1/v2 inference, did-you-mean and conflicting roles', () => {
    const o = options({ addr: 'http://h:8086', db: 'metrics', rp: 'week', user: 'u', password: 'p', measurement: 'cpu', tsFieldName: 'ts', tag_fields: 'host,region' });
    expect(o).toMatchObject({ url: 'http://h:8086', database: 'metrics', retention_policy: 'week', username: 'u', timestamp_field: 'ts', tags: ['host', 'region'], precision: 'ms' });
    const issues = (input: Record<string, unknown>) => {
      const r = parseOptions(spec.sink!.options, input);
      return r.ok ? [] : r.issues.map(formatIssue);
    };
    expect(issues({ url: 'http://h', bucket: 'b', org: 'o', token: 't', measurement: 'm' })).toEqual([]);
    expect(issues({ url: 'http://h', bucket: 'b', org: 'o', measurment: 'm' }).join('\n')).toMatch(/did you mean 'measurement'/);
    expect(issues({ url: 'http://h', measurement: 'm' }).join('\n')).toMatch(/needs a database/);
    expect(issues({ url: 'http://h', bucket: 'b', measurement: 'm' }).join('\n')).toMatch(/needs an org/);
    expect(issues({ url: 'http://h', bucket: 'b', org: 'o', database: 'd', measurement: 'm' }).join('\n')).toMatch(/database is a v1 option/);
    expect(issues({ url: 'h:8086', db: 'd', measurement: 'm' }).join('\n')).toMatch(/http:\/\//);
    expect(issues({ url: 'http://h', db: 'd' }).join('\n')).toMatch(/exactly one of measurement/);
    expect(issues({ url: 'http://h', db: 'd', measurement: 'm', tags: ['a'], fields: ['a'] }).join('\n')).toMatch(/'a' is both the tags and the fields/);
    expect(issues({ url: 'http://h', db: 'd', measurement: 'm', precision: 'm' }).join('\n')).toMatch(/precision/);
  });

  it('v2: one POST per batch with Token auth, org/bucket/precision, and strictly valid escaped line protocol', async () => {
    const sink = await openSink(
      { url: d.url, org: 'acme', bucket: 'sensors', token: 's3cret', measurement: 'cpu load,1', tags: ['host', 'dc'], timestamp_field: 'ts', precision: 'ns' },
      { fields: [{ name: 'count', type: 'int64' }] },
    );
    await sink.write([
      rec({ host: 'a b,c=d', dc: 'eu\\1', ts: new Date('2024-01-02T03:04:05.678Z'), count: 7, load: 0.5, ok: true, note: 'say "hi" \\ bye\nnext', 'key with=eq,comma': 2, big: 2n ** 63n - 1n, obj: { x: [1] }, none: null }),
      rec({ host: 'h2', dc: '', ts: 1700000000123456789n, count: 8, load: 2 }),
    ]);
    expect(d.requests).toHaveLength(1);
    const r = d.requests[0]!;
    expect(r.path).toBe('/api/v2/write');
    expect(Object.fromEntries(r.query)).toEqual({ org: 'acme', bucket: 'sensors', precision: 'ns' });
    expect(r.headers.authorization).toBe('Token s3cret');
    expect(r.points).toEqual([
      {
        measurement: 'cpu load,1',
        tags: { host: 'a b,c=d', dc: 'eu\\1' },
        fields: { count: { int: '7' }, load: 0.5, ok: true, note: 'say "hi" \\ bye\nnext', 'key with=eq,comma': 2, big: { int: String(2n ** 63n - 1n) }, obj: '{"x":[1]}' },
        timestamp: '1704164645678000000',
      },
      // An empty tag value is left out (InfluxDB rejects it); an integer-valued JS number stays a float unless declared.
      { measurement: 'cpu load,1', tags: { host: 'h2' }, fields: { count: { int: '8' }, load: 2 }, timestamp: '1700000000123456789' },
    ]);
  });

  it('v1: database, retention policy, precision u, basic auth or u/p query; measurement from a field; explicit field list; event time', async () => {
    const basic = await openSink({ url: d.url + '/', database: 'db1', retention_policy: 'rp1', username: 'alice', password: 'pw', measurement_field: 'kind', fields: ['v'], precision: 'us' });
    await basic.write([rec({ kind: 'temp', v: 21.5, ignored: 'x' }, 1_700_000_000_123)]);
    const q = await openSink({ url: d.url, db: 'db1', user: 'alice', password: 'pw', auth_method: 'query', measurement: 'm', precision: 's' });
    await q.write([rec({ v: 1 }, 1_700_000_000_999)]);
    const [a, b] = d.requests;
    expect(a!.path).toBe('/write');
    expect(Object.fromEntries(a!.query)).toEqual({ db: 'db1', rp: 'rp1', precision: 'u' });
    expect(a!.headers.authorization).toBe(`Basic ${Buffer.from('alice:pw').toString('base64')}`);
    expect(a!.points).toEqual([{ measurement: 'temp', tags: {}, fields: { v: 21.5 }, timestamp: '1700000000123000' }]);
    expect(Object.fromEntries(b!.query)).toEqual({ db: 'db1', precision: 's', u: 'alice', p: 'pw' });
    expect(b!.headers.authorization).toBeUndefined();
    expect(b!.points[0]!.timestamp).toBe('1700000000');
  });

  it('retries 5xx and 429 honouring Retry-After, then succeeds', async () => {
    const sink = await openSink({ url: d.url, org: 'o', bucket: 'b', measurement: 'm', max_retries: 3 });
    d.script.push({ status: 503, body: '{"message":"busy"}' }, { status: 429, body: '{"message":"slow down"}', headers: { 'retry-after': '1' } });
    const t0 = Date.now();
    await sink.write([rec({ v: 1 })]);
    expect(d.requests).toHaveLength(3);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(d.requests[2]!.points).toEqual([{ measurement: 'm', tags: {}, fields: { v: 1 }, timestamp: undefined }]);
  });

  it('gives up retriably after max_retries, and fails at once on 4xx with InfluxDB’s message; secrets stay out of errors', async () => {
    const sink = await openSink({ url: d.url, db: 'd', username: 'u', password: 'hunter2', auth_method: 'query', measurement: 'm', max_retries: 1, max_retry_delay: '10ms' });
    d.down = true;
    const e1 = await sink.write([rec({ v: 1 })]).catch((e: unknown) => e as SluiceError);
    expect(e1).toBeInstanceOf(SluiceError);
    expect((e1 as SluiceError).retriable).toBe(true);
    expect((e1 as SluiceError).message).toMatch(/HTTP 503: down/);
    expect(d.requests).toHaveLength(2);
    d.down = false;
    d.requests.length = 0;
    d.script.push({ status: 400, body: '{"error":"partial write: field type conflict: input field \\"v\\" is type float, already exists as type integer"}' });
    const e2 = (await sink.write([rec({ v: 1 })]).catch((e: unknown) => e)) as SluiceError;
    expect(e2.retriable).toBe(false);
    expect(e2.message).toContain("database 'd' at http://127.0.0.1");
    expect(e2.message).toContain('field type conflict');
    expect(e2.message).not.toContain('hunter2');
    expect(d.requests).toHaveLength(1);
    d.script.push({ status: 401, body: '{"error":"authorization failed"}' });
    const e3 = (await sink.write([rec({ v: 1 })]).catch((e: unknown) => e)) as SluiceError;
    expect(e3.code).toBe('AUTH');
    expect(e3.retriable).toBe(false);
  });

  it('a record that cannot be a point fails the write without a request and names why', async () => {
    const sink = await openSink({ url: d.url, org: 'o', bucket: 'b', measurement: 'm', tags: ['host'] });
    await expect(sink.write([rec({ v: 1 }), rec({ host: 'x', v: null })])).rejects.toThrow(/record 2 of the batch .*no field values/);
    await expect(sink.write([rec({ v: 1, ts: 1 })].map((r) => ({ ...r, value: 'text' })))).rejects.toThrow(/must be an object/);
    await expect(sink.write([rec({ host: 'ends with\\', v: 1 })])).rejects.toThrow(/tag value 'ends with\\' has a backslash at its end/);
    expect(d.requests).toHaveLength(0);
  });

  it('test() pings the server and checks that writing is allowed', async () => {
    const steps: string[] = [];
    await spec.test!({ url: d.url, org: 'o', bucket: 'b', token: 't', measurement: 'm' }, 'sink', (s) => steps.push(s.message), new AbortController().signal);
    expect(steps).toEqual([`reached InfluxDB at ${d.url}/ (version double-1.0)`, "credentials accepted for writing to bucket 'b'"]);
    d.script.push({ status: 404, body: '{"message":"bucket \\"b\\" not found"}' });
    await expect(spec.test!({ url: d.url, org: 'o', bucket: 'b', measurement: 'm' }, 'sink', () => {}, new AbortController().signal)).rejects.toThrow(/not found/);
  });

  it('in a pipeline, nothing is committed while InfluxDB is down; everything is, once it accepts the points', async () => {
    const committed: unknown[] = [];
    const source: ConnectorSpec = {
      name: 'counter',
      title: '',
      description: '',
      source: {
        options: z.object({}),
        create: () => ({
          async run(ctx: SourceContext) {
            for (let b = 0; b < 5; b++) {
              const records = Array.from({ length: 200 }, (_, i) => ({ value: { n: b * 200 + i, host: `h${i % 3}` } }));
              await ctx.emit({ records, decoded: true, ack: b });
            }
          },
          commit(acks: unknown[]) {
            committed.push(...acks);
          },
        }),
      },
    };
    d.down = true;
    const sinkOptions = options({ url: d.url, org: 'o', bucket: 'b', measurement: 'm', tags: ['host'], max_retries: 0 });
    const p = startPipeline(
      pipelineDef('influx-ack', endpointDef('counter', {}), endpointDef('influxdb', sinkOptions), { retry: { max_attempts: 1000 }, batch: { max_records: 500 } }),
      pipelineEnv({ dataDir: '/tmp/sluice-influx-test', extra: [source, spec] }),
    );
    try {
      await waitFor(() => d.requests.length >= 3, 'the sink to try a few writes while InfluxDB is down');
      expect(committed).toEqual([]);
      d.down = false;
      await waitFor(() => committed.length === 5, 'every batch to be committed');
      expect(committed).toEqual([0, 1, 2, 3, 4]);
      const ok = new Set<number>();
      for (const r of d.requests) for (const pt of r.points) ok.add(Number((pt.fields.n as number) ?? -1));
      for (let n = 0; n < 1000; n++) expect(ok.has(n)).toBe(true);
    } finally {
      await p.stop();
    }
  });
});
