// The codec thread: a worker that decodes, validates and encodes JSON for pipelines where that is most of the work
// (JSON in, a declared schema, JSON lines out), so the socket, the runtime and the sink keep the main thread and the
// parse/fit/stringify runs beside them on a second core. Moving rows between threads would cost as much as parsing
// them again (structured clone is slower than JSON.parse), so only bytes cross: payloads in, encoded lines out. The
// main thread builds each row again only if something asks for it (see `offloadedRecord`).

import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { CodecError, CodecInit, CodecReply } from './codec-worker.js';
import { RecordError, SluiceError, type ErrorCode } from './errors.js';
import type { SluiceRecord } from './types.js';

export type { CodecInit, CodecReply, CodecError } from './codec-worker.js';

export interface CodecThread {
  /** Decodes, fits and encodes the payloads on the codec thread; replies come back in the order of the calls. */
  run(payloads: ReadonlyArray<string | Uint8Array>): Promise<CodecReply>;
  /** Batches sent and not yet answered. */
  readonly inFlight: number;
  close(): Promise<void>;
}

/**
 * The worker's compiled file. Under the test runner this module is TypeScript in src/, which a worker thread cannot
 * load; the build's copy in dist/ is the same code (`npm install` builds it, as the server tests rely on too).
 */
function workerUrl(): URL {
  const here = new URL('./codec-worker.js', import.meta.url);
  if (!import.meta.url.endsWith('.ts')) return here;
  return new URL(fileURLToPath(here).replace(/\/src\/core\/codec-worker\.js$/, '/dist/core/codec-worker.js'), 'file://');
}

export function startCodecThread(init: CodecInit, onCrash: (err: Error) => void): CodecThread {
  const worker = new Worker(workerUrl(), { workerData: init });
  const waiting: Array<{ resolve: (r: CodecReply) => void; reject: (e: Error) => void }> = [];
  let dead: Error | undefined;
  let closing = false;
  const die = (err: Error) => {
    if (dead) return;
    dead = err;
    for (const w of waiting.splice(0)) w.reject(err);
    if (!closing) onCrash(err);
  };
  worker.on('message', (reply: CodecReply) => {
    waiting.shift()?.resolve(reply);
    if (!waiting.length) worker.unref();
  });
  worker.on('error', (e) => die(new SluiceError('INTERNAL', `the codec thread failed: ${e.message}`, { cause: e })));
  worker.on('exit', (code) => die(new SluiceError('INTERNAL', `the codec thread exited (code ${code})`)));
  // An idle codec thread must not keep the process alive; one with batches in flight must, or a draining pipeline
  // could see the process exit under it.
  worker.unref();
  return {
    run(payloads) {
      if (dead) return Promise.reject(dead);
      const n = payloads.length;
      const ends = new Uint32Array(n);
      const text = new Uint8Array(n);
      let size = 0;
      for (let i = 0; i < n; i++) {
        const p = payloads[i]!;
        size += typeof p === 'string' ? Buffer.byteLength(p) : p.byteLength;
        ends[i] = size;
      }
      const bytes = new ArrayBuffer(size);
      const all = Buffer.from(bytes);
      let at = 0;
      for (let i = 0; i < n; i++) {
        const p = payloads[i]!;
        if (typeof p === 'string') {
          text[i] = 1;
          at += all.write(p, at);
        } else {
          all.set(p, at);
          at += p.byteLength;
        }
      }
      return new Promise<CodecReply>((resolve, reject) => {
        if (!waiting.length) worker.ref();
        waiting.push({ resolve, reject });
        worker.postMessage({ bytes, ends, text }, [bytes, ends.buffer, text.buffer]);
      });
    },
    get inFlight() {
      return waiting.length;
    },
    async close() {
      closing = true;
      await worker.terminate();
    },
  };
}

/**
 * A record whose row the codec thread encoded: `encoded` is that row as JSON (UTF-8, a view into the reply's buffer,
 * followed there by `\n` and the next record's row), and the row itself is built
 * again on this thread (decode + schema, as inline) only when something reads `value`. Setting `value` drops
 * `encoded`, so an encoder never writes text that no longer matches the row.
 */
export class OffloadedRecord implements SluiceRecord {
  encoded: Uint8Array | undefined;
  private row: unknown;
  private built = false;
  constructor(
    /** The source payload this row came from, and the row's index among the rows it decodes to. */
    private readonly payload: string | Uint8Array,
    private readonly index: number,
    private readonly rebuild: (payload: string | Uint8Array, index: number) => unknown,
    encoded: Uint8Array,
    public raw: string | Uint8Array | undefined,
    public timestamp: number | undefined,
    public meta: Record<string, unknown> | undefined,
    public key: string | Uint8Array | null | undefined,
    public headers: Record<string, string | Uint8Array> | undefined,
  ) {
    this.encoded = encoded;
  }
  get value(): unknown {
    if (!this.built) {
      this.row = this.rebuild(this.payload, this.index);
      this.built = true;
    }
    return this.row;
  }
  set value(v: unknown) {
    this.row = v;
    this.built = true;
    this.encoded = undefined;
  }
}

/** The error the codec thread reported, as the class and message the inline path would have given. */
export function codecError(ce: CodecError): Error {
  if (ce.name === 'RecordError') {
    // The message already names the field; the constructor would name it again.
    const e = new RecordError(ce.code as 'DECODE' | 'SCHEMA', ce.message);
    (e as { field?: string }).field = ce.field;
    return e;
  }
  if (ce.name === 'SluiceError') return new SluiceError(ce.code as ErrorCode, ce.message);
  return new Error(ce.message);
}
