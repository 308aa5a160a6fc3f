// foldExperts on the CUDA device against the CPU kernel: every named slot written as the CPU
// writes it, the others left alone; the same argument checks and error wording. Without a device
// the GPU cases skip (test/helpers/device.ts, which also explains the tolerances).
import * as kernels from '../lib/kernels';
import { boundFrom, expectBitsEqual, expectClose, expectThrows } from './helpers/check';
import {
  dev, disposeBank, DTYPES, gpuTest, logDevice, makeBank, randomIds, randomWeights, reEscape,
} from './helpers/device';
import { testRng } from './helpers/rng';

logDevice();

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
