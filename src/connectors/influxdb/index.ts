import { ConfigError, SluiceError, errorMessage } from '../../core/errors.js';
import { defineConnector, parseOptions, type EndpointInfo, type TestReporter, type z } from '../../core/spec.js';
import type { Sink, SinkContext, SluiceRecord } from '../../core/types.js';
import { sinkOptions, versionOf } from './options.js';

export { sinkOptions } from './options.js';

export const spec = defineConnector({
  name: 'influxdb',
  aliases: ['influx', 'influxdb2', 'influxdbv2', 'influx2'],
  aliasDefaults: { influxdb2: { api_version: 'v2' }, influxdbv2: { api_version: 'v2' }, influx2: { api_version: 'v2' } },
  title: 'InfluxDB',
  description:
    'Writes records as points to InfluxDB 1.x (database, retention policy, user/password) or 2.x/3.x (org, bucket, token) over the HTTP line-protocol API: one request per batch, retries on 5xx and 429 honouring Retry-After.',
  sink: {
    options: sinkOptions,
    defaultFormat: 'json',
    create(o: z.output<ReturnType<typeof sinkOptions>>, info) {
      return new LazySink(o, info);
    },
  },
  test: testInflux,
});

// The sink module loads undici; it is imported when the pipeline opens the sink, not when the registry loads.
class LazySink implements Sink {
  private inner?: Sink;
  constructor(
    private readonly o: z.output<ReturnType<typeof sinkOptions>>,
    private readonly info: EndpointInfo,
  ) {}
  async open(ctx: SinkContext): Promise<void> {
    const { InfluxSink } = await import('./sink.js');
    this.inner = new InfluxSink(this.o, this.info);
    await this.inner.open(ctx);
  }
  write(records: SluiceRecord[]): Promise<void> {
    return this.inner!.write(records);
  }
  async close(): Promise<void> {
    await this.inner?.close?.();
  }
}

async function testInflux(options: unknown, role: 'source' | 'sink', report: TestReporter, signal: AbortSignal): Promise<void> {
  if (role === 'source') throw new SluiceError('CONFIG', 'influxdb is a sink only');
  const r = parseOptions(sinkOptions(), options);
  if (!r.ok) throw new ConfigError(r.issues);
  const o = r.value;
  const { displayUrl, writeTarget } = await import('./sink.js');
  const { request } = await import('undici');
  const base = o.url.replace(/\/+$/, '');
  try {
    const res = await request(`${base}/ping`, { method: 'GET', signal, headersTimeout: o.timeout });
    await res.body.dump();
    if (res.statusCode >= 300) throw new Error(`HTTP ${res.statusCode} from /ping`);
    const v = res.headers['x-influxdb-version'];
    report({ message: `reached InfluxDB at ${displayUrl(o.url)}${v ? ` (version ${String(v)})` : ''}`, done: true });
  } catch (e) {
    report({ message: `cannot reach InfluxDB at ${displayUrl(o.url)}: ${errorMessage(e)}`, error: true });
    throw new SluiceError('CONNECT', `cannot reach InfluxDB at ${displayUrl(o.url)}: ${errorMessage(e)}`, { cause: e });
  }
  // An empty write checks the credentials and that the database/bucket exists without writing a point.
  const t = writeTarget(o);
  const res = await request(t.url, { method: 'POST', headers: t.headers, body: '', signal, headersTimeout: o.timeout });
  const text = await res.body.text().catch(() => '');
  const where = versionOf(o) === 'v2' ? `bucket '${o.bucket}'` : `database '${o.database}'`;
  if (res.statusCode >= 200 && res.statusCode < 300) {
    report({ message: `credentials accepted for writing to ${where}`, done: true });
    return;
  }
  // An empty body is "bad request" on some versions, which still proves that auth and the target passed.
  if (res.statusCode === 400 && !/not found|database/i.test(text)) {
    report({ message: `credentials accepted for writing to ${where}`, done: true });
    return;
  }
  report({ message: `writing to ${where} is refused: HTTP ${res.statusCode}: ${text.trim().slice(0, 300)}`, error: true });
  throw new SluiceError(res.statusCode === 401 || res.statusCode === 403 ? 'AUTH' : 'SINK', `writing to ${where} at ${displayUrl(o.url)} is refused: HTTP ${res.statusCode}: ${text.trim().slice(0, 300)}`);
}
