// Where the engine's time goes under closed-loop load (dev tool, plain JS, not part of `npm run bench`):
//   node bench/tools/step_split.js [--concurrency 8] [--requests 400] [--threads 1] [--model DIR] [--out FILE]
// Runs the model on the main thread (worker: false, so onnxruntime's run can be wrapped here), bank
// layout as serve uses it, `concurrency` requests in flight (48 new tokens, prompts from the
// validation split, three persona mixes), and times every session.run: prompts (input_ids [B, S > 1],
// the joiners' prefill) apart from decode steps ([B, 1]). Prints and writes calls, total and mean
// milliseconds and mean rows of each, and the tok/s of the run.
const fs = require('node:fs');
const path = require('node:path');
const ort = require('onnxruntime-node');
const { PersonaModel } = require('../../dist/lib');
const { adapterFolders } = require('../../dist/lib/cli/options');

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const repo = path.join(__dirname, '..', '..');
const dir = args.model ?? path.join(repo, 'models', 'persona-demo');
const concurrency = Number(args.concurrency ?? 8);
const requests = Number(args.requests ?? 400);

const calls = { prefill: { n: 0, ms: 0, rows: 0 }, decode: { n: 0, ms: 0, rows: 0 } };
let timing = false;
const run = ort.InferenceSession.prototype.run;
ort.InferenceSession.prototype.run = async function (feeds, ...rest) {
  const t = performance.now();
  const out = await run.call(this, feeds, ...rest);
  if (timing && feeds.input_ids) {
    const [B, S] = feeds.input_ids.dims;
    const c = calls[S > 1 ? 'prefill' : 'decode'];
    c.n++;
    c.ms += performance.now() - t;
    c.rows += B;
  }
  return out;
};

async function main() {
  const adapters = adapterFolders({ adapters: path.join(dir, 'adapters') });
  const experts = Object.keys(adapters);
  const model = await PersonaModel.load({
    model: dir, adapters, loraLayout: 'bank', worker: false,
    intraOpNumThreads: Number(args.threads ?? 1), cacheDir: fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'pf-split-')),
  });
  const prompts = fs.readFileSync(path.join(repo, 'data', 'situations', 'validation.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).text);
  const mixes = [{ openness_high: 0.6, agreeableness_high: 0.4 }, {}, { extraversion_low: 1 }].map((m) => Object.fromEntries(Object.entries(m).filter(([e]) => experts.includes(e))));
  let next = 0;
  let tokens = 0;
  const one = async () => {
    const k = next++;
    const r = await model.generate({ prompt: prompts[k % prompts.length], maxNewTokens: 48, persona: { mix: mixes[k % 3] }, seed: k, temperature: 0.7 });
    tokens += r.tokens.length;
  };
  await Promise.all(Array.from({ length: concurrency }, one)); // warm-up
  tokens = 0;
  timing = true;
  const t0 = performance.now();
  const end = next + requests;
  await Promise.all(Array.from({ length: concurrency }, async () => { while (next < end) await one(); }));
  const seconds = (performance.now() - t0) / 1000;
  await model.dispose();
  const summary = (c) => ({ calls: c.n, ms: Math.round(c.ms), meanMs: +(c.ms / c.n).toFixed(3), meanRows: +(c.rows / c.n).toFixed(2) });
  const result = { model: path.basename(dir), concurrency, requests, threads: Number(args.threads ?? 1), tokens, seconds: +seconds.toFixed(2), tokPerS: Math.round(tokens / seconds), prefill: summary(calls.prefill), decode: summary(calls.decode) };
  console.log(JSON.stringify(result));
  if (args.out) fs.writeFileSync(args.out, `${JSON.stringify(result, null, 2)}\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
