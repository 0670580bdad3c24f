// Sources, sinks and lookup tables whose implementation is imported on first use. The connector registry imports
// every connector's spec; without this, a generator->file pipeline would pay for loading kafkajs, mqtt, redis, ws ...
// (tens of MB and hundreds of ms at start-up). Each wrapper forwards to the real object once its module is loaded.

import type { LookupTable } from './spec.js';
import type { Sink, SinkContext, Source, SourceContext, SluiceRecord, SourcePosition } from './types.js';

export function lazySource(load: () => Promise<Source>): Source {
  let loading: Promise<Source> | undefined;
  let source: Source | undefined;
  const get = () =>
    (loading ??= load().then((s) => {
      source = s;
      return s;
    }));
  return {
    async run(ctx: SourceContext) {
      return (await get()).run(ctx);
    },
    // Acks only exist for batches the loaded source emitted, so `source` is set whenever there is something to commit.
    commit(acks: unknown[]) {
      return source?.commit?.(acks);
    },
    async close() {
      // Closing a source that never ran must not load its client library just to close nothing.
      if (!loading) return;
      const s = await loading.catch(() => undefined);
      await s?.close?.();
    },
  };
}

export function lazySink(load: () => Promise<Sink>): Sink {
  let loading: Promise<Sink> | undefined;
  let sink: Sink | undefined;
  const get = () =>
    (loading ??= load().then((s) => {
      sink = s;
      return s;
    }));
  return {
    async open(ctx: SinkContext) {
      return (await get()).open(ctx);
    },
    write(records: SluiceRecord[], position?: SourcePosition) {
      if (!sink) return Promise.reject(new Error('sink written before it was opened'));
      return sink.write(records, position);
    },
    // Read after open, when the real sink is loaded.
    get exactlyOnce() {
      return sink?.exactlyOnce;
    },
    async position() {
      return sink?.position?.();
    },
    async close() {
      if (!loading) return;
      // A close racing a pending open still reaches the sink, after its open was called, as it would without the wrapper.
      const s = await loading.catch(() => undefined);
      await s?.close?.();
    },
  };
}

export function lazyLookup(load: () => Promise<LookupTable>): LookupTable {
  let loading: Promise<LookupTable> | undefined;
  let table: LookupTable | undefined;
  const get = () =>
    (loading ??= load().then((t) => {
      table = t;
      return t;
    }));
  return {
    get(key: string) {
      return table ? table.get(key) : get().then((t) => t.get(key));
    },
    getMany(keys: string[]) {
      return table ? table.getMany(keys) : get().then((t) => t.getMany(keys));
    },
    async close() {
      if (!loading) return;
      const t = await loading.catch(() => undefined);
      await t?.close();
    },
  };
}
