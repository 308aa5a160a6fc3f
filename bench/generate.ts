// Generation benchmark: decode tokens/s of the engine (KV cache, continuous batching, worker
// thread) on the committed realistic-width model, against
//   base        the plain model through the same engine (no adapter inputs)
//   merged      one mix merged into the weights (personafuse merge), same engine
//   injected    10 random rank-16 experts, every request its own k = 2 mix
//   serial      the same 8 mixed requests one after another (what a server without batching does)
//   transformers.js  @huggingface/transformers generating with the plain base model, same file:
//               batch 1, and the 8 requests as one padded batch (its best case) and one by one
// Greedy, same prompts (32 tokens), same max new tokens; tokens/s counts the tokens each really
// generated. Event-loop delay (p99) is sampled while the engine serves batch 32.
// Rounds interleave the variants; each number is the median over rounds.
//
//   node dist/bench/generate.js [--rounds N] [--new-tokens N] [--out FILE]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Command } from 'commander';
import { PersonaModel, mergeModel } from '../lib';
import { table } from './harness';
import { writeRandomAdapters } from './random_adapters';

const MODEL_DIR = path.join(__dirname, '..', '..', 'bench', 'models', 'llama-h512');
const EXPERTS = [
  'openness_high', 'openness_low', 'conscientiousness_high', 'conscientiousness_low', 'extraversion_high',
  'extraversion_low', 'agreeableness_high', 'agreeableness_low', 'neuroticism_high', 'neuroticism_low',
];
const PROMPT = 32;

function prompts(n: number, vocab: number): number[][] {
  return Array.from({ length: n }, (_, r) => Array.from({ length: PROMPT }, (_, i) => 3 + ((r * 131 + i * 37) % (vocab - 3))));
}

function rowMix(b: number): Record<string, number> {
  return { [EXPERTS[b % 10]]: 0.7, [EXPERTS[(b + 3) % 10]]: 0.3 };
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

type Run = () => Promise<number>; // resolves to the number of tokens generated

async function main(): Promise<void> {
  const o = new Command('generate')
    .option('--rounds <n>', 'interleaved rounds', '3')
    .option('--new-tokens <n>', 'max new tokens per request', '32')
    .option('--no-transformers-js', 'skip the transformers.js peer')
    .option('--out <file>', 'JSON results file')
    .parse(process.argv)
    .opts<{ rounds: string; newTokens: string; transformersJs: boolean; out?: string }>();
  const maxNewTokens = Number(o.newTokens);
  const cfg = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'config.json'), 'utf8'));
  const modelFile = path.join(MODEL_DIR, 'onnx', 'model.onnx');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-gen-bench-'));
  const opened: PersonaModel[] = [];
  try {
    const adapters = writeRandomAdapters(path.join(work, 'adapters'), EXPERTS, path.join(MODEL_DIR, 'config.json'), { rank: 16 });
    const mergedFile = path.join(work, 'merged.onnx');
    mergeModel({ model: modelFile, adapters, mix: rowMix(0), out: mergedFile });
    const load = async (file: string, withAdapters: boolean) => {
      const m = await PersonaModel.load({ model: file, adapters: withAdapters ? adapters : undefined, cacheDir: work, maxBatch: 32 });
      opened.push(m);
      return m;
    };
    const base = await load(modelFile, false);
    const merged = await load(mergedFile, false);
    const injected = await load(modelFile, true);

    const gen = (m: PersonaModel, rows: number[][], mix: (b: number) => Record<string, number>): Run => async () => {
      const res = await Promise.all(rows.map((ids, b) => m.generate({ inputIds: ids, persona: { mix: mix(b) }, maxNewTokens, temperature: 0 })));
      return res.reduce((n, r) => n + r.usage.completionTokens, 0);
    };
    const serial = (m: PersonaModel, rows: number[][]): Run => async () => {
      let n = 0;
      for (const [b, ids] of rows.entries()) n += (await m.generate({ inputIds: ids, persona: { mix: rowMix(b) }, maxNewTokens, temperature: 0 })).usage.completionTokens;
      return n;
    };
    const none = () => ({});

    // transformers.js, loaded from the same files (ESM-only package: a dynamic import)
    let tjs: { batched: (rows: number[][]) => Run; serial: (rows: number[][]) => Run } | undefined;
    if (o.transformersJs) {
      const importer = new Function('m', 'return import(m)') as (m: string) => Promise<typeof import('@huggingface/transformers')>;
      const T = await importer('@huggingface/transformers');
      T.env.allowRemoteModels = false;
      T.env.localModelPath = `${path.dirname(MODEL_DIR)}${path.sep}`;
      const model = await T.AutoModelForCausalLM.from_pretrained(path.basename(MODEL_DIR), { local_files_only: true, dtype: 'fp32', device: 'cpu' });
      const one = async (rows: number[][]) => {
        const B = rows.length;
        const ids = new T.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [B, PROMPT]);
        const mask = new T.Tensor('int64', new BigInt64Array(B * PROMPT).fill(1n), [B, PROMPT]);
        const out = (await model.generate({ input_ids: ids, attention_mask: mask, max_new_tokens: maxNewTokens, do_sample: false } as never)) as { dims: number[]; data: BigInt64Array };
        // tokens after the prompt up to and including the first EOS (id from config.json)
        let n = 0;
        const L = out.dims[1];
        for (let b = 0; b < B; b++) {
          for (let t = PROMPT; t < L; t++) {
            n++;
            if (Number(out.data[b * L + t]) === cfg.eos_token_id) break;
          }
        }
        return n;
      };
      tjs = {
        batched: (rows) => () => one(rows),
        serial: (rows) => async () => {
          let n = 0;
          for (const r of rows) n += await one([r]);
          return n;
        },
      };
    }

    const cases: { name: string; batch: number; run: Run }[] = [];
    for (const batch of [1, 8, 32]) {
      const rows = prompts(batch, cfg.vocab_size);
      cases.push({ name: `base b${batch}`, batch, run: gen(base, rows, none) });
      cases.push({ name: `injected b${batch}`, batch, run: gen(injected, rows, rowMix) });
      cases.push({ name: `merged b${batch}`, batch, run: gen(merged, rows, none) });
    }
    cases.push({ name: 'injected serial x8', batch: 8, run: serial(injected, prompts(8, cfg.vocab_size)) });
    if (tjs) {
      cases.push({ name: 'transformers.js b1', batch: 1, run: tjs.batched(prompts(1, cfg.vocab_size)) });
      cases.push({ name: 'transformers.js b8 (one padded batch)', batch: 8, run: tjs.batched(prompts(8, cfg.vocab_size)) });
      cases.push({ name: 'transformers.js serial x8', batch: 8, run: tjs.serial(prompts(8, cfg.vocab_size)) });
    }
    for (const c of cases) await c.run(); // warm-up: sessions, workers, arenas

    const tps: Record<string, number[]> = Object.fromEntries(cases.map((c) => [c.name, []]));
    // one histogram per measured run: re-enabling a histogram would count the disabled gap as a delay
    const delays: { p99: number; max: number }[] = [];
    for (let round = 0; round < Number(o.rounds); round++) {
      for (let j = 0; j < cases.length; j++) {
        const c = cases[(round + j) % cases.length];
        const loopDelay = c.name === 'injected b32' ? monitorEventLoopDelay({ resolution: 1 }) : undefined;
        loopDelay?.enable();
        const t0 = performance.now();
        const n = await c.run();
        tps[c.name].push(n / ((performance.now() - t0) / 1000));
        if (loopDelay) {
          loopDelay.disable();
          delays.push({ p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 });
        }
      }
    }
    const t = Object.fromEntries(Object.entries(tps).map(([k, v]) => [k, median(v)]));
    const ratio = (a: string, b: string) => (t[a] !== undefined && t[b] !== undefined ? t[a] / t[b] : null);
    const targets = [
      ...[1, 8, 32].map((b) => ({ what: `injected / base tokens/s, batch ${b}`, value: ratio(`injected b${b}`, `base b${b}`), required: 0.85 })),
      { what: 'mixed batch of 8 / the same 8 serially', value: ratio('injected b8', 'injected serial x8'), required: 5 },
      { what: 'injected b1 / transformers.js b1 (base model)', value: ratio('injected b1', 'transformers.js b1'), required: 1 },
      { what: 'injected b8 / transformers.js b8 padded batch', value: ratio('injected b8', 'transformers.js b8 (one padded batch)'), required: 1.5 },
      { what: 'injected b8 / transformers.js 8 serially', value: ratio('injected b8', 'transformers.js serial x8'), required: 1.5 },
    ];
    const p99 = median(delays.map((d) => d.p99));
    const maxDelay = Math.max(...delays.map((d) => d.max));
    console.log(`\nmodel bench/models/llama-h512 (hidden ${cfg.hidden_size}, ${cfg.num_hidden_layers} layers), prompt ${PROMPT}, ` +
      `max new tokens ${maxNewTokens}, greedy; median tokens/s over ${o.rounds} rounds`);
    console.log(table(['case', 'tokens/s'], Object.entries(t).map(([k, v]) => [k, v.toFixed(0)])));
    console.log(table(['ratio', 'value', 'target', ''], targets.map((x) => [
      x.what, x.value === null ? '—' : `${x.value.toFixed(2)}×`, `${x.required}×`, x.value === null ? '' : x.value >= x.required ? 'met' : 'NOT met',
    ])));
    console.log(`event-loop delay while serving batch 32 (engine in its worker thread): p99 ${p99.toFixed(1)} ms (median over runs), max ${maxDelay.toFixed(1)} ms`);
    const cpu = os.cpus()[0]?.model ?? 'unknown';
    const file = o.out ?? path.join(__dirname, '..', '..', 'bench', 'results',
      `generate-${new Date().toISOString().slice(0, 10)}-${cpu.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')}.json`);
    fs.writeFileSync(file, `${JSON.stringify({
      bench: 'generate', date: new Date().toISOString(), cpu, cores: os.cpus().length, loadavg: os.loadavg(),
      model: 'bench/models/llama-h512', prompt_tokens: PROMPT, max_new_tokens: maxNewTokens, rounds: Number(o.rounds),
      tokens_per_s: tps, median_tokens_per_s: t, targets, event_loop_delay_ms: { p99, max: maxDelay, runs: delays },
    }, null, 2)}\n`);
    console.log(`results: ${path.relative(process.cwd(), file)}`);
  } finally {
    for (const m of opened) await m.dispose();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
