// topkSoftmax on the CUDA device against the CPU kernel: ids exactly, weights to a few ulp; the
// same argument checks and error wording. Without a device the GPU cases skip
// (test/helpers/device.ts, which also explains the tolerances).
import * as kernels from '../lib/kernels';
import { boundFrom, expectAsyncFails, expectClose, expectIntsEqual, expectThrows } from './helpers/check';
import { dev, gpuTest, logDevice, poisonDeviceHeap, reEscape } from './helpers/device';
import { testRng } from './helpers/rng';

logDevice();

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
