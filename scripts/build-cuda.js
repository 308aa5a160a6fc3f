#!/usr/bin/env node
// Builds the kernels as plain shared libraries with CMake (kernels/CMakeLists.txt):
// libpersonafuse_kernels (CPU, always) and libpersonafuse_cuda (when nvcc is found), plus the
// C example, the GPU test and the GPU benchmark, into build-kernels/release.
//
//   node scripts/build-cuda.js                 build; fails when nvcc or cmake is missing
//   node scripts/build-cuda.js --optional      for npm install: never fails, says what it skipped;
//                                              PF_SKIP_CUDA_BUILD=1 skips it altogether
//   node scripts/build-cuda.js --run pf_test_gpu [args]   build, then run a built program
//   options: --arch "80-real;90" (or PF_CUDA_ARCHS), --build-dir DIR (or PF_KERNELS_BUILD_DIR),
//            --jobs N, --cpu-only
//
// Plain CMake driven from Node rather than cmake-js: these libraries do not link against Node
// (no node headers, no N-API), and cmake-js would add both; all this script adds to CMake is
// finding nvcc, choosing the architectures and a build directory.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const optional = flag('--optional');
const runIndex = args.indexOf('--run');
const run = runIndex >= 0 ? args.slice(runIndex + 1) : null;

function say(message) {
  console.log(`personafuse kernels: ${message}`);
}

// Exits 0 (optional builds, runs of a program that cannot be built) or 1.
function stop(message, { skip = false } = {}) {
  if (skip) {
    say(`skipped: ${message}`);
    process.exit(0);
  }
  if (optional) {
    say(`${message}; carrying on without them (the Node addon keeps its CPU kernels)`);
    process.exit(0);
  }
  console.error(`personafuse kernels: ${message}`);
  process.exit(1);
}

function found(cmd) {
  const r = spawnSync(cmd, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : null;
}

// nvcc from CUDACXX or PATH (what `npm install` looks for), as an absolute path for CMake.
function findNvcc() {
  if (process.env.CUDACXX) return found(process.env.CUDACXX) ? process.env.CUDACXX : null;
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const candidate = path.join(dir, process.platform === 'win32' ? 'nvcc.exe' : 'nvcc');
    if (dir && fs.existsSync(candidate) && found(candidate)) return candidate;
  }
  return null;
}

// The local GPUs' architectures when nvidia-smi can tell, else sm_80 and sm_90 code plus
// compute_90 PTX (which newer GPUs compile at load).
function defaultArchs() {
  const r = spawnSync('nvidia-smi', ['--query-gpu=compute_cap', '--format=csv,noheader'], { encoding: 'utf8' });
  if (r.status === 0) {
    const caps = [...new Set(r.stdout.split('\n').map((s) => s.trim().replace('.', '')).filter((s) => /^\d+$/.test(s)))];
    if (caps.length) return caps.join(';');
  }
  return '80-real;90';
}

if (optional && process.env.PF_SKIP_CUDA_BUILD) stop('PF_SKIP_CUDA_BUILD is set', { skip: true });
const cpuOnly = flag('--cpu-only');
const buildDir = path.resolve(root, option('--build-dir', process.env.PF_KERNELS_BUILD_DIR || 'build-kernels/release'));
const jobs = option('--jobs', String(Math.max(1, os.cpus().length)));

if (!found('cmake')) stop('cmake (>= 3.19) was not found on PATH, so the kernel libraries were not built', { skip: !!run });
const nvcc = cpuOnly ? null : findNvcc();
if (!cpuOnly && !nvcc) stop('nvcc was not found on PATH (or CUDACXX), so the CUDA kernels were not built', { skip: !!run });
const archs = option('--arch', process.env.PF_CUDA_ARCHS || defaultArchs());

const configure = ['-S', path.join(root, 'kernels'), '-B', buildDir, '-DCMAKE_BUILD_TYPE=Release'];
if (nvcc) configure.push(`-DCMAKE_CUDA_COMPILER=${nvcc}`, `-DPF_CUDA_ARCHS=${archs}`, '-DPF_REQUIRE_CUDA=ON');
else configure.push('-DPF_WITH_CUDA=OFF');
say(nvcc ? `building CPU and CUDA libraries for ${archs} in ${path.relative(root, buildDir)}` : 'building the CPU library');

const started = Date.now();
for (const step of [configure, ['--build', buildDir, '--parallel', jobs]]) {
  const r = spawnSync('cmake', step, { stdio: 'inherit' });
  if (r.status !== 0) stop(`cmake ${step[0]} failed (exit ${r.status})`);
}
say(`built in ${((Date.now() - started) / 1000).toFixed(1)} s: ${fs
  .readdirSync(buildDir)
  .filter((f) => /^lib.*\.(so|dylib)$/.test(f))
  .join(', ')}`);

if (run) {
  const program = path.join(buildDir, run[0]);
  if (!fs.existsSync(program)) stop(`${run[0]} was not built`);
  const r = spawnSync(program, run.slice(1), { stdio: 'inherit', cwd: root });
  process.exit(r.status === null ? 1 : r.status);
}
