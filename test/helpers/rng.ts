// Seeded randomness for the tests: every test draws fresh inputs from its own PRNG, and every
// failure message names the seed so the exact inputs can be replayed.
//
//   const rng = testRng();          // seeded from PF_TEST_SEED (or a random base) and the test's name
//   ... expectClose(...)            // messages end with seedNote(): "seed 123 (rerun with PF_TEST_SEED=...)"
//
// The base seed is random per run unless PF_TEST_SEED is set, so each run checks new data; the
// tolerances are worst-case bounds, so fresh data cannot make a correct kernel fail.

import { fnv1a, mulberry32 } from '../../lib/rng';

export { mulberry32 };

export const BASE_SEED: number =
  process.env.PF_TEST_SEED !== undefined ? Number(process.env.PF_TEST_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;

export class Rng {
  readonly seed: number;
  private readonly next: () => number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.next = mulberry32(this.seed);
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next();
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor((hi - lo) * this.next());
  }

  /** Random Float32Array with values in [lo, hi) (default [-1, 1)). */
  f32(n: number, lo = -1, hi = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.next();
    return out;
  }

  /** A nonzero value of random sign with magnitude in [lo, hi). */
  signed(lo: number, hi: number): number {
    const m = this.uniform(lo, hi);
    return this.next() < 0.5 ? -m : m;
  }

  /** k distinct integers of [0, n) in random order (k <= n). */
  distinct(n: number, k: number): number[] {
    const all = Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor((n - i) * this.next());
      [all[i], all[j]] = [all[j], all[i]];
    }
    return all.slice(0, k);
  }
}

let currentNote = `base seed ${BASE_SEED}`;

/** A PRNG seeded from the base seed and the running test's full name (plus an optional salt). */
export function testRng(salt = ''): Rng {
  const name = expect.getState().currentTestName ?? '';
  const seed = (BASE_SEED ^ fnv1a(`${name}#${salt}`)) >>> 0;
  currentNote = `seed ${seed} of test "${name}"${salt ? ` salt "${salt}"` : ''} (rerun with PF_TEST_SEED=${BASE_SEED})`;
  return new Rng(seed);
}

/** The seed of the most recent testRng(), for failure messages. */
export function seedNote(): string {
  return currentNote;
}
