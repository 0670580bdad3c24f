// A small seedable PRNG. Math.random cannot be seeded, and reproducible data (same seed => same rows) is the point of
// the `seed` option, so every random choice the generator makes goes through one of these.

export class Prng {
  private s: number;

  constructor(seed: number) {
    // Fold seeds beyond 32 bits in instead of silently dropping their high part.
    this.s = (seed >>> 0) ^ (Math.floor(seed / 4294967296) >>> 0);
  }

  /** Uniform in [0, 1). Mulberry32: one 32-bit state, a few integer multiplies, passes the usual quick tests. */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [lo, hi], both ends included. */
  between(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  pick<T>(a: readonly T[]): T {
    return a[Math.floor(this.next() * a.length)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  /** Roughly standard normal (sum of three uniforms): bell-shaped, bounded at ±3, no logs or square roots. */
  normal(): number {
    return (this.next() + this.next() + this.next() - 1.5) * 2;
  }

  /** Exponential with mean 1, for latencies and other long-tailed quantities. */
  exponential(): number {
    return -Math.log(1 - this.next());
  }
}

/** A seed for runs where the user gave none; logged so such a run can be reproduced. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 4294967296);
}
