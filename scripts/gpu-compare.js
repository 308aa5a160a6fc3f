#!/usr/bin/env node
// Our CUDA lora_moe beside the PyTorch gather + bmm reference of the same maths (issue 4).
//
//   node scripts/gpu-compare.js OURS.json TORCH.json    prints the table, writes OURS-vs-torch.txt
//
// OURS.json is pf_bench_gpu's output (kernels/bench/bench_gpu.cc), TORCH.json that of
// kernels/bench/torch_lora_moe.py; npm run bench:gpu (scripts/bench-gpu.js) runs both and this.
// One row per lora_moe shape of ours: each of our paths' median µs, the best of them, torch's
// median µs, speedup = torch µs / our best µs, and our best's fraction of the device-to-device
// copy bandwidth (fewest bytes / time / copy GB/s) to show how far from the floor it is.
// The issue's target: at T = 4096, our best at least 2× faster than torch, per shape.
//
// Plain Node, no dependencies, so it runs where the package is installed without a build;
// compareGpu and formatComparison are pure (test/gpu_compare.test.ts), the CLI is the rest.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const TARGET_T = 4096;
const TARGET_SPEEDUP = 2;
const DASH = '–';

// The package's error wording (lib/errors.ts): "Expected <what> for <argument> but received <value>".
function describe(v) {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `Array of length ${v.length}`;
  if (typeof v === 'string') return `'${v}' of type string`;
  if (typeof v === 'number' || typeof v === 'boolean') return `${String(v)} of type ${typeof v}`;
  return 'an object';
}
function expected(arg, what, received) {
  return new TypeError(`Expected ${what} for ${arg} but received ${describe(received)}`);
}
function object(v, arg, what) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw expected(arg, what, v);
  return v;
}
function results(doc, arg, what) {
  object(doc, arg, what);
  if (!Array.isArray(doc.results)) throw expected(`${arg}.results`, 'an array of result rows', doc.results);
  return doc.results;
}
function positive(v, arg) {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw expected(arg, 'a positive number', v);
  return v;
}
function integer(v, arg) {
  if (!Number.isInteger(v) || v < 0) throw expected(arg, 'a non-negative integer', v);
  return v;
}
function string(v, arg) {
  if (typeof v !== 'string') throw expected(arg, 'a string', v);
  return v;
}

const SHAPE_FIELDS = ['d', 'E', 'r', 'k', 'T'];
function shapeOf(row, arg) {
  const shape = { dtype: string(row.dtype, `${arg}.dtype`) };
  for (const f of SHAPE_FIELDS) shape[f] = integer(row[f], `${arg}.${f}`);
  return shape;
}
const keyOf = (s) => `${s.dtype} d=${s.d} E=${s.E} r=${s.r} k=${s.k} T=${s.T}`;

/**
 * Rows of the comparison, in the order of our bench's lora_moe rows (the checks-on row left out).
 * ours: pf_bench_gpu's JSON object; torch: torch_lora_moe.py's JSON object.
 */
function compareGpu(ours, torch) {
  const ourRows = results(ours, 'ours', "pf_bench_gpu's JSON object");
  const copyGbps = positive(ours.copy_gbps, 'ours.copy_gbps');
  const torchRows = results(torch, 'torch', "torch_lora_moe.py's JSON object");

  const torchBy = new Map();
  torchRows.forEach((row, i) => {
    const arg = `torch.results[${i}]`;
    object(row, arg, 'a result row');
    if (row.op !== 'lora_moe_torch') return;
    const shape = shapeOf(row, arg);
    if (row.skipped !== undefined) torchBy.set(keyOf(shape), { skipped: string(row.skipped, `${arg}.skipped`) });
    else torchBy.set(keyOf(shape), { us: positive(row.median_us, `${arg}.median_us`) });
  });

  const paths = [];
  const rows = new Map();
  ourRows.forEach((row, i) => {
    const arg = `ours.results[${i}]`;
    object(row, arg, 'a result row');
    if (row.op !== 'lora_moe' || row.note) return;
    const shape = shapeOf(row, arg);
    const p = string(row.path, `${arg}.path`);
    const us = positive(row.median_us, `${arg}.median_us`);
    const bytes = positive(row.bytes, `${arg}.bytes`);
    if (!paths.includes(p)) paths.push(p);
    const key = keyOf(shape);
    if (!rows.has(key)) rows.set(key, { ...shape, paths: {}, bytes });
    const out = rows.get(key);
    if (out.paths[p] !== undefined) {
      throw new RangeError(`Expected one '${p}' row per shape for ${arg} but received a second one for ${key}`);
    }
    out.paths[p] = us;
  });

  return {
    device: typeof ours.device === 'string' ? ours.device : '',
    copyGbps,
    torchDevice: typeof torch.device === 'string' ? torch.device : '',
    torchVersion: typeof torch.torch === 'string' ? torch.torch : '',
    torchOnCpu: torch.device_type === 'cpu',
    paths,
    rows: [...rows.entries()].map(([key, r]) => {
      let best = null;
      for (const p of paths) if (r.paths[p] !== undefined && (best === null || r.paths[p] < r.paths[best])) best = p;
      const bestUs = r.paths[best];
      const t = torchBy.get(key);
      const torchUs = t && t.us !== undefined ? t.us : null;
      const speedup = torchUs === null ? null : torchUs / bestUs;
      return {
        dtype: r.dtype, d: r.d, E: r.E, r: r.r, k: r.k, T: r.T,
        paths: r.paths,
        best, bestUs,
        torchUs,
        torchSkipped: t && t.skipped !== undefined ? t.skipped : null,
        speedup,
        ofCopy: r.bytes / (bestUs * 1e3) / copyGbps,
        target: r.T !== TARGET_T ? null : speedup === null ? DASH : speedup >= TARGET_SPEEDUP ? 'met' : 'not met',
      };
    }),
  };
}

const us = (v) => (v === null || v === undefined ? DASH : v.toFixed(2));

/** The comparison as a text table (what the CLI prints and writes). */
function formatComparison(cmp) {
  const lines = [];
  lines.push(`lora_moe on ${cmp.device || 'our device'} (copy ${cmp.copyGbps.toFixed(1)} GB/s) vs PyTorch gather+bmm on ` +
    `${cmp.torchDevice || '?'}${cmp.torchVersion ? ` (torch ${cmp.torchVersion})` : ''}; medians in µs`);
  if (cmp.torchOnCpu) lines.push('NOTE: the torch timings ran on the CPU (a smoke test): these ratios mean nothing.');
  const head = ['dtype', 'd', 'E', 'r', 'k', 'T', ...cmp.paths.map((p) => `${p} µs`), 'best', 'best µs', 'torch µs',
    'speedup', 'of copy', `T=${TARGET_T} ≥${TARGET_SPEEDUP}×`];
  const body = cmp.rows.map((r) => [
    r.dtype, String(r.d), String(r.E), String(r.r), String(r.k), String(r.T),
    ...cmp.paths.map((p) => us(r.paths[p])),
    r.best, us(r.bestUs),
    r.torchSkipped !== null ? 'skipped' : us(r.torchUs),
    r.speedup === null ? DASH : `${r.speedup.toFixed(2)}×`,
    `${(100 * r.ofCopy).toFixed(1)}%`,
    r.target === null ? '' : r.target,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const numeric = (i) => i >= 1 && i < head.length - 1 && head[i] !== 'best';
  const fmt = (cells) => cells.map((c, i) => (numeric(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  lines.push(fmt(head), ...body.map(fmt));

  const targets = cmp.rows.filter((r) => r.target !== null);
  if (targets.length) {
    const met = targets.filter((r) => r.target === 'met').length;
    const unknown = targets.filter((r) => r.target === DASH).length;
    lines.push(`target: lora_moe at T = ${TARGET_T} ≥ ${TARGET_SPEEDUP}× torch: met for ${met} of ${targets.length} shapes` +
      (unknown ? ` (${unknown} without a torch time)` : ''));
  } else {
    lines.push(`target: lora_moe at T = ${TARGET_T} ≥ ${TARGET_SPEEDUP}× torch: no T = ${TARGET_T} shape in this run`);
  }
  for (const r of cmp.rows) {
    if (r.torchSkipped !== null) lines.push(`torch skipped ${r.dtype} d=${r.d} E=${r.E} T=${r.T}: ${r.torchSkipped}`);
  }
  return lines.join('\n') + '\n';
}

function readJson(file, arg) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`Cannot read ${arg} ${file}: ${e.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${arg} ${file} is not JSON: ${e.message}`);
  }
}

/** OURS.json -> OURS-vs-torch.txt, beside it. */
function reportPathFor(oursFile) {
  return path.join(path.dirname(oursFile), `${path.basename(oursFile, '.json')}-vs-torch.txt`);
}

function main(argv) {
  if (argv.length !== 2) {
    console.error('usage: node scripts/gpu-compare.js OURS.json TORCH.json');
    return 2;
  }
  const [oursFile, torchFile] = argv;
  let text;
  try {
    text = formatComparison(compareGpu(readJson(oursFile, 'OURS.json'), readJson(torchFile, 'TORCH.json')));
  } catch (e) {
    console.error(`gpu-compare: ${e.message} (ours: ${oursFile}, torch: ${torchFile})`);
    return 1;
  }
  process.stdout.write(text);
  const report = reportPathFor(oursFile);
  fs.writeFileSync(report, text);
  console.log(`wrote ${report}`);
  return 0;
}

module.exports = { compareGpu, formatComparison, reportPathFor, TARGET_T, TARGET_SPEEDUP };

if (require.main === module) process.exitCode = main(process.argv.slice(2));
