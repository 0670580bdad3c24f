// The `random` template (eKuiper's random source): the user writes one example row and every generated row has the
// same shape with values varied around the example. The pattern is compiled once into a tree of small functions so
// that generating a row walks no type checks.

import type { Prng } from './prng.js';
import { IsoCache } from './clock.js';

type Gen = (ts: number) => unknown;

const ISO_DATE = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/** A function producing one row per call from an example value; `ts` is the event time in ms. */
export function compilePattern(pattern: unknown, rng: Prng): (ts: number) => unknown {
  return compile(pattern, rng, new IsoCache());
}

function compile(v: unknown, rng: Prng, clock: IsoCache): Gen {
  if (v === null || v === undefined) return () => null;
  if (typeof v === 'boolean') return () => rng.next() < 0.5;
  if (typeof v === 'number') return numberGen(v, rng);
  if (typeof v === 'string') return stringGen(v, rng, clock);
  if (v instanceof Date) return (ts) => clock.iso(ts);
  if (Array.isArray(v)) {
    // A list in the example means "one of these": the way to ask for an enum-like field.
    if (v.length === 0) return () => [];
    const gens = v.map((x) => compile(x, rng, clock));
    if (gens.length === 1) return gens[0]!;
    return (ts) => gens[Math.floor(rng.next() * gens.length)]!(ts);
  }
  if (typeof v === 'object') {
    const keys = Object.keys(v);
    const gens = keys.map((k) => compile((v as Record<string, unknown>)[k], rng, clock));
    const n = keys.length;
    return (ts) => {
      const o: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) o[keys[i]!] = gens[i]!(ts);
      return o;
    };
  }
  return () => v;
}

/** Between 0 and twice the example (keeping its sign): `50` gives 0..100. Integers stay integers; decimals keep the example's precision (at least 2 places). */
function numberGen(v: number, rng: Prng): Gen {
  if (!Number.isFinite(v) || v === 0) return () => v;
  const lo = Math.min(0, 2 * v);
  const width = Math.abs(2 * v);
  if (Number.isInteger(v)) return () => lo + Math.floor(rng.next() * (width + 1));
  const places = Math.min(6, Math.max(2, decimals(v)));
  const scale = 10 ** places;
  return () => Math.round((lo + rng.next() * width) * scale) / scale;
}

function decimals(v: number): number {
  const s = String(v);
  const dot = s.indexOf('.');
  return dot < 0 || s.includes('e') ? 0 : s.length - dot - 1;
}

/**
 * A date-like string becomes the event time; every run of digits is replaced with random digits of the same length
 * (`sensor-12` -> `sensor-47`), so ids vary but keep their look; a string without digits is a constant.
 */
function stringGen(v: string, rng: Prng, clock: IsoCache): Gen {
  if (ISO_DATE.test(v)) return (ts) => clock.iso(ts);
  const parts = v.split(/(\d+)/);
  if (parts.length === 1) return () => v;
  // Odd indexes of the split are the digit runs.
  const widths = parts.map((p, i) => (i % 2 === 1 ? p.length : 0));
  return () => {
    let s = '';
    for (let i = 0; i < parts.length; i++) {
      if (i % 2 === 0) s += parts[i]!;
      else for (let w = widths[i]!; w > 0; w--) s += Math.floor(rng.next() * 10);
    }
    return s;
  };
}
