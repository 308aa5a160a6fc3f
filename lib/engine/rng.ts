// A small seeded random source for sampling. Each request owns one, so its draws never depend on
// what else is in the batch: same seed + same input -> same tokens.
//   state: 32-bit, mulberry32 step; next() in [0, 1) with 2^-32 resolution
import { randomInt } from 'node:crypto';

export class Rng {
  #state: number;

  constructor(seed: number) {
    // fold any safe integer (also negative or > 2^32) into 32 bits, deterministically
    this.#state = (seed >>> 0) ^ Math.floor(seed / 0x100000000) >>> 0;
  }

  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** A seed for requests that give none (reported back so a run can be repeated). */
export function randomSeed(): number {
  return randomInt(0, 2 ** 31);
}
