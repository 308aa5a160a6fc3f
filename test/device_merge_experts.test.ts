// mergeExperts on the CUDA device against the CPU kernel within the f32 rounding bound, new and
// in place; the same argument checks and error wording. Without a device the GPU cases skip
// (test/helpers/device.ts, which also explains the tolerances).
import * as kernels from '../lib/kernels';
import { boundFrom, expectAsyncFails, expectBitsEqual, expectClose, expectThrows } from './helpers/check';
import { dev, disposeBank, DTYPES, gpuTest, logDevice, makeBank, poisonDeviceHeap, randomWeights } from './helpers/device';
import { testRng } from './helpers/rng';

logDevice();

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
