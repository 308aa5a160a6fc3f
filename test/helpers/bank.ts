// Random LoRA banks built twice from the same inputs: once by the kernels, once by the float64
// reference (which rounds 16-bit dtypes exactly like the bank), plus the reference's
// "magnitude" twin with every weight and scale replaced by its absolute value.
import * as fs from 'node:fs';

import { kernels, reference } from '../../lib';
import type { RefBank } from '../../lib/reference';
import { Rng } from './rng';

export type Dtype = 'f32' | 'f16' | 'bf16';
export const DTYPES: Dtype[] = ['f32', 'f16', 'bf16'];

/** How 16-bit bank values are handed over: Float32Array (the bank rounds them) or Uint16Array bits. */
export type BankInput = 'float' | 'bits';

/** Dtype x input combinations: f32 takes floats only. */
export const BANK_KINDS: Array<{ dtype: Dtype; input: BankInput; label: string }> = [
  { dtype: 'f32', input: 'float', label: 'f32' },
  { dtype: 'f16', input: 'float', label: 'f16 from Float32Array' },
  { dtype: 'f16', input: 'bits', label: 'f16 from Uint16Array bits' },
  { dtype: 'bf16', input: 'float', label: 'bf16 from Float32Array' },
  { dtype: 'bf16', input: 'bits', label: 'bf16 from Uint16Array bits' },
];

export interface BankSpec {
  E: number;
  r: number;
  din: number;
  dout: number;
  dtype?: Dtype;
  input?: BankInput;
  /** per-expert ranks (the `ranks` option); omitted = all r */
  ranks?: number[];
  /** random per-expert scales (default true); false = no scales option (all 1) */
  scales?: boolean;
}

export interface TestBank {
  bank: kernels.LoraBank;
  ref: RefBank;
  /** ref with |a|, |b|, |scales|: the reference run on it gives Σ|terms| for error bounds */
  abs: RefBank;
  spec: Required<Omit<BankSpec, 'ranks'>> & { ranks: number[] };
  /** the exact arguments given to createLoraBank */
  options: kernels.LoraBankOptions;
}

/**
 * A bank with values uniform in [-1, 1) (never zeros), random scales of both signs in
 * ±[0.25, 2), and NaN in the padding (A rows and B columns past an expert's rank) so that
 * reading padding shows up as NaN in the results.
 */
export function randomBank(rng: Rng, spec: BankSpec): TestBank {
  const { E, r, din, dout } = spec;
  const dtype = spec.dtype ?? 'f32';
  const input = spec.input ?? 'float';
  const ranks = spec.ranks ?? new Array<number>(E).fill(r);
  const a = rng.f32(E * r * din);
  const b = rng.f32(E * dout * r);
  for (let e = 0; e < E; e++) {
    for (let q = ranks[e]; q < r; q++) {
      a.fill(NaN, (e * r + q) * din, (e * r + q + 1) * din);
      for (let o = 0; o < dout; o++) b[(e * dout + o) * r + q] = NaN;
    }
  }
  const useScales = spec.scales ?? true;
  const scales = useScales ? Float32Array.from({ length: E }, () => rng.signed(0.25, 2)) : undefined;
  const ranksArr = spec.ranks ? Int32Array.from(spec.ranks) : undefined;
  const conv = (v: Float32Array) => (dtype !== 'f32' && input === 'bits' ? kernels.toBits(v, dtype) : v);
  const options: kernels.LoraBankOptions = {
    experts: E, rank: r, din, dout, dtype, a: conv(a), b: conv(b), scales, ranks: ranksArr,
  };
  const bank = kernels.createLoraBank(options);
  const ref = reference.refBank({ ...options });
  return {
    bank,
    ref,
    abs: absBank(ref),
    spec: { E, r, din, dout, dtype, input, scales: useScales, ranks },
    options,
  };
}

/** The reference bank with every weight and scale replaced by its absolute value. */
export function absBank(ref: RefBank): RefBank {
  return {
    ...ref,
    a: ref.a.map(Math.abs),
    b: ref.b.map(Math.abs),
    scales: ref.scales.map(Math.abs),
  };
}

export function absArray(v: ArrayLike<number>): Float64Array {
  return Float64Array.from(v, Math.abs);
}

/**
 * Rows of expert ids [T, k] with the patterns real traffic has: runs of identical rows (one
 * request's prefill: the kernel groups up to 4 such tokens), some -1 slots, some rows of only
 * -1 (base-only tokens). Ids within a row are distinct unless `repeats` (then drawn with
 * replacement). The first `minusOneRows` of the rows listed in `allMinusOne` are forced to -1.
 */
export function randomIds(
  rng: Rng, T: number, k: number, E: number,
  opts: { skipRate?: number; allMinusOneRate?: number; maxRun?: number; repeats?: boolean; forceMinusOneRows?: number[] } = {},
): Int32Array {
  const skipRate = opts.skipRate ?? 0.15;
  const allRate = opts.allMinusOneRate ?? 0.1;
  const maxRun = opts.maxRun ?? 6;
  const ids = new Int32Array(T * k);
  for (let t = 0; t < T;) {
    const row = opts.repeats ? Array.from({ length: k }, () => rng.int(0, E)) : rng.distinct(E, k);
    if (rng.float() < allRate) row.fill(-1);
    else for (let j = 0; j < k; j++) if (rng.float() < skipRate) row[j] = -1;
    const run = Math.min(T - t, 1 + rng.int(0, maxRun));
    for (let i = 0; i < run; i++, t++) ids.set(row, t * k);
  }
  for (const t of opts.forceMinusOneRows ?? []) if (t < T) ids.fill(-1, t * k, (t + 1) * k);
  return ids;
}

/** Per-slot mixing weights: softmax-like positive values, some negative, never zero. */
export function randomWeights(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.signed(0.05, 1.5));
}

// ---------------------------------------------------------------------------------------------
// SIMD levels

export const ALL_SIMD = ['scalar', 'avx2', 'avx512'] as const;
export type SimdLevel = (typeof ALL_SIMD)[number];

/** What /proc/cpuinfo says this CPU supports (the dispatcher's own rule), or undefined off Linux. */
export function cpuinfoBest(): SimdLevel | undefined {
  let text: string;
  try {
    text = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return undefined;
  }
  const flags = new Set((text.match(/^flags\s*:(.*)$/m)?.[1] ?? '').trim().split(/\s+/));
  if (flags.has('avx512f') && flags.has('avx512bw') && flags.has('avx512vl')) return 'avx512';
  if (flags.has('avx2') && flags.has('fma') && flags.has('f16c')) return 'avx2';
  return 'scalar';
}

/** The levels this machine can run: every level up to the best the dispatcher picks. */
export function simdLevels(): SimdLevel[] {
  const best = kernels.setSimd('avx512') as SimdLevel;
  return ALL_SIMD.slice(0, ALL_SIMD.indexOf(best) + 1);
}

/**
 * describe() once per SIMD level: caps the level before the block's tests and restores
 * 'avx512' (the best) after them.
 */
export function describeEachSimd(body: (level: SimdLevel) => void): void {
  for (const level of simdLevels()) {
    describe(`SIMD ${level}`, () => {
      beforeAll(() => {
        const got = kernels.setSimd(level);
        if (got !== level) throw new Error(`setSimd('${level}') returned '${got}'`);
      });
      afterAll(() => {
        kernels.setSimd('avx512');
      });
      body(level);
    });
  }
}
