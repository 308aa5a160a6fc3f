// Serving benchmark: a load generator that drives the real OpenAI-compatible server over HTTP with
// streaming chat completions (`personafuse bench serve`).
//
// The server is started as a child process (`personafuse serve --model M --port 0 --json`, the
// embedded demo model by default), which lets the bench read the SERVER's RSS every second; or
// --url targets one already running (--server-pid lets it read that one's /proc too).
// Load: closed loop, --concurrency N clients each sending its next request when its last one
// ends (--levels 1,8,32: several concurrencies against the same server, each with its own
// warm-up), or open loop, --rate R Poisson arrivals per second. --requests N measured requests
// per level (a list: one count per level) and/or --duration S, after --warmup requests.
// --rounds N runs the levels N times over, in order, and reports each level's tok/s over the
// reference level's of the same round (bench/serve/rounds.ts): the ratios to compare with a target
// on a shared machine. Every round sends a level the same requests.
// Traffic (seeded, bench/serve/workload.ts): a user message of 3 to 60 words from a pool of
// everyday requests, max_tokens drawn from --max-tokens (EOS is honoured: the completion tokens
// counted are those the server reports in usage), and a persona per request: 'auto' (router
// models), a Big Five profile, an explicit mix of 1 or 2 of the model's experts, or { mix: {} }.
// How the measured part is delimited and what counts toward tok/s: bench/serve/load.ts.
//
//   node dist/bench/serve.js [--model DIR | --url URL] [--levels 1,8,32 | --concurrency N | --rate R]
//       [--requests N[,N...]] [--duration S] [--warmup N] [--rounds N] [--max-tokens 16..64] [--seed N] [--out FILE]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import { machineLoad, resultsFile, slug, table } from './harness';
import { getJson, PersonaKind } from './serve/client';
import { LevelResult, LoadMode, runLevel } from './serve/load';
import { pairedRounds } from './serve/rounds';
import { servableModel } from './serve/model_dir';
import { busiestProcesses, readRss, RssSampler, spawnServer, SpawnedServer } from './serve/server_process';
import { PERSONA_KINDS, promptPool, requestSpec, supportedKinds } from './serve/workload';

const ROOT = path.join(__dirname, '..', '..');
const DEMO_DIR = path.join(ROOT, 'models', 'persona-demo');
const CLI = path.join(ROOT, 'dist', 'lib', 'cli', 'main.js');

interface Flags {
  model?: string;
  url?: string;
  serverPid?: string;
  apiKey?: string;
  maxBatch?: string;
  loraLayout?: string;
  serverArg: string[];
  concurrency?: string;
  levels?: string;
  rate?: string;
  requests?: string;
  duration?: string;
  warmup?: string;
  rounds: string;
  maxTokens: string;
  promptWords: string;
  personas: string;
  temperature?: string;
  seed: string;
  windowSeconds: string;
  requestWindow: string;
  timeout: string;
  startupTimeout: string;
  pause: string;
  workDir: string;
  tag?: string;
  out?: string;
}

function range(flag: string, v: string, lo: number): [number, number] {
  const m = /^(\d+)(?:\.\.(\d+))?$/.exec(v.trim());
  const a = m ? Number(m[1]) : NaN;
  const b = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || a < lo || b < a) throw new Error(`${flag} expects N or A..B (integers, ${lo} <= A <= B) but received '${v}'`);
  return [a, b];
}

function positive(flag: string, v: string, integer = true): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new Error(`${flag} expects a positive ${integer ? 'integer' : 'number'} but received '${v}'`);
  return n;
}

/** The commit measured, and the files changed on top of it (the server measured is the working tree's). */
function gitState(): { commit: string | null; changed: string[] } {
  const git = (args: string[]) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  const head = git(['rev-parse', 'HEAD']);
  const status = git(['status', '--porcelain', '--untracked-files=all', '--', 'lib', 'bench/serve.ts', 'bench/serve']);
  return { commit: head.status === 0 ? head.stdout.trim() : null, changed: status.status === 0 ? status.stdout.split('\n').filter(Boolean) : [] };
}

const ms = (v: number | null | undefined) => (v === null || v === undefined ? '—' : v >= 100 ? v.toFixed(0) : v.toFixed(1));
const num = (v: number | null | undefined, d = 0) => (v === null || v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(d));

async function main(): Promise<void> {
  const o = new Command('serve')
    .description('load generator for the OpenAI-compatible server (streaming chat completions)')
    .option('--model <dir>', 'model folder to serve (default: the embedded demo model)')
    .option('--url <url>', 'target a running server instead of starting one')
    .option('--server-pid <pid>', 'with --url: the server\'s pid, to sample its RSS and CPU')
    .option('--api-key <key>', 'sent as Authorization: Bearer <key>')
    .option('--max-batch <n>', 'forwarded to serve --max-batch')
    .option('--lora-layout <layout>', 'forwarded to serve --lora-layout')
    .option('--server-arg <arg>', 'one more argument for `personafuse serve` (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('--concurrency <n>', 'closed loop: clients, each sending its next request when its last ends (default 8)')
    .option('--levels <list>', 'closed loop at several concurrencies in one run, e.g. 1,8,32')
    .option('--rate <r>', 'open loop: Poisson arrivals at r requests/s')
    .option('--requests <n>', 'measured requests per level, or one count per level (1,8,32 with 300,1000,1000); default 200 unless --duration')
    .option('--duration <s>', 'measure for s seconds per level (with --requests: whichever ends first)')
    .option('--warmup <n>', 'requests before the measured ones, per level (default: 2 x concurrency, at least 4; open loop 10)')
    .option('--rounds <n>', 'run the levels this many times over, in order; each level\'s ratio to the reference level is then taken round by round (paired) and reported as medians', '1')
    .option('--max-tokens <a..b>', 'max_tokens of each request, drawn uniformly', '16..64')
    .option('--prompt-words <a..b>', 'only the pool\'s messages of this many words', '3..60')
    .option('--personas <list>', `persona kinds to draw from (${PERSONA_KINDS.join(',')}); those the model cannot take are dropped`, PERSONA_KINDS.join(','))
    .option('--temperature <t>', 'sent with every request (default: the model\'s generation config)')
    .option('--seed <n>', 'traffic seed', '1')
    .option('--window-seconds <s>', 'tok/s per window of this many seconds', '10')
    .option('--request-window <n>', 'tok/s per window of this many completed requests', '100')
    .option('--timeout <s>', 'per-request timeout', '600')
    .option('--startup-timeout <s>', 'how long the server may take to print its URL (first run builds the injected model)', '1200')
    .option('--pause <s>', 'pause between levels (the cut-off tail requests leave the batch)', '1')
    .option('--work-dir <dir>', 'where a servable copy of a bare benchmark model is kept (bench/serve/model_dir.ts)', path.join(os.tmpdir(), 'personafuse-bench-serve'))
    .option('--tag <tag>', 'appended to the results file name')
    .option('--out <file>', 'JSON results file (default bench/results/serve-<model>-<date>-<cpu>[-<tag>].json)')
    .parse(process.argv)
    .opts<Flags>();

  const t00 = performance.now();
  const log = (s: string) => process.stderr.write(`[${((performance.now() - t00) / 1000).toFixed(1)}s] ${s}\n`);
  if (o.url && o.model) throw new Error('--url and --model: give one (--url targets a running server, --model starts one)');
  if (o.rate && (o.levels || o.concurrency)) throw new Error('--rate (open loop) and --levels / --concurrency (closed loop): give one');
  const modes: LoadMode[] = o.rate
    ? [{ kind: 'open', rate: positive('--rate', o.rate, false) }]
    : (o.levels ?? o.concurrency ?? '8').split(',').map((v) => ({ kind: 'closed', concurrency: positive(o.levels ? '--levels' : '--concurrency', v) }));
  const duration = o.duration !== undefined ? positive('--duration', o.duration, false) : undefined;
  const reqList = (o.requests ?? (duration !== undefined ? '' : '200')).split(',').filter(Boolean).map((v) => positive('--requests', v));
  if (reqList.length > 1 && reqList.length !== modes.length) throw new Error(`--requests gives ${reqList.length} counts for ${modes.length} levels`);
  const requestsOf = (i: number) => (reqList.length === 0 ? Infinity : reqList[reqList.length === 1 ? 0 : i]);
  const warmupOf = (m: LoadMode) => (o.warmup !== undefined ? Number(o.warmup) : m.kind === 'open' ? 10 : Math.max(4, 2 * m.concurrency));
  if (o.warmup !== undefined && !(Number.isInteger(Number(o.warmup)) && Number(o.warmup) >= 0)) throw new Error(`--warmup expects an integer >= 0 but received '${o.warmup}'`);
  const maxTokens = range('--max-tokens', o.maxTokens, 1);
  const promptWords = range('--prompt-words', o.promptWords, 0);
  const askedKinds = o.personas.split(',').map((k) => k.trim()) as PersonaKind[];
  for (const k of askedKinds) if (!PERSONA_KINDS.includes(k)) throw new Error(`--personas: '${k}' is none of ${PERSONA_KINDS.join(', ')}`);
  const seed = Number(o.seed);
  const windowSeconds = positive('--window-seconds', o.windowSeconds, false);
  const requestWindow = positive('--request-window', o.requestWindow);
  const headers: Record<string, string> = o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {};

  const origin = performance.now();
  let server: SpawnedServer | undefined;
  let sampler: RssSampler | undefined;
  let modelName: string;
  let modelPath: string | null = null;
  let added: string[] = [];
  const loadStart = machineLoad();
  const othersStart = await busiestProcesses([process.pid]);
  try {
    let base: URL;
    let serverPid: number | null = o.serverPid ? positive('--server-pid', o.serverPid) : null;
    if (o.url) {
      base = new URL(o.url);
      modelName = 'remote';
    } else {
      const given = path.resolve(o.model ?? DEMO_DIR);
      modelPath = path.relative(ROOT, given);
      modelName = path.basename(given);
      const servable = await servableModel(given, o.workDir, DEMO_DIR, log);
      added = servable.added;
      const args = ['--model', servable.dir];
      if (o.maxBatch) args.push('--max-batch', String(positive('--max-batch', o.maxBatch)));
      if (o.loraLayout) args.push('--lora-layout', o.loraLayout);
      args.push(...o.serverArg);
      log(`starting: node ${path.relative(process.cwd(), CLI)} serve ${args.join(' ')} --port 0 --json`);
      server = await spawnServer(CLI, args, positive('--startup-timeout', o.startupTimeout, false) * 1000, log);
      serverPid = server.pid;
      base = new URL(server.info.url);
      log(`server pid ${server.pid} on ${server.info.url}, ready in ${server.startup_s.toFixed(1)} s, RSS ${num(readRss(server.pid)?.rss_mib)} MiB`);
    }
    if (serverPid !== null) sampler = new RssSampler(serverPid, origin);
    const models = (await getJson(new URL('/v1/models', base), headers)) as { data: { id: string; experts?: string[]; router?: boolean }[] };
    const served = models.data[0];
    if (o.url) modelName = served.id;
    const experts = served.experts ?? [];
    const { kinds, dropped } = supportedKinds(askedKinds, experts, !!served.router);
    if (kinds.length === 0) throw new Error(`none of the persona kinds ${askedKinds.join(', ')} fits the model (${JSON.stringify(dropped)})`);
    for (const [k, why] of Object.entries(dropped)) log(`persona kind ${k} dropped: ${why}`);
    const pool = promptPool(promptWords);
    const wl = { seed, maxTokens, promptWords, kinds, experts, temperature: o.temperature !== undefined ? Number(o.temperature) : undefined };

    const rounds = positive('--rounds', o.rounds);
    const levels: LevelResult[] = [];
    for (let round = 1; round <= rounds; round++) for (const [i, mode] of modes.entries()) {
      const what = (mode.kind === 'closed' ? `concurrency ${mode.concurrency}` : `rate ${mode.rate}/s`) + (rounds > 1 ? ` (round ${round}/${rounds})` : '');
      const requests = requestsOf(i);
      const warmup = warmupOf(mode);
      log(`${what}: ${warmup} warm-up, then ${Number.isFinite(requests) ? `${requests} requests` : ''}${Number.isFinite(requests) && duration ? ' or ' : ''}${duration ? `${duration} s` : ''}`);
      const r = await runLevel({
        mode, warmup, requests, durationS: duration, base, model: served.id, spec: (index) => requestSpec(wl, pool, i, index),
        timeoutMs: positive('--timeout', o.timeout, false) * 1000, headers, windowSeconds, requestWindow,
        serverPid, rssSamples: sampler?.samples ?? [], origin, seed: seed + i, log,
      });
      levels.push(r);
      const errs = Object.values(r.errors_by_kind).reduce((a, b) => a + b, 0);
      log(`${what}: ${r.tok_per_s.toFixed(1)} tok/s, ${r.req_per_s.toFixed(2)} req/s over ${r.wall_s.toFixed(1)} s; TTFT p50 ${ms(r.ttft_ms.p50)} ms; ${errs} errors; server RSS ${num(r.rss_mib.at_end)} MiB`);
      if (server?.exit) throw new Error(`the server exited (${server.exit.signal ?? server.exit.code}) during ${what}; stderr:\n${server.stderrTail().slice(-4000)}`);
      if (levels.length < rounds * modes.length) await new Promise((res) => setTimeout(res, Number(o.pause) * 1000));
    }
    sampler?.stop();
    const othersEnd = await busiestProcesses([process.pid, ...(serverPid !== null ? [serverPid] : [])]);
    const rssFinal = serverPid !== null ? readRss(serverPid) : null;
    const stopped = server ? await server.stop() : null;

    // ---- report ---------------------------------------------------------------------------------
    const refIndex = Math.max(0, modes.findIndex((m) => m.kind === 'closed' && m.concurrency === 1));
    // levels[k] ran in round roundOf(k), and is measured against that round's reference level
    const roundOf = (k: number) => Math.floor(k / modes.length) + 1;
    const refOf = (k: number) => levels[(roundOf(k) - 1) * modes.length + refIndex];
    const ref = levels[refIndex];
    const levelLabel = (l: LevelResult) => (l.mode === 'closed' ? String(l.concurrency) : `${l.rate}/s`);
    const label = (l: LevelResult, k: number) => levelLabel(l) + (rounds > 1 ? ` r${roundOf(k)}` : '');
    const paired = rounds > 1
      ? pairedRounds(Array.from({ length: rounds }, (_, r) => levels.slice(r * modes.length, (r + 1) * modes.length).map((l) => l.tok_per_s)), refIndex, levels.slice(0, modes.length).map(levelLabel))
      : undefined;
    console.log(`\nserve bench: ${modelName}${modelPath ? ` (${modelPath})` : ''}, ${o.url ? o.url : `server pid ${serverPid}`}; ` +
      `max_tokens ${maxTokens.join('..')}, prompts ${promptWords.join('..')} words, personas ${kinds.join(',')}, seed ${seed}`);
    console.log(table(
      [o.rate ? 'rate' : 'clients', 'reqs', 'errors', 'tok/s', `vs ${levelLabel(ref)}`, 'req/s', 'TTFT p50/p90/p99 ms', 'TPOT p50/p90/p99 ms', 'latency p50/p99 ms', 'win first→last tok/s', 'RSS 500/end MiB', 'loop delay p99 client/server'],
      levels.map((l, k) => [
        label(l, k), l.requests.measured, l.requests.measured_errors, l.tok_per_s.toFixed(1), `${(l.tok_per_s / refOf(k).tok_per_s).toFixed(2)}x`, l.req_per_s.toFixed(2),
        `${ms(l.ttft_ms.p50)}/${ms(l.ttft_ms.p90)}/${ms(l.ttft_ms.p99)}`, `${ms(l.tpot_ms.p50)}/${ms(l.tpot_ms.p90)}/${ms(l.tpot_ms.p99)}`,
        `${ms(l.latency_ms.p50)}/${ms(l.latency_ms.p99)}`,
        l.windows.time_first_last.last_over_first === null ? `${num(l.windows.time_first_last.first)} (1 window)`
          : `${num(l.windows.time_first_last.first)}→${num(l.windows.time_first_last.last)} (${l.windows.time_first_last.last_over_first.toFixed(2)}x)`,
        `${num(l.rss_mib.after_500)}/${num(l.rss_mib.at_end)}`, `${l.event_loop_delay_ms.p99.toFixed(1)}/${l.server_event_loop_delay_p99_ms === null ? '—' : l.server_event_loop_delay_p99_ms.toFixed(1)} ms`,
      ]),
    ));
    for (const [k, l] of levels.entries()) {
      const errs = Object.entries(l.errors_by_kind);
      if (errs.length) console.log(`  ${label(l, k)}: errors ${errs.map(([kind, n]) => `${kind} ×${n}`).join(', ')}`);
      const full = l.windows.by_requests.filter((w) => w.last - w.first + 1 === l.windows.requests);
      console.log(`  ${label(l, k)}: cpu server ${num(l.cpu.server_cores as number, 2)} cores (main thread ${num(l.cpu.server_main_thread_cores as number, 2)}), client ${num(l.cpu.client_cores as number, 2)}, others ${num(l.cpu.others_cores as number, 2)}; ` +
        `tok/s per ${l.windows.requests} requests ${full.length ? full.map((w) => w.tok_per_s.toFixed(0)).join(' ') : '(no full window)'}; ` +
        `per ${l.windows.seconds} s ${l.windows.time.filter((w) => w.full).map((w) => w.tok_per_s.toFixed(0)).join(' ') || '(no full window)'}`);
    }
    if (paired) {
      console.log(`\npaired over ${rounds} rounds (each round's tok/s over its own ${paired.reference_level}-client figure):`);
      console.log(table([o.rate ? 'rate' : 'clients', 'tok/s median', 'tok/s per round', `vs ${paired.reference_level} median`, 'min', 'max'],
        paired.levels.map((p) => [p.level, p.median_tok_per_s.toFixed(1), p.tok_per_s.map((x) => x.toFixed(0)).join(' '), `${p.median_vs_reference.toFixed(2)}x`, `${p.min_vs_reference.toFixed(2)}x`, `${p.max_vs_reference.toFixed(2)}x`])));
    }
    if (server) console.log(`server RSS: ${num(sampler?.samples[0]?.rss_mib)} MiB when ready, ${num(rssFinal?.rss_mib)} MiB at the end (peak ${num(rssFinal?.hwm_mib)}); stopped in ${num(stopped?.stop_s, 2)} s (${stopped?.signal ?? `exit ${stopped?.code}`})`);

    const cpu = os.cpus()[0]?.model ?? 'unknown';
    const date = new Date().toISOString();
    const file = o.out ?? resultsFile(`serve-${slug(modelName)}-${date.slice(0, 10)}-${slug(cpu)}${o.tag ? `-${slug(o.tag)}` : ''}.json`);
    const report = {
      bench: 'serve',
      schema: 'personafuse-bench-serve/1',
      date,
      command: process.argv.slice(2),
      duration_s: (performance.now() - t00) / 1000,
      git: gitState(),
      machine: {
        cpu, cores: os.cpus().length, memory_gib: os.totalmem() / 2 ** 30, hostname: os.hostname(), node: process.version,
        load: { start: loadStart, end: machineLoad() }, busiest_other_processes: { start: othersStart, end: othersEnd },
      },
      server: {
        spawned: !!server, url: base.toString(), pid: serverPid, args: server?.args ?? null, model: modelName, model_path: modelPath,
        servable_additions: added, model_id: served.id, experts, router: !!served.router, startup_s: server?.startup_s ?? null,
        lora_layout: server?.info.loraLayout ?? null, threads: server?.info.threads ?? null, replicas: server?.info.replicas ?? null,
        malloc: server?.info.malloc ?? null,
        rss_mib: {
          when_ready: sampler?.samples[0]?.rss_mib ?? null, at_end: rssFinal?.rss_mib ?? null, peak: rssFinal?.hwm_mib ?? null,
          samples: sampler?.samples ?? [],
        },
        stop: stopped, stderr_tail: server ? server.stderrTail().slice(-4000) : null,
      },
      settings: {
        modes, requests: modes.map((_, i) => (Number.isFinite(requestsOf(i)) ? requestsOf(i) : null)), warmup: modes.map(warmupOf), duration_s: duration ?? null, rounds,
        max_tokens: maxTokens, prompt_words: promptWords, prompt_pool: pool.length, persona_kinds: kinds, persona_kinds_dropped: dropped,
        temperature: wl.temperature ?? 'model default', seed, window_seconds: windowSeconds, request_window: requestWindow,
      },
      reference_level: levelLabel(ref),
      levels: levels.map((l, k) => ({ ...l, ...(rounds > 1 ? { round: roundOf(k) } : {}), tok_per_s_vs_reference: l.tok_per_s / refOf(k).tok_per_s })),
      ...(paired ? { paired } : {}),
    };
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(report, null, 1)}\n`);
    fs.renameSync(`${file}.tmp`, file);
    console.log(`results: ${path.relative(process.cwd(), file)}`);
    const failed = levels.reduce((n, l) => n + l.requests.measured_errors, 0);
    if (failed) process.exitCode = 2;
  } finally {
    sampler?.stop();
    if (server && !server.exit) await server.stop();
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
