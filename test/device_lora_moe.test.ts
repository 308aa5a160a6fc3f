// loraMoe on the CUDA device against the CPU kernel within the f32 rounding bound, on every
// path the CUDA library picks between (decode, fused, grouped, dense); the same argument checks
// and error wording. Without a device the GPU cases skip (test/helpers/device.ts, which also
// explains the tolerances).
import * as kernels from '../lib/kernels';
import { boundFrom, expectAsyncFails, expectBitsEqual, expectClose, expectThrows } from './helpers/check';
import {
  dev, disposeBank, DTYPES, gpuTest, logDevice, makeBank, poisonDeviceHeap, randomIds, randomWeights, reEscape,
} from './helpers/device';
import { testRng } from './helpers/rng';

logDevice();

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

// The lora_moe path options (setCudaOption; the others are in device.test.ts).
describe('CUDA options', () => {
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
