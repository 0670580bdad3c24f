// The durable buffer lives in core (src/core/durable-buffer.ts). It is loaded on first use so a memory-buffered source
// never pays for it.

import { SluiceError, errorMessage } from '../../core/errors.js';
import type { SourceContext } from '../../core/types.js';

export interface DurableBufferOptions {
  dir: string;
  maxBytes: number;
  segmentBytes?: number;
  fsync: 'never' | 'interval' | 'always';
  fsyncIntervalMs?: number;
  onFull: 'block' | 'drop_oldest' | 'drop_newest';
}

export interface DurableBufferHandle {
  /** Emit here: it appends to disk, and a replay loop feeds the real pipeline. */
  readonly ctx: SourceContext;
  commit(acks: unknown[]): Promise<void>;
  close(): Promise<void>;
  /** Resolves once the replay loop stopped (after the pipeline's signal aborted). */
  readonly done: Promise<void>;
  stats(): Record<string, unknown>;
}

type Opener = (real: SourceContext, opts: DurableBufferOptions) => Promise<DurableBufferHandle>;

export async function openBuffer(real: SourceContext, opts: DurableBufferOptions): Promise<DurableBufferHandle> {
  // A computed specifier keeps the compiler from requiring the module while it is being written.
  const specifier = '../../core/durable-buffer.js';
  let open: Opener | undefined;
  try {
    const mod = (await import(specifier)) as { openDurableBuffer?: Opener };
    open = mod.openDurableBuffer;
  } catch (e) {
    throw new SluiceError('CONFIG', `buffer: durable is not available in this build: ${errorMessage(e)}`, { cause: e });
  }
  if (!open) throw new SluiceError('CONFIG', 'buffer: durable is not available in this build');
  return open(real, opts);
}
