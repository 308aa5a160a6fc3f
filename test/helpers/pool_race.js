// Child-process driver for threads.test.ts: changes the thread count right before parallel
// kernel calls, many times over. Run in its own process because a deadlock in the native
// thread pool blocks the calling thread for good (jest could not even time it out).
//
//   node pool_race.js <package root> <sync|async|mixed> <rounds> [settleMs] [maxMs]
// Runs `rounds` rounds, or stops early after maxMs (default: no limit); prints "done N rounds"
// and exits 0 when every round completed. settleMs > 0 waits that long after each setThreads
// before the next call; with 0 the call follows after a short spin that sweeps 0..40 µs, so
// the new pool workers' start-up overlaps the call in varied ways. mixed: even rounds sync,
// odd rounds async.
'use strict';

const path = require('node:path');

const [root, mode = 'sync', roundsArg = '2000', settleArg = '0', maxMsArg = 'Infinity'] = process.argv.slice(2);
const load = require(require.resolve('node-gyp-build', { paths: [root] }));
const b = load(path.resolve(root));

const rounds = Number(roundsArg);
const settleMs = Number(settleArg);
const maxMs = Number(maxMsArg);

// mulberry32, so the inputs are random but not zeros
let s = 0x9e3779b9;
const rnd = () => {
  s = (s + 0x6d2b79f5) >>> 0;
  let t = s;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296 * 2 - 1;
};
const f32 = (n) => Float32Array.from({ length: n }, rnd);
const spin = (us) => {
  const end = process.hrtime.bigint() + BigInt(us) * 1000n;
  while (process.hrtime.bigint() < end);
};

// din = dout = 1024, rank 32: well above the pool's 64 KiB inline threshold, so every call
// runs as a parallel job
const E = 4, r = 32, din = 1024, dout = 1024, T = 2;
const bank = new b.LoraBank({ experts: E, rank: r, din, dout, dtype: 0, a: f32(E * r * din), b: f32(E * dout * r) });
const x = f32(T * din), ids = Int32Array.from([0, 1, 2, 3]), w = f32(T * 2);

(async () => {
  const want = b.loraMoe(bank, x, ids, w);
  const t0 = Date.now();
  let round = 0;
  for (; round < rounds && Date.now() - t0 < maxMs; round++) {
    b.setThreads(2 + (round % 2));
    if (settleMs > 0) await new Promise((res) => setTimeout(res, settleMs));
    else spin(round % 40); // sweep 0..40 µs: the new workers' start-up races the call
    const sync = mode === 'sync' || (mode === 'mixed' && round % 2 === 0);
    const y = sync ? b.loraMoe(bank, x, ids, w) : await b.loraMoeAsync(bank, x, ids, w);
    for (let i = 0; i < y.length; i++) {
      if (Object.is(y[i], want[i]) === false) {
        console.log(`round ${round}: y[${i}] = ${y[i]}, expected ${want[i]}`);
        process.exit(2);
      }
    }
    if (round % 1000 === 0) process.stderr.write(`round ${round}\n`);
  }
  b.setThreads(0);
  console.log(`done ${round} rounds`);
})();
