// Types of scripts/gpu-compare.js, a plain CommonJS script (it runs without a build); for
// test/gpu_compare.test.ts. Keep in step with the script's compareGpu and formatComparison.

export declare const TARGET_T: number;
export declare const TARGET_SPEEDUP: number;

export interface ComparisonRow {
  dtype: string;
  d: number;
  E: number;
  r: number;
  k: number;
  T: number;
  /** our median µs per lora_moe path ("decode", "grouped", ...) */
  paths: Record<string, number>;
  best: string;
  bestUs: number;
  /** torch's median µs; null when torch has no time for this shape */
  torchUs: number | null;
  /** why torch skipped this shape (e.g. out of memory), else null */
  torchSkipped: string | null;
  /** torchUs / bestUs, or null */
  speedup: number | null;
  /** our best's bytes / time / copy bandwidth */
  ofCopy: number;
  /** at T = TARGET_T: 'met', 'not met' or '–' (no torch time); null at other T */
  target: 'met' | 'not met' | '–' | null;
}

export interface Comparison {
  device: string;
  copyGbps: number;
  torchDevice: string;
  torchVersion: string;
  torchOnCpu: boolean;
  /** our lora_moe paths, in the order our bench wrote them */
  paths: string[];
  rows: ComparisonRow[];
}

/** ours: pf_bench_gpu's JSON object; torch: torch_lora_moe.py's. Throws TypeError/RangeError naming the argument. */
export declare function compareGpu(ours: unknown, torch: unknown): Comparison;
export declare function formatComparison(cmp: Comparison): string;
/** OURS.json -> OURS-vs-torch.txt beside it */
export declare function reportPathFor(oursFile: string): string;
