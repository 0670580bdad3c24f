// A bounded queue between a push source that cannot be paused (core NATS, Redis pub/sub) and the pipeline. Messages
// arriving in one synchronous run (one socket read) are emitted together on the next tick; while the pipeline asks to
// wait, the queue fills, and past `capacity` messages are dropped, counted and logged (at most every few seconds).

import type { Logger } from 'pino';
import type { Counter, Gauge, SluiceRecord } from './types.js';

const DROP_LOG_EVERY_MS = 5000;

export interface PushQueueOptions {
  capacity: number;
  overflow: 'drop_newest' | 'drop_oldest';
  /** Most records per emitted batch. */
  maxBatch: number;
  /** Hands a batch to the pipeline; a returned promise means "wait". */
  emit(records: SluiceRecord[]): Promise<void> | undefined;
  log: Logger;
  dropped: Counter;
  depth: Gauge;
  /** Counts records as they are handed over, when the source counts at that point. */
  emitted?: Counter;
  /** Logged with the drop warning (which subject or channel). */
  dropContext: Record<string, unknown>;
  dropMessage: string;
  /** Runs at the start of each tick (a source resets its per-read receive time here). */
  onTick?(): void;
}

export class PushQueue {
  private pending: SluiceRecord[] = [];
  private head = 0;
  private scheduled = false;
  private waiting = false;
  private dropsSinceLog = 0;
  private lastDropLog = 0;
  /** Largest depth seen (tests). */
  maxDepth = 0;

  constructor(private readonly o: PushQueueOptions) {}

  get depth(): number {
    return this.pending.length - this.head;
  }

  /** Queue one record, applying the overflow policy when full. */
  push(rec: SluiceRecord): void {
    const depth = this.pending.length - this.head;
    if (depth >= this.o.capacity) {
      this.drop();
      if (this.o.overflow === 'drop_newest') return;
      this.pending[this.head++] = undefined as never;
      this.compact();
    }
    this.pending.push(rec);
    const d = this.pending.length - this.head;
    if (d > this.maxDepth) this.maxDepth = d;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.onTick);
    }
  }

  /** Emit what is queued in batches until the pipeline asks to wait; `final` ignores the wait (stopping). */
  flush(final: boolean): void {
    while (this.head < this.pending.length && (final || !this.waiting)) {
      const end = Math.min(this.pending.length, this.head + this.o.maxBatch);
      const records = this.head === 0 && end === this.pending.length ? this.pending : this.pending.slice(this.head, end);
      if (end === this.pending.length) {
        this.pending = [];
        this.head = 0;
      } else {
        this.head = end;
        this.compact();
      }
      this.o.emitted?.inc(records.length);
      const p = this.o.emit(records);
      if (p && !final) {
        this.waiting = true;
        p.then(this.onSpace, this.onSpace);
      }
    }
    if (this.head > 0 && this.head === this.pending.length) {
      this.pending = [];
      this.head = 0;
    }
    this.o.depth.set(this.pending.length - this.head);
  }

  /**
   * Drops the slots before `head` once they are half the array. Under a steady flow into a waiting pipeline the queue
   * never runs empty, so without this every record ever emitted (or dropped) would stay reachable from `pending`:
   * memory would grow with the flow, not with `capacity`. Copying only at half keeps it amortised O(1) per record.
   */
  private compact(): void {
    if (this.head * 2 < this.pending.length) return;
    this.pending = this.pending.slice(this.head);
    this.head = 0;
  }

  /** Array slots held, emitted ones included (tests: memory must follow the depth, not the flow). */
  get slots(): number {
    return this.pending.length;
  }

  private drop(): void {
    this.o.dropped.inc();
    this.dropsSinceLog++;
    const now = Date.now();
    if (now - this.lastDropLog >= DROP_LOG_EVERY_MS) {
      this.o.log.warn({ dropped: this.dropsSinceLog, queue_size: this.o.capacity, ...this.o.dropContext }, this.o.dropMessage);
      this.lastDropLog = now;
      this.dropsSinceLog = 0;
    }
  }

  private readonly onTick = (): void => {
    this.scheduled = false;
    this.o.onTick?.();
    this.flush(false);
  };

  private readonly onSpace = (): void => {
    this.waiting = false;
    this.flush(false);
  };
}
