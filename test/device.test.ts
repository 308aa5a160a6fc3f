// The CUDA backend from Node: the plugin loader, DeviceTensor, banks on the device and every op
// on device memory against the CPU kernels.
//
// On a machine without a usable device (CI: nvcc but no GPU or driver) the GPU cases are
// reported as skipped, with one line "skipped: no CUDA device (<reason>)"; what runs there is
// the loader (missing or wrong library, no device), the clear errors of toDevice and
// createLoraBank({ device: 'cuda' }), and the unchanged CPU behaviour. With
// PERSONAFUSE_REQUIRE_CUDA=1 (npm run test:gpu) a missing device is a failure.
//
// Tolerance of the GPU-vs-CPU comparisons: both backends compute in float32 from the same bank
// bits (16-bit weights decode exactly), in different summation orders, so each output element
// differs by at most (number of roundings) · u · M, M the sum of the magnitudes of its terms
// (the CPU op run on |inputs|), as in lora_moe.test.ts. topk_softmax's exp differs between the
// backends by a few ulp, so weights get a small relative bound and ids must match exactly.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

import * as kernels from '../lib/kernels';
import { packageRoot } from '../lib/kernels/binding';
import {
  boundFrom, expectAsyncFails, expectBitsEqual, expectClose, expectIntsEqual, expectThrows, POISON_BITS, typedArrayTag, U32,
} from './helpers/check';
import { Rng, testRng } from './helpers/rng';

type Dtype = 'f32' | 'f16' | 'bf16';
const DTYPES: Dtype[] = ['f32', 'f16', 'bf16'];

const info = kernels.info();
const cudaAvailable = info.cuda.available;
const requireCuda = process.env.PERSONAFUSE_REQUIRE_CUDA === '1';
const gpuTest = cudaAvailable ? test : test.skip;
const noGpuTest = cudaAvailable ? test.skip : test;
if (!cudaAvailable) console.log(`skipped: no CUDA device (${info.cuda.reason})`);
else console.log(`CUDA device: ${info.cuda.devices?.[0]?.name} (compute capability ${info.cuda.devices?.[0]?.computeCapability})`);

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

interface Bank {
  cpu: kernels.LoraBank;
  gpu: kernels.LoraBank;
  /** the CPU kernels on |a|, |b|, |scales|: magnitudes for error bounds */
  abs: kernels.LoraBank;
  E: number; r: number; din: number; dout: number;
}

/** The same random bank on both backends (16-bit dtypes rounded once, here, to the same bits). */
function makeBank(rng: Rng, E: number, r: number, din: number, dout: number, dtype: Dtype, ranks?: number[]): Bank {
  const round = (v: Float32Array) => (dtype === 'f32' ? v : kernels.toBits(v, dtype));
  const a = round(rng.f32(E * r * din));
  const b = round(rng.f32(E * dout * r));
  const scales = Float32Array.from({ length: E }, () => rng.signed(0.25, 2));
  const opts = { experts: E, rank: r, din, dout, dtype, a, b, scales, ranks: ranks ? Int32Array.from(ranks) : undefined };
  const absOf = (v: Float32Array | Uint16Array) =>
    v instanceof Float32Array ? v.map(Math.abs) : (v as Uint16Array).map((h) => h & 0x7fff);
  return {
    cpu: kernels.createLoraBank(opts),
    gpu: kernels.createLoraBank({ ...opts, device: 'cuda' }),
    abs: kernels.createLoraBank({ ...opts, a: absOf(a), b: absOf(b), scales: scales.map(Math.abs) }),
    E, r, din, dout,
  };
}

function disposeBank(b: Bank): void {
  b.cpu.dispose();
  b.gpu.dispose();
  b.abs.dispose();
}

/** Expert ids [n] in [-1, E) with some -1 slots, distinct within each row of k. */
function randomIds(rng: Rng, rows: number, k: number, E: number): Int32Array {
  const ids = new Int32Array(rows * k);
  for (let t = 0; t < rows; t++) {
    const row = rng.distinct(E, k);
    for (let j = 0; j < k; j++) ids[t * k + j] = rng.float() < 0.15 ? -1 : row[j];
  }
  return ids;
}

const randomWeights = (rng: Rng, n: number) => Float32Array.from({ length: n }, () => rng.signed(0.05, 1.5));

/** Device memory that held POISON_BITS: the allocator tends to hand the same block out next,
 *  so an output the kernel fails to write shows up as poison. */
function poisonDeviceHeap(length: number): void {
  if (length === 0) return;
  const p = new Float32Array(length);
  new Uint32Array(p.buffer).fill(POISON_BITS);
  kernels.toDevice(p).dispose();
}

const dev = kernels.toDevice;

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

describe('createLoraBank (device option)', () => {
  const opts = { experts: 2, rank: 1, din: 3, dout: 2, a: new Float32Array(6), b: new Float32Array(4) };

  test("an unknown device is a TypeError naming device", () => {
    expectThrows(() => kernels.createLoraBank({ ...opts, device: 'gpu' as never }), TypeError,
      /^Expected 'cpu' or 'cuda' for device but received 'gpu' of type string$/);
  });

  test("device: 'cpu' is the default bank", () => {
    const a = kernels.createLoraBank({ ...opts, device: 'cpu' });
    expect(a.device).toBe('cpu');
    expect(kernels.createLoraBank(opts).device).toBe('cpu');
    expect(a.bytes).toBeGreaterThan(0);
  });

  noGpuTest("without a device, device: 'cuda' throws an Error that carries info().cuda.reason", () => {
    const e = expectThrows(() => kernels.createLoraBank({ ...opts, device: 'cuda' }), Error,
      /^createLoraBank\(\{ device: 'cuda' \}\) needs a usable CUDA device, but /);
    expect(e.message).toContain(info.cuda.reason as string);
  });

  gpuTest("device: 'cuda' makes a bank on the GPU with the same argument checks", () => {
    const b = kernels.createLoraBank({ ...opts, device: 'cuda' });
    expect(b.device).toBe('cuda');
    expect(b.bytes).toBeGreaterThan(0);
    b.dispose();
    expect(b.bytes).toBe(0);
    expectThrows(() => kernels.createLoraBank({ ...opts, a: new Float32Array(5), device: 'cuda' }), RangeError,
      /^Expected length 6 \(experts \* rank \* din\) for a but received length 5$/);
    expectThrows(() => kernels.createLoraBank({ ...opts, a: dev(new Float32Array(6)) as never, device: 'cuda' }), TypeError,
      /^Expected a host typed array for a but received DeviceTensor f32 of length 6/);
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

// ---------------------------------------------------------------------------------------------
// every op on the device against the CPU kernels

describe('topkSoftmax on the device', () => {
  const cases = [
    { T: 0, E: 8, k: 2 }, { T: 1, E: 1, k: 1 }, { T: 5, E: 7, k: 7 }, { T: 33, E: 10, k: 2 },
    { T: 257, E: 64, k: 8 }, { T: 19, E: 1000, k: 5 }, { T: 3, E: 1024, k: 1 }, { T: 40, E: 33, k: 4 },
  ];
  for (const renormalize of [false, true]) {
    for (const c of cases) {
      gpuTest(`matches the CPU kernel: ids exactly, weights to a few ulp (T=${c.T} E=${c.E} k=${c.k} renormalize=${renormalize})`, () => {
        const rng = testRng();
        const logits = rng.f32(c.T * c.E, -6, 6);
        const want = kernels.topkSoftmax(logits, c.E, c.k, { renormalize });
        poisonDeviceHeap(c.T * c.k);
        const got = kernels.topkSoftmax(dev(logits), c.E, c.k, { renormalize });
        expect([got.ids.dtype, got.weights.dtype]).toEqual(['i32', 'f32']);
        expect(got.ids.length).toBe(c.T * c.k);
        expectIntsEqual(got.ids.toHost(), want.ids, 'ids');
        expectClose(got.weights.toHost(), want.weights, boundFrom(want.weights, 16 + c.E), 'weights');
      });
    }
  }

  gpuTest('a NaN logit is the same RangeError as on the CPU', () => {
    const logits = Float32Array.from({ length: 12 }, (_, i) => i);
    logits[7] = NaN;
    const cpu = expectThrows(() => kernels.topkSoftmax(logits, 4, 2), RangeError);
    expectThrows(() => kernels.topkSoftmax(dev(logits), 4, 2), RangeError, new RegExp(`^${reEscape(cpu.message)}$`));
  });

  gpuTest('checks experts, k and the length before any GPU work, with the CPU wording', () => {
    const l = dev(new Float32Array(12));
    expectThrows(() => kernels.topkSoftmax(l, 5, 1), RangeError,
      /^Expected a length that is a multiple of experts \(5\) for logits but received length 12$/);
    expectThrows(() => kernels.topkSoftmax(l, 4, 5), RangeError, /^Expected an integer between 1 and 4 for k but received 5 of type number$/);
    expectThrows(() => kernels.topkSoftmax(dev(new Int32Array(4)) as never, 4, 1), TypeError,
      /^Expected a DeviceTensor of f32 for logits but received DeviceTensor i32 of length 4$/);
  });

  gpuTest('the Promise variant resolves with the finished result', async () => {
    const rng = testRng();
    const logits = rng.f32(300 * 16, -3, 3);
    const want = kernels.topkSoftmax(logits, 16, 3);
    const got = await kernels.topkSoftmaxAsync(dev(logits), 16, 3);
    expectIntsEqual(got.ids.toHost(), want.ids, 'ids');
    expectClose(got.weights.toHost(), want.weights, boundFrom(want.weights, 20), 'weights');
    await expectAsyncFails(() => kernels.topkSoftmaxAsync(dev(logits), 16, 17), RangeError, /for k/);
  });
});

function reEscape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

interface MoeCase { T: number; E: number; r: number; din: number; dout: number; k: number; ranks?: number[] }

describe('loraMoe on the device', () => {
  const cases: MoeCase[] = [
    { T: 0, E: 3, r: 2, din: 24, dout: 8, k: 2 },
    { T: 1, E: 1, r: 1, din: 1, dout: 1, k: 1 },
    { T: 1, E: 10, r: 16, din: 515, dout: 257, k: 2 },
    { T: 7, E: 4, r: 8, din: 67, dout: 45, k: 3 },
    { T: 33, E: 6, r: 16, din: 130, dout: 70, k: 2 },        // past the old moe_prefill_min_tokens default (32)
    { T: 130, E: 5, r: 12, din: 65, dout: 100, k: 3, ranks: [12, 1, 5, 12, 7] },
    { T: 300, E: 8, r: 64, din: 256, dout: 129, k: 8 },
  ];
  for (const dtype of DTYPES) {
    for (const c of cases) {
      const name = `T=${c.T} E=${c.E} r=${c.r} din=${c.din} dout=${c.dout} k=${c.k}${c.ranks ? ' mixed ranks' : ''}`;
      gpuTest(`matches the CPU kernel within the f32 rounding bound (${dtype} ${name})`, () => {
        const rng = testRng();
        const bank = makeBank(rng, c.E, c.r, c.din, c.dout, dtype, c.ranks);
        const x = rng.f32(c.T * c.din), ids = randomIds(rng, c.T, c.k, c.E), w = randomWeights(rng, c.T * c.k);
        const want = kernels.loraMoe(bank.cpu, x, ids, w);
        const mag = kernels.loraMoe(bank.abs, x.map(Math.abs), ids, w.map(Math.abs));
        // + 512 units for 16-bit banks: from moe_prefill_min_tokens on, x and the rank-r
        // intermediate enter the tensor cores as hi + lo 16-bit parts (about 2^-17 relative)
        const units = c.din + c.r + c.k + 8 + (dtype === 'f32' ? 0 : 512);
        const bound = boundFrom(mag, units);
        poisonDeviceHeap(c.T * c.dout);
        const y = kernels.loraMoe(bank.gpu, dev(x), dev(ids), dev(w));
        expect(y.dtype).toBe('f32');
        expectClose(y.toHost(), want, bound, 'fresh y');
        // into a given y: accumulates (y0 + result)
        const y0 = rng.f32(c.T * c.dout);
        const yd = dev(y0);
        expect(kernels.loraMoe(bank.gpu, dev(x), dev(ids), dev(w), { y: yd })).toBe(yd);
        const wantAcc = kernels.loraMoe(bank.cpu, x, ids, w, { y: Float32Array.from(y0) });
        expectClose(yd.toHost(), wantAcc, boundFrom(mag.map((m, i) => m + Math.abs(y0[i])), units + 1), 'y += ');
        disposeBank(bank);
      });
    }
  }

  gpuTest('is deterministic: the same inputs give the same bits', () => {
    const rng = testRng();
    const bank = makeBank(rng, 6, 16, 300, 200, 'bf16');
    const x = dev(rng.f32(100 * 300)), ids = dev(randomIds(rng, 100, 2, 6)), w = dev(randomWeights(rng, 200));
    expectBitsEqual(kernels.loraMoe(bank.gpu, x, ids, w).toHost(), kernels.loraMoe(bank.gpu, x, ids, w).toHost(), 'run 2 vs 1');
    disposeBank(bank);
  });

  gpuTest('an id out of range is the same RangeError as on the CPU', () => {
    const rng = testRng();
    const bank = makeBank(rng, 3, 2, 5, 4, 'f32');
    const x = rng.f32(2 * 5), ids = Int32Array.from([0, 1, 2, 3]), w = randomWeights(rng, 4);
    const cpu = expectThrows(() => kernels.loraMoe(bank.cpu, x, ids, w), RangeError);
    expectThrows(() => kernels.loraMoe(bank.gpu, dev(x), dev(ids), dev(w)), RangeError, new RegExp(`^${reEscape(cpu.message)}$`));
    disposeBank(bank);
  });

  gpuTest('mixing host and device arguments is a TypeError naming the argument', () => {
    const rng = testRng();
    const bank = makeBank(rng, 3, 2, 5, 4, 'f16');
    const x = rng.f32(10), ids = Int32Array.from([0, 1, 2, -1]), w = randomWeights(rng, 4);
    const [dx, dids, dw] = [dev(x), dev(ids), dev(w)];
    expectThrows(() => kernels.loraMoe(bank.gpu, x as never, dids, dw), TypeError,
      /^Expected a DeviceTensor of f32 for x but received Float32Array of length 10 \(the other arguments are on the device: use kernels\.toDevice\)$/);
    expectThrows(() => kernels.loraMoe(bank.gpu, dx, ids as never, dw), TypeError, /DeviceTensor of i32 for ids but received Int32Array/);
    expectThrows(() => kernels.loraMoe(bank.gpu, dx, dids, w as never), TypeError, /for weights but received Float32Array/);
    expectThrows(() => kernels.loraMoe(bank.gpu, dx, dids, dw, { y: new Float32Array(8) as never }), TypeError, /for y but received Float32Array/);
    expectThrows(() => kernels.loraMoe(bank.gpu, dx, dw as never, dw), TypeError,
      /^Expected a DeviceTensor of i32 for ids but received DeviceTensor f32 of length 4$/);
    // a CPU bank with device arrays
    expectThrows(() => kernels.loraMoe(bank.cpu, dx as never, ids, w), TypeError,
      /^Expected Float32Array for x but received DeviceTensor f32 of length 10 \(the bank is on the CPU: .*device: 'cuda'\)$/);
    expectThrows(() => kernels.loraMoe(bank.cpu, x, ids, dw as never), TypeError, /for weights but received DeviceTensor f32/);
    // lengths are checked before the GPU is touched, with the CPU wording
    expectThrows(() => kernels.loraMoe(bank.gpu, dx, dids, dev(new Float32Array(3))), RangeError,
      /^Expected length 4 \(T \* k, as ids\) for weights but received length 3$/);
    expectThrows(() => kernels.loraMoe(bank.gpu, dev(new Float32Array(11)), dids, dw), RangeError, /multiple of din \(5\) for x/);
    disposeBank(bank);
  });

  gpuTest('the Promise variant resolves when the GPU work is done, and rejects argument errors', async () => {
    const rng = testRng();
    const bank = makeBank(rng, 4, 8, 333, 222, 'f16');
    const T = 64, k = 2;
    const x = rng.f32(T * 333), ids = randomIds(rng, T, k, 4), w = randomWeights(rng, T * k);
    const want = kernels.loraMoe(bank.cpu, x, ids, w);
    const mag = kernels.loraMoe(bank.abs, x.map(Math.abs), ids, w.map(Math.abs));
    const p = kernels.loraMoeAsync(bank.gpu, dev(x), dev(ids), dev(w));
    bank.gpu.dispose(); // the queued call keeps the bank until it is done
    const y = await p;
    expectClose(y.toHost(), want, boundFrom(mag, 333 + 8 + k + 8 + 512), 'async y');
    await expectAsyncFails(() => kernels.loraMoeAsync(bank.gpu, dev(x), dev(ids), dev(w)), Error, /LoraBank is disposed/);
    disposeBank(bank);
  });
});

describe('Promise variants in flight together', () => {
  gpuTest('many calls queued at once on the one stream each resolve with their own result', async () => {
    const rng = testRng();
    const bank = makeBank(rng, 6, 8, 150, 90, 'f16');
    const inputs = Array.from({ length: 12 }, (_, i) => {
      const T = 1 + 7 * i;
      return { x: rng.f32(T * 150), ids: randomIds(rng, T, 2, 6), w: randomWeights(rng, T * 2) };
    });
    const got = await Promise.all(inputs.map((c) => kernels.loraMoeAsync(bank.gpu, dev(c.x), dev(c.ids), dev(c.w))));
    inputs.forEach((c, i) => {
      const want = kernels.loraMoe(bank.cpu, c.x, c.ids, c.w);
      const mag = kernels.loraMoe(bank.abs, c.x.map(Math.abs), c.ids, c.w.map(Math.abs));
      expectClose(got[i].toHost(), want, boundFrom(mag, 150 + 8 + 2 + 8 + 512), `call ${i}`);
    });
    disposeBank(bank);
  });
});

describe('foldExperts on the device', () => {
  const cases = [
    { B: 1, E: 1, r: 1, din: 1, dout: 1, k: 1, S: 1, extraR: 0 },
    { B: 5, E: 6, r: 4, din: 37, dout: 29, k: 2, S: 7, extraR: 3 },
    { B: 16, E: 10, r: 16, din: 260, dout: 130, k: 2, S: 20, extraR: 0, ranks: [16, 3, 1, 16, 8, 16, 16, 2, 16, 9] },
  ];
  for (const dtype of DTYPES) {
    for (const c of cases) {
      for (const withSlots of [false, true]) {
        gpuTest(`writes every named slot as the CPU kernel does and leaves the others (${dtype} B=${c.B} din=${c.din} dout=${c.dout} k=${c.k} R=k*r+${c.extraR}${withSlots ? ' slots' : ''})`, () => {
          const rng = testRng();
          const bank = makeBank(rng, c.E, c.r, c.din, c.dout, dtype, c.ranks);
          const R = c.k * c.r + c.extraR;
          const ids = randomIds(rng, c.B, c.k, c.E), w = randomWeights(rng, c.B * c.k);
          const slots = withSlots ? Int32Array.from(rng.distinct(c.S, c.B)) : undefined;
          const a0 = rng.f32(c.S * c.din * R), b0 = rng.f32(c.S * R * c.dout); // untouched slots keep these
          const wa = Float32Array.from(a0), wb = Float32Array.from(b0);
          kernels.foldExperts(bank.cpu, ids, w, c.k, { a: wa, b: wb, rankCapacity: R, slots });
          const [da, db] = [dev(a0), dev(b0)];
          kernels.foldExperts(bank.gpu, dev(ids), dev(w), c.k, { a: da, b: db, rankCapacity: R, slots: slots && dev(slots) });
          // a gather and one product w·s·B: the same bits on both backends
          expectBitsEqual(da.toHost(), wa, 'a');
          expectClose(db.toHost(), wb, boundFrom(wb.map(Math.abs), 2), 'b');
          disposeBank(bank);
        });
      }
    }
  }

  gpuTest('checks every argument before the GPU, and names host arrays mixed in', () => {
    const rng = testRng();
    const bank = makeBank(rng, 3, 2, 5, 4, 'f32');
    const ids = dev(Int32Array.from([0, 1, 2, -1])), w = dev(randomWeights(rng, 4));
    const a = dev(new Float32Array(2 * 5 * 4)), b = dev(new Float32Array(2 * 4 * 4));
    expectThrows(() => kernels.foldExperts(bank.gpu, ids, w, 2, { a, b: new Float32Array(32), rankCapacity: 4 }), TypeError,
      /^Expected a DeviceTensor of f32 for out\.b but received Float32Array of length 32/);
    expectThrows(() => kernels.foldExperts(bank.gpu, ids, w, 2, { a, b, rankCapacity: 4, slots: Int32Array.from([0, 1]) }), TypeError,
      /for out\.slots but received Int32Array of length 2/);
    expectThrows(() => kernels.foldExperts(bank.gpu, ids, w, 2, { a, b, rankCapacity: 3 }), RangeError,
      /^Expected an integer between 4 and 1048576 for out\.rankCapacity but received 3 of type number$/);
    expectThrows(() => kernels.foldExperts(bank.gpu, ids, w, 2, { a, b: dev(new Float32Array(31)), rankCapacity: 4 }), RangeError,
      /for out\.b but received length 31/);
    expectThrows(() => kernels.foldExperts(bank.cpu, ids, w, 2, { a, b, rankCapacity: 4 }), TypeError,
      /^Expected Int32Array for ids but received DeviceTensor i32 of length 4 \(the bank is on the CPU/);
    const cpuSlots = expectThrows(() => kernels.foldExperts(bank.cpu, Int32Array.from([0, 1, 2, -1]), randomWeights(rng, 4), 2,
      { a: new Float32Array(40), b: new Float32Array(32), rankCapacity: 4, slots: Int32Array.from([1, 1]) }), RangeError);
    expectThrows(() => kernels.foldExperts(bank.gpu, ids, w, 2, { a, b, rankCapacity: 4, slots: dev(Int32Array.from([1, 1])) }),
      RangeError, new RegExp(`^${reEscape(cpuSlots.message)}$`));
    disposeBank(bank);
  });

  gpuTest('the Promise variant resolves when the slots are written', async () => {
    const rng = testRng();
    const bank = makeBank(rng, 5, 8, 100, 60, 'bf16');
    const B = 8, k = 2, R = 16;
    const ids = randomIds(rng, B, k, 5), w = randomWeights(rng, B * k);
    const wa = new Float32Array(B * 100 * R), wb = new Float32Array(B * R * 60);
    kernels.foldExperts(bank.cpu, ids, w, k, { a: wa, b: wb, rankCapacity: R });
    const da = dev(new Float32Array(wa.length).fill(NaN)), db = dev(new Float32Array(wb.length).fill(NaN));
    await kernels.foldExpertsAsync(bank.gpu, dev(ids), dev(w), k, { a: da, b: db, rankCapacity: R });
    expectBitsEqual(da.toHost(), wa, 'a');
    expectClose(db.toHost(), wb, boundFrom(wb.map(Math.abs), 2), 'b');
    disposeBank(bank);
  });
});

describe('mergeExperts on the device', () => {
  const cases = [
    { E: 1, r: 1, din: 1, dout: 1, n: 1 },
    { E: 4, r: 8, din: 67, dout: 45, n: 3 },
    { E: 10, r: 16, din: 300, dout: 257, n: 2 },
    { E: 3, r: 2, din: 9, dout: 5, n: 0 },
  ];
  for (const dtype of DTYPES) {
    for (const c of cases) {
      for (const layout of ['in_out', 'out_in'] as const) {
        gpuTest(`matches the CPU kernel within the f32 rounding bound (${dtype} din=${c.din} dout=${c.dout} n=${c.n} ${layout})`, () => {
          const rng = testRng();
          const bank = makeBank(rng, c.E, c.r, c.din, c.dout, dtype);
          const ids = Int32Array.from(rng.distinct(c.E, Math.min(c.n, c.E)));
          if (c.n > 1) ids[c.n - 1] = -1;
          const w = randomWeights(rng, ids.length);
          const W = rng.f32(c.din * c.dout);
          const want = kernels.mergeExperts(bank.cpu, ids, w, W, { layout });
          const mag = kernels.mergeExperts(bank.abs, ids, w.map(Math.abs), W.map(Math.abs), { layout });
          const bound = boundFrom(mag, c.r * c.n + 8);
          poisonDeviceHeap(W.length);
          const dW = dev(W);
          const got = kernels.mergeExperts(bank.gpu, dev(ids), dev(w), dW, { layout });
          expect(got).not.toBe(dW);
          expectClose(got.toHost(), want, bound, 'new W');
          expectBitsEqual(dW.toHost(), W, 'the base W is untouched');
          expect(kernels.mergeExperts(bank.gpu, dev(ids), dev(w), dW, { layout, inPlace: true })).toBe(dW);
          expectClose(dW.toHost(), want, bound, 'in place');
          disposeBank(bank);
        });
      }
    }
  }

  gpuTest('argument errors name the argument; the Promise variant resolves with the merged weight', async () => {
    const rng = testRng();
    const bank = makeBank(rng, 3, 4, 20, 10, 'f16');
    const ids = Int32Array.from([2, 0]), w = randomWeights(rng, 2), W = rng.f32(200);
    expectThrows(() => kernels.mergeExperts(bank.gpu, dev(ids), dev(w), W as never), TypeError,
      /^Expected a DeviceTensor of f32 for w but received Float32Array of length 200/);
    expectThrows(() => kernels.mergeExperts(bank.gpu, dev(ids), dev(w), dev(new Float32Array(199))), RangeError,
      /^Expected length 200 \(din \* dout\) for w but received length 199$/);
    expectThrows(() => kernels.mergeExperts(bank.cpu, ids, w, dev(W) as never), TypeError,
      /^Expected Float32Array for w but received DeviceTensor f32 of length 200 \(the bank is on the CPU/);
    const want = kernels.mergeExperts(bank.cpu, ids, w, W);
    const mag = kernels.mergeExperts(bank.abs, ids, w.map(Math.abs), W.map(Math.abs));
    const got = await kernels.mergeExpertsAsync(bank.gpu, dev(ids), dev(w), dev(W));
    expectClose(got.toHost(), want, boundFrom(mag, 4 * 2 + 8), 'async');
    await expectAsyncFails(() => kernels.mergeExpertsAsync(bank.gpu, dev(Int32Array.from([3])), dev(w.subarray(0, 1)), dev(W)),
      RangeError, /ids/);
    disposeBank(bank);
  });
});

// U32 documents the unit of every bound above (boundFrom's default).
void U32;

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

  for (const dtype of DTYPES) {
    gpuTest(`loraMoe matches the CPU kernel on the decode, fused, grouped and dense paths alike (${dtype})`, () => {
      const rng = testRng();
      const c = { T: 45, E: 7, r: 16, din: 200, dout: 97, k: 3 };
      const bank = makeBank(rng, c.E, c.r, c.din, c.dout, dtype, [16, 4, 16, 1, 9, 16, 16]);
      const x = rng.f32(c.T * c.din), ids = randomIds(rng, c.T, c.k, c.E), w = randomWeights(rng, c.T * c.k);
      const want = kernels.loraMoe(bank.cpu, x, ids, w);
      const bound = boundFrom(kernels.loraMoe(bank.abs, x.map(Math.abs), ids, w.map(Math.abs)), c.din + c.r + c.k + 8 + 512);
      const options = ['moe_prefill_min_tokens', 'moe_fused_max_tokens', 'moe_dense_max_columns'] as const;
      const before = options.map((o) => kernels.getCudaOption(o));
      const paths: Record<string, number[]> = { decode: [-1, 0, 0], fused: [-1, c.T, 0], grouped: [0, 0, 0], dense: [0, 0, 256] };
      try {
        for (const [path, values] of Object.entries(paths)) {
          options.forEach((o, i) => kernels.setCudaOption(o, values[i]));
          expectClose(kernels.loraMoe(bank.gpu, dev(x), dev(ids), dev(w)).toHost(), want, bound, `${path} path`);
        }
      } finally {
        options.forEach((o, i) => kernels.setCudaOption(o, before[i]));
      }
      disposeBank(bank);
    });
  }
});
