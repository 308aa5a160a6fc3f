// A small seeded random source for sampling. Each request owns one, so its draws never depend on
// what else is in the batch: same seed + same input -> same tokens.
//   state: 32-bit, mulberry32 step; next() in [0, 1) with 2^-32 resolution
// mulberry32 is also the benchmarks' and the tests' generator (one implementation for all three);
// fnv1a hashes strings to 32 bits (the tests' per-name seeds, a router's n-gram buckets).
import { randomInt } from 'node:crypto';

// a local reference: global lookups are slow inside jest's vm context, where the tests run this
const imul = Math.imul;

/** mulberry32: a tiny 32-bit PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a, 32-bit, over a string's UTF-16 code units. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class Rng {
  readonly #next: () => number;

  constructor(seed: number) {
    // fold any safe integer (also negative or > 2^32) into 32 bits, deterministically
    this.#next = mulberry32((seed >>> 0) ^ Math.floor(seed / 0x100000000) >>> 0);
  }

  next(): number {
    return this.#next();
  }
}

/** A seed for requests that give none (reported back so a run can be repeated). */
export function randomSeed(): number {
  return randomInt(0, 2 ** 31);
}
