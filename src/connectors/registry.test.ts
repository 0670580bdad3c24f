// The connector registry (src/connectors/index.ts) and the format table load each module on first use; entry points
// load what a config names before compiling it. Each test imports fresh module instances (test/support/load-all.ts
// has loaded everything in the shared ones), so "not loaded yet" is real here.

import { describe, expect, it, vi } from 'vitest';

async function fresh() {
  vi.resetModules();
  return {
    connectors: await import('./index.js'),
    formats: await import('../formats/index.js'),
    loading: await import('../core/loading.js'),
    yaml: await import('../config/yaml.js'),
    sql: await import('../sql/index.js'),
  };
}

describe('connector registry', () => {
  it("each line's name and aliases are its spec's", async () => {
    const { connectors } = await fresh();
    const specs = await connectors.allConnectors();
    expect(specs.map((s) => ({ name: s.name, aliases: s.aliases ?? [] }))).toEqual(connectors.REGISTRY.map((l) => ({ name: l.name, aliases: l.aliases })));
  });

  it('finds a connector by name or alias only once it is loaded; unknown names are undefined', async () => {
    const { connectors, loading } = await fresh();
    expect(connectors.connectorNames()).toEqual(expect.arrayContaining(['kafka', 'redpanda', 'ws', 'stdout']));
    expect(() => connectors.findConnector('Redpanda')).toThrow(loading.NotLoadedError);
    expect(() => connectors.findConnector('kafka')).toThrow(/connector 'kafka' is used before its module was loaded/);
    expect(connectors.findConnector('no-such-thing')).toBeUndefined();
    await connectors.loadConnectors(['REDPANDA', 'no-such-thing']);
    expect(connectors.findConnector('kafka')?.name).toBe('kafka');
    expect(() => connectors.findConnector('mqtt')).toThrow(loading.NotLoadedError);
  });
});

describe('format table', () => {
  it('has JSON loaded from the start and the others on first use', async () => {
    const { formats, loading } = await fresh();
    expect(formats.findFormat('ndjson')?.name).toBe('json');
    expect(() => formats.findFormat('csv')).toThrow(loading.NotLoadedError);
    expect(() => formats.createFormat({ name: 'pq', options: {} })).toThrow(/format 'parquet' is used before its module was loaded/);
    expect(formats.findFormat('xml')).toBeUndefined();
    await formats.loadFormats(['CSV']);
    expect(formats.createFormat({ name: 'csv', options: {} }).name).toBe('csv');
  });
});

describe('compiling a config', () => {
  const yaml = (out: string) => `name: p\nsource:\n  connector: generator\n  config: { count: 1 }\nsink:\n  connector: file\n  config: { path: ${out} }\n`;

  it('loads the connectors the text names, and a format only a default names, then compiles', async () => {
    const { connectors, formats, loading, yaml: y } = await fresh();
    // The synchronous compile needs them loaded already.
    expect(() => y.parseConfigText(yaml('/tmp/out.csv'), 'p.yaml')).toThrow(loading.NotLoadedError);
    const parsed = await y.loadConfigTextAsync(yaml('/tmp/out.csv'), 'p.yaml');
    // The file sink's format comes from the path's extension: no `format:` in the text named it.
    expect(parsed.doc.pipelines[0]!.sink!.format.name).toBe('csv');
    expect(connectors.findConnector('file')?.name).toBe('file');
    expect(formats.findFormat('csv')?.name).toBe('csv');
    // Nothing else was loaded.
    expect(() => connectors.findConnector('kafka')).toThrow(loading.NotLoadedError);
    expect(() => formats.findFormat('avro')).toThrow(loading.NotLoadedError);
  });

  it('still reports unknown connectors and formats as config errors', async () => {
    const { yaml: y } = await fresh();
    await expect(y.loadConfigTextAsync('source: { connector: kafak }\nsink: { connector: stdout, format: xml }\n', 'p.yaml')).rejects.toThrow(
      /unknown connector 'kafak'; did you mean 'kafka'\?[\s\S]*unknown format 'xml'/,
    );
  });
});

describe('compiling a .sql document', () => {
  it('loads the connectors its string literals name, and a default format, then compiles', async () => {
    const { connectors, formats, loading, sql } = await fresh();
    const text = `CREATE TABLE g WITH (connector = 'generator', count = '1');
      CREATE TABLE f WITH (connector = 'file', path = '/tmp/out.csv');
      INSERT INTO f SELECT * FROM g;`;
    expect(() => sql.compileSqlText(text, 'p.sql')).toThrow(loading.NotLoadedError);
    const doc = await sql.loadSqlText(text, 'p.sql');
    expect(doc.pipelines[0]!.sink!.connector).toBe('file');
    expect(doc.pipelines[0]!.sink!.format.name).toBe('csv');
    expect(() => connectors.findConnector('kafka')).toThrow(loading.NotLoadedError);
    expect(() => formats.findFormat('avro')).toThrow(loading.NotLoadedError);
  });
});

describe('whenLoaded', () => {
  it('gives up on an error that loading does not cure, and passes other errors through', async () => {
    const { loading } = await fresh();
    let loads = 0;
    const stuck = new loading.NotLoadedError('format x', async () => void loads++);
    await expect(
      loading.whenLoaded(() => {
        throw stuck;
      }),
    ).rejects.toBe(stuck);
    expect(loads).toBe(1);
    await expect(
      loading.whenLoaded(() => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
  });
});
