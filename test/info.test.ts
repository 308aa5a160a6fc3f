// info(), setThreads and setSimd (lib/kernels/info.ts, native/info.cc): the kernels' run-time
// settings and their argument checks. (info().cuda and setCudaOption: device.test.ts.)
import { kernels } from '../lib';
import { cpuinfoBest } from './helpers/bank';
import { expectThrows } from './helpers/check';
import { nb } from './helpers/validation';
import { setThreadsSettled } from './helpers/threads';

describe('kernel settings validation', () => {
  afterAll(async () => {
    kernels.setSimd('avx512');
    await setThreadsSettled(0);
  });

  it('setSimd caps the level and returns the level in use; info().simd follows', () => {
    expect(kernels.setSimd('scalar')).toBe('scalar');
    expect(kernels.info().simd).toBe('scalar');
    const best = kernels.setSimd('avx512');
    expect(kernels.info().simd).toBe(best);
    // the dispatcher's pick matches what the CPU reports
    const cpu = cpuinfoBest();
    if (cpu !== undefined) expect(best).toBe(cpu);
  });

  it('an unknown SIMD level is a RangeError naming simd, a non-string a TypeError; the level is kept', () => {
    kernels.setSimd('avx2');
    expectThrows(() => kernels.setSimd('sse4' as never), RangeError, /simd/);
    expectThrows(() => kernels.setSimd(2 as never), TypeError, /simd/);
    expect(kernels.info().simd).toBe('avx2');
    kernels.setSimd('avx512');
  });

  it('a negative, non-integer or non-number thread count is an error naming threads', () => {
    expectThrows(() => kernels.setThreads(-1), RangeError, /threads/);
    expectThrows(() => kernels.setThreads(1.5), RangeError, /threads/);
    expectThrows(() => kernels.setThreads(2000), RangeError, /threads/);
    expectThrows(() => kernels.setThreads('2' as never), TypeError, /threads/);
  });
});

describe('native binding validation (the C++ layer on its own)', () => {
  it('setThreads / setSimd: negative, non-integer, strings', async () => {
    expectThrows(() => nb().setThreads(-3), RangeError, /threads/);
    expectThrows(() => nb().setThreads(0.5), RangeError, /threads/);
    expectThrows(() => nb().setThreads('1' as never), TypeError, /threads/);
    expectThrows(() => nb().setSimd('neon'), RangeError, /simd/);
    expectThrows(() => nb().setSimd(undefined as never), TypeError, /simd/);
    nb().setSimd('avx512');
    await setThreadsSettled(0);
  });
});
