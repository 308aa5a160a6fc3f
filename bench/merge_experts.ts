// merge_experts benchmark: a fixed mix of n = k = 2 experts compiled into a base weight
//   in_out: W [din, dout] += Σ_j w_j s_j (B_j A_j)ᵀ;  out_in: W [dout, din] += Σ_j w_j s_j B_j A_j
//   din = dout ∈ {896, 2048, 4096}, r = 16, E = 10; ours in place on W (rotated W arrays).
// Implementations, interleaved per (din, layout):
//   ours-f16, ours-f32  kernels.mergeExperts(..., { inPlace: true, layout })
//   ort-gather          onnxruntime: W + A_cat · (w ⊙ B_cat) with A_cat, B_cat gathered from the
//                       bank initializers (the same FLOPs as ours), W in, W' out (a new array, as onnxruntime-node returns every output)
//   ort-dense           in_out only: W + (A_all ⊙ g) · B_all over all E experts (5× the FLOPs)
// The peer is the faster onnxruntime graph. The reference runs at din 896 only (2·din·dout·k·r
// float64 multiply-adds in plain loops: seconds at 2048 and beyond).
import { kernels, reference } from '../lib';
import {
  BenchContext,
  CaseResult,
  fmtRatio,
  Impl,
  ImplResult,
  fastest,
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
import { OrtPeer, PeerBank, PeerSettings, mergeDenseModel, mergeGatherModel, ort } from './onnx_peers';
import { DIMS, E, K, R, randomBanks } from './lora_moe';
import { BenchOp, fmtImplUs, fmtPct, fmtSpread } from './report';

const LAYOUTS = ['in_out', 'out_in'] as const;

export async function benchMergeExperts(ctx: BenchContext, peerSettings: PeerSettings, dims = DIMS): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const din of dims) {
    const dout = din;
    const rand = rng(3000 + din);
    const { a, b, scales, banks } = randomBanks(din, dout, rand);
    const pb: PeerBank = { E, r: R, din, dout, a, b, scales };
    const runRef = ctx.reference && din <= 896;
    const refBank = runRef ? reference.refBank({ experts: E, rank: R, din, dout, a, b, scales }) : null;

    for (const layout of LAYOUTS) {
      const gather = await OrtPeer.create(mergeGatherModel(pb, K, layout), peerSettings);
      const dense = layout === 'in_out' ? await OrtPeer.create(mergeDenseModel(pb), peerSettings) : null;
      const wBytes = din * dout * 4;
      const nsets = rotationCount(2 * wBytes);
      const wdims = layout === 'in_out' ? [din, dout] : [dout, din];
      const label = `d=${din} ${layout}`;
      ctx.log(`merge_experts ${label}: ${nsets} rotated W sets`);
      const sets = Array.from({ length: nsets }, () => {
        const W = randomF32(din * dout, rand, 0.05);
        const { ids, weights } = randomRouting(1, E, K, rand);
        const g = new Float32Array(E * R);
        for (let j = 0; j < K; j++) g.fill(weights[j], ids[j] * R, (ids[j] + 1) * R);
        return {
          W,
          ids,
          w: weights,
          feedsGather: {
            W: new ort.Tensor('float32', W, wdims),
            ids: new ort.Tensor('int64', BigInt64Array.from(Array.from(ids, BigInt)), [K]),
            w: new ort.Tensor('float32', weights, [K]),
          },
          feedsDense: { W: new ort.Tensor('float32', W, wdims), g: new ort.Tensor('float32', g, [1, E * R]) },
        };
      });

      // correctness on set 0 (ours on a copy of W)
      const s0 = sets[0];
      const outs: Record<string, ArrayLike<number>> = {
        'ours-f16': kernels.mergeExperts(banks.f16, s0.ids, s0.w, s0.W, { layout }),
        'ours-f32': kernels.mergeExperts(banks.f32, s0.ids, s0.w, s0.W, { layout }),
        'ort-gather': (await gather.run(s0.feedsGather)).Wout.data as Float32Array,
      };
      if (dense) outs['ort-dense'] = (await dense.run(s0.feedsDense)).Wout.data as Float32Array;
      const truth = refBank ? reference.refMergeExperts(refBank, s0.ids, s0.w, s0.W, layout) : outs['ort-gather'];
      // compare the deltas W' - W (W dominates the values)
      const delta = (o: ArrayLike<number>) => Float64Array.from({ length: s0.W.length }, (_, i) => o[i] - s0.W[i]);
      const truthD = delta(truth);
      const check: Record<string, number> = {};
      for (const [n, o] of Object.entries(outs)) check[n] = relErr(delta(o), truthD);

      const impls: Impl[] = [
        { name: 'ours-f16', role: 'ours', fn: rotating(sets, (s) => kernels.mergeExperts(banks.f16, s.ids, s.w, s.W, { layout, inPlace: true })) },
        { name: 'ours-f32', role: 'ours', fn: rotating(sets, (s) => kernels.mergeExperts(banks.f32, s.ids, s.w, s.W, { layout, inPlace: true })) },
        { name: 'ort-gather', role: 'peer', fn: rotating(sets, (s) => gather.runSync(s.feedsGather)) },
      ];
      if (dense) impls.push({ name: 'ort-dense', role: 'peer', fn: rotating(sets, (s) => dense.runSync(s.feedsDense)) });
      const stats = measureInterleaved(impls, ctx.measure);
      const refStats = refBank
        ? measureFew(rotating(sets, (s) => reference.refMergeExperts(refBank, s.ids, s.w, s.W, layout)), ctx.quick ? 2 : 5, 500)
        : null;
      const flops = 2 * din * dout * K * R + din * dout;
      for (const dtype of ['f16', 'f32'] as const) {
        const elem = dtype === 'f16' ? 2 : 4;
        const bytes = 2 * wBytes + K * R * (din + dout) * elem;
        const res: Record<string, ImplResult> = {
          ours: implResult(stats[`ours-${dtype}`], 'ours', bytes, flops),
          'ort-gather': implResult(stats['ort-gather'], 'peer', 2 * wBytes + K * R * (din + dout) * 4, flops),
        };
        if (dense) res['ort-dense'] = implResult(stats['ort-dense'], 'peer', 2 * wBytes + K * R * (din + dout) * 4, flops);
        if (refStats) res.reference = implResult(refStats, 'reference', bytes, flops);
        const peer = fastest(res, 'peer')!;
        const o = res.ours.median_us;
        results.push({
          op: 'merge_experts',
          label: `${label} ${dtype}`,
          params: { din, dout, r: R, E, n: K, dtype, layout, rotated_sets: nsets },
          impls: res,
          peer,
          ratios: {
            vs_peer: res[peer].median_us / o,
            vs_peer_p10: res[peer].p10_us / res.ours.p10_us,
            vs_peer_paired: pairedRatio(res[peer], res.ours),
            vs_ort_gather: res['ort-gather'].median_us / o,
            vs_ort_dense: dense ? res['ort-dense'].median_us / o : null,
            vs_reference: res.reference ? res.reference.median_us / o : null,
            gbps_vs_memcpy: res.ours.gbps / ctx.memcpyTrafficGBps,
          },
          targets: [],
          check: { ours: check[`ours-${dtype}`], 'ort-gather': check['ort-gather'], ...(dense ? { 'ort-dense': check['ort-dense'] } : {}) },
        });
      }
      await gather.release();
      if (dense) await dense.release();
    }
    banks.f16.dispose();
    banks.f32.dispose();
  }
  return results;
}

export const mergeExpertsBench: BenchOp = {
  name: 'merge_experts',
  run: (ctx, peer, dims) => benchMergeExperts(ctx, peer, dims),
  report: [
    {
      op: 'merge_experts',
      title: 'merge_experts (n = 2 experts, in place; peer = faster of ort-gather, ort-dense)',
      columns: ['case', 'ours', 'p10-p90', 'ort-gather', 'ort-dense', 'vs peer', 'p10', 'paired', 'vs TS ref', 'GB/s', 'GB/s / memcpy'],
      row: (r) => [
        r.label,
        fmtImplUs(r, 'ours'),
        fmtSpread(r),
        fmtImplUs(r, 'ort-gather'),
        fmtImplUs(r, 'ort-dense'),
        fmtRatio(r.ratios.vs_peer),
        fmtRatio(r.ratios.vs_peer_p10),
        fmtRatio(r.ratios.vs_peer_paired),
        fmtRatio(r.ratios.vs_reference),
        r.impls.ours.gbps.toFixed(1),
        fmtPct(r.ratios.gbps_vs_memcpy),
      ],
    },
  ],
};
