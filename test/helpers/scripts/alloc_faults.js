// Run by test/allocator.test.ts in a child process (node --expose-gc): allocates buffers that grow by
// one page a step, as a decode step's KV outputs grow by one column, writes every page, frees them, and
// prints the minor page faults per step. argv[2] 'tuned' calls kernels.tuneAllocator() first.
const fs = require('node:fs');
const path = require('node:path');

const tuned = process.argv[2] === 'tuned' ? require(path.join(__dirname, '..', '..', '..', 'dist', 'lib')).kernels.tuneAllocator() : null;
const minorFaults = () => Number(fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[7]);
const step = (i) => {
  const b = Buffer.allocUnsafeSlow((1 << 20) + i * 4096);
  for (let p = 0; p < b.length; p += 4096) b[p] = 1;
};
for (let i = 0; i < 20; i++) {
  step(i);
  global.gc();
}
const before = minorFaults();
const steps = 200;
for (let i = 20; i < 20 + steps; i++) {
  step(i);
  global.gc();
}
process.stdout.write(`${JSON.stringify({ tuned, faultsPerStep: (minorFaults() - before) / steps })}\n`);
