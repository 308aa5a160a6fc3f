// topk_softmax benchmark: logits [T, E] -> ids [T, k] i32, weights [T, k] (softmax over E, top k)
//   T ∈ {1, 8, 64, 512};  (E, k) ∈ {(10, 2), (64, 8)};  renormalize = false
// Implementations, interleaved per case:
//   ours          kernels.topkSoftmax (sync; allocates its two outputs, its API has no out-arrays)
//   ort           onnxruntime Softmax(axis -1) + TopK(k, largest, sorted), outputs allocated
//   ort-prealloc  the same graph into pre-allocated output tensors
// The peer is the faster of the two onnxruntime runs. Reference (pure TS) timed alone, few calls.
import { kernels, reference } from '../lib';
import {
  BenchContext,
  CaseResult,
  fmtRatio,
  ImplResult,
  fastest,
  implResult,
  measureFew,
  measureInterleaved,
  pairedRatio,
  randomF32,
  relErr,
  rng,
  rotating,
} from './harness';
import { OrtPeer, PeerSettings, ort, topkSoftmaxModel } from './onnx_peers';
import { BenchOp, fmtImplUs, fmtMet, fmtSpread } from './report';

export const ROUTING = [
  { E: 10, k: 2 },
  { E: 64, k: 8 },
];
export const TS = [1, 8, 64, 512];
const NSETS = 16;

export async function benchTopkSoftmax(ctx: BenchContext, peerSettings: PeerSettings): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const { E, k } of ROUTING) {
    const peer = await OrtPeer.create(topkSoftmaxModel(E, k), peerSettings);
    const rand = rng(E * 31 + k);
    for (const T of TS) {
      const label = `T=${T} E=${E} k=${k}`;
      ctx.log(`topk_softmax ${label}: ${NSETS} rotated input sets`);
      const sets = Array.from({ length: NSETS }, () => {
        const logits = randomF32(T * E, rand, 4);
        return {
          logits,
          feeds: { logits: new ort.Tensor('float32', logits, [T, E]) },
          fetches: {
            weights: new ort.Tensor('float32', new Float32Array(T * k), [T, k]),
            ids: new ort.Tensor('int64', new BigInt64Array(T * k), [T, k]),
          },
        };
      });
      // correctness on set 0 (weights; ids compared as weights of the chosen experts)
      const s0 = sets[0];
      const ref = reference.refTopkSoftmax(s0.logits, E, k);
      const ours0 = kernels.topkSoftmax(s0.logits, E, k);
      const ort0 = await peer.run(s0.feeds);
      const idsOk = (ids: ArrayLike<number | bigint>) => Array.from(ids, Number).every((v, i) => v === ref.ids[i]);
      const check = {
        ours: relErr(ours0.weights, ref.weights) + (idsOk(ours0.ids) ? 0 : 1),
        ort: relErr(ort0.weights.data as Float32Array, ref.weights) + (idsOk(ort0.ids.data as BigInt64Array) ? 0 : 1),
      };
      const stats = measureInterleaved(
        [
          { name: 'ours', role: 'ours', fn: rotating(sets, (s) => kernels.topkSoftmax(s.logits, E, k)) },
          { name: 'ort', role: 'peer', fn: rotating(sets, (s) => peer.runSync(s.feeds)) },
          { name: 'ort-prealloc', role: 'peer', fn: rotating(sets, (s) => peer.runSync(s.feeds, s.fetches)) },
        ],
        ctx.measure,
      );
      const bytes = T * E * 4 + T * k * 8;
      const impls: Record<string, ImplResult> = {
        ours: implResult(stats.ours, 'ours', bytes, null),
        ort: implResult(stats.ort, 'peer', T * E * 4 + T * k * 12, null),
        'ort-prealloc': implResult(stats['ort-prealloc'], 'peer', T * E * 4 + T * k * 12, null),
      };
      if (ctx.reference) {
        impls.reference = implResult(
          measureFew(rotating(sets, (s) => reference.refTopkSoftmax(s.logits, E, k)), 50, ctx.quick ? 50 : 200),
          'reference',
          bytes,
          null,
        );
      }
      const peerName = fastest(impls, 'peer')!;
      const vsPeer = impls[peerName].median_us / impls.ours.median_us;
      results.push({
        op: 'topk_softmax',
        label,
        params: { T, E, k, renormalize: 'false', rotated_sets: NSETS },
        impls,
        peer: peerName,
        ratios: {
          vs_peer: vsPeer,
          vs_peer_p10: impls[peerName].p10_us / impls.ours.p10_us,
          vs_peer_paired: pairedRatio(impls[peerName], impls.ours),
          vs_reference: impls.reference ? impls.reference.median_us / impls.ours.median_us : null,
        },
        targets: [{ target: 'topk_softmax ≥ 3× the ONNX graph', required: 3, measured: vsPeer, met: vsPeer >= 3 }],
        check,
      });
    }
    await peer.release();
  }
  return results;
}

export const topkSoftmaxBench: BenchOp = {
  name: 'topk_softmax',
  run: (ctx, peer) => benchTopkSoftmax(ctx, peer),
  report: [
    {
      op: 'topk_softmax',
      title: 'topk_softmax (renormalize false; peer = faster of ort (outputs allocated) and ort-prealloc)',
      columns: ['case', 'ours', 'p10-p90', 'ort', 'ort-prealloc', 'vs peer', 'p10', 'paired', 'target', 'vs TS ref', 'GB/s'],
      row: (r) => [
        r.label,
        fmtImplUs(r, 'ours'),
        fmtSpread(r),
        fmtImplUs(r, 'ort'),
        fmtImplUs(r, 'ort-prealloc'),
        fmtRatio(r.ratios.vs_peer),
        fmtRatio(r.ratios.vs_peer_p10),
        fmtRatio(r.ratios.vs_peer_paired),
        `3× ${fmtMet(r.targets[0].met)}`,
        fmtRatio(r.ratios.vs_reference),
        r.impls.ours.gbps.toFixed(2),
      ],
    },
  ],
};
