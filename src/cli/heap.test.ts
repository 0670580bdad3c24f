import { describe, expect, it } from 'vitest';
import { DEFAULT_HEAP_GROWING_PERCENT, tuneHeap } from './heap.js';

describe('SLUICE_HEAP_GROWING_PERCENT', () => {
  const run = (v: string | undefined) => {
    const warnings: string[] = [];
    const applied = tuneHeap(v === undefined ? {} : { SLUICE_HEAP_GROWING_PERCENT: v }, (m) => warnings.push(m));
    return { applied, warnings };
  };

  it('defaults to 50 and takes a whole number, 0 meaning V8 decides', () => {
    expect(run(undefined)).toEqual({ applied: DEFAULT_HEAP_GROWING_PERCENT, warnings: [] });
    expect(run('30')).toEqual({ applied: 30, warnings: [] });
    expect(run(' 0 ')).toEqual({ applied: 0, warnings: [] });
  });

  it('names the variable and keeps the default for a value that is not a whole number', () => {
    const r = run('fifty');
    expect(r.applied).toBe(DEFAULT_HEAP_GROWING_PERCENT);
    expect(r.warnings).toEqual([expect.stringMatching(/SLUICE_HEAP_GROWING_PERCENT='fifty' is not a whole number/)]);
    expect(run('-5').warnings).toHaveLength(1);
  });
});
