// Drives one source or sink outside the runtime, for connector tests.

import pino from 'pino';
import type { BadRecord, ConnectorContext, Decoder, Encoder, SluiceRecord, Source, SourceBatch, StateScope, Sink, SinkContext } from '../core/types.js';
import { mapScope } from '../core/state.js';

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
