import { describe, expect, it } from 'vitest';
import { loadConfigText } from './load.js';
import { ConfigError, formatIssue } from '../core/errors.js';
import { substituteEnv } from './env.js';

function errors(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    loadConfigText(text, 'p.yaml', { env });
  } catch (e) {
    if (e instanceof ConfigError) return e.issues.map(formatIssue);
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('pipeline files', () => {
  it('compiles a single pipeline with defaults', () => {
    const d = loadConfigText(
      `
source: { connector: generator, config: { template: iot, count: 5 } }
sink: { connector: file, config: { path: out.jsonl } }
`,
      'demo.yaml',
    );
    expect(d.pipelines).toHaveLength(1);
    const p = d.pipelines[0]!;
    expect(p.name).toBe('demo');
    expect(p.source.connector).toBe('generator');
    expect(p.source.options).toMatchObject({ template: 'iot', count: 5, interval: 200 });
    expect(p.sink!.format.name).toBe('json');
    expect(p.source.bad_data).toBe('fail');
    expect(p.batch.max_records).toBeGreaterThan(0);
  });

  it('accepts the seeds spellings: driver (DataBrew), type and properties (Timeplus), connector aliases', () => {
    const d = loadConfigText(
      `
pipelines:
  - name: a
    source: { driver: stream_generator, config: { template: devops, message_count: 3 } }
    sink: { type: nop }
  - name: b
    source: { type: impulse, properties: { event_rate: 100, count: 2 } }
    sink: { connector: console }
`,
      'x.yaml',
    );
    const [a, b] = d.pipelines;
    expect(a!.source.connector).toBe('generator');
    expect(a!.source.options).toMatchObject({ template: 'devops', count: 3 });
    expect(a!.sink!.connector).toBe('blackhole');
    expect(b!.source.options).toMatchObject({ template: 'impulse', count: 2 });
    expect(b!.sink!.connector).toBe('stdout');
  });

  it('reports an unknown key with file:line:col and a did-you-mean', () => {
    const e = errors(`name: x
source:
  connector: generator
  config:
    templte: iot
sink: { connector: blackhole }
`);
    expect(e).toEqual(["p.yaml:5:5: source.config.templte: unknown option 'templte'; did you mean 'template'?"]);
  });

  it('reports every problem at once, each at its own position', () => {
    const e = errors(`pipelines:
  - name: one
    source: { connector: generatr }
    sink: { connector: blackhole }
  - name: two
    source: { connector: generator, config: { interval: soon } }
    sink: { connector: file }
    batchh: {}
`);
    expect(e).toContain("p.yaml:3:15: pipelines[0].source.connector: unknown connector 'generatr'; did you mean 'generator'?");
    expect(e).toContain("p.yaml:6:47: pipelines[1].source.config.interval: 'soon' is not a duration (use e.g. 200ms, 5s, 1m)");
    expect(e.some((l) => /^p\.yaml:7:\d+: pipelines\[1\]\.sink.*path/.test(l))).toBe(true);
    expect(e).toContain("p.yaml:8:5: pipelines[1].batchh: unknown option 'batchh'; did you mean 'batch'?");
  });

  it('reports YAML syntax errors with their position', () => {
    const e = errors('source: { connector: generator\nsink: [');
    expect(e[0]).toMatch(/^p\.yaml:\d+:\d+: /);
  });

  it('substitutes ${ENV} and ${ENV:-default}, and a missing variable is an error at its position', () => {
    const d = loadConfigText(
      'source: { connector: file, config: { path: "${DIR}/in.jsonl" } }\nsink: { connector: file, config: { path: "${OUT:-out.jsonl}" } }\n',
      'e.yaml',
      { env: { DIR: '/data' } },
    );
    expect(d.pipelines[0]!.source.options.path).toEqual('/data/in.jsonl');
    expect(d.pipelines[0]!.sink!.options.path).toBe('out.jsonl');
    const e = errors('source: { connector: file, config: { path: "${NOPE}" } }\nsink: { connector: blackhole }\n');
    expect(e[0]).toMatch(/^p\.yaml:1:\d+: environment variable 'NOPE' is not set/);
  });

  it('resolves tables and connection profiles, with the endpoint overriding the table', () => {
    const d = loadConfigText(
      `
connection_profiles:
  local: { connector: file, config: { fsync: false } }
tables:
  events: { connector: generator, config: { template: user_logins, count: 10 }, format: json }
  out: { profile: local, config: { path: out.jsonl, type: sink } }
pipelines:
  - name: p
    source: { table: events, config: { count: 3 } }
    sink: out
`,
      't.yaml',
    );
    const p = d.pipelines[0]!;
    expect(p.source.options).toMatchObject({ template: 'user_logins', count: 3 });
    expect(p.source.table).toBe('events');
    expect(p.sink!.options).toMatchObject({ path: 'out.jsonl', fsync: false });
    expect(p.sink!.profile).toBe('local');
  });

  it('rejects a table used in the wrong role and an unknown table', () => {
    const e = errors(`
tables:
  src: { connector: generator, config: { type: source } }
pipelines:
  - name: p
    source: { table: srcc }
    sink: src
`);
    expect(e.some((l) => l.includes("unknown table 'srcc'; did you mean 'src'?"))).toBe(true);
    expect(e.some((l) => l.includes("connector 'generator' cannot be used as a sink"))).toBe(true);
  });

  it("requires a dlq sink for bad_data 'dlq' and defaults bad_data to dlq when one exists", () => {
    expect(errors('source: { connector: generator, bad_data: dlq }\nsink: { connector: blackhole }\n')[0]).toMatch(/no `dlq:` sink/);
    const d = loadConfigText('source: { connector: generator }\nsink: { connector: blackhole }\ndlq: { connector: file, config: { path: dlq.jsonl } }\n', 'd.yaml');
    expect(d.pipelines[0]!.source.bad_data).toBe('dlq');
  });

  it('accepts the format as a name, a map with name, or the Laminar {json: {}} shape, and data_type in the options', () => {
    const d = loadConfigText(
      `pipelines:
  - { name: a, source: { connector: file, config: { path: a.csv }, format: { name: csv, delimiter: ';' } }, sink: { connector: blackhole } }
  - { name: b, source: { connector: file, config: { path: b.json }, format: { json: {} } }, sink: { connector: blackhole } }
  - { name: c, source: { connector: file, config: { path: c.txt, data_type: text } }, sink: { connector: blackhole } }
`,
      'f.yaml',
    );
    expect(d.pipelines.map((p) => p.source.format.name)).toEqual(['csv', 'json', 'text']);
    expect(d.pipelines[0]!.source.format.options).toMatchObject({ delimiter: ';' });
  });

  it('selects metadata fields and rejects ones the connector does not have', () => {
    const d = loadConfigText('source: { connector: file, config: { path: a }, metadata_fields: [_line, _path] }\nsink: { connector: blackhole }\n', 'm.yaml');
    expect(d.pipelines[0]!.source.metadata_fields).toEqual({ _line: '_line', _path: '_path' });
    const e = errors('source: { connector: file, config: { path: a }, metadata_fields: { part: _partition } }\nsink: { connector: blackhole }\n');
    expect(e[0]).toMatch(/unknown metadata '_partition'/);
  });

  it('takes DataBrew stream_schema columns as the schema', () => {
    const d = loadConfigText(
      `source:
  driver: file
  config: { path: rides.jsonl }
  stream_schema:
    - stream: taxi_rides
      columns:
        - { name: log_id, databrewType: Int32, nativeConnectorType: integer, pk: true, nullable: false }
        - { name: timestamp, databrewType: String, nativeConnectorType: varchar, pk: false, nullable: true }
sink: { connector: blackhole }
`,
      's.yaml',
    );
    const s = d.pipelines[0]!.source.schema!;
    expect(s.fields.map((f) => [f.name, f.type])).toEqual([
      ['log_id', 'int32'],
      ['timestamp', 'string'],
    ]);
    expect(s.primary_key).toEqual(['log_id']);
  });
});

describe('routes', () => {
  it('compiles routes with conditions, payload paths, schemas and their own sinks; the default sink is optional', () => {
    const d = loadConfigText(
      `
source: { connector: file, config: { path: feed.jsonl } }
routes:
  - name: trades
    when: { field: stream, matches: '@trade$' }
    payload_path: data
    schema: { fields: { p: float64, q: float64 } }
    sink: { connector: file, config: { path: trades.jsonl } }
  - name: depth
    when: { field: stream, in: [btcusdt@depth, ethusdt@depth] }
    sink: { connector: blackhole }
`,
      'r.yaml',
    );
    const p = d.pipelines[0]!;
    expect(p.sink).toBeUndefined();
    expect(p.routes!.map((r) => [r.name, r.sink.connector, r.payload_path])).toEqual([
      ['trades', 'file', 'data'],
      ['depth', 'blackhole', undefined],
    ]);
    expect(p.routes![0]!.schema!.fields.map((f) => f.type)).toEqual(['float64', 'float64']);
  });

  it('rejects a route with two conditions, a bad regex, or a duplicate name, and a pipeline with neither sink nor routes', () => {
    const e = errors(`
source: { connector: generator }
routes:
  - { name: a, when: { field: x, equals: 1, matches: y }, sink: { connector: blackhole } }
  - { name: a, when: { field: x, matches: '(' }, sink: { connector: blackhole } }
`);
    expect(e.some((l) => /routes\[0\]\.when: give exactly one of equals, in, matches/.test(l))).toBe(true);
    expect(e.some((l) => /routes\[1\]\.when\.matches: invalid regular expression/.test(l))).toBe(true);
    expect(e.some((l) => /route name 'a' is used twice/.test(l))).toBe(true);
    expect(errors('source: { connector: generator }\n')[0]).toMatch(/missing 'sink' \(or 'routes'\)/);
  });
});

describe('env substitution', () => {
  it('leaves $${ as a literal and treats an empty variable as set', () => {
    expect(substituteEnv('a$${B}c', {}).value).toBe('a${B}c');
    expect(substituteEnv('[${E}]', { E: '' })).toMatchObject({ value: '[]', missing: [] });
    expect(substituteEnv('${X:-d}', {})).toMatchObject({ value: 'd', referenced: true });
  });
});

describe('schema registry settings on the connector', () => {
  it('hands the Kafka source registry options (Timeplus spelling and Laminar nested form) to the avro format', () => {
    const d = loadConfigText(
      `pipelines:
  - name: a
    source: { connector: kafka, config: { brokers: 127.0.0.1:9092, topic: t, data_type: avro, schema_registry_address: 'http://127.0.0.1:8081', schema_registry_api_key: k, schema_registry_api_secret: s } }
    sink: { connector: blackhole }
  - name: b
    source: { connector: kafka, config: { bootstrapServers: 127.0.0.1:9092, topic: t, schemaRegistryEnum: { endpoint: 'http://r:8081' } }, format: { avro: {} } }
    sink: { connector: blackhole }
  - name: c
    source: { connector: kafka, config: { brokers: 127.0.0.1:9092, topic: t, schema_registry_address: 'http://x:1' }, format: json }
    sink: { connector: blackhole }
`,
      'k.yaml',
    );
    const [a, b, c] = d.pipelines;
    expect(a!.source.format).toMatchObject({ name: 'avro', options: { schema_registry_address: 'http://127.0.0.1:8081', schema_registry_api_key: 'k', schema_registry_api_secret: 's', topic: 't' } });
    expect(b!.source.format.options).toMatchObject({ schema_registry_address: 'http://r:8081' });
    expect(c!.source.format.name).toBe('json');
  });
});
