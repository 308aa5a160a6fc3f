// lora_moe benchmark: y[t] += Σ_j w[t,j] s[e] B_e (A_e x[t]),  e = ids[t,j]
//   x [T, din], ids [T, k], w [T, k], y [T, dout];  r = 16, E = 10, k = 2, din = dout
//
// Cases: decode T ∈ {1, 8, 64} (T requests of one token, each with its own random mix) and
// prefill T = 512 (one request: every token has the same mix); the full run adds T = 512 with
// a different mix per token (per-token routing / 512 single-token requests).
// Implementations, one interleaved group per (din, T):
//   ours-f16, ours-f32   kernels.loraMoe (sync), bank in f16 / f32, accumulating into y
//   ort-gather           onnxruntime, gather + batched MatMul, f32 bank (formulation 1)
//   ort-dense            onnxruntime, all experts dense with expanded gates, f32 (formulation 2)
//   ort-gather-f16       formulation 1 with f16 initializers and a Cast after the Gather (extra)
// The peer of a row is the faster of ort-gather and ort-dense. The bank values are f16-
// representable, so the f16 and f32 banks hold the same numbers and one set of peers serves both.
// Each implementation gets the per-call inputs in its own form, prepared ahead and not timed
// (int64 ids and gates for ort-gather, the dense gates [T, E·r] for ort-dense); onnxruntime
// returns y as a new array (onnxruntime-node copies every output), ours accumulate into a
// rotated y. Inputs rotate over up to 16 sets (x, routing, y), each with other experts.
// The pure-TS reference (float64, dtype-independent) is timed alone, after the group, with
// at most 30 calls or 0.6 s.
import { kernels, reference } from '../lib';
import {
  BenchContext,
  CaseResult,
  fmtRatio,
  fmtUs,
  ImplResult,
  Impl,
  implResult,
  measureAsync,
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
import { OrtPeer, PeerBank, PeerSettings, loraDenseModel, loraGatherModel, ort, stackAT, stackBT } from './onnx_peers';
import { BenchOp, fmtImplUs, fmtMet, fmtPct, fmtSpread } from './report';

export const R = 16;
export const E = 10;
export const K = 2;
export const DIMS = [896, 2048, 4096];

interface TCase {
  T: number;
  /** 'per-token': every row its own mix (decode batch); 'one request': one mix for all rows (prefill) */
  routing: 'per-token' | 'one request';
}

export function tCases(quick: boolean): TCase[] {
  const c: TCase[] = [
    { T: 1, routing: 'per-token' },
    { T: 8, routing: 'per-token' },
    { T: 64, routing: 'per-token' },
    { T: 512, routing: 'one request' },
  ];
  if (!quick) c.push({ T: 512, routing: 'per-token' });
  return c;
}

interface InputSet {
  x: Float32Array;
  ids: Int32Array;
  w: Float32Array;
  y: Float32Array; // ours accumulates here
  distinct: number; // experts used by the set
  feedsGather: Record<string, ort.Tensor>;
  feedsDense: Record<string, ort.Tensor>;
}

function makeSet(tc: TCase, din: number, dout: number, rand: () => number): InputSet {
  const { T } = tc;
  const x = randomF32(T * din, rand);
  let ids: Int32Array;
  let w: Float32Array;
  if (tc.routing === 'one request') {
    const one = randomRouting(1, E, K, rand);
    ids = new Int32Array(T * K);
    w = new Float32Array(T * K);
    for (let t = 0; t < T; t++) {
      ids.set(one.ids, t * K);
      w.set(one.weights, t * K);
    }
  } else ({ ids, weights: w } = randomRouting(T, E, K, rand));
  // Gather graph: B requests of S tokens (the mix gathered once per request).
  const [B, S] = tc.routing === 'one request' ? [1, T] : [T, 1];
  const ids64 = BigInt64Array.from(Array.from(ids.subarray(0, B * K), BigInt));
  const g = new Float32Array(T * E * R); // dense gates, expanded over the rank
  for (let t = 0; t < T; t++)
    for (let j = 0; j < K; j++) g.fill(w[t * K + j], t * E * R + ids[t * K + j] * R, t * E * R + (ids[t * K + j] + 1) * R);
  return {
    x,
    ids,
    w,
    y: new Float32Array(T * dout),
    distinct: new Set(ids).size,
    feedsGather: {
      x: new ort.Tensor('float32', x, [B, S, din]),
      ids: new ort.Tensor('int64', ids64, [B, K]),
      w: new ort.Tensor('float32', w.slice(0, B * K), [B, K]),
    },
    feedsDense: { x: new ort.Tensor('float32', x, [T, din]), g: new ort.Tensor('float32', g, [T, E * R]) },
  };
}

/** Minimum bytes: the used experts' weights once, x read, y read and written, ids and w read. */
function minBytes(sets: InputSet[], T: number, din: number, dout: number, elem: number): number {
  const distinct = sets.reduce((s, v) => s + v.distinct, 0) / sets.length;
  return distinct * R * (din + dout) * elem + T * din * 4 + 2 * T * dout * 4 + T * K * 8;
}

/**
 * A random bank of E experts of rank R as an f16 and an f32 LoraBank: values rounded to f16, so
 * both banks hold the same numbers; a [E, R, din] and b [E, dout, R] are those values as f32.
 */
export function randomBanks(din: number, dout: number, rand: () => number) {
  const a16 = kernels.toBits(randomF32(E * R * din, rand, 1 / Math.sqrt(din)), 'f16');
  const b16 = kernels.toBits(randomF32(E * dout * R, rand, 1 / Math.sqrt(R)), 'f16');
  const a = Float32Array.from(a16, kernels.f16BitsToF32);
  const b = Float32Array.from(b16, kernels.f16BitsToF32);
  const scales = Float32Array.from({ length: E }, (_, e) => 2 / (1 + (e % 3))); // alpha / r, varied
  const banks = {
    f16: kernels.createLoraBank({ experts: E, rank: R, din, dout, a: a16, b: b16, dtype: 'f16', scales }),
    f32: kernels.createLoraBank({ experts: E, rank: R, din, dout, a, b, dtype: 'f32', scales }),
  };
  return { a, b, scales, banks };
}

export async function benchLoraMoe(ctx: BenchContext, peerSettings: PeerSettings, dims = DIMS): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const din of dims) {
    const dout = din;
    const rand = rng(1000 + din);
    const { a, b, scales, banks } = randomBanks(din, dout, rand);
    const pb: PeerBank = { E, r: R, din, dout, a, b, scales };
    const at16 = kernels.toBits(stackAT(pb), 'f16');
    const bt16 = kernels.toBits(stackBT(pb), 'f16'); // the scale fold rounds again: the f16 peer is approximate
    const peers = {
      gather: await OrtPeer.create(loraGatherModel(pb), peerSettings),
      dense: await OrtPeer.create(loraDenseModel(pb), peerSettings),
      gather16: await OrtPeer.create(loraGatherModel(pb, { at: at16, bt: bt16 }), peerSettings),
    };
    const refBank = ctx.reference ? reference.refBank({ experts: E, rank: R, din, dout, a, b, scales }) : null;

    for (const tc of tCases(ctx.quick)) {
      const { T } = tc;
      const perSet = T * (din + dout) * 4 * 3 + T * E * R * 4;
      const nsets = rotationCount(perSet);
      const sets = Array.from({ length: nsets }, () => makeSet(tc, din, dout, rand));
      const label = `T=${T}${tc.routing === 'one request' && T > 1 ? ' (1 req)' : T > 1 ? ' (mixed)' : ''} d=${din}`;
      ctx.log(`lora_moe ${label}: ${nsets} rotated input sets`);

      // correctness on set 0: every implementation against the float64 reference (or ort-dense)
      const s0 = sets[0];
      const outs: Record<string, ArrayLike<number>> = {
        'ours-f16': kernels.loraMoe(banks.f16, s0.x, s0.ids, s0.w),
        'ours-f32': kernels.loraMoe(banks.f32, s0.x, s0.ids, s0.w),
        'ort-gather': (await peers.gather.run(s0.feedsGather)).y.data as Float32Array,
        'ort-dense': (await peers.dense.run(s0.feedsDense)).y.data as Float32Array,
        'ort-gather-f16': (await peers.gather16.run(s0.feedsGather)).y.data as Float32Array,
      };
      const refWork = T * K * R * (din + dout);
      const runRef = refBank !== null && (!ctx.quick || T <= 64);
      const truth: ArrayLike<number> = runRef ? reference.refLoraMoe(refBank!, s0.x, s0.ids, s0.w) : outs['ort-dense'];
      const check: Record<string, number> = {};
      for (const [n, o] of Object.entries(outs)) check[n] = relErr(o, truth);

      const impls: Impl[] = [
        { name: 'ours-f16', role: 'ours', fn: rotating(sets, (s) => kernels.loraMoe(banks.f16, s.x, s.ids, s.w, { y: s.y })) },
        { name: 'ours-f32', role: 'ours', fn: rotating(sets, (s) => kernels.loraMoe(banks.f32, s.x, s.ids, s.w, { y: s.y })) },
        { name: 'ort-gather', role: 'peer', fn: rotating(sets, (s) => peers.gather.runSync(s.feedsGather)) },
        { name: 'ort-dense', role: 'peer', fn: rotating(sets, (s) => peers.dense.runSync(s.feedsDense)) },
        { name: 'ort-gather-f16', role: 'peer', fn: rotating(sets, (s) => peers.gather16.runSync(s.feedsGather)) },
      ];
      const stats = measureInterleaved(impls, ctx.measure);
      let refStats = null;
      if (runRef) {
        refStats = measureFew(
          rotating(sets, (s) => reference.refLoraMoe(refBank!, s.x, s.ids, s.w, s.y)),
          ctx.quick ? 5 : 30,
          ctx.quick ? 200 : 600,
        );
      }
      const flops = 2 * refWork;
      for (const dtype of ['f16', 'f32'] as const) {
        const ours = `ours-${dtype}`;
        const elem = dtype === 'f16' ? 2 : 4;
        const res: Record<string, ImplResult> = {
          ours: implResult(stats[ours], 'ours', minBytes(sets, T, din, dout, elem), flops),
          'ort-gather': implResult(stats['ort-gather'], 'peer', minBytes(sets, T, din, dout, 4), flops),
          'ort-dense': implResult(stats['ort-dense'], 'peer', minBytes(sets, T, din, dout, 4), flops),
          'ort-gather-f16': implResult(stats['ort-gather-f16'], 'peer', minBytes(sets, T, din, dout, 2), flops),
        };
        if (refStats) res.reference = implResult(refStats, 'reference', minBytes(sets, T, din, dout, 8), flops);
        const peer = res['ort-gather'].median_us <= res['ort-dense'].median_us ? 'ort-gather' : 'ort-dense';
        const o = res.ours.median_us;
        const vsPeer = res[peer].median_us / o;
        const required = T <= 64 ? 1.5 : 3;
        results.push({
          op: 'lora_moe',
          label: `${label} ${dtype}`,
          params: { T, din, dout, r: R, E, k: K, dtype, routing: tc.routing, rotated_sets: nsets },
          impls: res,
          peer,
          ratios: {
            vs_peer: vsPeer,
            vs_peer_p10: res[peer].p10_us / res.ours.p10_us,
            vs_peer_paired: pairedRatio(res[peer], res.ours),
            vs_ort_gather: res['ort-gather'].median_us / o,
            vs_ort_dense: res['ort-dense'].median_us / o,
            vs_ort_gather_f16: res['ort-gather-f16'].median_us / o,
            vs_reference: res.reference ? res.reference.median_us / o : null,
            gbps_vs_memcpy: res.ours.gbps / ctx.memcpyTrafficGBps,
          },
          targets: [
            {
              target: `lora_moe ≥ ${required}× the ONNX peer at T ${T <= 64 ? '≤ 64' : '= 512'}`,
              required,
              measured: vsPeer,
              met: vsPeer >= required,
            },
          ],
          check: {
            ours: check[ours],
            'ort-gather': check['ort-gather'],
            'ort-dense': check['ort-dense'],
            'ort-gather-f16': check['ort-gather-f16'],
            against_reference: runRef ? 1 : 0, // 0: checked against ort-dense (reference not run)
          },
        });
      }

      // The async variants' overhead, once per din at T = 1.
      if (T === 1) {
        const as = await measureAsync(
          [
            { name: 'ours-sync', fn: rotating(sets, (s) => kernels.loraMoe(banks.f16, s.x, s.ids, s.w, { y: s.y })) },
            { name: 'ours-async', fn: rotating(sets, (s) => kernels.loraMoeAsync(banks.f16, s.x, s.ids, s.w, { y: s.y })) },
            { name: 'ort-sync', fn: rotating(sets, (s) => peers.dense.runSync(s.feedsDense)) }, // outputs allocated, as run()
            { name: 'ort-async', fn: rotating(sets, (s) => peers.dense.run(s.feedsDense)) },
          ],
          ctx.quick ? 100 : 300,
        );
        const impl: Record<string, ImplResult> = {};
        const bytes = minBytes(sets, T, din, dout, 2);
        for (const [n, st] of Object.entries(as)) impl[n] = implResult(st, n.startsWith('ours') ? 'ours' : 'peer', bytes, flops);
        results.push({
          op: 'lora_moe_async',
          label: `T=1 d=${din} f16`,
          params: { T, din, dout, r: R, E, k: K, dtype: 'f16', timing: 'one awaited call per sample' },
          impls: impl,
          peer: null,
          ratios: {
            ours_async_overhead_us: impl['ours-async'].median_us - impl['ours-sync'].median_us,
            ort_async_overhead_us: impl['ort-async'].median_us - impl['ort-sync'].median_us,
          },
          targets: [],
          check: {},
        });
      }
    }
    for (const p of Object.values(peers)) await p.release();
    banks.f16.dispose();
    banks.f32.dispose();
  }
  return results;
}

export const loraMoeBench: BenchOp = {
  name: 'lora_moe',
  run: (ctx, peer, dims) => benchLoraMoe(ctx, peer, dims),
  report: [
    {
      op: 'lora_moe',
      title:
        'lora_moe (r=16, E=10, k=2; median per call; ratios = their time / ours (> 1: ours faster); peer = faster of ' +
        'ort-gather, ort-dense; p10 = ratio of p10 times; paired = median over rounds of the per-round ratio)',
      columns: ['case', 'ours', 'p10-p90', 'ort-gather', 'ort-dense', 'vs peer', 'p10', 'paired', 'target', 'vs gather-f16', 'vs TS ref', 'GB/s', 'GFLOP/s', 'GB/s / memcpy'],
      row: (r) => [
        r.label,
        fmtImplUs(r, 'ours'),
        fmtSpread(r),
        fmtImplUs(r, 'ort-gather'),
        fmtImplUs(r, 'ort-dense'),
        fmtRatio(r.ratios.vs_peer),
        fmtRatio(r.ratios.vs_peer_p10),
        fmtRatio(r.ratios.vs_peer_paired),
        `${r.targets[0].required}× ${fmtMet(r.targets[0].met)}`,
        fmtRatio(r.ratios.vs_ort_gather_f16),
        fmtRatio(r.ratios.vs_reference),
        r.impls.ours.gbps.toFixed(1),
        (r.impls.ours.gflops ?? 0).toFixed(1),
        fmtPct(r.ratios.gbps_vs_memcpy),
      ],
    },
    {
      op: 'lora_moe_async',
      title: 'async variants at T=1 (one awaited call per sample; ort-sync/ort-async allocate outputs)',
      columns: ['case', 'ours sync', 'ours async', 'overhead', 'ort sync', 'ort run()', 'overhead'],
      row: (r) => [
        r.label,
        fmtImplUs(r, 'ours-sync'),
        fmtImplUs(r, 'ours-async'),
        fmtUs(r.ratios.ours_async_overhead_us ?? 0),
        fmtImplUs(r, 'ort-sync'),
        fmtImplUs(r, 'ort-async'),
        fmtUs(r.ratios.ort_async_overhead_us ?? 0),
      ],
    },
  ],
};
