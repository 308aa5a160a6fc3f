#!/usr/bin/env node
// Markdown tables of the latest benchmark results, generated from bench/results/*.json, so the
// tables in bench/README.md never drift from the measurements they quote.
//
//   node scripts/bench-tables.js             print the generated block
//   node scripts/bench-tables.js --write     rewrite the block between the markers in bench/README.md
//   node scripts/bench-tables.js --check     exit 1 (saying so) when bench/README.md's block is stale
//   --results DIR    where the result files are (default bench/results)
//   --readme FILE    the file holding the markers (default bench/README.md)
//
// Which files: every *.json in the results folder is read and sorted into kinds by what it holds:
//   cpu       schema personafuse-bench-cpu/1 (npm run bench)        one kind per (CPU, cores, op)
//   gpu       pf_bench_gpu's JSON (npm run bench:gpu)                one kind per (device, op)
//   forward   bench "model_forward" (personafuse bench forward)      one kind per (machine, model, vocab)
//   generate  bench "generate" (personafuse bench generate)          one kind per (machine, model)
//   serve     bench "serve" (personafuse bench serve)                one kind per (machine, model, shape):
//             a run of several levels, or a long run of one level (steady state), so the newest steady
//             run does not hide the newest comparison across levels
// and each kind shows its newest file, by the date recorded inside it (the file name breaks ties).
// Other JSON (the PyTorch reference's *-torch.json, anything unknown) is left out. Older files stay
// in the folder as history; a kind's table changes when a newer file of that kind is committed.
//
// Plain Node, no dependencies; output depends only on the files' contents (no clock, no locale).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const BEGIN = '<!-- tables:begin -->';
const END = '<!-- tables:end -->';

// ---- formatting -------------------------------------------------------------------------------

const DASH = '—';
const isNum = (x) => typeof x === 'number' && Number.isFinite(x);

/** 3 significant digits, fixed notation. */
function sig3(x) {
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}
/** a time given in µs */
function time(us) {
  if (!isNum(us)) return DASH;
  if (us < 1000) return `${sig3(us)} µs`;
  if (us < 1e6) return `${sig3(us / 1e3)} ms`;
  return `${sig3(us / 1e6)} s`;
}
const ratio = (x) => (isNum(x) ? `${x.toFixed(2)}×` : DASH);
const pct = (x) => (isNum(x) ? `${Math.round(x * 100)}%` : DASH);
const num = (x, digits = 1) => (isNum(x) ? x.toFixed(digits) : DASH);
const rate = (x) => (isNum(x) ? (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(1)) : DASH);
const cell = (v) => String(v === undefined || v === null || v === '' ? DASH : v).replace(/\|/g, '\\|').replace(/\n/g, ' ');

function table(header, rows) {
  const line = (cells) => `| ${cells.map(cell).join(' | ')} |`;
  return [line(header), `| ${header.map(() => '---').join(' | ')} |`, ...rows.map(line)].join('\n');
}

/** "2026-11-26T02:02:57.544Z" or "20261126-020522" -> milliseconds since the epoch, or NaN */
function parseDate(d) {
  if (typeof d !== 'string') return NaN;
  const compact = /^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})$/.exec(d);
  if (compact) {
    const [, y, mo, da, h, mi, s] = compact;
    return Date.parse(`${y}-${mo}-${da}T${h}:${mi}:${s}Z`);
  }
  return Date.parse(d);
}
/** "2026-11-26 02:02 UTC" */
function when(ms) {
  if (!isNum(ms)) return 'date unknown';
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}
const loads = (a) => (Array.isArray(a) && a.length ? a.map((x) => num(x, 2)).join(' ') : null);

// ---- reading and sorting into kinds -----------------------------------------------------------

function classify(j) {
  if (j === null || typeof j !== 'object' || Array.isArray(j)) return null;
  if (j.schema === 'personafuse-bench-cpu/1') return 'cpu';
  if (j.bench === 'model_forward') return 'forward';
  if (j.bench === 'generate') return 'generate';
  if (j.bench === 'serve') return 'serve';
  if (typeof j.device === 'string' && Array.isArray(j.results) && 'copy_gbps' in j) return 'gpu';
  return null;
}

function machineOf(j) {
  return `${j.cpu ?? j.machine?.cpu ?? j.machine?.cpu_model ?? 'unknown CPU'}, ${j.cores ?? j.machine?.cores ?? '?'} cores`;
}

/** kind key -> { section, key, file, ms, json, op? } for every (file, kind) a file belongs to */
function entriesOf(file, j) {
  const base = { file, json: j, ms: parseDate(j.date) };
  switch (classify(j)) {
    case 'cpu': {
      const machine = `${j.machine?.cpu_model ?? 'unknown CPU'}, ${j.machine?.cores ?? '?'} cores`;
      const ops = [...new Set((j.results ?? []).map((r) => r.op))].filter((op) => RENDER_CPU[op]);
      if (j.limits) ops.push('limits');
      return ops.map((op) => ({ ...base, section: 'cpu', op, key: `${machine} | ${CPU_ORDER.indexOf(op)} ${op}` }));
    }
    case 'gpu': {
      const ops = [...new Set(j.results.map((r) => r.op))].filter((op) => op !== 'copy');
      return ops.map((op) => ({ ...base, section: 'gpu', op, key: `${j.device} | ${gpuOrder(op)} ${op}` }));
    }
    case 'forward': {
      const m = j.model ?? {};
      return [{ ...base, section: 'forward', key: `${machineOf(j)} | ${m.dir ?? m} | vocab ${m.vocab_size ?? '?'}` }];
    }
    case 'generate':
      return [{ ...base, section: 'generate', key: `${machineOf(j)} | ${j.model}` }];
    case 'serve': {
      const s = j.server ?? {};
      const shape = j.paired ? `levels, ${j.paired.rounds} rounds` : (j.levels ?? []).length > 1 ? 'levels' : 'one level';
      return [{ ...base, section: 'serve', key: `${machineOf(j)} | ${s.model_path ?? s.model ?? 'unknown model'} | ${shape}` }];
    }
    default:
      return [];
  }
}

function newestPerKind(dir) {
  const best = new Map();
  const names = fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort();
  for (const name of names) {
    let j;
    try {
      j = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
    } catch (err) {
      throw new Error(`bench-tables: ${path.join(dir, name)} is not valid JSON (${err.message})`);
    }
    for (const e of entriesOf(name, j)) {
      const ms = isNum(e.ms) ? e.ms : -Infinity;
      const kind = `${e.section} | ${e.key}`;
      const prev = best.get(kind);
      // names are visited in order, so on equal dates the later name wins
      if (!prev || ms >= (isNum(prev.ms) ? prev.ms : -Infinity)) best.set(kind, e);
    }
  }
  return [...best.values()];
}

// ---- CPU kernels (bench/run.ts) -----------------------------------------------------------------

const CPU_ORDER = ['lora_moe', 'topk_softmax', 'fold_experts', 'merge_experts', 'limits'];

function targetCell(r) {
  const t = (r.targets ?? [])[0];
  if (!t) return DASH;
  const req = t.required < 1 ? pct(t.required) : `${t.required}×`;
  return `${req} ${t.met ? 'met' : '**not met**'}`;
}
function targetsLine(rows) {
  const ts = rows.flatMap((r) => r.targets ?? []);
  if (!ts.length) return '';
  return ` Targets met: ${ts.filter((t) => t.met).length} of ${ts.length}.`;
}
const impl = (r, name) => r.impls?.[name]?.median_us;

const RENDER_CPU = {
  lora_moe: (rows) => table(
    ['case', 'ours', 'peer', 'peer time', 'vs peer', 'paired', 'p10', 'GB/s / memcpy', 'target'],
    rows.map((r) => [r.label, time(impl(r, 'ours')), r.peer, time(impl(r, r.peer)), ratio(r.ratios?.vs_peer),
      ratio(r.ratios?.vs_peer_paired), ratio(r.ratios?.vs_peer_p10), pct(r.ratios?.gbps_vs_memcpy), targetCell(r)]),
  ),
  topk_softmax: (rows) => table(
    ['case', 'ours', 'peer', 'peer time', 'vs peer', 'paired', 'p10', 'target'],
    rows.map((r) => [r.label, time(impl(r, 'ours')), r.peer, time(impl(r, r.peer)), ratio(r.ratios?.vs_peer),
      ratio(r.ratios?.vs_peer_paired), ratio(r.ratios?.vs_peer_p10), targetCell(r)]),
  ),
  fold_experts: (rows) => table(
    ['case', 'MiB written', 'ours', 'memcpy', '% of memcpy', 'paired', 'p10', 'target'],
    rows.map((r) => [r.label, num((r.params?.bytes_written ?? NaN) / 2 ** 20, 2), time(impl(r, 'ours')), time(impl(r, 'memcpy')),
      pct(r.ratios?.fraction_of_memcpy_speed), pct(r.ratios?.fraction_of_memcpy_speed_paired),
      pct(r.ratios?.fraction_of_memcpy_speed_p10), targetCell(r)]),
  ),
  merge_experts: (rows) => table(
    ['case', 'ours', 'peer', 'peer time', 'vs peer', 'paired', 'GB/s / memcpy'],
    rows.map((r) => [r.label, time(impl(r, 'ours')), r.peer, time(impl(r, r.peer)), ratio(r.ratios?.vs_peer),
      ratio(r.ratios?.vs_peer_paired), pct(r.ratios?.gbps_vs_memcpy)]),
  ),
};

const CPU_TITLES = {
  lora_moe: 'lora_moe: ours vs the faster onnxruntime graph (ort-gather / ort-dense)',
  topk_softmax: 'topk_softmax: ours vs the onnxruntime Softmax + TopK graph',
  fold_experts: 'fold_experts: the bytes it writes, against memcpy of as many bytes',
  merge_experts: 'merge_experts: ours vs the faster onnxruntime graph',
  limits: 'limits measured in the same run',
};

function cpuCommand(j) {
  const args = Array.isArray(j.command) ? [...j.command] : [];
  const out = args.indexOf('--out');
  if (out >= 0) args.splice(out, 2);
  return args.length ? `node dist/bench/run.js ${args.join(' ')}` : 'npm run bench';
}

function renderCpu(e) {
  const j = e.json;
  const m = j.machine ?? {};
  const k = m.kernels ?? {};
  const load = m.load ?? {};
  const pressure = [load.start?.cpu_pressure_some_avg10, load.end?.cpu_pressure_some_avg10];
  const caption = [
    `\`${e.file}\``, when(e.ms), `\`${cpuCommand(j)}\``,
    `${m.cpu_model ?? 'CPU'}, ${m.cores ?? '?'} cores, ${k.simd ?? '?'}, our kernels on ${k.threads ?? '?'} threads`,
    `load average ${loads(load.start?.loadavg) ?? '?'} → ${loads(load.end?.loadavg) ?? '?'}` +
      (pressure.every(isNum) ? `, CPU pressure ${pressure.map((p) => `${Math.round(p)}%`).join(' → ')}` : ''),
  ].join(' · ');
  let body;
  if (e.op === 'limits') {
    const l = j.limits ?? {};
    const memcpy = Object.entries(l.memcpy ?? {}).map(([name, s]) => [name, num(s.bytes / 2 ** 20, 0), time(s.median_us), num(s.copy_gbps), num(s.traffic_gbps)]);
    const gemm = Object.entries(l.gemm ?? {}).map(([name, s]) => [name, time(s.median_us), num(s.gflops)]);
    body = [table(['memcpy', 'MiB', 'median', 'copy GB/s', 'traffic GB/s'], memcpy), table(['GEMM (onnxruntime MatMul)', 'median', 'GFLOP/s'], gemm)].join('\n\n');
  } else {
    const rows = (j.results ?? []).filter((r) => r.op === e.op);
    body = RENDER_CPU[e.op](rows) + (targetsLine(rows) ? `\n\n${targetsLine(rows).trim()}` : '');
  }
  return { source: caption, title: CPU_TITLES[e.op], body };
}

// ---- GPU kernels (kernels/bench/bench_gpu.cc) ---------------------------------------------------

const GPU_ORDER = ['lora_moe', 'topk_softmax', 'fold_experts', 'merge_experts'];
const gpuOrder = (op) => (GPU_ORDER.includes(op) ? GPU_ORDER.indexOf(op) : GPU_ORDER.length);
const PATH_ORDER = ['decode', 'fused', 'grouped', 'dense'];
const gpuTime = (r) => `${time(r.median_us)} (${pct(r.of_copy)})`;

function renderGpu(e) {
  const j = e.json;
  const rows = j.results.filter((r) => r.op === e.op);
  const caption = [`\`${e.file}\``, when(e.ms), `${j.device}, compute capability ${j.compute_capability ?? '?'}`,
    `copy ${num(j.copy_gbps, 0)} GB/s`].join(' · ');
  let title;
  let body;
  if (e.op === 'lora_moe') {
    const checked = rows.filter((r) => r.note === 'checks on');
    const plain = rows.filter((r) => r.note !== 'checks on');
    const paths = [...new Set(plain.map((r) => r.path))].sort((a, b) => rank(PATH_ORDER, a) - rank(PATH_ORDER, b));
    const shapes = new Map();
    for (const r of plain) {
      const key = [r.dtype, r.d, r.E, r.r, r.k, r.T].join('|');
      if (!shapes.has(key)) shapes.set(key, { r, by: {} });
      shapes.get(key).by[r.path] = r;
    }
    const out = [...shapes.values()].map(({ r, by }) => {
      const timed = paths.filter((p) => by[p] && isNum(by[p].median_us));
      const best = timed.reduce((a, b) => (by[b].median_us < by[a].median_us ? b : a), timed[0]);
      return [r.dtype, r.d, r.E, r.T, ...paths.map((p) => (by[p] ? gpuTime(by[p]) : DASH)), best ?? DASH];
    });
    title = 'lora_moe on the GPU: median per call (% of copy bandwidth over the fewest bytes), per path';
    body = table(['dtype', 'd', 'E', 'T', ...paths, 'fastest'], out);
    const r0 = plain[0];
    const note = [`r ${r0?.r ?? '?'}, k ${r0?.k ?? '?'}; paths not listed were not timed in this run.`];
    for (const c of checked) note.push(`With sync_checks on, ${c.path} ${c.dtype} d ${c.d} E ${c.E} T ${c.T}: ${time(c.median_us)}.`);
    body += `\n\n${note.join(' ')}`;
  } else if (e.op === 'topk_softmax') {
    title = 'topk_softmax on the GPU';
    body = table(['E', 'k', 'T', 'median', 'p10', 'p90'], rows.map((r) => [r.E, r.k, r.T, time(r.median_us), time(r.p10_us), time(r.p90_us)]));
  } else if (e.op === 'fold_experts') {
    title = 'fold_experts on the GPU';
    body = table(['dtype', 'd', 'B', 'note', 'median', 'GB/s', '% of copy'],
      rows.map((r) => [r.dtype, r.d, r.T, r.note, time(r.median_us), num(r.gbps, 0), pct(r.of_copy)]));
  } else if (e.op === 'merge_experts') {
    title = 'merge_experts on the GPU';
    body = table(['dtype', 'layout', 'd', 'n', 'median', 'GB/s', '% of copy', 'TFLOP/s'],
      rows.map((r) => [r.dtype, r.path, r.d, r.k, time(r.median_us), num(r.gbps, 0), pct(r.of_copy), num(r.tflops, 2)]));
  } else {
    title = `${e.op} on the GPU`;
    body = table(['dtype', 'path', 'note', 'd', 'E', 'k', 'T', 'median', 'GB/s', '% of copy'],
      rows.map((r) => [r.dtype, r.path, r.note, r.d, r.E, r.k, r.T, time(r.median_us), num(r.gbps, 0), pct(r.of_copy)]));
  }
  return { source: caption, title, body };
}

function rank(order, x) {
  const i = order.indexOf(x);
  return i < 0 ? order.length : i;
}

// ---- model forward (bench/model_forward.ts) -----------------------------------------------------

const VARIANTS = [['base', 'base'], ['injected', 'per-row'], ['bank', 'bank'], ['merged', 'merged']];
const ortThreads = (j) => (isNum(j.onnxruntime_threads) ? `onnxruntime on ${j.onnxruntime_threads} threads` : 'onnxruntime threads not recorded');
/** 'injected serial x8' -> 'per-row: the 8 requests one after another' */
function otherLabel(name) {
  const n = name.replace(/^injected\b/, 'per-row');
  const serial = /^(.*) serial x(\d+)$/.exec(n);
  return serial ? `${serial[1]}: the ${serial[2]} requests one after another` : n;
}

function renderForward(e) {
  const j = e.json;
  const m = j.model ?? {};
  const present = VARIANTS.filter(([k]) => (j.results ?? []).some((r) => isNum(r.tokens_per_s?.[k])));
  const hasBank = present.some(([k]) => k === 'bank');
  const target = isNum(j.target) ? j.target : null;
  const header = ['phase', 'batch', ...present.map(([, label]) => `${label} tok/s`), 'per-row / base (paired)',
    ...(hasBank ? ['bank / base (paired)'] : []), 'merged / base', `per-row ≥ ${target === null ? '?' : pct(target)}`];
  const rows = (j.results ?? []).map((r) => [
    r.phase === 'prefill' ? `prefill ${r.tokens_per_call / r.batch}` : r.phase, r.batch,
    ...present.map(([k]) => rate(r.tokens_per_s?.[k])),
    pct(r.injected_vs_base_paired), ...(hasBank ? [pct(r.bank_vs_base_paired)] : []), pct(r.merged_vs_base),
    r.target_met === undefined ? DASH : r.target_met ? 'met' : '**not met**',
  ]);
  const caption = [`\`${e.file}\``, when(e.ms), machineOf(j), ortThreads(j),
    `weights ${j.weights ?? 'inline bytes'}`, `load average ${loads(j.loadavg) ?? '?'}`].join(' · ');
  const model = `${m.dir ?? m}: hidden ${m.hidden_size ?? '?'}, ${m.num_hidden_layers ?? '?'} layers, vocab ${m.vocab_size ?? '?'}; ` +
    `${j.experts ?? '?'} experts of rank ${j.rank ?? '?'}, k ${j.k ?? '?'}; decode over a ${j.past ?? '?'}-token cache`;
  const folds = (j.folds ?? []).map((f) => `batch ${f.batch} ${time(f.fold_us)}`).join(', ');
  return { source: caption, title: `Forward, ${model}`,
    body: table(header, rows) + (folds ? `\n\nFolding the batch's mixes for per-row (once, when requests join): ${folds}.` : '') };
}

// ---- generation (bench/generate.ts) -------------------------------------------------------------

function renderGenerate(e) {
  const j = e.json;
  const med = j.median_tokens_per_s ?? {};
  const present = VARIANTS.filter(([k]) => ['b1', 'b8', 'b32'].some((b) => isNum(med[`${k} ${b}`])));
  const batches = ['b1', 'b8', 'b32'].filter((b) => present.some(([k]) => isNum(med[`${k} ${b}`])));
  const main = table(['batch', ...present.map(([, label]) => label)],
    batches.map((b) => [b.slice(1), ...present.map(([k]) => rate(med[`${k} ${b}`]))]));
  const shown = new Set(present.flatMap(([k]) => batches.map((b) => `${k} ${b}`)));
  const other = Object.entries(med).filter(([name]) => !shown.has(name))
    .map(([name, v]) => [otherLabel(name), rate(v)]);
  const targets = (j.targets ?? []).map((t) => [t.what.replace(/^injected/, 'per-row').replace(/^bank: /, 'bank: '),
    ratio(t.value), ratio(t.paired), `${t.required}×`, isNum(t.paired) && t.paired >= t.required ? 'met' : '**not met**']);
  const caption = [`\`${e.file}\``, when(e.ms), machineOf(j), ortThreads(j),
    `weights ${j.weights ?? 'inline'}`, `load average ${loads(j.loadavg) ?? '?'}`].join(' · ');
  const auto = j.auto_lora_layout ? `; 'auto' picks ${j.auto_lora_layout}` +
    (isNum(j.bank_share_of_weights) ? ` (the bank is ${num(j.bank_share_of_weights * 100)}% of the weights)` : '') : '';
  const what = `${j.model}: ${Array.isArray(j.experts) ? j.experts.length : j.experts ?? '?'} experts, ` +
    `${j.prompt_tokens ?? '?'}-token prompts, ${j.max_new_tokens ?? '?'} new tokens, median of ${j.rounds ?? '?'} rounds${auto}`;
  const parts = [main];
  if (other.length) parts.push(table(['also measured', 'tok/s'], other));
  if (targets.length) parts.push(table(['ratio', 'of medians', 'paired', 'target', 'paired vs target'], targets));
  if (isNum(j.event_loop_delay_ms?.p99)) parts.push(`Event-loop delay while serving batch 32: p99 ${num(j.event_loop_delay_ms.p99)} ms.`);
  return { source: caption, title: `Generation, ${what}`, body: parts.join('\n\n') };
}

// ---- serving (bench/serve.ts) -------------------------------------------------------------------

const ms3 = (p) => (p ? [p.p50, p.p90, p.p99].map((x) => (isNum(x) ? x.toFixed(0) : DASH)).join(' / ') : DASH);

// event-loop delay p99, the load generator's / the server's (prom-client's figure less its 10 ms
// sampling interval; files from before that field carry only the client's)
const loopDelays = (l) => {
  const client = isNum(l.event_loop_delay_ms?.p99) ? num(l.event_loop_delay_ms.p99) : DASH;
  const server = isNum(l.server_event_loop_delay_p99_ms) ? num(l.server_event_loop_delay_p99_ms) : DASH;
  return client === DASH && server === DASH ? DASH : `${client} / ${server} ms`;
};

function renderServe(e) {
  const j = e.json;
  const s = j.server ?? {};
  const st = j.settings ?? {};
  const rows = (j.levels ?? []).map((l) => [
    (l.mode === 'open' ? `${l.rate}/s` : l.concurrency) + (l.round ? ` (round ${l.round})` : ''), l.requests?.measured, l.requests?.measured_errors,
    rate(l.tok_per_s), ratio(l.tok_per_s_vs_reference), num(l.req_per_s, 2), ms3(l.ttft_ms), ms3(l.tpot_ms),
    l.latency_ms ? [l.latency_ms.p50, l.latency_ms.p99].map((x) => (isNum(x) ? x.toFixed(0) : DASH)).join(' / ') : DASH,
    num(l.rss_mib?.at_end, 0), loopDelays(l),
  ]);
  const open = (j.levels ?? []).some((l) => l.mode === 'open');
  const header = [open ? 'clients or rate' : 'clients', 'requests', 'errors', 'tok/s', `vs ${j.reference_level ?? 'reference'}`,
    'req/s', 'TTFT p50 / p90 / p99 ms', 'TPOT p50 / p90 / p99 ms', 'latency p50 / p99 ms', 'server RSS MiB at end', 'event-loop delay p99 client / server'];
  const m = j.machine ?? {};
  const caption = [`\`${e.file}\``, when(e.ms), machineOf(j),
    `load average ${loads(m.load?.start?.loadavg) ?? '?'} → ${loads(m.load?.end?.loadavg) ?? '?'}`].join(' · ');
  const what = `${s.model_path ?? s.model ?? 'model'}` +
    (Array.isArray(s.experts) ? `, ${s.experts.length} experts${s.router ? ' and a router' : ''}` : '') +
    (Array.isArray(st.max_tokens) ? `; max_tokens ${st.max_tokens.join('..')}` : '') +
    (Array.isArray(st.persona_kinds) ? `; personas ${st.persona_kinds.join(', ')}` : '');
  const parts = [table(header, rows)];
  // --rounds: each level over the reference level of its own round, medians over the rounds
  if (j.paired) {
    parts.push(table([open ? 'clients or rate' : 'clients', 'tok/s median', `vs ${j.paired.reference_level}, paired by round: median`, 'min', 'max'],
      j.paired.levels.map((p) => [p.level, rate(p.median_tok_per_s), ratio(p.median_vs_reference), ratio(p.min_vs_reference), ratio(p.max_vs_reference)])));
  }
  return { source: caption, title: `Serving, ${what}${j.paired ? `; ${j.paired.rounds} rounds` : ''}`, body: parts.join('\n\n') };
}

// ---- the block ----------------------------------------------------------------------------------

const SECTIONS = [
  ['cpu', 'CPU kernels (`npm run bench`)', renderCpu],
  ['gpu', 'GPU kernels (`npm run bench:gpu`)', renderGpu],
  ['forward', 'Model forward (`personafuse bench forward`)', renderForward],
  ['generate', 'Generation (`personafuse bench generate`)', renderGenerate],
  ['serve', 'Serving (`personafuse bench serve`)', renderServe],
];

function generate(resultsDir) {
  const entries = newestPerKind(resultsDir);
  const out = [
    '<!-- Generated by `node scripts/bench-tables.js --write` from the newest bench/results/*.json of each kind. Do not edit by hand. -->',
  ];
  for (const [section, title, render] of SECTIONS) {
    const mine = entries.filter((e) => e.section === section).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    out.push(`### ${title}`);
    if (!mine.length) out.push('_No results of this kind yet._');
    let last = null;
    for (const e of mine) {
      const r = render(e);
      // the run's description once per file, before its first table
      if (r.source !== last) out.push(`Run: ${r.source}`);
      last = r.source;
      out.push(`**${r.title}**`, r.body);
    }
  }
  return `${out.join('\n\n')}\n`;
}

/** The text between the markers (exclusive), and where it is; throws when the markers are not there once each, in order. */
function findBlock(text, file) {
  const b = text.indexOf(BEGIN);
  const e = text.indexOf(END);
  if (b < 0 || e < 0 || e < b || text.indexOf(BEGIN, b + 1) >= 0 || text.indexOf(END, e + 1) >= 0) {
    throw new Error(`bench-tables: ${file} must hold ${BEGIN} and then ${END}, once each`);
  }
  const start = b + BEGIN.length;
  return { start, end: e, inner: text.slice(start, e) };
}
const innerOf = (generated) => `\n${generated}`;

function main(argv) {
  const opt = (name, fallback) => {
    const i = argv.indexOf(name);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
  };
  const resultsDir = path.resolve(root, opt('--results', 'bench/results'));
  const readme = path.resolve(root, opt('--readme', 'bench/README.md'));
  const generated = generate(resultsDir);
  if (argv.includes('--write') || argv.includes('--check')) {
    const text = fs.readFileSync(readme, 'utf8');
    const block = findBlock(text, readme);
    const fresh = innerOf(generated);
    if (argv.includes('--check')) {
      if (block.inner !== fresh) {
        console.error(`bench-tables: the tables in ${path.relative(root, readme)} are not those of ${path.relative(root, resultsDir)}; ` +
          'run `node scripts/bench-tables.js --write`');
        return 1;
      }
      console.log(`bench-tables: ${path.relative(root, readme)} is up to date`);
      return 0;
    }
    if (block.inner !== fresh) fs.writeFileSync(readme, text.slice(0, block.start) + fresh + text.slice(block.end));
    console.log(`bench-tables: ${block.inner === fresh ? 'unchanged' : 'wrote'} ${path.relative(root, readme)}`);
    return 0;
  }
  process.stdout.write(generated);
  return 0;
}

if (require.main === module) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    console.error(err.message);
    process.exitCode = 2;
  }
}

module.exports = { generate, findBlock, parseDate, BEGIN, END };
