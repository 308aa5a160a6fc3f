// What a request joining a per-row batch costs before its first decode step, on a real width
// (bench/models/llama-1b-slice, ten random rank-16 experts on all seven modules of its layers):
//   fold+copy   the path generation took until the worker held banks of its own (kept here, in
//               the benchmark only, as the baseline): kernels.foldExperts into fresh arrays on the
//               main thread, handed to the worker (transferred, not copied), copied into the slot
//   direct      the path now: folded straight into the slot memory the next step feeds
//               (MixSlots.set: foldExperts with `slots`), in the worker
// Bytes are what each writes: a k = 2 fold writes k*r*(din + dout) floats per site once; the
// copy writes them a second time. Reported beside one decode step of the same model at batch 8.
//   node dist/bench/join_cost.js [--model DIR] [--k 2] [--samples 30]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import { PersonaModel } from '../lib';
import { foldExperts } from '../lib/kernels';
import { MixEntries, MixSlots, SiteShape } from '../lib/decoder/mix_slots';
import { mixEntries } from '../lib/decoder/mix';
import { median, resultsFile, table } from './harness';
import { POLES, writeRandomAdapters } from './random_adapters';

/** The old path's work: each site folded at the request's k into fresh arrays, then copied
 *  row by row into slot `slot` of buffers laid out at k (the same bytes the slot holds). */
function foldThenCopy(sites: readonly SiteShape[], entries: MixEntries, into: { a: Float32Array[]; b: Float32Array[] }, slot: number): void {
  const k = entries.length;
  const ids = Int32Array.from(entries.map(([id]) => id));
  const weights = Float32Array.from(entries.map(([, w]) => w));
  sites.forEach((s, i) => {
    const R = k * s.rank;
    if (R === 0 || !s.bank) return;
    const fa = new Float32Array(s.din * R);
    const fb = new Float32Array(R * s.dout);
    foldExperts(s.bank, ids, weights, k, { a: fa, b: fb, rankCapacity: R });
    into.a[i].set(fa, slot * s.din * R);
    into.b[i].set(fb, slot * R * s.dout);
  });
}

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
    const direct: number[] = [];
    const staged = { a: sites.map((s) => new Float32Array(8 * s.din * k * s.rank)), b: sites.map((s) => new Float32Array(8 * k * s.rank * s.dout)) };
    for (let i = 0; i < Number(o.samples); i++) {
      const t0 = performance.now();
      foldThenCopy(sites, entries, staged, i % 8);
      const t1 = performance.now();
      slots.set(i % 8, entries);
      const t2 = performance.now();
      foldCopy.push(t1 - t0);
      direct.push(t2 - t1);
    }
    // one decode step at batch 8, for scale
    const prompts = Array.from({ length: 8 }, (_, b) => Array.from({ length: 16 }, (_, t) => 1 + ((b * 31 + t * 7) % 1000)));
    const gen = await Promise.all(prompts.map((p) => model.generate({ inputIds: p, persona: { mix }, maxNewTokens: 17, temperature: 0, ignoreEos: true })));
    const t0 = performance.now();
    await Promise.all(prompts.map((p) => model.generate({ inputIds: p, persona: { mix }, maxNewTokens: 33, temperature: 0, ignoreEos: true })));
    const stepMs = (performance.now() - t0) / 33;
    const result = {
      model: path.basename(o.model), k, sites: sites.length, samples: Number(o.samples), bytesPerFold: bytes,
      foldCopy: { medianMs: median(foldCopy), bytesWritten: 2 * bytes },
      direct: { medianMs: median(direct), bytesWritten: bytes },
      decodeStepBatch8Ms: stepMs, generated: gen.length,
      date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.availableParallelism(),
    };
    process.stdout.write(`${table(['path', 'median ms per join', 'bytes written', 'share of a batch-8 decode step'], [
      ['fold + copy (the path before)', result.foldCopy.medianMs.toFixed(3), result.foldCopy.bytesWritten, `${((100 * result.foldCopy.medianMs) / stepMs).toFixed(1)}%`],
      ['direct into the slot (now)', result.direct.medianMs.toFixed(3), result.direct.bytesWritten, `${((100 * result.direct.medianMs) / stepMs).toFixed(1)}%`],
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
