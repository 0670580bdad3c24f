// YAML pipelines naming the HTTP family, loaded and run end to end.

import { afterEach, describe, expect, it } from 'vitest';

const { loadConfigText } = await import('../../config/load.js');
const { startPipeline } = await import('../../core/runtime.js');
const { newRecordingSink, recordingEnv, waitFor } = await import('../../testing/harness.js');
const { ConfigError, formatIssue } = await import('../../core/errors.js');
const { json, startServer } = await import('./testkit.js');

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

function issues(text: string): string[] {
  try {
    loadConfigText(text, 'p.yaml');
  } catch (e) {
    if (e instanceof ConfigError) return e.issues.map(formatIssue);
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('HTTP family in pipeline files', () => {
  it('accepts the Laminar and Timeplus spellings and points at a misspelt option with a suggestion', () => {
    const d = loadConfigText(
      `
pipelines:
  - name: poll
    source: { type: polling_http, properties: { endpoint: 'http://127.0.0.1:1/x', poll_interval: 2s, data_path: data } }
    sink: { connector: blackhole }
  - name: lp
    source: { connector: livepeer, config: { interval: 300s, api_key: k, data_type: text } }
    sink: { connector: blackhole }
  - name: events
    source: { connector: server_sent_events, config: { url: 'http://127.0.0.1:1/s', event_types: 'a,b' } }
    sink: { connector: blackhole }
`,
      'p.yaml',
    );
    expect(d.pipelines[0]!.source.connector).toBe('http_pull');
    expect(d.pipelines[0]!.source.options).toMatchObject({ url: 'http://127.0.0.1:1/x', interval: 2000, records_path: 'data' });
    expect(d.pipelines[1]!.source.format.name).toBe('text');
    expect(d.pipelines[2]!.source.options).toMatchObject({ events: ['a', 'b'] });
    const msgs = issues(`
source: { connector: http_pull, config: { url: 'http://127.0.0.1/x', intervall: 5s } }
sink: { connector: blackhole }
`);
    expect(msgs.join('\n')).toMatch(/p\.yaml:2:\d+: .*unknown option 'intervall'; did you mean 'interval'\?/);
  });

  it('runs a YAML pipeline from http_pull to a sink, the json format splitting the response array', async () => {
    const s = await startServer((_req, res) => json(res, [{ id: 1, price: '2.5' }, { id: 2, price: '3' }]));
    close = s.close;
    const d = loadConfigText(
      `
source:
  connector: http_pull
  config: { url: '${s.url}/ticks', interval: 1h }
  schema: { fields: [{ name: id, type: int64 }, { name: price, type: float64 }] }
  metadata_fields: [_status]
sink: { connector: blackhole }
`,
      'ticks.yaml',
    );
    const sinks = { out: newRecordingSink() };
    const def = { ...d.pipelines[0]!, sink: { ...d.pipelines[0]!.sink!, connector: 'rec', options: { name: 'out' } } };
    const h = startPipeline(def, recordingEnv(sinks, { dataDir: '/tmp/sluice-http-config-test' }));
    await waitFor(() => sinks.out.written.length >= 2, 'two rows');
    await h.stop();
    expect(sinks.out.written.map((r) => r.value)).toEqual([
      { id: 1, price: 2.5, _status: 200 },
      { id: 2, price: 3, _status: 200 },
    ]);
  });
});
