// What bench/run.ts runs and prints for each op: every bench/<op>.ts exports a BenchOp (its
// cases and its own report tables), and run.ts iterates over them. The cell formats shared by
// the tables are here too.
import { BenchContext, CaseResult, fmtUs, table } from './harness';
import type { PeerSettings } from './onnx_peers';

/** One table of the printed report: a title line, then one row per case of `op`. */
export interface ReportTable {
  /** CaseResult.op of its rows */
  op: string;
  title: string;
  columns: string[];
  row: (r: CaseResult) => string[];
}

/** An op's CPU benchmark: its name (`--op`), how to run its cases, and its report tables. */
export interface BenchOp {
  name: string;
  run: (ctx: BenchContext, peer: PeerSettings, dims: number[]) => Promise<CaseResult[]>;
  report: ReportTable[];
}

/** The median of implementation `impl` at a case, or '—' where it did not run. */
export const fmtImplUs = (r: CaseResult, impl: string): string => (r.impls[impl] ? fmtUs(r.impls[impl].median_us) : '—');

/** p10-p90 of implementation `impl`, which ran at the case. */
export const fmtSpread = (r: CaseResult, impl = 'ours'): string => `${fmtUs(r.impls[impl].p10_us)}-${fmtUs(r.impls[impl].p90_us)}`;

export function fmtPct(r: number | null | undefined): string {
  return r === null || r === undefined || !Number.isFinite(r) ? '—' : `${(100 * r).toFixed(0)}%`;
}

/** A target check as a cell: 'met', 'NOT met', or empty where the case has none. */
export const fmtMet = (met: boolean | undefined): string => (met === undefined ? '' : met ? 'met' : 'NOT met');

/** Prints `t` over the results of its op; nothing when none ran. */
export function printReportTable(t: ReportTable, results: CaseResult[]): void {
  const rows = results.filter((r) => r.op === t.op);
  if (!rows.length) return;
  console.log(`\n${t.title}`);
  console.log(table(t.columns, rows.map(t.row)));
}
