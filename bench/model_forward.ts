// End-to-end forward benchmark: a committed realistic-width model (bench/models/llama-h512:
// hidden 512, 4 layers, KV cache, by default; --model bench/models/llama-1b-slice: four layers of
// Llama-3.2-1B's shapes, hidden 2048, whose weights bench/synthetic_weights.ts writes) run four ways
// by onnxruntime-node, in the same process and interleaved round by round so machine noise hits all
// of them alike:
//   base      the original export
//   injected  the same model with A_in/B_in inputs at all 7 targets of every layer, 10 random
//             rank-16 experts loaded, each row a different mix of k = 2 (folded once, as the
//             engine does when a request joins; the fold is timed on its own)
//   bank      the same experts and mixes with the whole bank in the graph (loraLayout 'bank'):
//             each row feeds its gates [10]
//   merged    one fixed mix merged into the weights (personafuse merge): zero adapter overhead
// Phases: decode (1 new token per row over a 128-token cache; batch 1, 8, 32) and prefill (64
// tokens per row; batch 1, 8). Throughput = tokens per second; the target is injected (per-row)
// >= 85% of base at batch 1 and 8, and the bank's ratio is reported beside it ('auto' picks the bank
// on wide models, lib/model/lora_layout.ts).
// --vocab N runs the same layers with an N-token vocabulary instead of the committed 512 (the
// embedding and LM head widened with random weights in a temporary copy): real decoders have
// 32k-150k tokens, and the LM head they read every step dilutes the adapters' share.
//
// Sessions load every variant's weights inline (lib/onnx/inline_weights.ts); --external-weights reads
// them from the external data files instead.
//
//   node dist/bench/model_forward.js [--model DIR] [--external-weights] [--budget MS] [--threads N] [--vocab N] [--out FILE]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { PersonaModel, mergeModel } from '../lib';
import { usableCores } from '../lib/cores';
import { decoderFeeds } from '../lib/decoder/feeds';
import { widenVocab } from './widen_vocab';
import { ensureSyntheticWeights } from './synthetic_weights';
import { openDecoderSession } from '../lib/decoder/session_options';
import { median, resultsFile, slug, summarize, Stats, fmtUs, table, rng } from './harness';
import { resolveModelFile } from '../lib/model/persona_model';
import { POLES, rowMix, writeRandomAdapters } from './random_adapters';

const DEFAULT_MODEL = path.join(__dirname, '..', '..', 'bench', 'models', 'llama-h512');
const EXPERTS = POLES;
const RANK = 16;
const K = 2;
const PAST = 128;
const PREFILL = 64;
const TARGET = 0.85;

type Feeds = Record<string, ort.Tensor>;
interface Variant { name: 'base' | 'injected' | 'bank' | 'merged'; session: ort.InferenceSession; feeds: Feeds }

interface CaseResult {
  phase: 'decode' | 'prefill';
  batch: number;
  tokens_per_call: number;
  stats: Record<string, Stats>;
  tokens_per_s: Record<string, number>;
  injected_vs_base: number;
  injected_vs_base_paired: number;
  bank_vs_base_paired: number;
  merged_vs_base: number;
  target_met: boolean;
}

function decoderInputs(cfg: { num_key_value_heads: number; hidden_size: number; num_attention_heads: number; head_dim?: number; vocab_size: number },
  session: ort.InferenceSession, batch: number, phase: 'decode' | 'prefill'): Feeds {
  const next = rng(7);
  const headDim = cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;
  const past = session.inputNames.filter((n) => n.startsWith('past_key_values.'));
  if (phase === 'prefill') {
    const rows = Array.from({ length: batch }, () => Array.from({ length: PREFILL }, () => Math.floor(next() * cfg.vocab_size)));
    return decoderFeeds({ inputNames: session.inputNames, past: past.map((name) => ({ name, heads: cfg.num_key_value_heads, headDim, type: 'float32' })) }, rows, 0);
  }
  const feeds: Feeds = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from({ length: batch }, () => BigInt(Math.floor(next() * cfg.vocab_size))), [batch, 1]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(batch * (PAST + 1)).fill(1n), [batch, PAST + 1]),
    position_ids: new ort.Tensor('int64', new BigInt64Array(batch).fill(BigInt(PAST)), [batch, 1]),
  };
  const n = batch * cfg.num_key_value_heads * PAST * headDim;
  for (const name of past) {
    feeds[name] = new ort.Tensor('float32', Float32Array.from({ length: n }, () => next() - 0.5), [batch, cfg.num_key_value_heads, PAST, headDim]);
  }
  return feeds;
}

/** Interleaved rounds (start rotating), one call per sample, until the budget and >= 7 rounds. */
async function measure(variants: Variant[], budgetMs: number): Promise<Record<string, number[]>> {
  for (const v of variants) for (let i = 0; i < 3; i++) await v.session.run(v.feeds);
  const samples: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v.name, []]));
  const t0 = performance.now();
  for (let round = 0; round < 7 || performance.now() - t0 < budgetMs; round++) {
    for (let j = 0; j < variants.length; j++) {
      const v = variants[(round + j) % variants.length];
      const s = performance.now();
      const out = await v.session.run(v.feeds);
      samples[v.name].push((performance.now() - s) * 1000);
      for (const t of Object.values(out)) t.dispose?.();
    }
  }
  return samples;
}

async function main(): Promise<void> {
  const o = new Command('model_forward')
    .option('--model <dir>', 'model folder (onnx/model.onnx, config.json)', DEFAULT_MODEL)
    .option('--budget <ms>', 'time budget of each case', '4000')
    .option('--threads <n>', 'onnxruntime intraOpNumThreads (default: all cores)')
    .option('--vocab <n>', 'widen the vocabulary to n tokens (random embedding and LM head)')
    .option('--external-weights', 'sessions read weights from the external data files (default: inline bytes)')
    .option('--out <file>', 'JSON results file')
    .parse(process.argv)
    .opts<{ model: string; externalWeights?: boolean; budget: string; threads?: string; vocab?: string; out?: string }>();
  const MODEL_DIR = path.resolve(o.model);
  const cfg = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'config.json'), 'utf8'));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-model-bench-'));
  try {
    const original = resolveModelFile(MODEL_DIR);
    ensureSyntheticWeights(original, console.log);
    if (o.vocab) cfg.vocab_size = Number(o.vocab);
    const modelFile = o.vocab ? widenVocab(original, cfg.vocab_size, path.join(work, `model-vocab${cfg.vocab_size}.onnx`)) : original;
    const adapters = writeRandomAdapters(path.join(work, 'adapters'), EXPERTS, path.join(MODEL_DIR, 'config.json'), { rank: RANK });
    const threads = o.threads ? Number(o.threads) : usableCores();
    const model = await PersonaModel.load({ model: modelFile, adapters, cacheDir: work, intraOpNumThreads: threads, loraLayout: 'per-row' });
    const banked = await PersonaModel.load({ model: modelFile, adapters, cacheDir: work, intraOpNumThreads: threads, loraLayout: 'bank' });
    const mergedFile = path.join(work, 'merged.onnx');
    mergeModel({ model: modelFile, adapters, mix: rowMix(EXPERTS, 0), out: mergedFile });
    // every variant loads its weights the same way: inline (lib/onnx/inline_weights.ts) unless --external-weights
    const open = (file: string) => openDecoderSession(file, { intraOpNumThreads: threads, inlineWeights: !o.externalWeights });
    const base = await open(modelFile);
    const merged = await open(mergedFile);
    const injected = await open(model.injectedFile);
    const bank = await open(banked.injectedFile);
    console.log(`model ${path.relative(process.cwd(), modelFile)}: hidden ${cfg.hidden_size}, ${cfg.num_hidden_layers} layers, vocab ${cfg.vocab_size}, ` +
      `${model.sites.length} adapted modules, ${EXPERTS.length} experts r=${RANK}, k=${K}; onnxruntime threads ${threads}`);

    const results: CaseResult[] = [];
    const folds: { batch: number; fold_us: number }[] = [];
    for (const phase of ['decode', 'prefill'] as const) {
      for (const batch of phase === 'decode' ? [1, 8, 32] : [1, 8]) {
        const plain = decoderInputs(cfg, base, batch, phase);
        const mixes = Array.from({ length: batch }, (_, b) => rowMix(EXPERTS, b));
        const f0 = performance.now();
        const adapterFeeds = model.adapterFeeds(mixes);
        if (phase === 'decode') folds.push({ batch, fold_us: (performance.now() - f0) * 1000 });
        const variants: Variant[] = [
          { name: 'base', session: base, feeds: plain },
          // the injected model as written (logits at every position, as base and merged compute them)
          { name: 'injected', session: injected, feeds: { ...plain, ...adapterFeeds } },
          { name: 'bank', session: bank, feeds: { ...plain, ...banked.adapterFeeds(mixes) } },
          { name: 'merged', session: merged, feeds: plain },
        ];
        const samples = await measure(variants, Number(o.budget));
        const stats = Object.fromEntries(Object.entries(samples).map(([n, s]) => [n, summarize(s, 1)]));
        const tokens = batch * (phase === 'decode' ? 1 : PREFILL);
        const tps = Object.fromEntries(Object.entries(stats).map(([n, s]) => [n, (tokens * 1e6) / s.median_us]));
        const paired = median(samples.base.map((b, i) => b / samples.injected[i]));
        results.push({
          phase, batch, tokens_per_call: tokens, stats, tokens_per_s: tps,
          injected_vs_base: tps.injected / tps.base, injected_vs_base_paired: paired,
          bank_vs_base_paired: median(samples.base.map((b, i) => b / samples.bank[i])),
          merged_vs_base: tps.merged / tps.base, target_met: paired >= TARGET,
        });
      }
    }
    console.log('\nforward latency (median) and throughput; injected/base = its throughput as a share of base (target >= 85%)');
    console.log(table(
      ['phase', 'batch', 'base', 'injected', 'bank', 'merged', 'base tok/s', 'injected tok/s', 'injected/base', 'paired', 'bank/base paired', 'merged/base', 'target'],
      results.map((r) => [
        r.phase, String(r.batch), fmtUs(r.stats.base.median_us), fmtUs(r.stats.injected.median_us), fmtUs(r.stats.bank.median_us), fmtUs(r.stats.merged.median_us),
        r.tokens_per_s.base.toFixed(0), r.tokens_per_s.injected.toFixed(0),
        `${(100 * r.injected_vs_base).toFixed(0)}%`, `${(100 * r.injected_vs_base_paired).toFixed(0)}%`, `${(100 * r.bank_vs_base_paired).toFixed(0)}%`,
        `${(100 * r.merged_vs_base).toFixed(0)}%`, r.batch > 8 ? '' : r.target_met ? 'met' : 'NOT met',
      ]),
    ));
    console.log(`\nfolding a batch's mixes into A_in/B_in of all ${model.sites.length} sites (once per joining request): ` +
      folds.map((f) => `batch ${f.batch}: ${fmtUs(f.fold_us)}`).join(', '));
    const cpu = os.cpus()[0]?.model ?? 'unknown';
    const file = o.out ?? resultsFile(`model-${path.basename(MODEL_DIR)}${o.vocab ? `-vocab${o.vocab}` : ''}-${new Date().toISOString().slice(0, 10)}-${slug(cpu)}.json`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `${JSON.stringify({
      bench: 'model_forward', date: new Date().toISOString(), cpu, cores: os.cpus().length, loadavg: os.loadavg(),
      onnxruntime_threads: threads, weights: o.externalWeights ? 'external data files' : 'inline bytes', model: { dir: path.relative(process.cwd(), MODEL_DIR), ...cfg }, experts: EXPERTS.length, rank: RANK, k: K,
      past: PAST, prefill: PREFILL, target: TARGET, folds, results,
    }, null, 2)}\n`);
    console.log(`results: ${path.relative(process.cwd(), file)}`);
    await model.dispose();
    await banked.dispose();
    await bank.release();
    await base.release();
    await merged.release();
    await injected.release();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
