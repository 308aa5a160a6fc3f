// The native binding as a whole (lib/kernels/binding.ts, native/addon.cc): how the addon loads, the checks every op's
// C++ layer makes on its own (the TS layer is thin), position by position and in one wording,
// and how the async variants report errors. Each op's own validation cases are in
// test/<op>.test.ts; the fixture is test/helpers/validation.ts.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { kernels } from '../lib';
import { loadAddon, packageRoot } from '../lib/kernels/binding';
import { expectRejectsOnly, expectThrows } from './helpers/check';
import { bothFail, dout, din, fixture, k, nativeFixture, nb, r, T } from './helpers/validation';

describe('native binding validation (the C++ layer on its own)', () => {
  it('a bank that is not a native LoraBank is a TypeError naming bank', async () => {
    const f = nativeFixture();
    for (const bad of [{}, null, undefined, f.bank, { dispose() {}, bytes: () => 1 }]) {
      await bothFail(() => nb().loraMoe(bad as never, f.x, f.ids, f.w), () => nb().loraMoeAsync(bad as never, f.x, f.ids, f.w), TypeError, /\bbank\b/);
      expectThrows(() => nb().mergeExperts(bad as never, f.mIds, f.mW, f.W, 0, false), TypeError, /\bbank\b/);
      expectThrows(() => nb().foldExperts(bad as never, f.ids, f.w, k, new Float32Array(60), new Float32Array(48), 4), TypeError, /\bbank\b/);
    }
  });

  it('no arguments at all is a TypeError naming the first argument', () => {
    expectThrows(() => (nb().topkSoftmax as () => unknown)(), TypeError, /logits/);
    expectThrows(() => (nb().loraMoe as () => unknown)(), TypeError, /\bbank\b/);
    expectThrows(() => (nb().foldExperts as () => unknown)(), TypeError, /\bbank\b/);
    expectThrows(() => (nb().mergeExperts as () => unknown)(), TypeError, /\bbank\b/);
    expectThrows(() => new (nb().LoraBank as unknown as new () => unknown)(), TypeError, /options/);
  });

  it('every argument position refuses every wrong kind of value with "Expected … for <argument> but received …"', () => {
    const f = nativeFixture();
    const R = k * r;
    const arrays = (n: number) => [null, 42, 'str', true, {}, [1, 2, 3], new Float64Array(n), new Uint8Array(n), new Int16Array(n)];
    const f32Bad = (n: number) => [...arrays(n), new Int32Array(n), new Uint16Array(n)];
    const i32Bad = (n: number) => [...arrays(n), new Float32Array(n), new Uint32Array(n)];
    const intBad = [null, undefined, '2', {}, true, NaN, Infinity, -1, 1.5, 1e12, new Float32Array(1)];
    const bankBad = [null, undefined, 42, 'bank', {}, [], f.bank, new Float32Array(4)];
    type Sig = { name: string; fn: (...a: unknown[]) => unknown; args: unknown[]; positions: Array<[number, string, unknown[]]> };
    const sigs: Sig[] = [
      {
        name: 'topkSoftmax', fn: nb().topkSoftmax as never, args: [f.rng.f32(8), 4, 2, false],
        positions: [[0, 'logits', [...f32Bad(8), undefined]], [1, 'experts', intBad], [2, 'k', intBad]],
      },
      {
        name: 'loraMoe', fn: nb().loraMoe as never, args: [f.nbank, f.x, f.ids, f.w, f.y],
        positions: [[0, 'bank', bankBad], [1, 'x', [...f32Bad(T * din), undefined]], [2, 'ids', [...i32Bad(T * k), undefined]], [3, 'weights', [...f32Bad(T * k), undefined]], [4, 'y', f32Bad(T * dout)]],
      },
      {
        name: 'foldExperts', fn: nb().foldExperts as never,
        args: [f.nbank, f.ids, f.w, k, new Float32Array(3 * din * R), new Float32Array(3 * R * dout), R, Int32Array.from([2, 0])],
        positions: [
          [0, 'bank', bankBad], [1, 'ids', [...i32Bad(T * k), undefined]], [2, 'weights', [...f32Bad(T * k), undefined]], [3, 'k', intBad],
          [4, 'out.a', [...f32Bad(3 * din * R), undefined]], [5, 'out.b', [...f32Bad(3 * R * dout), undefined]],
          [6, 'out.rankCapacity', intBad], [7, 'out.slots', i32Bad(2)],
        ],
      },
      {
        name: 'mergeExperts', fn: nb().mergeExperts as never, args: [f.nbank, f.mIds, f.mW, f.W, 0, false],
        positions: [[0, 'bank', bankBad], [1, 'ids', [...i32Bad(2), undefined]], [2, 'weights', [...f32Bad(2), undefined]], [3, 'w', [...f32Bad(din * dout), undefined]], [4, 'opts.layout', intBad]],
      },
    ];
    let checked = 0;
    for (const sig of sigs) {
      expect(() => sig.fn(...sig.args)).not.toThrow(); // the base arguments are valid
      for (const [pos, arg, values] of sig.positions) {
        const wording = new RegExp(`^Expected .+ for ${arg.replace('.', '\\.')} but received `);
        for (const v of values) {
          const args = sig.args.slice();
          args[pos] = v;
          let caught: unknown;
          try {
            sig.fn(...args);
          } catch (e) {
            caught = e;
          }
          const what = `${sig.name} ${arg} = ${typeof v === 'object' && v !== null ? v.constructor.name : String(v)}`;
          if (caught === undefined) throw new Error(`${what}: accepted`);
          const err = caught as Error;
          if (!(err.name === 'TypeError' || err.name === 'RangeError') || !wording.test(err.message)) {
            throw new Error(`${what}: ${err.name}: ${err.message}`);
          }
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(150);
  });
});

describe('async variants report errors by rejecting their Promise', () => {
  // Errors found while the kernel runs (NaN logits, ids out of range) already reject; the
  // argument checks done while the call is made throw synchronously instead, so callers that
  // only attach .catch() to the Promise never see them. These cases show each op.
  it('data errors found by the kernel reject (NaN logit, id out of range, NaN weight)', async () => {
    const f = fixture();
    await expectRejectsOnly(() => kernels.topkSoftmaxAsync(Float32Array.from([1, NaN]), 2, 1), RangeError, /logits/);
    await expectRejectsOnly(() => kernels.loraMoeAsync(f.bank, f.x, Int32Array.from([0, 5, 1, 1]), f.w), RangeError, /\bids\b/);
    await expectRejectsOnly(() => kernels.mergeExpertsAsync(f.bank, f.mIds, Float32Array.from([NaN, 1]), f.W), RangeError, /weights/);
  });
});

describe('loading the addon explains a missing build', () => {
  it('a package folder with no build says where it looked and how to build, including an npm that skipped install scripts', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-noaddon-'));
    try {
      fs.writeFileSync(path.join(root, 'package.json'), '{"name":"personafuse"}');
      fs.writeFileSync(path.join(root, 'binding.gyp'), '{}');
      let message = '';
      try { loadAddon(root); } catch (err) { message = (err as Error).message; }
      expect(message).toMatch(/^Could not load personafuse's native addon for /);
      expect(message).toContain(path.join(root, 'build', 'Release'));
      expect(message).toContain(path.join(root, 'prebuilds'));
      expect(message).toMatch(/Cause: No native build was found/);
      expect(message).toContain('npm rebuild personafuse');
      expect(message).toContain('npm install-scripts approve personafuse');
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('the package itself loads from its own root', () => {
    expect(typeof loadAddon(packageRoot()).topkSoftmax).toBe('function');
  });
});
