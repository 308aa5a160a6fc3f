// Run-time facts and knobs of the kernels.
import { binding } from './binding';

export interface KernelInfo {
  /** 'cpu' always; 'cuda' only when a CUDA device is usable. */
  backends: string[];
  /** SIMD level in use: 'avx512', 'avx2' or 'scalar'. */
  simd: string;
  /** Threads the CPU kernels use for large work. */
  threads: number;
}

export function info(): KernelInfo {
  return binding().info();
}

/** Threads for large work; n <= 0 restores the default (PERSONAFUSE_NUM_THREADS or all cores). */
export function setThreads(n: number): void {
  binding().setThreads(n);
}

/** Caps the SIMD level ('scalar' | 'avx2' | 'avx512'); returns the level now in use. */
export function setSimd(level: 'scalar' | 'avx2' | 'avx512'): string {
  return binding().setSimd(level);
}
