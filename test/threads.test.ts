// Thread-count invariance: the kernels split work into tasks whose results never depend on
// which thread runs them, so setThreads(1), (2) and (3) must give bit-identical outputs, under
// every SIMD level. Sizes are chosen so the parallel paths really run (the pool runs jobs
// inline below 64 KiB of work): din = dout >= 1000, and for loraMoe T on both sides of the
// decode/token-tile switch (T >= 16 · threads), which moves with the thread count.
import { spawn } from 'node:child_process';
import * as path from 'node:path';

import { kernels } from '../lib';
import { usableCores } from '../lib/cores';
import { describeEachSimd, randomBank, randomIds, randomWeights } from './helpers/bank';
import { expectBitsEqual, expectIntsEqual, poison } from './helpers/check';
import { testRng } from './helpers/rng';
import { setThreadsSettled } from './helpers/threads';

const THREADS = [1, 2, 3];

/** Runs f once per thread count and returns the results in THREADS order. */
async function perThreads<R>(f: () => R | Promise<R>): Promise<R[]> {
  const out: R[] = [];
  try {
    for (const n of THREADS) {
      await setThreadsSettled(n);
      expect(kernels.info().threads).toBe(n);
      out.push(await f());
    }
  } finally {
    await setThreadsSettled(0);
  }
  return out;
}

/** Runs test/helpers/pool_race.js in a child process; resolves with its exit status and output. */
function poolRace(mode: 'sync' | 'async' | 'mixed', rounds: number, settleMs: number, maxMs: number, timeoutMs: number) {
  return new Promise<{ code: number | null; signal: string | null; out: string; timedOut: boolean }>((resolve) => {
    const script = path.join(__dirname, 'helpers', 'pool_race.js');
    const child = spawn(process.execPath, [script, path.join(__dirname, '..'), mode, String(rounds), String(settleMs), String(maxMs)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, timedOut });
    });
  });
}

afterAll(() => kernels.setThreads(0));

describe('thread-count invariance', () => {
  describeEachSimd(() => {
    it.each([1, 3, 20, 40, 64, 300])('loraMoe gives bit-identical y with 1, 2 and 3 threads: T=%i, din=dout=1031', async (T) => {
      const rng = testRng();
      for (const dtype of ['f32', 'bf16'] as const) {
        const E = 6, r = 16, din = 1031, dout = 1031, k = 2;
        const { bank } = randomBank(rng, { E, r, din, dout, dtype, ranks: [16, 3, 0, 16, 9, 1] });
        const x = rng.f32(T * din), ids = randomIds(rng, T, k, E), w = randomWeights(rng, T * k);
        const y0 = rng.f32(T * dout);
        const results = await perThreads(() => kernels.loraMoe(bank, x, ids, w, { y: y0.slice() }));
        for (let i = 1; i < results.length; i++) expectBitsEqual(results[i], results[0], `${dtype} T=${T} threads ${THREADS[i]} vs 1`);
        const asyncResults = await perThreads(() => kernels.loraMoeAsync(bank, x, ids, w, { y: y0.slice() }));
        for (let i = 0; i < asyncResults.length; i++) expectBitsEqual(asyncResults[i], results[0], `${dtype} T=${T} async threads ${THREADS[i]}`);
        bank.dispose();
      }
    });

    it('foldExperts writes bit-identical slots with 1, 2 and 3 threads', async () => {
      const rng = testRng();
      const E = 5, r = 16, din = 1100, dout = 1030, k = 3, B = 5, R = 300, S = 7;
      const { bank } = randomBank(rng, { E, r, din, dout, dtype: 'f16', ranks: [16, 0, 7, 16, 2] });
      const ids = randomIds(rng, B, k, E), w = randomWeights(rng, B * k);
      const slots = Int32Array.from([6, 0, 3, 2, 5]);
      const results = await perThreads(() => {
        const out = { a: poison(new Float32Array(S * din * R)), b: poison(new Float32Array(S * R * dout)), rankCapacity: R, slots };
        kernels.foldExperts(bank, ids, w, k, out);
        return out;
      });
      for (let i = 1; i < results.length; i++) {
        expectBitsEqual(results[i].a, results[0].a, `out.a threads ${THREADS[i]} vs 1`);
        expectBitsEqual(results[i].b, results[0].b, `out.b threads ${THREADS[i]} vs 1`);
      }
      bank.dispose();
    });

    it.each(['in_out', 'out_in'] as const)('mergeExperts gives bit-identical W with 1, 2 and 3 threads: %s', async (layout) => {
      const rng = testRng();
      const E = 4, r = 16, din = 1024, dout = 1030;
      const { bank } = randomBank(rng, { E, r, din, dout, dtype: 'bf16', ranks: [16, 5, 0, 11] });
      const ids = Int32Array.from([0, 3, -1, 1, 2]), w = randomWeights(rng, 5);
      const W = rng.f32(din * dout);
      const results = await perThreads(() => kernels.mergeExperts(bank, ids, w, W, { layout }));
      for (let i = 1; i < results.length; i++) expectBitsEqual(results[i], results[0], `threads ${THREADS[i]} vs 1`);
      bank.dispose();
    });

    it('topkSoftmax gives identical ids and bit-identical weights with 1, 2 and 3 threads', async () => {
      const rng = testRng();
      for (const [T, E, k] of [[1000, 128, 8], [300, 1024, 100]]) {
        const logits = rng.f32(T * E, -4, 4);
        const results = await perThreads(() => kernels.topkSoftmax(logits, E, k, { renormalize: true }));
        for (let i = 1; i < results.length; i++) {
          expectIntsEqual(results[i].ids, results[0].ids, `ids threads ${THREADS[i]} vs 1`);
          expectBitsEqual(results[i].weights, results[0].weights, `weights threads ${THREADS[i]} vs 1`);
        }
      }
    });
  });

  it('info() reports the cpu backend, the SIMD level in use and the thread count', async () => {
    const inf = kernels.info();
    expect(inf.backends).toEqual(['cpu']);
    expect(['scalar', 'avx2', 'avx512']).toContain(inf.simd);
    expect(Number.isInteger(inf.threads) && inf.threads >= 1).toBe(true);
    await setThreadsSettled(3);
    expect(kernels.info().threads).toBe(3);
    await setThreadsSettled(0);
  });

  it('setThreads(0) restores the default: PERSONAFUSE_NUM_THREADS or the cores this process may use', async () => {
    kernels.setThreads(1);
    await setThreadsSettled(0);
    const env = Number(process.env.PERSONAFUSE_NUM_THREADS);
    expect(kernels.info().threads).toBe(env > 0 ? Math.floor(env) : usableCores());
  });

  it('concurrent async calls (the pool busy, jobs run inline) give the same bits as sequential sync calls', async () => {
    const rng = testRng();
    const E = 4, r = 16, din = 1024, dout = 1024;
    const { bank } = randomBank(rng, { E, r, din, dout });
    const inputs = [1, 3, 20, 64, 5, 40, 2, 100].map((T) => ({
      x: rng.f32(T * din), ids: randomIds(rng, T, 2, E), w: randomWeights(rng, T * 2),
    }));
    const want = inputs.map((i) => kernels.loraMoe(bank, i.x, i.ids, i.w));
    const mIds = Int32Array.from([1, 2]), mW = randomWeights(rng, 2), W = rng.f32(din * dout);
    const wantW = kernels.mergeExperts(bank, mIds, mW, W, { layout: 'out_in' });
    const got = await Promise.all([
      ...inputs.map((i) => kernels.loraMoeAsync(bank, i.x, i.ids, i.w)),
      kernels.mergeExpertsAsync(bank, mIds, mW, W, { layout: 'out_in' }),
      ...inputs.map((i) => kernels.loraMoeAsync(bank, i.x, i.ids, i.w)),
    ]);
    for (let i = 0; i < inputs.length; i++) {
      expectBitsEqual(got[i], want[i], `concurrent call ${i}`);
      expectBitsEqual(got[inputs.length + 1 + i], want[i], `concurrent call ${inputs.length + 1 + i}`);
    }
    expectBitsEqual(got[inputs.length], wantW, 'concurrent merge');
    bank.dispose();
  });

  // Regression guard for a fixed start-up race of kernels/cpu/thread_pool.cc: a worker created by
  // setThreads(n >= 2) after a parallel job had run woke at once for that finished job and counted
  // against the next one, so the next job's caller waited forever (sync: the main thread; async: a
  // libuv thread holding the submit lock, then the next setThreads). Workers now start from the
  // pool's current job and the caller waits only for tasks workers actually claimed.
  // Run in a child process: a hang there is killed; in-process it would block jest for good.
  it('setThreads followed at once by a parallel call (sync and async) never deadlocks (8 s of rounds, child process)', async () => {
    const res = await poolRace('mixed', 1e9, 0, 8000, 20000);
    if (res.timedOut || res.code !== 0 || !res.out.includes('done')) {
      const last = res.out.trim().split('\n').slice(-1)[0] ?? '';
      throw new Error(
        res.timedOut
          ? `the child hung (killed after 20 s; last progress: "${last}"): thread-pool deadlock after setThreads`
          : `the child failed (code ${res.code}, signal ${res.signal}): ${res.out}`,
      );
    }
  }, 30000);

  it('the same rounds complete when the new workers are given time to start first (the race, not the maths)', async () => {
    const res = await poolRace('mixed', 200, 5, Infinity, 30000);
    expect(res.timedOut).toBe(false);
    expect(res.code).toBe(0);
    expect(res.out).toContain('done');
  }, 40000);
});
