// What routing one message costs with a hidden-state router: one prefill of the user turn on the
// base model (no persona) to get its pooled hidden states, then the head (a few thousand
// multiply-adds). Timed beside a greedy generation of 32 tokens of the same message, on the
// model's worker thread as a server runs it.
//   node dist/bench/route_cost.js [--model DIR] [--router DIR] [--samples 20]   (with --router, the
//   experts in DIR's adapters/ load too)
// Without --router only the features are timed (the prefill is the whole cost that grows with the
// model; the head does not).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import { PersonaModel } from '../lib';
import { adapterFolders } from '../lib/cli/options';
import { median, resultsFile, table } from './harness';

const MESSAGES = [
  'so... they called. I start Monday!',
  'My landlord kept the whole deposit because of a scratch that was there when I moved in.',
  'can you look at my cover letter and be brutal about it',
  'I have been sleeping four hours a night for a month and I still cannot keep up at work.',
  'we are thinking of driving to the coast tonight, anyone in?',
  'My sister and my mother have not spoken since Christmas and I am stuck in the middle.',
];

async function main(): Promise<void> {
  const o = new Command()
    .option('--model <dir>', 'model folder', path.join(__dirname, '..', '..', 'models', 'persona-demo'))
    .option('--router <dir>', 'a hidden-state router for the model (default: none, features only)')
    .option('--samples <n>', 'messages timed', '20')
    .option('--out <file>', 'result JSON (default bench/results/route-cost-<model>-<date>.json)')
    .parse().opts();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-route-'));
  // a router routes to experts, so they load too: the model folder's adapters/ when it has one
  const adapterDir = path.join(o.model, 'adapters');
  const adapters = o.router && fs.existsSync(adapterDir) ? adapterFolders({ adapters: adapterDir }) : undefined;
  const model = await PersonaModel.load({ model: o.model, adapters, router: o.router, cacheDir: work });
  try {
    await model.ready();
    const n = Number(o.samples);
    const texts = Array.from({ length: n }, (_, i) => MESSAGES[i % MESSAGES.length]);
    await model.features([texts[0]]); // warm-up
    const features: number[] = [];
    const routes: number[] = [];
    const generations: number[] = [];
    for (const text of texts) {
      let t = performance.now();
      await model.features([text]);
      features.push(performance.now() - t);
      if (o.router) {
        t = performance.now();
        await model.route(text);
        routes.push(performance.now() - t);
      }
      t = performance.now();
      await model.generate({ messages: [{ role: 'user', content: text }], persona: { mix: {} }, maxNewTokens: 32, temperature: 0, ignoreEos: true });
      generations.push(performance.now() - t);
    }
    const result = {
      model: path.basename(path.resolve(o.model)), router: o.router ? path.basename(path.resolve(o.router)) : null, samples: n,
      featuresMedianMs: median(features), routeMedianMs: routes.length ? median(routes) : null, generate32MedianMs: median(generations),
      date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), loadavg: os.loadavg(),
    };
    process.stdout.write(`${table(['what', 'median ms'], [
      ['features (one prefill of the turn)', result.featuresMedianMs.toFixed(2)],
      ...(result.routeMedianMs !== null ? [['route (features + head + top-k)', result.routeMedianMs.toFixed(2)]] : []),
      ['generate 32 tokens of the same turn', result.generate32MedianMs.toFixed(1)],
    ])}\n`);
    const out = o.out ?? resultsFile(`route-cost-${result.model}-${result.date.slice(0, 10)}.json`);
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
