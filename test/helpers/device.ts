// The CUDA backend's test cases (test/device.test.ts and test/device_<op>.test.ts, which
// `npm run test:gpu` runs as `jest test/device`): which cases run on this machine, and the same
// random bank on both backends.
//
// On a machine without a usable device (CI: nvcc but no GPU or driver) the GPU cases are
// reported as skipped, each file printing one line "skipped: no CUDA device (<reason>)". With
// PERSONAFUSE_REQUIRE_CUDA=1 (npm run test:gpu) a missing device is a failure (device.test.ts).
//
// Tolerance of the GPU-vs-CPU comparisons: both backends compute in float32 from the same bank
// bits (16-bit weights decode exactly), in different summation orders, so each output element
// differs by at most (number of roundings) · u · M, M the sum of the magnitudes of its terms
// (the CPU op run on |inputs|), as in lora_moe.test.ts; u is check.ts's U32, boundFrom's default
// unit. topk_softmax's exp differs between the backends by a few ulp, so weights get a small
// relative bound and ids must match exactly.
import * as kernels from '../../lib/kernels';
import { POISON_BITS } from './check';
import { Rng } from './rng';

export type Dtype = 'f32' | 'f16' | 'bf16';
export const DTYPES: Dtype[] = ['f32', 'f16', 'bf16'];

export const info = kernels.info();
export const cudaAvailable = info.cuda.available;
export const requireCuda = process.env.PERSONAFUSE_REQUIRE_CUDA === '1';
export const gpuTest = cudaAvailable ? test : test.skip;
export const noGpuTest = cudaAvailable ? test.skip : test;

/** One line saying which device the file's GPU cases run on, or why they are skipped. */
export function logDevice(): void {
  if (!cudaAvailable) console.log(`skipped: no CUDA device (${info.cuda.reason})`);
  else console.log(`CUDA device: ${info.cuda.devices?.[0]?.name} (compute capability ${info.cuda.devices?.[0]?.computeCapability})`);
}

export interface Bank {
  cpu: kernels.LoraBank;
  gpu: kernels.LoraBank;
  /** the CPU kernels on |a|, |b|, |scales|: magnitudes for error bounds */
  abs: kernels.LoraBank;
  E: number; r: number; din: number; dout: number;
}

/** The same random bank on both backends (16-bit dtypes rounded once, here, to the same bits). */
export function makeBank(rng: Rng, E: number, r: number, din: number, dout: number, dtype: Dtype, ranks?: number[]): Bank {
  const round = (v: Float32Array) => (dtype === 'f32' ? v : kernels.toBits(v, dtype));
  const a = round(rng.f32(E * r * din));
  const b = round(rng.f32(E * dout * r));
  const scales = Float32Array.from({ length: E }, () => rng.signed(0.25, 2));
  const opts = { experts: E, rank: r, din, dout, dtype, a, b, scales, ranks: ranks ? Int32Array.from(ranks) : undefined };
  const absOf = (v: Float32Array | Uint16Array) =>
    v instanceof Float32Array ? v.map(Math.abs) : (v as Uint16Array).map((h) => h & 0x7fff);
  return {
    cpu: kernels.createLoraBank(opts),
    gpu: kernels.createLoraBank({ ...opts, device: 'cuda' }),
    abs: kernels.createLoraBank({ ...opts, a: absOf(a), b: absOf(b), scales: scales.map(Math.abs) }),
    E, r, din, dout,
  };
}

export function disposeBank(b: Bank): void {
  b.cpu.dispose();
  b.gpu.dispose();
  b.abs.dispose();
}

/** Expert ids [n] in [-1, E) with some -1 slots, distinct within each row of k. */
export function randomIds(rng: Rng, rows: number, k: number, E: number): Int32Array {
  const ids = new Int32Array(rows * k);
  for (let t = 0; t < rows; t++) {
    const row = rng.distinct(E, k);
    for (let j = 0; j < k; j++) ids[t * k + j] = rng.float() < 0.15 ? -1 : row[j];
  }
  return ids;
}

export const randomWeights = (rng: Rng, n: number) => Float32Array.from({ length: n }, () => rng.signed(0.05, 1.5));

/** Device memory that held POISON_BITS: the allocator tends to hand the same block out next,
 *  so an output the kernel fails to write shows up as poison. */
export function poisonDeviceHeap(length: number): void {
  if (length === 0) return;
  const p = new Float32Array(length);
  new Uint32Array(p.buffer).fill(POISON_BITS);
  kernels.toDevice(p).dispose();
}

export const dev = kernels.toDevice;

/** s as a RegExp that matches it literally (to expect the CPU op's exact message). */
export function reEscape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
