// Shared timing helpers of the benchmarks.
//
// Every implementation of an op is a closure of the same shape, `() => unknown`: one call of the
// op on the next of a few pre-built input sets (the closure rotates them itself). The harness
// knows nothing else about it, so ours, the onnxruntime peer, the pure-TS reference and memcpy
// are timed the same way:
//   1. warm-up: a few calls each (first-call costs: page faults, onnxruntime's arena growth);
//   2. calibration: each closure gets `reps` calls per sample so one sample lasts about
//      targetSampleUs (timer resolution and the loop cost stay far below 1%);
//   3. interleaved rounds: each round takes one sample of every closure, the start rotating
//      one place per round (A B C, B C A, C A B, ...), so machine noise (other tenants of this
//      shared machine) hits every implementation alike; rounds run until the time budget is
//      spent and each closure has minSamples samples;
//   4. statistics of the per-call time (sample time / reps): median, p10, p90, mean, min.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { mulberry32 } from '../lib/rng';

/** One call of an op on the next rotated input set. */
export type BenchFn = () => unknown;
/** The same, for the Promise-returning variants (one call awaited at a time). */
export type AsyncBenchFn = () => Promise<unknown>;

export type Role = 'ours' | 'peer' | 'reference' | 'memcpy';

export interface Impl {
  /** e.g. 'ours', 'ort-gather', 'ort-dense', 'memcpy', 'reference' */
  name: string;
  role: Role;
  fn: BenchFn;
}

export interface Stats {
  median_us: number;
  p10_us: number;
  p90_us: number;
  mean_us: number;
  min_us: number;
  samples: number;
  reps_per_sample: number;
}

export interface MeasureOptions {
  /** Wall-clock budget of the interleaved rounds (warm-up and calibration not included). */
  budgetMs: number;
  minSamples: number;
  maxSamples: number;
  /** Calls of each closure before timing. */
  warmupCalls: number;
  /** A sample batches calls until it lasts about this long. */
  targetSampleUs: number;
}

export const DEFAULT_MEASURE: MeasureOptions = {
  budgetMs: 500,
  minSamples: 7,
  maxSamples: 400,
  warmupCalls: 5,
  targetSampleUs: 200,
};

const now = (): number => performance.now() * 1000; // microseconds, sub-microsecond resolution

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 1) return sorted[0];
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** The median of unsorted values. */
export function median(v: number[]): number {
  return quantile([...v].sort((a, b) => a - b), 0.5);
}

export function summarize(perCallUs: number[], reps: number): Stats {
  const s = [...perCallUs].sort((a, b) => a - b);
  return {
    median_us: quantile(s, 0.5),
    p10_us: quantile(s, 0.1),
    p90_us: quantile(s, 0.9),
    mean_us: s.reduce((a, b) => a + b, 0) / s.length,
    min_us: s[0],
    samples: s.length,
    reps_per_sample: reps,
  };
}

function timeCalls(fn: BenchFn, reps: number): number {
  const t0 = now();
  for (let i = 0; i < reps; i++) fn();
  return now() - t0;
}

/** Times every closure interleaved (see the file header); returns per-call statistics by name. */
export function measureInterleaved(impls: Impl[], opts: Partial<MeasureOptions> = {}): Record<string, Stats> {
  const o = { ...DEFAULT_MEASURE, ...opts };
  const reps: number[] = [];
  for (const impl of impls) {
    // Warm-up, bounded in time for slow closures (one call always runs).
    const w0 = now();
    let calls = 0;
    do {
      impl.fn();
      calls++;
    } while (calls < o.warmupCalls && now() - w0 < 4 * o.targetSampleUs * o.warmupCalls);
    // Calibration: the per-call time of a short batch sets reps.
    let n = 1;
    let t = timeCalls(impl.fn, n);
    while (t < o.targetSampleUs / 4 && n < 1 << 16) {
      n *= 4;
      t = timeCalls(impl.fn, n);
    }
    reps.push(Math.max(1, Math.min(1 << 16, Math.round((o.targetSampleUs * n) / Math.max(t, 1e-3)))));
  }
  const samples: number[][] = impls.map(() => []);
  const t0 = now();
  for (let round = 0; ; round++) {
    for (let j = 0; j < impls.length; j++) {
      const i = (round + j) % impls.length;
      samples[i].push(timeCalls(impls[i].fn, reps[i]) / reps[i]);
    }
    const done = round + 1;
    if (done >= o.maxSamples) break;
    if (done >= o.minSamples && now() - t0 >= o.budgetMs * 1000) break;
  }
  const out: Record<string, Stats> = {};
  impls.forEach((impl, i) => {
    out[impl.name] = summarize(samples[i], reps[i]);
    // the per-round samples, for paired ratios (not enumerable: kept out of the JSON)
    Object.defineProperty(out[impl.name], 'rounds', { value: samples[i], enumerable: false });
  });
  return out;
}

/**
 * Median over rounds of other[round] / ours[round]: each round's two samples were taken
 * within a millisecond or so of each other, so load that comes and goes between rounds cancels.
 * null when either side was not timed by measureInterleaved in the same group.
 */
export function pairedRatio(other: Stats | undefined, ours: Stats | undefined): number | null {
  const a = (other as { rounds?: number[] } | undefined)?.rounds;
  const b = (ours as { rounds?: number[] } | undefined)?.rounds;
  if (!a || !b || a.length !== b.length) return null;
  return quantile(
    a.map((v, i) => v / b[i]).sort((x, y) => x - y),
    0.5,
  );
}

/** Times one closure alone with a small number of calls: for the slow pure-TS reference. */
export function measureFew(fn: BenchFn, maxCalls: number, budgetMs: number): Stats {
  const perCall: number[] = [];
  fn(); // warm-up (JIT)
  const t0 = now();
  do {
    perCall.push(timeCalls(fn, 1));
  } while (perCall.length < maxCalls && now() - t0 < budgetMs * 1000);
  return summarize(perCall, 1);
}

/** Times an async closure, one awaited call per sample (for the async-variant overhead). */
export async function measureAsync(
  impls: { name: string; fn: AsyncBenchFn | BenchFn }[], samples: number, warmupCalls = 20,
): Promise<Record<string, Stats>> {
  for (const impl of impls) for (let i = 0; i < warmupCalls; i++) await impl.fn();
  const per: number[][] = impls.map(() => []);
  for (let s = 0; s < samples; s++) {
    for (let j = 0; j < impls.length; j++) {
      const i = (s + j) % impls.length;
      const t0 = now();
      await impls[i].fn();
      per[i].push(now() - t0);
    }
  }
  const out: Record<string, Stats> = {};
  impls.forEach((impl, i) => (out[impl.name] = summarize(per[i], 1)));
  return out;
}

/** A closure over a ring of prepared argument sets: call k uses set k mod n. */
export function rotating<T>(sets: T[], call: (set: T) => unknown): BenchFn {
  let i = 0;
  return () => {
    const s = sets[i];
    i = i + 1 === sets.length ? 0 : i + 1;
    return call(s);
  };
}

/** How many input sets to rotate: enough to pass ~32 MiB in all, between 2 and 16. */
export function rotationCount(bytesPerSet: number): number {
  return Math.max(2, Math.min(16, Math.ceil((32 << 20) / Math.max(1, bytesPerSet))));
}

// ---- data -----------------------------------------------------------------------------------

/** Deterministic PRNG (mulberry32), so every run benchmarks the same data. */
export const rng: (seed: number) => () => number = mulberry32;

export function randomF32(n: number, rand: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

/** k distinct expert ids in [0, E) per row, and positive weights summing to 1 per row. */
export function randomRouting(rows: number, E: number, k: number, rand: () => number): { ids: Int32Array; weights: Float32Array } {
  const ids = new Int32Array(rows * k);
  const weights = new Float32Array(rows * k);
  for (let t = 0; t < rows; t++) {
    const picked = new Set<number>();
    let sum = 0;
    for (let j = 0; j < k; j++) {
      let e: number;
      do e = Math.floor(rand() * E);
      while (picked.has(e));
      picked.add(e);
      ids[t * k + j] = e;
      weights[t * k + j] = 0.2 + rand();
      sum += weights[t * k + j];
    }
    for (let j = 0; j < k; j++) weights[t * k + j] /= sum;
  }
  return { ids, weights };
}

// ---- formatting -----------------------------------------------------------------------------

export function fmtUs(us: number): string {
  if (us >= 1e6) return `${(us / 1e6).toFixed(2)} s`;
  if (us >= 1e3) return `${(us / 1e3).toFixed(us >= 1e4 ? 1 : 2)} ms`;
  return `${us.toFixed(us >= 100 ? 0 : us >= 10 ? 1 : 2)} µs`;
}

export function fmtRatio(r: number | null | undefined): string {
  if (r === null || r === undefined || !Number.isFinite(r)) return '—';
  return r >= 100 ? `${r.toFixed(0)}×` : r >= 10 ? `${r.toFixed(1)}×` : `${r.toFixed(2)}×`;
}

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]) => r.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join('  ');
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** A CPU model or host name as part of a file name: 'AMD EPYC (R)' -> 'amd-epyc-r'. */
export const slug = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

/** The default place of a results file: bench/results/<name> in the package (this file runs from dist/bench). */
export const resultsFile = (name: string): string => path.join(__dirname, '..', '..', 'bench', 'results', name);

/** GB/s for `bytes` moved in `us` microseconds. */
export const gbps = (bytes: number, us: number): number => bytes / us / 1e3;
/** GFLOP/s for `flops` in `us` microseconds. */
export const gflops = (flops: number, us: number): number => flops / us / 1e3;

// ---- results --------------------------------------------------------------------------------

/** One implementation's timing at one case, with the rates its bytes and FLOPs give. */
export interface ImplResult extends Stats {
  role: Role;
  /** minimum bytes this implementation must move (its own weight dtype) */
  bytes: number;
  gbps: number;
  gflops: number | null;
}

/** A target from the issue, reported (never asserted). */
export interface TargetCheck {
  target: string;
  required: number;
  measured: number;
  met: boolean;
}

export interface CaseResult {
  op: string;
  /** short label, e.g. 'T=1 din=896 f16' */
  label: string;
  params: Record<string, number | string>;
  impls: Record<string, ImplResult>;
  /** name of the fastest peer implementation at this case */
  peer: string | null;
  /** every ratio is a time ratio other/ours (> 1: ours faster) unless its name says otherwise */
  ratios: Record<string, number | null>;
  targets: TargetCheck[];
  /** max |ours - other| / max |other| on one input set, by other */
  check: Record<string, number>;
  notes?: string[];
}

export interface BenchContext {
  quick: boolean;
  reference: boolean;
  measure: Partial<MeasureOptions>;
  /** memcpy traffic (read + write) GB/s of a large copy, for ratios */
  memcpyTrafficGBps: number;
  log: (line: string) => void;
}

export function implResult(stats: Stats, role: Role, bytes: number, flops: number | null): ImplResult {
  const r = {
    ...stats,
    role,
    bytes,
    gbps: gbps(bytes, stats.median_us),
    gflops: flops === null ? null : gflops(flops, stats.median_us),
  };
  const rounds = (stats as { rounds?: number[] }).rounds;
  if (rounds) Object.defineProperty(r, 'rounds', { value: rounds, enumerable: false });
  return r;
}

/** The fastest (lowest median) implementation of a role. */
export function fastest(impls: Record<string, ImplResult>, role: Role): string | null {
  let best: string | null = null;
  for (const [name, r] of Object.entries(impls)) {
    if (r.role === role && (best === null || r.median_us < impls[best].median_us)) best = name;
  }
  return best;
}

/** max |a - b| / max |b|. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return den === 0 ? num : num / den;
}

/** Other tenants' load: the load average and Linux CPU pressure (share of time tasks waited for a CPU). */
export function machineLoad(): { loadavg: number[]; cpu_pressure_some_avg10: number | null } {
  let psi: number | null = null;
  try {
    const m = /some avg10=([\d.]+)/.exec(fs.readFileSync('/proc/pressure/cpu', 'utf8'));
    psi = m ? Number(m[1]) : null;
  } catch {
    // no PSI
  }
  return { loadavg: os.loadavg(), cpu_pressure_some_avg10: psi };
}
