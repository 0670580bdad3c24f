// Drives one source or sink outside the runtime, for connector tests.

import pino from 'pino';
import type { BadRecord, ConnectorContext, Decoder, Encoder, SluiceRecord, Source, SourceBatch, StateScope, Sink, SinkContext } from '../core/types.js';
import { mapScope, memoryStateStore, type StateStore } from '../core/state.js';
import { z } from 'zod';
import { SluiceError, formatIssue } from '../core/errors.js';
import { DEFAULT_BATCH, DEFAULT_BUFFER, DEFAULT_RETRY, type BatchPolicy, type EndpointDef, type PipelineDef, type RetryPolicy } from '../core/model.js';
import { parseOptions, type ConnectorSpec } from '../core/spec.js';
import type { RuntimeEnv } from '../core/runtime.js';
import { findConnector } from '../connectors/index.js';

export const silentLog = pino({ level: 'silent' });

const noMetrics = { counter: () => ({ inc() {} }), gauge: () => ({ set() {} }) };

export function testContext(role: 'source' | 'sink', over: Partial<ConnectorContext> = {}): ConnectorContext {
  return {
    pipeline: 'test',
    role,
    log: silentLog,
    state: mapScope(new Map()),
    metrics: noMetrics,
    signal: new AbortController().signal,
    dataDir: over.dataDir ?? '/tmp/sluice-test',
    ...over,
  };
}

export interface CollectOptions {
  /** Stop the source (abort its signal) once this many records arrived. */
  limit?: number;
  /** Abort after this long even if the limit was not reached. */
  timeoutMs?: number;
  state?: StateScope;
  decoder?: () => Decoder;
  /** Commit every batch's ack right after emit, as the runtime does after the sink accepted it. */
  autoCommit?: boolean;
  dataDir?: string;
}

export interface Collected {
  batches: SourceBatch[];
  records: SluiceRecord[];
  bad: BadRecord[];
  committed: unknown[];
}

export async function collectSource(source: Source, o: CollectOptions = {}): Promise<Collected> {
  const ac = new AbortController();
  const out: Collected = { batches: [], records: [], bad: [], committed: [] };
  const timer = o.timeoutMs ? setTimeout(() => ac.abort(), o.timeoutMs) : undefined;
  const ctx = {
    ...testContext('source', { signal: ac.signal, state: o.state ?? mapScope(new Map()), dataDir: o.dataDir }),
    emit(batch: SourceBatch) {
      out.batches.push(batch);
      for (const r of batch.records) out.records.push(r);
      if (o.autoCommit !== false && batch.ack !== undefined) {
        out.committed.push(batch.ack);
        return Promise.resolve(source.commit?.([batch.ack])).then(() => {
          if (o.limit !== undefined && out.records.length >= o.limit) ac.abort();
        });
      }
      if (o.limit !== undefined && out.records.length >= o.limit) ac.abort();
      return undefined;
    },
    bad(records: BadRecord[]) {
      out.bad.push(...records);
    },
    decoder() {
      if (!o.decoder) throw new Error('collectSource: no decoder given');
      return o.decoder();
    },
  };
  try {
    await source.run(ctx);
  } finally {
    if (timer) clearTimeout(timer);
    await source.close?.();
  }
  return out;
}

export function sinkContext(encoder: Encoder, over: Partial<ConnectorContext> = {}): SinkContext {
  return { ...testContext('sink', over), encoder };
}

export async function writeAll(sink: Sink, ctx: SinkContext, batches: SluiceRecord[][]): Promise<void> {
  await sink.open(ctx);
  for (const b of batches) await sink.write(b);
  await sink.close?.();
}

// ---- whole pipelines in tests -----------------------------------------------------------------------------------

/** A sink the test controls: what it received, and switches for an outage or a slow write. */
export interface RecordingSink {
  written: SluiceRecord[];
  /** While true, writes fail with a retriable error (a sink outage). */
  down: boolean;
  /** Each write waits this long first (a slow sink). */
  delayMs: number;
  /** Write calls, failed ones included. */
  writes: number;
}

export const newRecordingSink = (): RecordingSink => ({ written: [], down: false, delayMs: 0, writes: 0 });

/** A `rec` connector whose `name` option picks one of `sinks`, for pipelines built in tests. */
export function recordingSinkSpec(sinks: Record<string, RecordingSink>): ConnectorSpec {
  return {
    name: 'rec',
    title: 'Recording sink (tests)',
    description: 'Keeps what it receives in memory for assertions.',
    sink: {
      options: z.object({ name: z.string() }),
      create: (o: { name: string }) => ({
        async open() {},
        async write(records: SluiceRecord[]) {
          const s = sinks[o.name];
          if (!s) throw new Error(`no recording sink named '${o.name}'`);
          s.writes++;
          if (s.delayMs) await new Promise((r) => setTimeout(r, s.delayMs));
          if (s.down) throw new SluiceError('SINK', 'sink is down', { retriable: true });
          s.written.push(...records);
        },
      }),
    },
  };
}

/** A runtime environment with every registered connector plus `extra` ones (such as a recording sink). */
export function pipelineEnv(o: { state?: StateStore; dataDir: string; extra?: ConnectorSpec[] }): RuntimeEnv {
  const extra = new Map((o.extra ?? []).map((c) => [c.name, c]));
  return {
    log: silentLog,
    state: o.state ?? memoryStateStore(),
    dataDir: o.dataDir,
    connector(name) {
      const c = extra.get(name) ?? findConnector(name);
      if (!c) throw new Error(`unknown connector '${name}'`);
      return c;
    },
  };
}

/** pipelineEnv with `sinks` behind the `rec` connector. */
export function recordingEnv(sinks: Record<string, RecordingSink>, o: { state?: StateStore; dataDir: string }): RuntimeEnv {
  return pipelineEnv({ ...o, extra: [recordingSinkSpec(sinks)] });
}

/** Connector options validated by `schema` (defaults applied, durations in ms); throws every issue when invalid. */
export function parsedOptions<T>(schema: z.ZodType<T, any>, input: Record<string, unknown>): T {
  const r = parseOptions(schema, input);
  if (!r.ok) throw new Error(r.issues.map(formatIssue).join('\n'));
  return r.value;
}

/** An endpoint as the config loader makes it: `options` as given (also as `config`), JSON format, `bad_data: fail`. */
export function endpointDef(connector: string, options: Record<string, unknown>, extra: Partial<EndpointDef> = {}): EndpointDef {
  return { connector, options, config: options, format: { name: 'json', options: {} }, bad_data: 'fail', metadata_fields: {}, ...extra };
}

/** The endpoint of the recording sink `name` (see recordingSinkSpec). */
export const recordingEndpoint = (name: string): EndpointDef => endpointDef('rec', { name });

export interface TestPipelineOptions {
  dlq?: EndpointDef;
  batch?: Partial<BatchPolicy>;
  buffer?: Partial<typeof DEFAULT_BUFFER>;
  retry?: Partial<RetryPolicy>;
}

/**
 * A pipeline from `source` to `sink` with settings quick enough for tests: a 1 ms linger and retries backing off
 * 10 to 50 ms; `o` overrides any of them (over the runtime defaults).
 */
export function pipelineDef(name: string, source: EndpointDef, sink: EndpointDef, o: TestPipelineOptions = {}): PipelineDef {
  return {
    name,
    source,
    sink,
    dlq: o.dlq,
    batch: { ...DEFAULT_BATCH, linger_ms: 1, ...o.batch },
    buffer: { ...DEFAULT_BUFFER, ...o.buffer },
    retry: { ...DEFAULT_RETRY, initial_backoff_ms: 10, max_backoff_ms: 50, ...o.retry },
  };
}

// ---- waiting ----------------------------------------------------------------------------------------------------

/**
 * Polls `cond` every `everyMs` until it holds, failing with `what` once `ms` have passed. The condition is the
 * assertion; the poll is not.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000, everyMs = 20): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
