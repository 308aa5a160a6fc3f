// The CUDA backend from Node: the plugin loader (info().cuda), DeviceTensor (toDevice), the CPU
// ops unchanged beside it, and the library's options. Each op on the device is in
// test/device_<op>.test.ts; `npm run test:gpu` (jest test/device) runs them all.
//
// On a machine without a usable device (CI: nvcc but no GPU or driver) the GPU cases are
// reported as skipped, with one line "skipped: no CUDA device (<reason>)"; what runs there is
// the loader (missing or wrong library, no device), the clear errors of toDevice and
// createLoraBank({ device: 'cuda' }), and the unchanged CPU behaviour. With
// PERSONAFUSE_REQUIRE_CUDA=1 (npm run test:gpu) a missing device is a failure.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

import * as kernels from '../lib/kernels';
import { packageRoot } from '../lib/kernels/binding';
import { expectAsyncFails, expectBitsEqual, expectIntsEqual, expectThrows, typedArrayTag } from './helpers/check';
import {
  cudaAvailable, dev, gpuTest, info, logDevice, noGpuTest, randomIds, randomWeights, requireCuda,
} from './helpers/device';
import { testRng } from './helpers/rng';

logDevice();

// ---------------------------------------------------------------------------------------------
// helpers

/** Runs `code` in a fresh Node process (the plugin opens once per process) with `env` added. */
function child(code: string, env: Record<string, string>): { out: string; err: string; status: number | null } {
  const r = spawnSync(process.execPath, ['-e', code], {
    cwd: packageRoot(), env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000,
  });
  return { out: r.stdout, err: r.stderr, status: r.status };
}

/** info().cuda and one CPU op of a fresh process, as JSON. */
const CHILD_INFO = `
  const b = require('node-gyp-build')(process.cwd());
  const y = b.topkSoftmax(new Float32Array([1, 3, 2]), 3, 1, false);
  let toDevice;
  try { new b.DeviceTensor(new Float32Array(2)); toDevice = 'ok'; } catch (e) { toDevice = e.message; }
  console.log(JSON.stringify({ cuda: b.info().cuda, backends: b.info().backends, cpuIds: Array.from(y.ids), toDevice }));
`;

// ---------------------------------------------------------------------------------------------

describe('info (CUDA backend)', () => {
  test("backends lists 'cuda' exactly when info().cuda.available", () => {
    expect(info.backends[0]).toBe('cpu');
    expect(info.backends.includes('cuda')).toBe(cudaAvailable);
    expect(typeof info.cuda.available).toBe('boolean');
  });

  test('a CUDA device is usable when PERSONAFUSE_REQUIRE_CUDA=1 (npm run test:gpu)', () => {
    if (requireCuda && !cudaAvailable) throw new Error(`PERSONAFUSE_REQUIRE_CUDA=1 but no CUDA device: ${info.cuda.reason}`);
  });

  noGpuTest('without a device, cuda.reason explains why (library, driver or device) in words', () => {
    expect(info.backends).not.toContain('cuda');
    expect(typeof info.cuda.reason).toBe('string');
    expect((info.cuda.reason ?? '').length).toBeGreaterThan(10);
    expect(info.cuda.reason).toMatch(/CUDA/);
  });

  gpuTest('with a device, devices name the card, its compute capability and memory', () => {
    expect(info.cuda.reason).toBeUndefined();
    expect(info.cuda.library).toMatch(/libpersonafuse_cuda\.so$/);
    const d = info.cuda.devices ?? [];
    expect(d.length).toBeGreaterThan(0);
    expect(d[0].name.length).toBeGreaterThan(0);
    expect(d[0].computeCapability).toMatch(/^\d+\.\d+$/);
    expect(d[0].memoryBytes).toBeGreaterThan(2 ** 30);
  });

  test('a missing library (PERSONAFUSE_CUDA_LIB) is a reason, not a load failure, and the CPU kernels work', () => {
    const r = child(CHILD_INFO, { PERSONAFUSE_CUDA_LIB: '/nonexistent/libpersonafuse_cuda.so' });
    expect(r.err).toBe('');
    const got = JSON.parse(r.out);
    expect(got.cuda.available).toBe(false);
    expect(got.cuda.reason).toMatch(/PERSONAFUSE_CUDA_LIB names no CUDA library.*\/nonexistent\/libpersonafuse_cuda\.so \(not found\)/);
    expect(got.backends).toEqual(['cpu']);
    expect(got.cpuIds).toEqual([1]);
    expect(got.toDevice).toBe(`toDevice needs a usable CUDA device, but ${got.cuda.reason}`);
  });

  test('a file that is not a shared library is reported with the dlopen error', () => {
    const r = child(CHILD_INFO, { PERSONAFUSE_CUDA_LIB: `${packageRoot()}/package.json` });
    const got = JSON.parse(r.out);
    expect(got.cuda.available).toBe(false);
    expect(got.cuda.reason).toMatch(/package\.json could not be opened: .*(ELF|header|too short)/);
  });

  test('a library without pf_cuda_get_api (another ABI) is reported as such', () => {
    // libc is on every Linux machine and certainly has no pf_cuda_get_api
    const libc = ['/lib/x86_64-linux-gnu/libc.so.6', '/lib/aarch64-linux-gnu/libc.so.6', '/lib64/libc.so.6', '/usr/lib/libc.so.6']
      .find((f) => fs.existsSync(f)) ?? '/lib64/libc.so.6';
    const got = JSON.parse(child(CHILD_INFO, { PERSONAFUSE_CUDA_LIB: libc }).out);
    expect(got.cuda.available).toBe(false);
    expect(got.cuda.reason).toMatch(/does not speak C ABI version 1 \(pf_cuda_get_api is missing\)/);
  });
});

describe('toDevice', () => {
  test('rejects arrays other than Float32Array, Int32Array and Uint16Array with a TypeError naming array', () => {
    expectThrows(() => kernels.toDevice(new Float64Array(2) as never), TypeError,
      /^Expected Float32Array, Int32Array or Uint16Array for array but received Float64Array of length 2$/);
    expectThrows(() => kernels.toDevice([1, 2] as never), TypeError, /for array but received Array of length 2/);
  });

  noGpuTest('without a device, throws an Error that carries info().cuda.reason', () => {
    const e = expectThrows(() => kernels.toDevice(new Float32Array(4)), Error, /^toDevice needs a usable CUDA device, but /);
    expect(e.message).toContain(info.cuda.reason as string);
  });

  gpuTest('round-trips every element type bit for bit, odd and zero lengths included', () => {
    const rng = testRng();
    for (const n of [0, 1, 7, 1000, 65537]) {
      const f = rng.f32(n, -1e6, 1e6);
      if (n > 3) f[2] = NaN;
      const i = Int32Array.from({ length: n }, () => rng.int(-(2 ** 31), 2 ** 31));
      const u = Uint16Array.from({ length: n }, () => rng.int(0, 65536));
      const df = dev(f), di = dev(i), du = dev(u);
      expect([df.dtype, di.dtype, du.dtype]).toEqual(['f32', 'i32', 'u16']);
      expect([df.length, di.length, du.length]).toEqual([n, n, n]);
      expect(typedArrayTag(df.toHost())).toBe('Float32Array');
      expectBitsEqual(df.toHost(), f, `f32 n=${n}`);
      expectIntsEqual(di.toHost(), i, `i32 n=${n}`);
      expectIntsEqual(du.toHost(), u, `u16 n=${n}`);
      expect(typedArrayTag(du.toHost())).toBe('Uint16Array');
      for (const t of [df, di, du]) t.dispose();
    }
  });

  gpuTest('toHost gives a new array each time; a subarray view uploads only its elements', () => {
    const base = Float32Array.from({ length: 10 }, (_, i) => i);
    const t = dev(base.subarray(3, 7));
    const h1 = t.toHost();
    const h2 = t.toHost();
    expect(h1).not.toBe(h2);
    expect(Array.from(h1)).toEqual([3, 4, 5, 6]);
    h1[0] = 99;
    expect(t.toHost()[0]).toBe(3);
    t.dispose();
  });

  gpuTest('a disposed tensor says so: toHost throws DisposedError, an op names the argument', () => {
    const t = dev(new Float32Array(6));
    t.dispose();
    t.dispose(); // twice is fine
    expect(t.disposed).toBe(true);
    const e = expectThrows(() => t.toHost(), Error, /^DeviceTensor is disposed$/);
    expect(e.name).toBe('DisposedError');
    expectThrows(() => kernels.topkSoftmax(t, 3, 1), Error, /^The DeviceTensor passed as logits is disposed$/);
  });
});

describe('CPU behaviour with the CUDA backend present', () => {
  test('host arrays and a CPU bank keep their results and error wording', () => {
    const rng = testRng();
    const E = 3, r = 2, din = 5, dout = 4, T = 3, k = 2;
    const a = rng.f32(E * r * din), b = rng.f32(E * dout * r);
    const bank = kernels.createLoraBank({ experts: E, rank: r, din, dout, a, b });
    const bank2 = kernels.createLoraBank({ experts: E, rank: r, din, dout, a, b, device: 'cpu' });
    const x = rng.f32(T * din), ids = randomIds(rng, T, k, E), w = randomWeights(rng, T * k);
    const y = kernels.loraMoe(bank, x, ids, w);
    expect(typedArrayTag(y)).toBe('Float32Array');
    expectBitsEqual(kernels.loraMoe(bank2, x, ids, w), y, 'same bank with device: cpu');
    expectThrows(() => kernels.loraMoe(bank, new Int32Array(din) as never, ids, w), TypeError,
      /^Expected Float32Array for x but received Int32Array of length 5$/);
    expectThrows(() => kernels.topkSoftmax(new Float32Array(7), 3, 1), RangeError,
      /^Expected a length that is a multiple of experts \(3\) for logits but received length 7$/);
    const t = kernels.topkSoftmax(Float32Array.from([0, 2, 1]), 3, 2);
    expect(Array.from(t.ids)).toEqual([1, 2]);
  });
});

describe('CUDA options', () => {
  noGpuTest('without a device, setCudaOption throws an Error that carries info().cuda.reason', () => {
    const e = expectThrows(() => kernels.setCudaOption('sync_checks', 0), Error, /^setCudaOption needs a usable CUDA device, but /);
    expect(e.message).toContain(info.cuda.reason as string);
  });

  gpuTest('an unknown option is a RangeError naming it; known ones read back', () => {
    expectThrows(() => kernels.setCudaOption('fast' as never, 1), RangeError, /sync_checks, check_pointers, moe_prefill_min_tokens, moe_fused_max_tokens, moe_dense_max_columns for name but received fast/);
    expect(kernels.getCudaOption('sync_checks')).toBe(1);
    expect(kernels.getCudaOption('check_pointers')).toBe(1);
  });

  gpuTest('with sync_checks 0 results are the same and a data fault still fails the call that queued it', async () => {
    const rng = testRng();
    const logits = rng.f32(50 * 12, -4, 4);
    const want = kernels.topkSoftmax(logits, 12, 3);
    kernels.setCudaOption('sync_checks', 0);
    try {
      const got = kernels.topkSoftmax(dev(logits), 12, 3);
      expectIntsEqual(got.ids.toHost(), want.ids, 'ids');
      const bad = Float32Array.from(logits);
      bad[5 * 12 + 4] = NaN;
      expectThrows(() => kernels.topkSoftmax(dev(bad), 12, 3), RangeError, /sync_checks off found .*logits/);
      await expectAsyncFails(() => kernels.topkSoftmaxAsync(dev(bad), 12, 3), RangeError, /sync_checks off found .*logits/);
      // the fault was reported and cleared: the next call is clean
      expectIntsEqual((await kernels.topkSoftmaxAsync(dev(logits), 12, 3)).ids.toHost(), want.ids, 'ids after a fault');
    } finally {
      kernels.setCudaOption('sync_checks', 1);
    }
  });
});
