// Runs the API's pipelines inside the server: each in isolation (a failure is caught, logged and retried with
// exponential backoff), with its desired state persisted so a restarted server resumes it from its checkpoints.

import type { Logger } from 'pino';
import { startPipeline, type PipelineHandle, type PipelineResult, type RuntimeEnv } from '../core/runtime.js';
import { SluiceError, errorMessage } from '../core/errors.js';
import { formatIssue } from '../core/errors.js';
import type { ConnectorSpec } from '../core/spec.js';
import type { Sink, SluiceRecord } from '../core/types.js';
import type { PipelineDef } from '../core/model.js';
import { findConnector } from '../connectors/index.js';
import type { CompiledDocument } from '../config/compile.js';
import type { RunOptions } from '../core/runtime.js';
import type { ControlStore, PipelineRow } from './store.js';
import type { Scrubber } from './secrets.js';
import { transformFactory } from '../sql/index.js';

export type RunState = 'starting' | 'running' | 'paused' | 'draining' | 'completed' | 'stopped' | 'failed' | 'restarting';

export interface PipelineError {
  message: string;
  at: string;
}

export type Tap = (output: string, records: SluiceRecord[]) => void;

interface Entry {
  id: string;
  name: string;
  handle?: PipelineHandle;
  state: RunState;
  restarts: number;
  /** Failures in a row; the backoff grows with it and resets once a run lasted a while. */
  consecutive: number;
  startedAt?: number;
  errors: PipelineError[];
  timer?: NodeJS.Timeout;
  nextRestartAt?: number;
  taps: Set<Tap>;
}

export interface ManagerOptions {
  log: Logger;
  store: ControlStore;
  dataDir: string;
  scrubber: Scrubber;
  compile(row: PipelineRow): Promise<{ def?: PipelineDef; doc?: CompiledDocument; issues: { path: (string | number)[]; message: string }[] }>;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  drainTimeoutMs?: number;
}

/** A run that lasted this long counts as healthy: the next failure starts the backoff from the beginning. */
const HEALTHY_MS = 30_000;

export class PipelineManager {
  private readonly entries = new Map<string, Entry>();
  private closing = false;

  constructor(private readonly o: ManagerOptions) {}

  /** Start every pipeline whose desired state is running and that has not finished. */
  async resumeAll(): Promise<void> {
    for (const row of await this.o.store.listPipelines()) {
      const e = this.entry(row);
      if (row.finished) e.state = 'completed';
      else if (row.desired_state === 'running') await this.launch(row);
      else e.state = 'stopped';
    }
  }

  private entry(row: Pick<PipelineRow, 'id' | 'name'>): Entry {
    let e = this.entries.get(row.id);
    if (!e) this.entries.set(row.id, (e = { id: row.id, name: row.name, state: 'stopped', restarts: 0, consecutive: 0, errors: [], taps: new Set() }));
    return e;
  }

  private recordError(e: Entry, message: string) {
    e.errors.push({ message: this.o.scrubber.scrub(message), at: new Date().toISOString() });
    if (e.errors.length > 10) e.errors.shift();
  }

  /** Compile against the current catalog and start; a compile error leaves the pipeline failed (not retried). */
  async launch(row: PipelineRow): Promise<void> {
    const e = this.entry(row);
    if (this.closing || (e.handle && !['completed', 'stopped', 'failed'].includes(e.handle.status()))) return;
    clearTimeout(e.timer);
    e.timer = undefined;
    e.nextRestartAt = undefined;
    e.state = 'starting';
    let def: PipelineDef | undefined;
    let makeTransform: RunOptions['makeTransform'];
    try {
      const r = await this.o.compile(row);
      if (!r.def) {
        e.state = 'failed';
        this.recordError(e, `invalid configuration: ${r.issues.map(formatIssue).join('; ')}`);
        return;
      }
      def = r.def;
      // The runtime builds the transform, so records whose expression fails follow bad_data, and closes its lookups.
      makeTransform = transformFactory(def, { tables: r.doc?.tables, profiles: r.doc?.profiles });
    } catch (err) {
      e.state = 'failed';
      this.recordError(e, errorMessage(err));
      return;
    }
    let handle: PipelineHandle;
    try {
      handle = startPipeline(def, this.env(e, def), { drainTimeoutMs: this.o.drainTimeoutMs ?? 10_000, makeTransform });
    } catch (err) {
      this.recordError(e, errorMessage(err));
      this.scheduleRestart(e, row.id);
      return;
    }
    e.handle = handle;
    e.startedAt = Date.now();
    e.state = 'running';
    void handle.done.then((r) => this.onDone(e, handle, r));
  }

  private onDone(e: Entry, handle: PipelineHandle, r: PipelineResult) {
    if (e.handle !== handle) return;
    if (r.status === 'completed') {
      e.state = 'completed';
      e.consecutive = 0;
      void this.o.store.setPipelineState(e.id, { finished: true }).catch((err) => this.o.log.error({ pipeline: e.name, err: errorMessage(err) }, 'could not record that the pipeline finished'));
      return;
    }
    if (r.status === 'stopped') {
      e.state = 'stopped';
      return;
    }
    this.recordError(e, errorMessage(r.error ?? new Error('failed')));
    e.state = 'failed';
    if (!this.closing) this.scheduleRestart(e, e.id);
  }

  private scheduleRestart(e: Entry, id: string) {
    if (e.startedAt && Date.now() - e.startedAt >= HEALTHY_MS) e.consecutive = 0;
    e.consecutive++;
    const base = this.o.initialBackoffMs ?? 1000;
    const delay = Math.min(this.o.maxBackoffMs ?? 60_000, base * 2 ** (e.consecutive - 1));
    e.state = 'restarting';
    e.nextRestartAt = Date.now() + delay;
    this.o.log.warn({ pipeline: e.name, restart_in_ms: delay, restarts: e.restarts }, 'pipeline failed; restarting after backoff');
    e.timer = setTimeout(() => {
      e.timer = undefined;
      void (async () => {
        const row = await this.o.store.getPipeline(id);
        if (!row || row.desired_state !== 'running' || this.closing) return;
        e.restarts++;
        await this.launch(row);
      })().catch((err) => {
        this.recordError(e, errorMessage(err));
        this.scheduleRestart(e, id);
      });
    }, delay);
    e.timer.unref();
  }

  /** Looks up connectors for one run, wrapping its sinks so previews can see what each output writes. */
  private env(e: Entry, def: PipelineDef): RuntimeEnv {
    // The runtime creates sinks in a fixed order (routes, the default sink, the dead-letter sink); naming them by
    // that order needs no runtime hook.
    const outputs = [...(def.routes ?? []).map((r) => r.name), ...(def.sink ? ['sink'] : []), ...(def.dlq ? ['dlq'] : [])];
    let created = 0;
    const wrap = (spec: ConnectorSpec): ConnectorSpec => {
      if (!spec.sink) return spec;
      const inner = spec.sink;
      return {
        ...spec,
        sink: {
          ...inner,
          create: (options, info) => {
            const label = outputs[created++] ?? 'sink';
            return tapSink(inner.create(options, info), (records) => {
              for (const t of e.taps) {
                try {
                  t(label, records);
                } catch {
                  /* a preview client's trouble never reaches the pipeline */
                }
              }
            });
          },
        },
      };
    };
    return {
      log: this.o.log,
      state: this.o.store.state,
      dataDir: this.o.dataDir,
      connector(name) {
        const c = findConnector(name);
        if (!c) throw new SluiceError('CONFIG', `unknown connector '${name}'`);
        return wrap(c);
      },
    };
  }

  async stop(id: string): Promise<void> {
    const e = this.entries.get(id);
    if (!e) return;
    clearTimeout(e.timer);
    e.timer = undefined;
    e.nextRestartAt = undefined;
    if (e.handle && !['completed', 'stopped', 'failed'].includes(e.handle.status())) {
      e.state = 'draining';
      const h = e.handle;
      await h.stop();
      if (e.handle === h) e.state = 'stopped';
    } else if (e.state !== 'completed') e.state = 'stopped';
  }

  async remove(id: string): Promise<void> {
    await this.stop(id);
    this.entries.delete(id);
  }

  /** Restart after a start request: a finished or failed pipeline runs again from its checkpoints. */
  async restart(row: PipelineRow): Promise<void> {
    const e = this.entry(row);
    e.consecutive = 0;
    await this.launch(row);
  }

  tap(id: string, fn: Tap): () => void {
    const e = this.entries.get(id);
    e?.taps.add(fn);
    return () => void e?.taps.delete(fn);
  }

  status(id: string) {
    const e = this.entries.get(id);
    if (!e) return undefined;
    const h = e.handle;
    const hs = h?.status();
    const state: RunState = h && e.state === 'running' ? (hs === 'starting' || hs === 'draining' || hs === 'paused' ? hs : e.state) : e.state;
    return { state, paused_reason: state === 'paused' ? h?.pausedReason() : undefined, restarts: e.restarts, errors: e.errors, next_restart_at: e.nextRestartAt ? new Date(e.nextRestartAt).toISOString() : undefined, started_at: e.startedAt ? new Date(e.startedAt).toISOString() : undefined, handle: h };
  }

  /** Every pipeline with its current run, for metrics. */
  runs(): Array<{ id: string; name: string; state: RunState; restarts: number; handle?: PipelineHandle }> {
    return [...this.entries.values()].map((e) => ({ id: e.id, name: e.name, state: this.status(e.id)!.state, restarts: e.restarts, handle: e.handle }));
  }

  /** Drain every running pipeline (their desired state stays as it is, so the next start resumes them). */
  async shutdown(): Promise<void> {
    this.closing = true;
    await Promise.all(
      [...this.entries.values()].map(async (e) => {
        clearTimeout(e.timer);
        if (e.handle && !['completed', 'stopped', 'failed'].includes(e.handle.status())) await e.handle.stop().catch(() => undefined);
      }),
    );
  }
}

/** The same sink, with every accepted batch also shown to `onWritten`. */
function tapSink(sink: Sink, onWritten: (records: SluiceRecord[]) => void): Sink {
  return new Proxy(sink, {
    get(target, prop) {
      if (prop === 'write') {
        return async (records: SluiceRecord[]) => {
          await target.write(records);
          onWritten(records);
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
