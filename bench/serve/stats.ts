// Statistics of `personafuse bench serve`: percentiles, and throughput per time window and per
// window of consecutive requests.

export interface Percentiles {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  mean: number | null;
  min: number | null;
  max: number | null;
}

/** Linear-interpolated quantile of sorted values (the harness's definition, with p99 added). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 1) return sorted[0];
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { count: 0, p50: null, p90: null, p99: null, mean: null, min: null, max: null };
  const s = [...values].sort((a, b) => a - b);
  return {
    count: s.length,
    p50: quantile(s, 0.5),
    p90: quantile(s, 0.9),
    p99: quantile(s, 0.99),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    min: s[0],
    max: s[s.length - 1],
  };
}

export interface TimeWindow {
  /** start, seconds from the start of the measured part */
  start_s: number;
  seconds: number;
  tokens: number;
  tok_per_s: number;
  /** false for the trailing window cut short by the end of the measured part */
  full: boolean;
}

/** Tokens arriving in each window of `windowS` seconds of [t0, t1] (times in ms); the last one may be partial. */
export function timeWindows(tokenTimes: readonly number[], t0: number, t1: number, windowS: number): TimeWindow[] {
  const w = windowS * 1000;
  const span = t1 - t0;
  const n = Math.max(1, Math.ceil(span / w - 1e-9));
  const counts = new Array<number>(n).fill(0);
  for (const t of tokenTimes) {
    if (t < t0 || t > t1) continue;
    counts[Math.min(n - 1, Math.floor((t - t0) / w))]++;
  }
  return counts.map((tokens, i) => {
    const seconds = Math.min(w, span - i * w) / 1000;
    return { start_s: (i * w) / 1000, seconds, tokens, tok_per_s: seconds > 0 ? tokens / seconds : 0, full: seconds >= windowS - 1e-9 };
  });
}

export interface RequestWindow {
  /** the window's requests, by completion order: [first, last] (0-based, measured requests only) */
  first: number;
  last: number;
  tokens: number;
  /** from the previous window's last completion (or the start of the measured part) to this one's last */
  seconds: number;
  tok_per_s: number;
}

/** Completion tokens of each `size` consecutive completed requests over the time they took to complete. */
export function requestWindows(done: readonly { end: number; tokens: number }[], t0: number, size: number): RequestWindow[] {
  const sorted = [...done].sort((a, b) => a.end - b.end);
  const out: RequestWindow[] = [];
  let prevEnd = t0;
  for (let i = 0; i < sorted.length; i += size) {
    const block = sorted.slice(i, i + size);
    const end = block[block.length - 1].end;
    const tokens = block.reduce((n, r) => n + r.tokens, 0);
    const seconds = (end - prevEnd) / 1000;
    out.push({ first: i, last: i + block.length - 1, tokens, seconds, tok_per_s: seconds > 0 ? tokens / seconds : 0 });
    prevEnd = end;
  }
  return out;
}

/** tok/s of the first and the last of the windows given, and last / first. */
export function firstLast(rates: readonly number[]): { first: number | null; last: number | null; last_over_first: number | null } {
  if (rates.length < 2) return { first: rates[0] ?? null, last: null, last_over_first: null };
  const first = rates[0];
  const last = rates[rates.length - 1];
  return { first, last, last_over_first: first > 0 ? last / first : null };
}
