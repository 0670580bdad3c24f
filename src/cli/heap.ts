// V8 lets the old generation grow to about twice the live heap before a full GC. A pipeline's live heap is small and
// steady (bounded queues), so for memory-tight deployments a smaller growth factor trades CPU for RSS. Measured with
// 50 (docs/benchmarks.md, "Memory"): websocket->file-jsonl peak RSS 172 -> 157 MB at equal speed, but
// file-csv->file-jsonl spent 33% more CPU, so it is opt-in, not the default.

import { setFlagsFromString } from 'node:v8';

/** Applies `SLUICE_HEAP_GROWING_PERCENT` (a whole number, e.g. 50) when set; V8's default otherwise. */
export function tuneHeap(env: NodeJS.ProcessEnv = process.env): void {
  const v = env.SLUICE_HEAP_GROWING_PERCENT;
  if (v === undefined || !/^\d{1,3}$/.test(v)) return;
  setFlagsFromString(`--heap-growing-percent=${v}`);
}
