// fold_experts benchmark: each request's mix as one rank-R adapter in its batch slot
//   ids, w [B, k] -> a [B, din, R], b [B, R, dout]   (R = k·r = 32, every byte of both written)
//   B ∈ {1, 8, 64} requests (a prefill of T tokens is one request: its fold is the B = 1 case;
//   B = 512 slots would be 0.5 GiB of output at din 4096, not a serving shape); r = 16, E = 10, k = 2.
// Implementations, interleaved per (din, B):
//   ours-f16, ours-f32  kernels.foldExperts (sync) into rotated output sets
//   memcpy              Float32Array.set of the same number of bytes as fold writes (rotated
//                       destinations, as many as fold's output sets): the peer of this op
// Target: fold ≥ 60% of memcpy speed for the bytes it writes, i.e. memcpy time / fold time ≥ 0.6.
import { kernels, reference } from '../lib';
import {
  BenchContext,
  CaseResult,
  fmtRatio,
  ImplResult,
  gbps,
  implResult,
  measureFew,
  measureInterleaved,
  pairedRatio,
  randomF32,
  randomRouting,
  relErr,
  rng,
  rotating,
  rotationCount,
} from './harness';
import { DIMS, E, K, R, randomBanks } from './lora_moe';
import { BenchOp, fmtImplUs, fmtMet, fmtPct, fmtSpread } from './report';

export const BATCHES = [1, 8, 64];
const RC = K * R; // rank capacity

export async function benchFoldExperts(ctx: BenchContext, dims = DIMS): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const din of dims) {
    const dout = din;
    const rand = rng(2000 + din);
    const { a, b, scales, banks } = randomBanks(din, dout, rand);
    const refBank = ctx.reference ? reference.refBank({ experts: E, rank: R, din, dout, a, b, scales }) : null;
    for (const B of BATCHES) {
      const written = B * RC * (din + dout) * 4;
      const nsets = rotationCount(written);
      const label = `B=${B} d=${din}`;
      ctx.log(`fold_experts ${label}: ${nsets} rotated output sets of ${(written / 2 ** 20).toFixed(2)} MiB`);
      const sets = Array.from({ length: nsets }, () => {
        const { ids, weights } = randomRouting(B, E, K, rand);
        return {
          ids,
          w: weights,
          out: { a: new Float32Array(B * din * RC), b: new Float32Array(B * RC * dout), rankCapacity: RC },
          dst: new Float32Array(written / 4),
          distinct: new Set(ids).size,
        };
      });
      const src = randomF32(written / 4, rand);

      // correctness on set 0 against the float64 reference
      const s0 = sets[0];
      const check: Record<string, number> = {};
      if (refBank) {
        const ra = new Float64Array(B * din * RC);
        const rb = new Float64Array(B * RC * dout);
        reference.refFoldExperts(refBank, s0.ids, s0.w, K, { a: ra, b: rb, rankCapacity: RC });
        for (const dt of ['f16', 'f32'] as const) {
          const o = { a: new Float32Array(ra.length), b: new Float32Array(rb.length), rankCapacity: RC };
          kernels.foldExperts(banks[dt], s0.ids, s0.w, K, o);
          check[`ours-${dt}`] = Math.max(relErr(o.a, ra), relErr(o.b, rb));
        }
      }

      const stats = measureInterleaved(
        [
          { name: 'ours-f16', role: 'ours', fn: rotating(sets, (s) => kernels.foldExperts(banks.f16, s.ids, s.w, K, s.out)) },
          { name: 'ours-f32', role: 'ours', fn: rotating(sets, (s) => kernels.foldExperts(banks.f32, s.ids, s.w, K, s.out)) },
          { name: 'memcpy', role: 'memcpy', fn: rotating(sets, (s) => s.dst.set(src)) },
        ],
        ctx.measure,
      );
      let refStats = null;
      if (refBank && (!ctx.quick || B <= 8)) {
        refStats = measureFew(
          rotating(sets, (s) => reference.refFoldExperts(refBank, s.ids, s.w, K, s.out)),
          ctx.quick ? 5 : 30,
          ctx.quick ? 200 : 600,
        );
      }
      const distinct = sets.reduce((acc, s) => acc + s.distinct, 0) / sets.length;
      for (const dtype of ['f16', 'f32'] as const) {
        const elem = dtype === 'f16' ? 2 : 4;
        const read = distinct * R * (din + dout) * elem + B * K * 8;
        const impls: Record<string, ImplResult> = {
          ours: implResult(stats[`ours-${dtype}`], 'ours', written + read, null),
          memcpy: implResult(stats.memcpy, 'memcpy', 2 * written, null),
        };
        if (refStats) impls.reference = implResult(refStats, 'reference', written + read, null);
        const o = impls.ours.median_us;
        const ofMemcpy = impls.memcpy.median_us / o;
        results.push({
          op: 'fold_experts',
          label: `${label} ${dtype}`,
          params: { B, din, dout, r: R, E, k: K, R: RC, dtype, bytes_written: written, rotated_sets: nsets },
          impls,
          peer: 'memcpy',
          ratios: {
            vs_peer: ofMemcpy,
            fraction_of_memcpy_speed: ofMemcpy,
            fraction_of_memcpy_speed_p10: impls.memcpy.p10_us / impls.ours.p10_us,
            fraction_of_memcpy_speed_paired: pairedRatio(impls.memcpy, impls.ours),
            written_gbps: gbps(written, o),
            memcpy_copy_gbps: gbps(written, impls.memcpy.median_us),
            vs_reference: impls.reference ? impls.reference.median_us / o : null,
            gbps_vs_memcpy: impls.ours.gbps / ctx.memcpyTrafficGBps,
          },
          targets: [
            { target: 'fold_experts ≥ 60% of memcpy speed for the bytes it writes', required: 0.6, measured: ofMemcpy, met: ofMemcpy >= 0.6 },
          ],
          check: check[`ours-${dtype}`] !== undefined ? { ours: check[`ours-${dtype}`] } : {},
        });
      }
    }
    banks.f16.dispose();
    banks.f32.dispose();
  }
  return results;
}

export const foldExpertsBench: BenchOp = {
  name: 'fold_experts',
  run: (ctx, _peer, dims) => benchFoldExperts(ctx, dims),
  report: [
    {
      op: 'fold_experts',
      title: 'fold_experts (R = 32; % of memcpy = memcpy time / fold time for the bytes fold writes)',
      columns: ['case', 'MiB written', 'ours', 'p10-p90', 'memcpy', '% of memcpy', 'p10', 'paired', 'target 60%', 'written GB/s', 'memcpy GB/s', 'vs TS ref'],
      row: (r) => [
        r.label,
        (Number(r.params.bytes_written) / 2 ** 20).toFixed(2),
        fmtImplUs(r, 'ours'),
        fmtSpread(r),
        fmtImplUs(r, 'memcpy'),
        fmtPct(r.ratios.fraction_of_memcpy_speed),
        fmtPct(r.ratios.fraction_of_memcpy_speed_p10),
        fmtPct(r.ratios.fraction_of_memcpy_speed_paired),
        fmtMet(r.targets[0].met),
        (r.ratios.written_gbps ?? 0).toFixed(1),
        (r.ratios.memcpy_copy_gbps ?? 0).toFixed(1),
        fmtRatio(r.ratios.vs_reference),
      ],
    },
  ],
};
