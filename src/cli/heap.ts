// V8 lets the old generation grow to two to four times the live heap before a full GC. A pipeline's live heap is small
// and steady (bounded queues), but at a few hundred thousand records/s many records outlive two scavenges, so the old
// generation fills with garbage and the peak RSS follows that factor, not the live size. A fixed 50% growth measured
// (docs/benchmarks.md, "Memory"): websocket->file-jsonl peak 166 -> 146 MB, websocket->blackhole+schema 165 -> 134 MB,
// the durable buffer under a slow sink 171 -> 127 MB, at equal throughput; CSV decoding 3.6 -> 4.6 CPU s (still
// twice the bare baseline's speed). So it is the default, and `SLUICE_HEAP_GROWING_PERCENT=0` restores V8's own.

import { setFlagsFromString } from 'node:v8';

export const DEFAULT_HEAP_GROWING_PERCENT = 50;

/**
 * Applies `SLUICE_HEAP_GROWING_PERCENT` (a whole number; 0 = V8's dynamic default), else the default 50. Returns what
 * was applied, and `warn` gets a message for a value that is not a whole number (which is then ignored).
 */
export function tuneHeap(env: NodeJS.ProcessEnv = process.env, warn: (msg: string) => void = (m) => process.stderr.write(`sluice: ${m}\n`)): number {
  const v = env.SLUICE_HEAP_GROWING_PERCENT?.trim();
  let pct = DEFAULT_HEAP_GROWING_PERCENT;
  if (v !== undefined && v !== '') {
    if (/^\d{1,3}$/.test(v)) pct = Number(v);
    else warn(`SLUICE_HEAP_GROWING_PERCENT='${v.slice(0, 40)}' is not a whole number from 0 to 999; using ${DEFAULT_HEAP_GROWING_PERCENT}`);
  }
  // 0 is V8's own value for the flag: it picks the factor from the allocation rate.
  setFlagsFromString(`--heap-growing-percent=${pct}`);
  return pct;
}
