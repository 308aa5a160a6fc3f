// The CUDA kernels on a machine that may have no GPU:
//  1. the per-thread arithmetic the kernels run (kernels/common/lane_math.h) is compiled with
//     g++ and checked on the CPU (kernels/tests/lane_math_test.cc), always;
//  2. when nvcc is on PATH, CMake compiles every CUDA source for sm_90 (build-kernels/ci, kept
//     between runs), so a compile error fails the suite, and the library is checked to export
//     only pf_cuda_* and to need neither libcudart nor a driver to load;
//  3. lora_moe's kernels, all four paths, run on the CPU through the CUDA emulation
//     (kernels/tests/emu), with their own launch code, against float64; so do topk_softmax's,
//     fold_experts' and merge_experts' (one program an op);
//  4. the GPU test program runs: on a machine without a device it checks that the library fails
//     cleanly and prints "skipped: no CUDA device", which is logged here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { available, ok, root, run } from './helpers/process';

const buildRoot = path.join(root, 'build-kernels');
const ciDir = path.join(buildRoot, 'ci');

function failures(out: string): string[] {
  return out.split('\n').filter((l) => l.startsWith('FAIL'));
}

const haveNvcc = available(process.env.CUDACXX || 'nvcc') && available('cmake');

// The ops whose kernels have an emulation test program of their own, each with the fewest
// cases it must pass.
const EMU_OPS: [string, number][] = [
  ['topk_softmax', 70],
  ['fold_experts', 36],
  ['merge_experts', 40],
];

describe('CUDA kernels: lane arithmetic on the CPU', () => {
  test('conversions, dequantise, dot, warp butterfly and top-k selection match their references', () => {
    fs.mkdirSync(path.join(buildRoot, 'host'), { recursive: true });
    const exe = path.join(buildRoot, 'host', 'lane_math_test');
    ok(
      run('g++', ['-std=c++17', '-O2', '-Wall', '-Wextra', '-Werror', '-Ikernels/include', 'kernels/tests/lane_math_test.cc', '-o', exe]),
      'g++ lane_math_test.cc',
    );
    const out = run(exe, []);
    expect(failures(out.stdout)).toEqual([]);
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/\n\d+ checks, 0 failed\n$/);
  });
});

describe('CUDA kernels: build and GPU cases', () => {
  let built = false;
  beforeAll(() => {
    if (!haveNvcc) return;
    // sm_90 only, to keep CI under a few minutes on 2 cores; build-kernels/ci is reused.
    ok(
      run('cmake', ['-S', 'kernels', '-B', ciDir, '-DCMAKE_BUILD_TYPE=Release', '-DPF_CUDA_ARCHS=90', '-DPF_REQUIRE_CUDA=ON'], 120_000),
      'cmake configure',
    );
    ok(
      run('cmake', ['--build', ciDir, '--target', 'personafuse_cuda', 'pf_test_gpu', 'pf_bench_gpu', 'pf_emu_lora_moe_test',
        ...EMU_OPS.map(([op]) => `pf_emu_${op}_test`), '--parallel', '2'], 300_000),
      'cmake build',
    );
    built = true;
  }, 420_000);

  test('every CUDA source compiles for sm_90', () => {
    if (!haveNvcc) {
      console.log('skipped: nvcc (or cmake) not found on PATH, the CUDA sources were not compiled');
      return;
    }
    expect(built).toBe(true);
    expect(fs.existsSync(path.join(ciDir, 'libpersonafuse_cuda.so'))).toBe(true);
  });

  test('libpersonafuse_cuda exports only pf_cuda_* and needs neither libcudart nor libcuda to load', () => {
    if (!haveNvcc) {
      console.log('skipped: nvcc not found on PATH');
      return;
    }
    const lib = path.join(ciDir, 'libpersonafuse_cuda.so');
    const nm = run('nm', ['-D', '--defined-only', lib]);
    if (nm.status === 0) {
      const names = nm.stdout.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length === 3).map((f) => f[2]);
      expect(names).toEqual(expect.arrayContaining(['pf_cuda_get_api', 'pf_cuda_lora_moe', 'pf_cuda_topk_softmax']));
      expect(names.filter((n) => !n.startsWith('pf_cuda_'))).toEqual([]);
    }
    const deps = run('ldd', [lib]);
    if (deps.status === 0) expect(deps.stdout).not.toMatch(/libcudart|libcuda\.so/);
  });

  test("lora_moe's four paths (decode, fused, grouped and dense on WMMA) under the CPU emulation of CUDA match float64", () => {
    if (!haveNvcc) {
      console.log('skipped: nvcc not found on PATH, the emulation test was not built');
      return;
    }
    const r = run(path.join(ciDir, 'pf_emu_lora_moe_test'), [], 300_000);
    expect(failures(r.stdout)).toEqual([]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/\n(\d+) passed, 0 failed\n$/);
    expect(Number(/\n(\d+) passed/.exec(r.stdout)![1])).toBeGreaterThanOrEqual(80);
  }, 300_000);

  test.each(EMU_OPS)('%s kernels under the CPU emulation of CUDA match their reference (>= %d cases)', (op, least) => {
    if (!haveNvcc) {
      console.log(`skipped: nvcc not found on PATH, pf_emu_${op}_test was not built`);
      return;
    }
    const r = run(path.join(ciDir, `pf_emu_${op}_test`), [], 120_000);
    const last = r.stdout.trimEnd().split('\n').pop() ?? '';
    // all at once, so that a failure shows every part of the run
    expect({ failures: failures(r.stdout), stderr: r.stderr, status: r.status, last }).toEqual({
      failures: [],
      stderr: '',
      status: 0,
      last: expect.stringMatching(/^\d+ passed, 0 failed$/),
    });
    expect(Number(/^(\d+) passed/.exec(last)![1])).toBeGreaterThanOrEqual(least);
  }, 120_000);

  test('GPU test program: every op against the CPU kernels and float64 (or a visible skip)', () => {
    if (!haveNvcc) {
      console.log('skipped: no CUDA device test (nvcc not found, the CUDA library was not built)');
      return;
    }
    const r = run(path.join(ciDir, 'pf_test_gpu'), [], 600_000);
    const skip = r.stdout.split('\n').find((l) => l.startsWith('skipped: no CUDA device'));
    console.log(skip ?? r.stdout.split('\n').slice(-3).join('\n'));
    expect(failures(r.stdout)).toEqual([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/\n\d+ passed, 0 failed\n$/);
  }, 600_000);
});
