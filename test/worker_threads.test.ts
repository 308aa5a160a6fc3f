// The addon loaded by several Node environments (main thread and worker threads): each keeps its
// own class constructors, so banks made before, during and after a worker's life keep working.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { kernels } from '../lib';
import { testRng } from './helpers/rng';

const ADDON_ENTRY = path.join(__dirname, '..', 'dist', 'lib', 'index.js');

function bank(rng: ReturnType<typeof testRng>): kernels.LoraBank {
  const rand = (n: number) => Float32Array.from({ length: n }, () => rng.uniform(-1, 1));
  return kernels.createLoraBank({ experts: 2, rank: 2, din: 3, dout: 4, a: rand(2 * 2 * 3), b: rand(2 * 4 * 2) });
}

function runWorker(): Promise<number> {
  // the worker loads the package (so the addon), makes a bank and runs an op with it
  const src = `
    const { parentPort } = require('node:worker_threads');
    const { kernels } = require(${JSON.stringify(ADDON_ENTRY)});
    const b = kernels.createLoraBank({ experts: 1, rank: 1, din: 2, dout: 2, a: new Float32Array([1, 2]), b: new Float32Array([3, 4]) });
    const y = kernels.loraMoe(b, new Float32Array([1, 1]), new Int32Array([0]), new Float32Array([1]));
    parentPort.postMessage(y[0] + y[1]);`;
  return new Promise((resolve, reject) => {
    const w = new Worker(src, { eval: true });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

describe('addon in worker threads', () => {
  test('a bank made before a worker loads the addon still works during and after its life', async () => {
    const rng = testRng('workers');
    const before = bank(rng);
    const x = Float32Array.from({ length: 3 }, () => rng.uniform(-1, 1));
    const ids = new Int32Array([0, 1]);
    const w = new Float32Array([0.5, 0.5]);
    const want = kernels.loraMoe(before, x, ids, w);
    // (1·1 + 2·1) · [3, 4] summed: 9 + 12
    expect(await Promise.all([runWorker(), runWorker()])).toEqual([21, 21]);
    expect(Array.from(kernels.loraMoe(before, x, ids, w))).toEqual(Array.from(want));
    const after = bank(rng);
    expect(kernels.loraMoe(after, x, ids, w)).toHaveLength(4);
    expect(() => kernels.loraMoe({} as never, x, ids, w)).toThrow(/bank/);
  });
});
