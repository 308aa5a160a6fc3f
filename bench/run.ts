// The CPU kernel benchmark runner: `npm run bench` (node dist/bench/run.js).
//   --quick             a subset (fewer cases, shorter budgets): about a minute
//   --op <names...>     only these ops: lora_moe topk_softmax fold_experts merge_experts
//   --dims <list>       din = dout values (default 896,2048,4096)
//   --threads <n>       our kernels' thread count (kernels.setThreads; default: all cores)
//   --simd <level>      cap our SIMD level: scalar | avx2 | avx512
//   --ort-threads <n>   onnxruntime intraOpNumThreads (default 2)
//   --no-ort-spin       onnxruntime workers sleep instead of spinning after a run
//   --no-reference      skip the pure-TS reference
//   --budget <ms>       time budget of each interleaved case (default 800, quick 250)
//   --out <file>        the JSON file (default bench/results/cpu-<date>-<cpu>-<host>.json)
//   --system-malloc     keep glibc's default malloc tuning (see MALLOC_ENV below)
// Prints the ratio tables and writes every measurement to the JSON file.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Command, Option } from 'commander';

import { kernels } from '../lib';
import { BenchContext, CaseResult, fmtUs, machineLoad, resultsFile, slug, table } from './harness';
import { foldExpertsBench } from './fold_experts';
import { Limits, measureLimits } from './limits';
import { DIMS, loraMoeBench } from './lora_moe';
import { mergeExpertsBench } from './merge_experts';
import { DEFAULT_PEER_SETTINGS, ORT_VERSION, PeerSettings, sessionOptions } from './onnx_peers';
import { BenchOp, printReportTable } from './report';
import { topkSoftmaxBench } from './topk_softmax';

// onnxruntime-node returns every output in a new ArrayBuffer. With glibc's default tuning, those
// buffers come from memory just returned to the kernel (heap trimmed, or large chunks mmapped),
// so each run page-faults its output in: ~10 µs a 4 KiB page on this VM, 0.2 s per run for a
// 64 MiB output. That is the allocator, not onnxruntime's maths, so by default the benchmark
// re-executes itself with glibc keeping freed memory (no trimming, no per-allocation mmap);
// --system-malloc measures the default behaviour. Our kernels allocate nothing in the timed calls
// except topkSoftmax's two small outputs.
const MALLOC_ENV = { MALLOC_TRIM_THRESHOLD_: '4294967296', MALLOC_MMAP_THRESHOLD_: '1073741824' };

// Run, and reported, in this order; each brings its cases and its tables (bench/report.ts).
const BENCH_OPS: BenchOp[] = [loraMoeBench, topkSoftmaxBench, foldExpertsBench, mergeExpertsBench];
const OPS = BENCH_OPS.map((b) => b.name);

interface Options {
  quick: boolean;
  op?: string[];
  dims?: string;
  threads?: string;
  simd?: 'scalar' | 'avx2' | 'avx512';
  ortThreads: string;
  ortSpin: boolean;
  ortSpinStop: boolean;
  reference: boolean;
  budget?: string;
  out?: string;
  systemMalloc: boolean;
}

function cpuInfo(): { model: string; family: string; modelId: string; flags: string[] } {
  let text = '';
  try {
    text = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // not Linux
  }
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  const flags = field('flags').split(/\s+/).filter((f) => /^(avx|fma|f16c|amx)/.test(f));
  return { model: field('model name') || os.cpus()[0]?.model || 'unknown', family: field('cpu family'), modelId: field('model'), flags };
}

function printResults(results: CaseResult[], limits: Limits): void {
  for (const t of BENCH_OPS.flatMap((b) => b.report)) printReportTable(t, results);
  console.log('\nlimits');
  console.log(
    table(
      ['memcpy', 'MiB', 'median', 'copy GB/s', 'traffic GB/s'],
      Object.entries(limits.memcpy).map(([n, c]) => [n, (c.bytes / 2 ** 20).toFixed(0), fmtUs(c.median_us), c.copy_gbps.toFixed(1), c.traffic_gbps.toFixed(1)]),
    ),
  );
  console.log(
    table(
      ['GEMM (onnxruntime)', 'median', 'GFLOP/s'],
      Object.entries(limits.gemm).map(([n, g]) => [n, fmtUs(g.median_us), g.gflops.toFixed(1)]),
    ),
  );
  const targets = results.flatMap((r) => r.targets.map((t) => ({ ...t, label: `${r.op} ${r.label}` })));
  if (targets.length) {
    const missed = targets.filter((t) => !t.met);
    console.log(`\ntargets: ${targets.length - missed.length} of ${targets.length} met`);
    for (const t of missed) console.log(`  NOT met: ${t.label}: ${t.target}, measured ${t.measured.toFixed(2)}`);
  }
}

async function main(): Promise<void> {
  const program = new Command()
    .name('personafuse-bench')
    .description('CPU kernel benchmark: ours vs onnxruntime-node vs the pure-TS reference vs memcpy')
    .option('--quick', 'a subset: fewer cases, shorter budgets', false)
    .addOption(new Option('--op <names...>', 'only these ops').choices([...OPS]))
    .option('--dims <list>', 'din = dout values, comma-separated')
    .option('--threads <n>', "our kernels' thread count")
    .addOption(new Option('--simd <level>', 'cap our SIMD level').choices(['scalar', 'avx2', 'avx512']))
    .option('--ort-threads <n>', 'onnxruntime intraOpNumThreads', '2')
    .option('--no-ort-spin', 'onnxruntime workers sleep instead of spinning (session.intra_op.allow_spinning 0)')
    .option('--no-ort-spin-stop', 'let onnxruntime workers spin on after a run (session.force_spinning_stop 0)')
    .option('--no-reference', 'skip the pure-TS reference')
    .option('--budget <ms>', 'time budget of each interleaved case')
    .option('--out <file>', 'JSON output file')
    .option('--system-malloc', "keep glibc's default malloc tuning (onnxruntime outputs then page-fault)", false);
  program.parse();
  const o = program.opts<Options>();
  if (!o.systemMalloc && process.platform === 'linux' && process.env.MALLOC_TRIM_THRESHOLD_ === undefined) {
    const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, ...MALLOC_ENV },
    });
    process.exit(child.status ?? 1);
  }
  const ops: string[] = o.op ?? OPS;
  const dims = o.dims ? o.dims.split(',').map(Number) : DIMS;
  if (o.threads !== undefined) kernels.setThreads(Number(o.threads));
  if (o.simd) kernels.setSimd(o.simd);
  const peer: PeerSettings = { ...DEFAULT_PEER_SETTINGS, intraOpNumThreads: Number(o.ortThreads), allowSpinning: o.ortSpin, forceSpinningStop: o.ortSpinStop };
  const budgetMs = o.budget ? Number(o.budget) : o.quick ? 250 : 800;
  const t0 = Date.now();
  const log = (s: string) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}\n`);

  const loadStart = machineLoad();
  const info = kernels.info();
  const cpu = cpuInfo();
  log(`personafuse kernels: simd ${info.simd}, ${info.threads} threads; onnxruntime-node ${ORT_VERSION}; ${cpu.model}`);
  const limits = await measureLimits(o.quick, { budgetMs }, peer, log);
  const ctx: BenchContext = {
    quick: o.quick,
    reference: o.reference,
    measure: { budgetMs },
    memcpyTrafficGBps: limits.memcpy_traffic_gbps,
    log,
  };
  const results: CaseResult[] = [];
  for (const b of BENCH_OPS) if (ops.includes(b.name)) results.push(...(await b.run(ctx, peer, dims)));
  const seconds = (Date.now() - t0) / 1000;
  const loadEnd = machineLoad();
  log(`done in ${seconds.toFixed(0)} s`);

  printResults(results, limits);
  console.log(
    `\nmachine load: loadavg ${loadStart.loadavg.map((v) => v.toFixed(2)).join(' ')} at start, ` +
      `${loadEnd.loadavg.map((v) => v.toFixed(2)).join(' ')} at end (${os.cpus().length} cores); ` +
      `CPU pressure avg10 ${loadStart.cpu_pressure_some_avg10}% / ${loadEnd.cpu_pressure_some_avg10}%`,
  );

  const date = new Date().toISOString().slice(0, 10);
  const file = o.out ?? resultsFile(`cpu-${date}-${slug(cpu.model)}-${slug(os.hostname())}.json`);
  const report = {
    schema: 'personafuse-bench-cpu/1',
    date: new Date().toISOString(),
    command: process.argv.slice(2),
    duration_s: seconds,
    machine: {
      cpu_model: cpu.model,
      cpu_family: cpu.family,
      cpu_model_id: cpu.modelId,
      cpu_flags: cpu.flags,
      cores: os.cpus().length,
      memory_gib: os.totalmem() / 2 ** 30,
      hostname: os.hostname(),
      node: process.version,
      onnxruntime_node: ORT_VERSION,
      kernels: kernels.info(),
      load: { start: loadStart, end: loadEnd },
      env: {
        PERSONAFUSE_NUM_THREADS: process.env.PERSONAFUSE_NUM_THREADS ?? null,
        MALLOC_TRIM_THRESHOLD_: process.env.MALLOC_TRIM_THRESHOLD_ ?? null,
        MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? null,
      },
    },
    settings: {
      quick: o.quick,
      ops,
      dims,
      budget_ms_per_case: budgetMs,
      reference: o.reference,
      onnxruntime_session_options: sessionOptions(peer),
      onnxruntime_timing: 'synchronous native session (onnxruntime-node/dist/binding), same bytes and options as InferenceSession.create',
    },
    limits,
    results,
  };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(report, null, 1));
  fs.renameSync(`${file}.tmp`, file);
  log(`wrote ${path.relative(process.cwd(), file)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
