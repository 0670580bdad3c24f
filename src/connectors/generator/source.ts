// The running generator. Two loops: flat out (interval 0, the benchmark path) and paced (interval > 0).

import type { SluiceRecord, Source, SourceContext } from '../../core/types.js';
import { Prng, randomSeed } from './prng.js';
import { createMaker, type MakerOptions, type RowMaker } from './templates.js';
import { untilSettledOrAborted } from '../../core/abort.js';

/** Validated, resolved options (what `parseOptions(spec.source.options, ...)` returns). */
export interface GeneratorConfig extends MakerOptions {
  /** Milliseconds between events; 0 = as fast as the pipeline takes them. */
  interval: number;
  /** Emit exactly this many records, then finish. Unset: run until stopped. */
  count?: number;
  seed?: number;
  /** Event time of the first record (ms since the epoch). */
  startTime?: number;
  /** Event-time distance between consecutive records (ms), independent of the wall clock. */
  eventTimeInterval?: number;
  batchSize: number;
}

/** The token in each batch's `ack`: the sequence number (0-based) of the batch's last record. */
export interface GeneratorAck {
  seq: number;
}

export class GeneratorSource implements Source {
  /** The seed in use (the configured one, or one picked at random and logged). */
  readonly seed: number;
  private readonly maker: RowMaker;
  private readonly sequence: boolean;
  /** Event times follow a fixed step from a base instead of the wall clock. */
  private readonly logical: boolean;
  private readonly step: number;
  private base = 0;
  private nextSeq = 0;
  private committed = -1;

  constructor(private readonly cfg: GeneratorConfig) {
    this.seed = cfg.seed ?? randomSeed();
    this.maker = createMaker(cfg, new Prng(this.seed));
    this.sequence = cfg.template === 'sequence';
    this.logical = cfg.interval > 0 || cfg.startTime !== undefined || cfg.eventTimeInterval !== undefined;
    // At full speed a logical clock still has to advance, or every event would share one timestamp.
    this.step = cfg.eventTimeInterval ?? (cfg.interval > 0 ? cfg.interval : 1);
  }

  /** Sequence number of the newest record the runtime confirmed delivered; -1 before the first. */
  get committedSeq(): number {
    return this.committed;
  }

  /** Records emitted so far. */
  get emitted(): number {
    return this.nextSeq;
  }

  async run(ctx: SourceContext): Promise<void> {
    const total = this.cfg.count ?? Infinity;
    this.base = this.cfg.startTime ?? Date.now();
    ctx.log.debug(
      { template: this.cfg.template, seed: this.seed, interval_ms: this.cfg.interval, count: this.cfg.count },
      `generator started (seed ${this.seed}; set seed: ${this.seed} to reproduce this data)`,
    );
    if (this.cfg.interval > 0) await this.paced(ctx, total);
    else await this.flat(ctx, total);
  }

  commit(acks: unknown[]): void {
    // Nothing to persist: a restart generates new data anyway (not replayable). Kept for observability only.
    const last = acks[acks.length - 1] as GeneratorAck | undefined;
    if (last !== undefined) this.committed = last.seq;
  }

  private async flat(ctx: SourceContext, total: number): Promise<void> {
    const signal = ctx.signal;
    const size = this.cfg.batchSize;
    while (!signal.aborted && this.nextSeq < total) {
      const p = this.emitBatch(ctx, Math.min(size, total - this.nextSeq));
      if (p) await untilSettledOrAborted(p, signal);
      if (signal.aborted || this.nextSeq >= total) break;
      // A sink that never pushes back would otherwise starve timers and sockets (status line, HTTP API, stop signal).
      await yieldToLoop();
    }
  }

  private async paced(ctx: SourceContext, total: number): Promise<void> {
    const signal = ctx.signal;
    const size = this.cfg.batchSize;
    const interval = this.cfg.interval;
    const first = this.nextSeq;
    const t0 = performance.now();
    while (!signal.aborted && this.nextSeq < total) {
      // What is due is derived from elapsed time rather than by adding up sleeps, so late timers and slow sinks never
      // make the rate drift: whatever fell behind goes out together in the next batch.
      const due = Math.min(total, first + Math.floor((performance.now() - t0) / interval) + 1);
      if (due > this.nextSeq) {
        const p = this.emitBatch(ctx, Math.min(size, due - this.nextSeq));
        if (p) await untilSettledOrAborted(p, signal);
        await yieldToLoop();
        continue;
      }
      await sleep(t0 + (this.nextSeq - first) * interval - performance.now(), signal);
    }
  }

  private emitBatch(ctx: SourceContext, k: number): Promise<void> | undefined {
    const records = this.fill(k);
    return ctx.emit({ records, decoded: true, ack: { seq: this.nextSeq - 1 } satisfies GeneratorAck });
  }

  /** The hot path: per event one row, one record and one meta object, and no closures. */
  private fill(k: number): SluiceRecord[] {
    const out = new Array<SluiceRecord>(k);
    const n0 = this.nextSeq;
    const maker = this.maker;
    if (this.logical) {
      const base = this.base;
      const step = this.step;
      for (let i = 0; i < k; i++) {
        const n = n0 + i;
        const ts = Math.floor(base + n * step);
        out[i] = { value: maker.row(n, ts), timestamp: ts, meta: { _offset: n } };
      }
    } else if (this.sequence) {
      // Kept apart from the generic loop so the benchmark path does not depend on inlining through `maker.row`.
      const ts = Date.now();
      for (let i = 0; i < k; i++) {
        const n = n0 + i;
        out[i] = { value: { id: n }, timestamp: ts, meta: { _offset: n } };
      }
    } else {
      const ts = Date.now();
      for (let i = 0; i < k; i++) {
        const n = n0 + i;
        out[i] = { value: maker.row(n, ts), timestamp: ts, meta: { _offset: n } };
      }
    }
    this.nextSeq = n0 + k;
    return out;
  }
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Wait for `ms`, or less if the signal aborts first; the timer never outlives the wait. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    // Node fires timers on whole milliseconds; a sub-millisecond wait would spin.
    const timer = setTimeout(done, Math.max(1, Math.ceil(ms)));
    signal.addEventListener('abort', done, { once: true });
  });
}

