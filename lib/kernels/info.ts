// Run-time facts and knobs of the kernels.
import { binding, CudaInfo, defaultKernelThreads } from './binding';

export type { CudaInfo };

export interface KernelInfo {
  /** 'cpu' always; 'cuda' only when a CUDA device is usable. */
  backends: string[];
  /** SIMD level in use: 'avx512', 'avx2' or 'scalar'. */
  simd: string;
  /** Threads the CPU kernels use for large work. */
  threads: number;
  /** The CUDA backend: available, or the reason it is not; the library and devices it found. */
  cuda: CudaInfo;
}

/** Also opens the CUDA plugin the first time (libpersonafuse_cuda.so, if built). */
export function info(): KernelInfo {
  return binding().info();
}

/** Threads for large work; 0 restores the default (PERSONAFUSE_NUM_THREADS, else the cores this
 *  process may use, a CPU quota included: lib/cores.ts). Anything but an integer 0-1024 is refused
 *  by the native layer, by name. */
export function setThreads(n: number): void {
  binding().setThreads(n === 0 ? (defaultKernelThreads() ?? 0) : n);
}

/**
 * Options of the CUDA library, process-wide (throws when no device is usable):
 * - sync_checks (1, default): each device op waits and reports a data fault (NaN logit, id out of
 *   range) exactly as the CPU op does; 0: the op's call still returns (or resolves) once the GPU
 *   is done, but a fault is reported as "... with sync_checks off found ..." (saves a copy per op).
 * - check_pointers (1, default): each array is checked to be device memory of the right size.
 * - moe_prefill_min_tokens (2048): T from which loraMoe groups tokens by expert and uses tensor
 *   cores (f16/bf16 banks); 0 = always when possible, -1 = never.
 * - moe_fused_max_tokens (0 = never): T up to which loraMoe runs as one kernel (decode steps);
 *   off until a GPU benchmark sets it. moe_prefill_min_tokens wins where both apply.
 * - moe_dense_max_columns (0 = never): from moe_prefill_min_tokens on, banks whose experts' ranks
 *   add up to at most this many columns (<= 256, E <= 64) multiply every expert densely, each
 *   token's gates as a mask; off until a GPU benchmark sets it.
 */
export type CudaOption =
  | 'sync_checks'
  | 'check_pointers'
  | 'moe_prefill_min_tokens'
  | 'moe_fused_max_tokens'
  | 'moe_dense_max_columns';

export function setCudaOption(name: CudaOption, value: number): void {
  binding().setCudaOption(name, value);
}

export function getCudaOption(name: CudaOption): number {
  return binding().getCudaOption(name);
}

/** Caps the SIMD level ('scalar' | 'avx2' | 'avx512'); returns the level now in use. */
export function setSimd(level: 'scalar' | 'avx2' | 'avx512'): string {
  return binding().setSimd(level);
}
