// What a request joining a per-row batch costs before its first decode step, on a real width
// (bench/models/llama-1b-slice, ten random rank-16 experts on all seven modules of its layers):
//   fold+copy   the path generation takes with the worker thread: kernels.foldExperts into fresh
//               arrays on the main thread (foldMix), handed over (transferred, not copied), then
//               copied into the request's slot (MixSlots.put)
//   direct      folding straight into the slot memory (MixSlots.set: foldExperts with `slots`),
//               the path of { worker: false }, and what a worker that held the banks would do
// Bytes are what each writes: a k = 2 fold writes k*r*(din + dout) floats per site once; the
// copy writes them a second time. Reported beside one decode step of the same model at batch 8.
//   node dist/bench/join_cost.js [--model DIR] [--k 2] [--samples 30]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import { PersonaModel } from '../lib';
import { foldMix, MixSlots } from '../lib/decoder/mix_slots';
import { mixEntries } from '../lib/decoder/mix';
import { median, resultsFile, table } from './harness';
import { POLES, writeRandomAdapters } from './random_adapters';

async function main(): Promise<void> {
  const o = new Command()
    .option('--model <dir>', 'model folder', path.join(__dirname, '..', '..', 'bench', 'models', 'llama-1b-slice'))
    .option('--k <n>', 'experts per request', '2')
    .option('--samples <n>', 'joins timed per path', '30')
    .option('--out <file>', 'result JSON (default bench/results/join-cost-<model>-<date>.json)')
    .parse().opts();
  const k = Number(o.k);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-join-'));
  const adapters = writeRandomAdapters(path.join(work, 'adapters'), POLES, path.join(o.model, 'config.json'), { rank: 16 });
  const model = await PersonaModel.load({ model: o.model, adapters, cacheDir: work, loraLayout: 'per-row', worker: false, maxBatch: 8 });
  try {
    const layout = model.slotLayout;
    if (layout.kind !== 'per-row') throw new Error('expected the per-row layout');
    const sites = layout.sites;
    const mix = Object.fromEntries(POLES.slice(0, k).map((e, i) => [e, i === 0 ? 0.6 : 0.4]));
    const entries = mixEntries(mix, model.experts);
    const bytes = sites.reduce((n, s) => n + 4 * k * s.rank * (s.din + s.dout), 0);
    const slots = new MixSlots(sites);
    slots.set(7, entries); // room for 8 rows at k
    const foldCopy: number[] = [];
    const foldOnly: number[] = [];
    const direct: number[] = [];
    for (let i = 0; i < Number(o.samples); i++) {
      const t0 = performance.now();
      const folded = foldMix(sites, entries);
      const t1 = performance.now();
      slots.put(i % 8, folded);
      const t2 = performance.now();
      slots.set(i % 8, entries);
      const t3 = performance.now();
      foldOnly.push(t1 - t0);
      foldCopy.push(t2 - t0);
      direct.push(t3 - t2);
    }
    // one decode step at batch 8, for scale
    const prompts = Array.from({ length: 8 }, (_, b) => Array.from({ length: 16 }, (_, t) => 1 + ((b * 31 + t * 7) % 1000)));
    const gen = await Promise.all(prompts.map((p) => model.generate({ inputIds: p, persona: { mix }, maxNewTokens: 17, temperature: 0, ignoreEos: true })));
    const t0 = performance.now();
    await Promise.all(prompts.map((p) => model.generate({ inputIds: p, persona: { mix }, maxNewTokens: 33, temperature: 0, ignoreEos: true })));
    const stepMs = (performance.now() - t0) / 33;
    const result = {
      model: path.basename(o.model), k, sites: sites.length, samples: Number(o.samples), bytesPerFold: bytes,
      foldCopy: { medianMs: median(foldCopy), bytesWritten: 2 * bytes, foldMs: median(foldOnly) },
      direct: { medianMs: median(direct), bytesWritten: bytes },
      decodeStepBatch8Ms: stepMs, generated: gen.length,
      date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.availableParallelism(),
    };
    process.stdout.write(`${table(['path', 'median ms per join', 'bytes written', 'share of a batch-8 decode step'], [
      ['fold + copy (worker path)', result.foldCopy.medianMs.toFixed(3), result.foldCopy.bytesWritten, `${((100 * result.foldCopy.medianMs) / stepMs).toFixed(1)}%`],
      ['direct into the slot', result.direct.medianMs.toFixed(3), result.direct.bytesWritten, `${((100 * result.direct.medianMs) / stepMs).toFixed(1)}%`],
    ])}\ndecode step at batch 8: ${stepMs.toFixed(1)} ms\n`);
    const out = o.out ?? resultsFile(`join-cost-${path.basename(o.model)}-${result.date.slice(0, 10)}.json`);
    fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await model.dispose();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
