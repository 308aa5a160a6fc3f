// The machine's physical limits, measured in the same run as the ops:
//   memcpy   TypedArray.set and Buffer.copy of a large array (DRAM-bound, one thread), the same at
//            a cache-resident size, and a two-thread copy (main thread + one worker, each half)
//            of the large array: the bandwidth two cores can draw, the ceiling of our 2-thread
//            kernels. Reported as copy rate (bytes copied / s) and traffic (read + written / s =
//            2 × copy rate); op GB/s (which count reads + writes) compare with the traffic.
//   GEMM     a dense f32 MatMul in onnxruntime (MLAS, intraOpNumThreads = 2, B an initializer):
//            1024³ (and 2048³ in the full run): the dense-FLOP ceiling of this machine (the time
//            includes onnxruntime-node's copy of C into a new array: ~1-2% at 1024³).
import { Worker } from 'node:worker_threads';

import { Impl, MeasureOptions, Stats, gbps, gflops, measureInterleaved, randomF32, rng, rotating } from './harness';
import { OrtPeer, PeerSettings, matmulModel, ort } from './onnx_peers';

export interface CopyLimit extends Stats {
  bytes: number;
  copy_gbps: number;
  traffic_gbps: number;
}

export interface Limits {
  memcpy: Record<string, CopyLimit>;
  /** traffic GB/s of the best large (DRAM) copy: the number op GB/s are compared with */
  memcpy_traffic_gbps: number;
  memcpy_copy_gbps: number;
  gemm: Record<string, Stats & { flops: number; gflops: number }>;
  gemm_gflops: number;
}

function copyLimit(stats: Stats, bytes: number): CopyLimit {
  const copy = gbps(bytes, stats.median_us);
  return { ...stats, bytes, copy_gbps: copy, traffic_gbps: 2 * copy };
}

const WORKER_SRC = `
const { workerData } = require('node:worker_threads');
const ctl = new Int32Array(workerData.ctl);
const src = new Uint8Array(workerData.src, workerData.off, workerData.len);
const dst = new Uint8Array(workerData.dst, workerData.off, workerData.len);
let seen = 0;
for (;;) {
  Atomics.wait(ctl, 0, seen);
  seen = Atomics.load(ctl, 0);
  if (seen < 0) break;
  dst.set(src);
  Atomics.store(ctl, 1, seen);
  Atomics.notify(ctl, 1);
}
`;

/** A copy of `bytes` split over the main thread and one worker (SharedArrayBuffers). */
async function twoThreadCopy(bytes: number): Promise<{ fn: () => void; sharedOneThread: () => void; stop: () => void }> {
  const half = Math.floor(bytes / 2 / 64) * 64;
  const src = new SharedArrayBuffer(bytes);
  const dst = new SharedArrayBuffer(bytes);
  new Uint8Array(src).fill(1);
  new Uint8Array(dst).fill(2);
  const ctl = new SharedArrayBuffer(8);
  const c = new Int32Array(ctl);
  const worker = new Worker(WORKER_SRC, { eval: true, workerData: { ctl, src, dst, off: half, len: bytes - half } });
  await new Promise<void>((resolve) => worker.once('online', () => resolve()));
  const mySrc = new Uint8Array(src, 0, half);
  const myDst = new Uint8Array(dst, 0, half);
  const allSrc = new Uint8Array(src);
  const allDst = new Uint8Array(dst);
  let gen = 0;
  const fn = () => {
    gen++;
    Atomics.store(c, 0, gen);
    Atomics.notify(c, 0);
    myDst.set(mySrc);
    while (Atomics.load(c, 1) !== gen) Atomics.wait(c, 1, Atomics.load(c, 1), 50);
  };
  const stop = () => {
    Atomics.store(c, 0, -1);
    Atomics.notify(c, 0);
    void worker.terminate();
  };
  return { fn, sharedOneThread: () => allDst.set(allSrc), stop };
}

export async function measureLimits(
  quick: boolean, measure: Partial<MeasureOptions>, peerSettings: PeerSettings, log: (s: string) => void,
): Promise<Limits> {
  // ---- memcpy ----
  const big = (quick ? 128 : 256) << 20;
  const small = 1 << 20;
  const srcBig = new Float32Array(big / 4).fill(1);
  const dstBig = new Float32Array(big / 4);
  const bufSrc = Buffer.alloc(big, 1);
  const bufDst = Buffer.alloc(big);
  const smallSrc = new Float32Array(small / 4).fill(1);
  const smallDst = [0, 1, 2, 3].map(() => new Float32Array(small / 4));
  const two = await twoThreadCopy(big);
  log(`limits: memcpy of ${big >> 20} MiB (1 and 2 threads) and ${small >> 20} MiB`);
  const copyImpls: Impl[] = [
    { name: 'typedarray_set', role: 'memcpy', fn: () => dstBig.set(srcBig) },
    { name: 'buffer_copy', role: 'memcpy', fn: () => bufSrc.copy(bufDst) },
    { name: 'shared_set_1thread', role: 'memcpy', fn: two.sharedOneThread },
    { name: 'shared_set_2threads', role: 'memcpy', fn: two.fn },
    { name: 'typedarray_set_1MiB', role: 'memcpy', fn: rotating(smallDst, (d) => d.set(smallSrc)) },
  ];
  const cs = measureInterleaved(copyImpls, { ...measure, minSamples: 7, budgetMs: quick ? 1000 : 2500, targetSampleUs: 1000 });
  two.stop();
  const memcpy: Record<string, CopyLimit> = {};
  for (const impl of copyImpls) memcpy[impl.name] = copyLimit(cs[impl.name], impl.name.endsWith('1MiB') ? small : big);
  const best1 = Math.max(memcpy.typedarray_set.copy_gbps, memcpy.buffer_copy.copy_gbps);

  // ---- GEMM ----
  const gemm: Limits['gemm'] = {};
  const sizes = quick ? [1024] : [1024, 2048];
  const rand = rng(7);
  for (const n of sizes) {
    log(`limits: onnxruntime MatMul ${n}³`);
    const peer = await OrtPeer.create(matmulModel(n, n, n, randomF32(n * n, rand)), peerSettings);
    const xs = [0, 1].map(() => new ort.Tensor('float32', randomF32(n * n, rand), [n, n]));
    const st = measureInterleaved(
      [{ name: 'matmul', role: 'peer', fn: rotating(xs, (x) => peer.runSync({ X: x })) }],
      { ...measure, minSamples: 5, budgetMs: quick ? 500 : 1500, targetSampleUs: 1000 },
    ).matmul;
    const flops = 2 * n * n * n;
    gemm[`matmul_${n}`] = { ...st, flops, gflops: gflops(flops, st.median_us) };
    await peer.release();
  }
  return {
    memcpy,
    memcpy_copy_gbps: best1,
    memcpy_traffic_gbps: 2 * best1,
    gemm,
    gemm_gflops: Math.max(...Object.values(gemm).map((g) => g.gflops)),
  };
}
