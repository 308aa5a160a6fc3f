// No leak: after a warm-up (the same workload, once), 10 000 sync and 10 000 async calls of each op on small shapes grow
// the process RSS by less than 5%. Outputs are a few KiB per call, so leaking them (or the
// references that keep inputs alive in async jobs) would add tens of MiB and fail clearly.
//
// jest runs without --expose-gc; v8.setFlagsFromString('--expose-gc') followed by a fresh vm
// context still yields a working gc() in Node 20, which makes the measurement steadier. If that
// ever stops working the test falls back to letting the event loop settle (setImmediate turns).
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

import { kernels } from '../lib';
import { randomBank, randomIds, randomWeights } from './helpers/bank';
import { testRng } from './helpers/rng';

const CALLS = 10_000;
const BATCH = 100; // async calls in flight at once
const MAX_GROWTH = 0.05;

function findGc(): (() => void) | undefined {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') return g;
  try {
    v8.setFlagsFromString('--expose-gc');
    const fn = vm.runInNewContext('gc') as unknown;
    return typeof fn === 'function' ? (fn as () => void) : undefined;
  } catch {
    return undefined;
  }
}

const gc = findGc();

/** RSS after garbage collection and a few event-loop turns (V8 frees array buffers on a background thread). */
async function settledRss(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc?.();
    await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 20));
  gc?.();
  return process.memoryUsage().rss;
}

async function runAsync(n: number, call: () => Promise<unknown>): Promise<void> {
  for (let done = 0; done < n; done += BATCH) {
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < BATCH && done + i < n; i++) batch.push(call());
    await Promise.all(batch);
  }
}

interface Op {
  name: string;
  sync: () => unknown;
  async: () => Promise<unknown>;
}

function ops(): Op[] {
  const rng = testRng('leak');
  const E = 4, r = 8, din = 64, dout = 256, T = 4, k = 2;
  const f32 = randomBank(rng, { E, r, din, dout });
  const bf16 = randomBank(rng, { E, r, din, dout, dtype: 'bf16' });
  const x = rng.f32(T * din), ids = randomIds(rng, T, k, E, { allMinusOneRate: 0 }), w = randomWeights(rng, T * k);
  const y = rng.f32(T * dout);
  const logits = rng.f32(16 * 64, -4, 4);
  const R = k * r;
  const out = { a: new Float32Array(2 * din * R), b: new Float32Array(2 * R * dout), rankCapacity: R, slots: Int32Array.from([1, 0]) };
  const fIds = ids.subarray(0, 2 * k), fW = w.subarray(0, 2 * k);
  const mIds = Int32Array.from([0, 3]), mW = randomWeights(rng, 2), W = rng.f32(din * dout);
  return [
    { name: 'topkSoftmax', sync: () => kernels.topkSoftmax(logits, 64, 4), async: () => kernels.topkSoftmaxAsync(logits, 64, 4, { renormalize: true }) },
    { name: 'loraMoe (new y)', sync: () => kernels.loraMoe(f32.bank, x, ids, w), async: () => kernels.loraMoeAsync(bf16.bank, x, ids, w) },
    { name: 'loraMoe (opts.y)', sync: () => kernels.loraMoe(bf16.bank, x, ids, w, { y }), async: () => kernels.loraMoeAsync(f32.bank, x, ids, w, { y }) },
    { name: 'foldExperts', sync: () => kernels.foldExperts(f32.bank, fIds, fW, k, out), async: () => kernels.foldExpertsAsync(bf16.bank, fIds, fW, k, out) },
    { name: 'mergeExperts', sync: () => kernels.mergeExperts(bf16.bank, mIds, mW, W), async: () => kernels.mergeExpertsAsync(f32.bank, mIds, mW, W, { layout: 'out_in' }) },
    {
      name: 'mergeExperts (in place)',
      sync: () => kernels.mergeExperts(f32.bank, mIds, mW, W, { inPlace: true }),
      async: () => kernels.mergeExpertsAsync(bf16.bank, mIds, mW, W, { inPlace: true }),
    },
    {
      // errors too: the refused calls must free what they made
      name: 'refused calls',
      sync: () => {
        try {
          kernels.loraMoe(f32.bank, x, Int32Array.from([0, 9, 1, 1, 2, 2, 3, 3]), w);
        } catch {
          /* expected */
        }
      },
      async: () => kernels.topkSoftmaxAsync(Float32Array.from([1, NaN]), 2, 1).catch(() => undefined),
    },
  ];
}

describe('no leak', () => {
  const list = ops();

  // RSS is a high-water mark: freed malloc memory is rarely returned to the OS, and V8 grows
  // its young generation in steps under allocation pressure. So each op first runs the very
  // same workload once unmeasured, and then a measured run must grow RSS by less than 5%; a
  // one-off step (seen as +5..10 MiB with no leak: V8 heap or a thread's malloc arena growing
  // once) gets up to two more runs, while a leak grows RSS on every run and fails all three.
  it.each(list.map((op) => [op.name, op] as const))(
    '10 000 sync and 10 000 async calls of %s grow RSS by less than 5%%',
    async (_name, op) => {
      const run = async () => {
        for (let i = 0; i < CALLS; i++) op.sync();
        await runAsync(CALLS, op.async);
      };
      await run();
      const mib = (v: number) => `${(v / 2 ** 20).toFixed(1)} MiB`;
      const seen: string[] = [];
      let before = await settledRss();
      for (let attempt = 0; attempt < 3; attempt++) {
        const m0 = process.memoryUsage();
        await run();
        const after = await settledRss();
        const m1 = process.memoryUsage();
        if (after < before * (1 + MAX_GROWTH)) return;
        seen.push(
          `RSS ${mib(before)} -> ${mib(after)} (V8 heap ${mib(m0.heapTotal)} -> ${mib(m1.heapTotal)}, ` +
            `external ${mib(m0.external)} -> ${mib(m1.external)})`,
        );
        before = after;
      }
      throw new Error(`${op.name}: every run grew RSS by 5% or more (gc ${gc ? 'available' : 'not available'}): ${seen.join('; ')}`);
    },
    60000,
  );

  it('2 000 banks created and disposed grow RSS by less than 5%', async () => {
    const rng = testRng();
    const a = rng.f32(4 * 8 * 256), b = rng.f32(4 * 256 * 8);
    const make = () => kernels.createLoraBank({ experts: 4, rank: 8, din: 256, dout: 256, dtype: 'f16', a, b });
    for (let i = 0; i < 2000; i++) make().dispose();
    const before = await settledRss();
    for (let i = 0; i < 2000; i++) make().dispose();
    const after = await settledRss();
    if (!(after < before * (1 + MAX_GROWTH))) {
      throw new Error(`banks: RSS ${(before / 2 ** 20).toFixed(1)} MiB -> ${(after / 2 ** 20).toFixed(1)} MiB`);
    }
  });
});
