// Shared by the bad-input suite: one fast-check seed per run (printed, overridable with FC_SEED) and the checks that
// an error reaching a user is readable.

import fc from 'fast-check';
import { expect } from 'vitest';

const fromEnv = process.env.FC_SEED;
/** Fixed by default so a failure reproduces; FC_SEED=<n> explores other inputs. */
export const SEED = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : 20_261_205;
if (!Number.isInteger(SEED)) throw new Error(`FC_SEED must be an integer, got '${fromEnv}'`);

let printed = false;
/** fast-check parameters with the suite's seed and a bounded number of runs. */
export function params<T>(numRuns: number): fc.Parameters<T> {
  if (!printed) {
    printed = true;
    console.log(`bad-input: fast-check seed ${SEED} (override with FC_SEED)`);
  }
  return { seed: SEED, numRuns, endOnFailure: true };
}

/** A line of a V8 stack trace (`    at fn (file:1:2)`). */
export const STACK_LINE = /^\s+at .+/m;

/** A message a user can read: non-empty, one error, no stack frames, no `[object Object]`. */
export function expectReadable(message: string | undefined): void {
  expect(typeof message).toBe('string');
  expect(message!.length).toBeGreaterThan(0);
  expect(message).not.toMatch(STACK_LINE);
  expect(message).not.toContain('[object Object]');
  expect(message).not.toMatch(/\bundefined\b.*is not a function|Cannot read properties of/);
}

/** Runs `fn` and fails when it takes longer than `ms` (a decoder that hangs on some input). */
export function bounded<T>(ms: number, what: string, fn: () => T): T {
  const t0 = performance.now();
  const r = fn();
  const took = performance.now() - t0;
  if (took > ms) throw new Error(`${what} took ${Math.round(took)} ms (bound ${ms} ms)`);
  return r;
}

/** Mutations of a valid text: truncation, a deleted/duplicated/replaced slice, an inserted random piece. */
export function mutatedText(valid: string, pieces: fc.Arbitrary<string> = fc.string({ unit: 'binary', maxLength: 12 })): fc.Arbitrary<string> {
  const n = valid.length;
  const pos = fc.nat({ max: n });
  return fc.oneof(
    pos.map((i) => valid.slice(0, i)),
    fc.tuple(pos, fc.nat({ max: 20 })).map(([i, k]) => valid.slice(0, i) + valid.slice(i + k)),
    fc.tuple(pos, pieces).map(([i, s]) => valid.slice(0, i) + s + valid.slice(i)),
    fc.tuple(pos, fc.nat({ max: 20 }), pieces).map(([i, k, s]) => valid.slice(0, i) + s + valid.slice(i + k)),
    fc.tuple(pos, fc.nat({ max: 30 })).map(([i, k]) => valid.slice(0, i + k) + valid.slice(i, i + k) + valid.slice(i + k)),
  );
}

/** Byte-level mutations of a valid payload: truncation, flipped bytes and inserted bytes (at or after `from`). */
export function mutatedBytes(valid: Uint8Array, from = 0): fc.Arbitrary<Uint8Array> {
  const n = valid.length;
  const pos = fc.integer({ min: Math.min(from, Math.max(0, n - 1)), max: Math.max(0, n - 1) });
  return fc.oneof(
    fc.nat({ max: n }).map((i) => valid.slice(0, i)),
    fc.array(fc.tuple(pos, fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }).map((flips) => {
      const b = valid.slice();
      for (const [i, v] of flips) if (i < b.length) b[i] = v;
      return b;
    }),
    fc.tuple(fc.nat({ max: n }), fc.uint8Array({ minLength: 1, maxLength: 8 })).map(([i, ins]) => {
      const b = new Uint8Array(n + ins.length);
      b.set(valid.subarray(0, i));
      b.set(ins, i);
      b.set(valid.subarray(i), i + ins.length);
      return b;
    }),
    fc.uint8Array({ maxLength: 64 }),
  );
}
