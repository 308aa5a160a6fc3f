// The kernels without Node: CMake builds libpersonafuse_kernels from kernels/cpu, and the C
// example (kernels/examples/lora_moe_example.c) compiles with gcc against personafuse.h, links
// against the library and checks itself against plain loops.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { available, ok, root, run } from './helpers/process';

const buildDir = path.join(root, 'build-kernels', 'cpu');

const haveCmake = available('cmake');
const cc = available('gcc') ? 'gcc' : 'cc';
const library = path.join(buildDir, process.platform === 'darwin' ? 'libpersonafuse_kernels.dylib' : 'libpersonafuse_kernels.so');

describe('C ABI of the CPU kernels', () => {
  beforeAll(() => {
    if (!haveCmake) return;
    ok(run('cmake', ['-S', 'kernels', '-B', buildDir, '-DPF_WITH_CUDA=OFF', '-DCMAKE_BUILD_TYPE=Release']), 'cmake configure');
    ok(run('cmake', ['--build', buildDir, '--target', 'personafuse_kernels', '--parallel', '2']), 'cmake build');
  }, 300_000);

  test('CMake builds libpersonafuse_kernels, exporting only pf_* C functions', () => {
    if (!haveCmake) {
      console.log('skipped: cmake not found on PATH');
      return;
    }
    expect(fs.existsSync(library)).toBe(true);
    const nm = run('nm', ['-D', '--defined-only', library]);
    if (nm.status !== 0) return; // no binutils: the example below still checks the entry points
    const names = nm.stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f.length === 3 && f[1] === 'T')
      .map((f) => f[2]);
    expect(names).toEqual(expect.arrayContaining(['pf_bank_create', 'pf_lora_moe', 'pf_topk_softmax', 'pf_last_error']));
    expect(names.filter((n) => !n.startsWith('pf_'))).toEqual([]);
  });

  test('the headers compile as C99 and as C++', () => {
    for (const header of ['personafuse.h', 'personafuse_cuda.h']) {
      const src = `#include "${header}"\nint main(void) { return PF_OK; }\n`;
      for (const [compiler, lang, std] of [
        [cc, 'c', '-std=c99'],
        ['g++', 'c++', '-std=c++11'],
      ]) {
        const r = spawnSync(compiler, [std, '-Wall', '-Wextra', '-pedantic', '-Werror', '-Ikernels/include', '-x', lang, '-fsyntax-only', '-'], {
          cwd: root,
          input: src,
          encoding: 'utf8',
        });
        ok(r, `${compiler} ${std} ${header}`);
      }
    }
  });

  test('the C example compiles with gcc, runs against the library and matches its loops', () => {
    if (!haveCmake) {
      console.log('skipped: cmake not found on PATH, no library to link the example against');
      return;
    }
    const exe = path.join(buildDir, 'lora_moe_example_gcc');
    ok(
      run(cc, [
        '-std=c99', '-Wall', '-Wextra', '-pedantic', '-Werror', '-Ikernels/include',
        'kernels/examples/lora_moe_example.c', `-L${buildDir}`, '-lpersonafuse_kernels', `-Wl,-rpath,${buildDir}`, '-lm',
        '-o', exe,
      ]),
      `${cc} lora_moe_example.c`,
    );
    const r = run(exe, []);
    console.log(r.stdout);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^token 0: experts \d \(0\.\d{4}\) \d \(0\.\d{4}\)$/m);
    expect(r.stdout).toContain('k = 5: invalid argument: Expected an integer between 1 and 4 for k but received 5');
    expect(r.stdout).toMatch(/lora_moe_example: OK\n$/);
  });
});
