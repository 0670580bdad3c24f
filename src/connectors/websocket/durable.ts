// The durable buffer lives in core (src/core/durable-buffer.ts); this names what the source uses of it.

import { openDurableBuffer, type DurableBufferOptions } from '../../core/durable-buffer.js';
import type { SourceContext } from '../../core/types.js';

export type { DurableBufferOptions };
export type DurableBufferHandle = Awaited<ReturnType<typeof openDurableBuffer>>;

export function openBuffer(real: SourceContext, opts: DurableBufferOptions): Promise<DurableBufferHandle> {
  return openDurableBuffer(real, opts);
}
