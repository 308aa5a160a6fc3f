#!/usr/bin/env node
// npm run bench:gpu [-- --quick | --ts 1,16 | --only lora_moe | --out DIR]
//
// 1. builds and runs pf_bench_gpu (node scripts/build-cuda.js --run pf_bench_gpu <args>), which
//    writes bench/results/gpu-<device>-<stamp>.json (or into --out DIR);
// 2. where python3 (or $PF_PYTHON) has torch with a CUDA device, times the PyTorch gather + bmm
//    reference of lora_moe on the same shapes (kernels/bench/torch_lora_moe.py --ours that JSON,
//    written beside it as <name>-torch.json) and prints the comparison (scripts/gpu-compare.js,
//    also written as <name>-vs-torch.txt), for issue 4's target: lora_moe at T = 4096 >= 2x torch.
// Python is never needed: without it, or without torch or its CUDA, step 2 says why it skipped.
// Exit status: pf_bench_gpu's (0 where it skipped: no CUDA device, nvcc or cmake), or 1 when the
// PyTorch reference ran and failed (its correctness check included).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { compareGpu, formatComparison, reportPathFor } = require('./gpu-compare');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
// pf_bench_gpu runs in the repository root, so a relative --out is relative to it.
const outDir = path.resolve(root, outIndex >= 0 && outIndex + 1 < args.length ? args[outIndex + 1] : 'bench/results');
const python = process.env.PF_PYTHON || 'python3';

function skipTorch(why, status) {
  console.log(`PyTorch reference: skipped (${why})`);
  process.exit(status);
}

// The JSON pf_bench_gpu wrote in this run: the newest gpu-*.json (not a -torch one) written since
// `since` (less a second for file systems that keep mtimes in whole seconds).
function newestResult(dir, since) {
  let best = null;
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    if (!/^gpu-.*\.json$/.test(name) || name.endsWith('-torch.json')) continue;
    const file = path.join(dir, name);
    const mtime = fs.statSync(file).mtimeMs;
    if (mtime >= since - 1000 && (best === null || mtime > best.mtime)) best = { file, mtime };
  }
  return best && best.file;
}

// Why python cannot run the reference, or null when it can.
function torchUnavailable() {
  const probe = spawnSync(python, ['-c', 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)'], {
    encoding: 'utf8',
  });
  if (probe.error) return `${python} was not found (set PF_PYTHON to an interpreter with torch)`;
  if (probe.status === 0) return null;
  if (probe.status === 3) return `torch in ${python} sees no CUDA device (torch.cuda.is_available() is false)`;
  if (/No module named ['"]?torch/.test(probe.stderr)) return `torch is not installed for ${python}`;
  const last = (probe.stderr || '').trim().split('\n').pop();
  return `${python} could not import torch (exit ${probe.status}${last ? `: ${last}` : ''})`;
}

fs.mkdirSync(outDir, { recursive: true });
const started = Date.now();
const bench = spawnSync(process.execPath, [path.join(__dirname, 'build-cuda.js'), '--run', 'pf_bench_gpu', ...args], {
  stdio: 'inherit',
  cwd: root,
});
const status = bench.status === null ? 1 : bench.status;
if (status !== 0) skipTorch(`pf_bench_gpu exited with status ${status}`, status);

const ours = newestResult(outDir, started);
if (!ours) skipTorch(`pf_bench_gpu wrote no results in ${path.relative(root, outDir) || '.'}: no CUDA device, or not built`, 0);
let oursDoc;
try {
  oursDoc = JSON.parse(fs.readFileSync(ours, 'utf8'));
} catch (e) {
  console.error(`bench-gpu: cannot read ${ours}: ${e.message}`);
  process.exit(1);
}
const hasLoraMoe = Array.isArray(oursDoc.results) && oursDoc.results.some((r) => r && r.op === 'lora_moe' && !r.note);
if (!hasLoraMoe) skipTorch(`no lora_moe results in ${path.basename(ours)}`, 0);
const why = torchUnavailable();
if (why) skipTorch(why, 0);

const torchOut = ours.replace(/\.json$/, '-torch.json');
console.log(`PyTorch reference: ${python} kernels/bench/torch_lora_moe.py --ours ${path.relative(root, ours)}`);
const ref = spawnSync(python, [path.join(root, 'kernels', 'bench', 'torch_lora_moe.py'), '--ours', ours, '--out', torchOut], {
  stdio: 'inherit',
  cwd: root,
});
if (ref.status !== 0) {
  console.error(`PyTorch reference: failed (${ref.error ? ref.error.message : `exit ${ref.status}`}); no comparison`);
  process.exit(1);
}

let text;
try {
  text = formatComparison(compareGpu(oursDoc, JSON.parse(fs.readFileSync(torchOut, 'utf8'))));
} catch (e) {
  console.error(`bench-gpu: cannot compare ${ours} with ${torchOut}: ${e.message}`);
  process.exit(1);
}
process.stdout.write(`\n${text}`);
const report = reportPathFor(ours);
fs.writeFileSync(report, text);
console.log(`wrote ${path.relative(root, report)}`);
