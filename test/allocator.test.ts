// kernels.tuneAllocator (lib/kernels/allocator.ts, native/allocator.cc): glibc malloc's mmap and trim
// thresholds, raised so that buffers freed and allocated again every decode step stop page-faulting in.
// The effect is shown on page faults (counted by the kernel), not on time.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { kernels } from '../lib';
import { mallocTunedByEnvironment } from '../lib/cli/options';

const glibc = Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime);
const SCRIPT = path.join(__dirname, 'helpers', 'scripts', 'alloc_faults.js');
const faults = (arg?: string) => JSON.parse(execFileSync(process.execPath, ['--expose-gc', SCRIPT, ...(arg ? [arg] : [])], { encoding: 'utf8', env: { ...process.env, MALLOC_MMAP_THRESHOLD_: undefined, MALLOC_TRIM_THRESHOLD_: undefined, GLIBC_TUNABLES: undefined } }).trim()) as { tuned: boolean | null; faultsPerStep: number };

describe('tuneAllocator', () => {
  test('takes where malloc is glibc\'s, and says so', () => {
    expect(kernels.tuneAllocator()).toBe(glibc);
    expect(kernels.ALLOCATOR_TUNING).toEqual({ mmapThreshold: 32 * 2 ** 20, trimThreshold: 256 * 2 ** 20 });
  });

  test('refuses thresholds out of range, naming them', () => {
    expect(() => kernels.tuneAllocator({ mmapThreshold: 64 * 2 ** 20, trimThreshold: 0 })).toThrow(/between 0 and 33554432 for mmapThreshold but received 67108864/);
    expect(() => kernels.tuneAllocator({ mmapThreshold: 0, trimThreshold: -1 })).toThrow(/for trimThreshold but received -1/);
    expect(() => kernels.tuneAllocator({ mmapThreshold: 1.5, trimThreshold: 0 })).toThrow(/mmapThreshold/);
    expect(() => kernels.tuneAllocator({ mmapThreshold: '1' as unknown as number, trimThreshold: 0 })).toThrow(/mmapThreshold/);
  });

  (process.platform === 'linux' ? test : test.skip)('growing buffers freed every step: hundreds of page faults a step with glibc\'s defaults, next to none tuned', () => {
    const plain = faults();
    const tuned = faults('tuned');
    expect(tuned.tuned).toBe(glibc);
    if (!glibc) return;
    // each 1 MiB+ buffer is 257+ pages: with the defaults every step maps it afresh; tuned, the heap
    // reuses its pages (what is left is the rest of the process, more of it on a busy machine)
    expect(plain.faultsPerStep).toBeGreaterThan(200);
    expect(tuned.faultsPerStep).toBeLessThan(64);
  });
});

describe('the CLI leaves malloc alone when the environment tunes it', () => {
  test('MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or either threshold as a glibc tunable count; other settings do not', () => {
    expect(mallocTunedByEnvironment({})).toBe(false);
    expect(mallocTunedByEnvironment({ MALLOC_TRIM_THRESHOLD_: '1' })).toBe(true);
    expect(mallocTunedByEnvironment({ MALLOC_MMAP_THRESHOLD_: '1' })).toBe(true);
    expect(mallocTunedByEnvironment({ GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=1' })).toBe(true);
    expect(mallocTunedByEnvironment({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1' })).toBe(true);
    expect(mallocTunedByEnvironment({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' })).toBe(false);
    expect(mallocTunedByEnvironment({ MALLOC_ARENA_MAX: '2' })).toBe(false);
    expect(mallocTunedByEnvironment({ GLIBC_TUNABLES: 'glibc.pthread.rseq=0' })).toBe(false);
  });
});
