// The native addon: its typed interface and a loader that explains itself when it fails.
import * as fs from 'node:fs';
import * as path from 'node:path';

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
}

export interface NativeLoraBank {
  dispose(): void;
  bytes(): number;
}

export interface TopkResult {
  ids: Int32Array;
  weights: Float32Array;
}

export interface NativeBinding {
  LoraBank: new (options: NativeBankOptions) => NativeLoraBank;
  topkSoftmax(logits: Float32Array, experts: number, k: number, renormalize: boolean): TopkResult;
  topkSoftmaxAsync(logits: Float32Array, experts: number, k: number, renormalize: boolean): Promise<TopkResult>;
  loraMoe(bank: NativeLoraBank, x: Float32Array, ids: Int32Array, weights: Float32Array, y?: Float32Array): Float32Array;
  loraMoeAsync(
    bank: NativeLoraBank, x: Float32Array, ids: Int32Array, weights: Float32Array, y?: Float32Array,
  ): Promise<Float32Array>;
  foldExperts(
    bank: NativeLoraBank, ids: Int32Array, weights: Float32Array, k: number,
    a: Float32Array, b: Float32Array, rankCapacity: number, slots?: Int32Array,
  ): void;
  foldExpertsAsync(
    bank: NativeLoraBank, ids: Int32Array, weights: Float32Array, k: number,
    a: Float32Array, b: Float32Array, rankCapacity: number, slots?: Int32Array,
  ): Promise<void>;
  mergeExperts(
    bank: NativeLoraBank, ids: Int32Array, weights: Float32Array, w: Float32Array, layout: number, inPlace: boolean,
  ): Float32Array;
  mergeExpertsAsync(
    bank: NativeLoraBank, ids: Int32Array, weights: Float32Array, w: Float32Array, layout: number, inPlace: boolean,
  ): Promise<Float32Array>;
  info(): { backends: string[]; simd: string; threads: number };
  setThreads(n: number): void;
  setSimd(name: string): string;
}

/** The folder holding package.json, from dist/lib/kernels or lib/kernels alike. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`personafuse: could not find the package root above ${__dirname}`);
    dir = up;
  }
}

let cached: NativeBinding | undefined;

export function binding(): NativeBinding {
  if (cached) return cached;
  const root = packageRoot();
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => NativeBinding;
    cached = load(root);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      [
        `personafuse: could not load the native addon for ${process.platform}-${process.arch}, Node ${process.version}.`,
        `Looked in ${path.join(root, 'build', 'Release')} and ${path.join(root, 'prebuilds')}.`,
        `Cause: ${reason}`,
        'Possible solutions:',
        '- run `npm install` (or `npm rebuild personafuse`) so node-gyp builds the addon;',
        '- make sure a C++17 compiler, make and python3 are installed (node-gyp needs them);',
        '- if you copied node_modules from another machine or Node version, rebuild it here.',
      ].join('\n'),
    );
  }
  return cached;
}
