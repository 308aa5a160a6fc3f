// The native addon: its typed interface and a loader that explains itself when it fails.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { usableCores } from '../cores';

/** Numeric codes shared with kernels/include/personafuse.h. */
export const DTYPE_CODES = { f32: 0, f16: 1, bf16: 2 } as const;
export const LAYOUT_CODES = { in_out: 0, out_in: 1 } as const;

export interface NativeBankOptions {
  experts: number;
  rank: number;
  din: number;
  dout: number;
  dtype: number;
  a: Float32Array | Uint16Array;
  b: Float32Array | Uint16Array;
  scales?: Float32Array;
  ranks?: Int32Array;
  /** 'cuda': packed and uploaded to the device (a, b, scales, ranks stay host arrays). */
  device?: 'cpu' | 'cuda';
}

export interface NativeLoraBank {
  dispose(): void;
  bytes(): number;
  readonly device: 'cpu' | 'cuda';
}

/** Device memory of the CUDA backend (native/device_tensor.cc). */
export interface NativeDeviceTensor {
  readonly length: number;
  readonly dtype: 'f32' | 'i32' | 'u16';
  /** true after dispose() */
  readonly disposed: boolean;
  toHost(): Float32Array | Int32Array | Uint16Array;
  /** Frees the device memory now (ops still running keep it until they finish). */
  dispose(): void;
}

export interface TopkResult {
  ids: Int32Array;
  weights: Float32Array;
}

/** What info().cuda says about the CUDA backend. */
export interface CudaInfo {
  /** true when the library loaded and a device is usable: 'cuda' is then in backends. */
  available: boolean;
  /** Why not: library not built, no driver, no device (with the CUDA runtime's own text). */
  reason?: string;
  /** The libpersonafuse_cuda.so that was opened. */
  library?: string;
  /** pf_cuda_build_info() of that library. */
  buildInfo?: string;
  /** Every device the runtime sees (ops run on the first). */
  devices?: Array<{ name: string; computeCapability: string; memoryBytes: number }>;
}

/** Any array argument of an op: host typed arrays, or DeviceTensors (device path). */
type F32Arg = Float32Array | NativeDeviceTensor;
type I32Arg = Int32Array | NativeDeviceTensor;

export interface NativeBinding {
  LoraBank: new (options: NativeBankOptions) => NativeLoraBank;
  /** Copies a host typed array to the device; throws when no device is usable. */
  DeviceTensor: new (array: Float32Array | Int32Array | Uint16Array) => NativeDeviceTensor;
  // Every op takes host arrays with a CPU bank, or DeviceTensors with a cuda bank (logits
  // decides for topkSoftmax); outputs come back the same kind as the inputs.
  topkSoftmax(logits: F32Arg, experts: number, k: number, renormalize: boolean): unknown;
  topkSoftmaxAsync(logits: F32Arg, experts: number, k: number, renormalize: boolean): Promise<unknown>;
  loraMoe(bank: NativeLoraBank, x: F32Arg, ids: I32Arg, weights: F32Arg, y?: F32Arg): unknown;
  loraMoeAsync(bank: NativeLoraBank, x: F32Arg, ids: I32Arg, weights: F32Arg, y?: F32Arg): Promise<unknown>;
  foldExperts(
    bank: NativeLoraBank, ids: I32Arg, weights: F32Arg, k: number,
    a: F32Arg, b: F32Arg, rankCapacity: number, slots?: I32Arg,
  ): void;
  foldExpertsAsync(
    bank: NativeLoraBank, ids: I32Arg, weights: F32Arg, k: number,
    a: F32Arg, b: F32Arg, rankCapacity: number, slots?: I32Arg,
  ): Promise<void>;
  mergeExperts(
    bank: NativeLoraBank, ids: I32Arg, weights: F32Arg, w: F32Arg, layout: number, inPlace: boolean,
  ): unknown;
  mergeExpertsAsync(
    bank: NativeLoraBank, ids: I32Arg, weights: F32Arg, w: F32Arg, layout: number, inPlace: boolean,
  ): Promise<unknown>;
  /** Opens the CUDA plugin on its first call. */
  info(): { backends: string[]; simd: string; threads: number; cuda: CudaInfo };
  setThreads(n: number): void;
  setSimd(name: string): string;
  tuneAllocator(mmapThreshold: number, trimThreshold: number): boolean;
  setCudaOption(name: string, value: number): void;
  getCudaOption(name: string): number;
}

/** The folder holding package.json, from dist/lib/kernels or lib/kernels alike. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`Could not find personafuse's package root (package.json beside binding.gyp) above ${__dirname}`);
    dir = up;
  }
}

let cached: NativeBinding | undefined;

/** The addon built under `root` (build/Release, or prebuilds/ for this platform). When it is missing
 *  the error says where it looked and how to build it, including the case where npm skipped our
 *  install script (npm 11 lists dependencies' install scripts "not yet covered by allowScripts",
 *  and an allowScripts entry can deny them). */
export function loadAddon(root: string): NativeBinding {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => NativeBinding;
    return load(root);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      [
        `Could not load personafuse's native addon for ${process.platform}-${process.arch}, Node ${process.version}.`,
        `Looked in ${path.join(root, 'build', 'Release')} and ${path.join(root, 'prebuilds')}.`,
        `Cause: ${reason}`,
        'Possible solutions:',
        '- run `npm rebuild personafuse` (in a checkout of personafuse itself: `npm install`) so node-gyp builds the addon;',
        "- if npm skipped personafuse's install script (your package.json's allowScripts denies it, or your npm blocks",
        '  dependencies\' install scripts), approve it: `npm install-scripts approve personafuse`, then `npm rebuild personafuse`;',
        '- make sure a C++17 compiler, make and python3 are installed (node-gyp needs them);',
        '- if you copied node_modules from another machine or Node version, rebuild it here.',
      ].join('\n'),
    );
  }
}

export function binding(): NativeBinding {
  if (cached) return cached;
  cached = loadAddon(packageRoot());
  const threads = initialKernelThreads();
  if (threads !== undefined) cached.setThreads(threads);
  return cached;
}

/** The kernels' default thread count when it is ours to choose: the cores this process may use (at
 *  most the native pool's 1024; lib/cores.ts). undefined when PERSONAFUSE_NUM_THREADS sets it, which
 *  the native pool reads itself. */
export function defaultKernelThreads(): number | undefined {
  return kernelThreadsFromEnv() === undefined ? Math.min(usableCores(), 1024) : undefined;
}

/** The count to set when the addon loads: the C ABI's own default is every core the hardware has,
 *  so only under a CPU quota (fewer usable cores) does ours differ from it. */
export function initialKernelThreads(): number | undefined {
  const n = defaultKernelThreads();
  return n !== undefined && n < os.availableParallelism() ? n : undefined;
}

/** PERSONAFUSE_NUM_THREADS when it sets a positive count (the native pool reads it too). */
export function kernelThreadsFromEnv(): number | undefined {
  const n = Number.parseInt(process.env.PERSONAFUSE_NUM_THREADS ?? '', 10);
  return n > 0 ? n : undefined;
}
