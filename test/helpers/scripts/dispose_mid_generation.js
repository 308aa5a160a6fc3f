// Run by test/dispose.test.ts in a child process (a native abort would take a jest worker down with
// it): loads the demo model from the built package, starts streams, disposes the model while they
// decode, and reports how each ended. Exit 0 and one JSON line on stdout when nothing crashed.
//   argv: <rounds> <worker: 1|0> [replicas]
const path = require('node:path');
const { PersonaModel, DisposedError } = require(path.join(__dirname, '..', '..', '..', 'dist', 'lib'));

const DEMO = path.join(__dirname, '..', '..', '..', 'models', 'persona-demo');
const rounds = Number(process.argv[2] ?? 3);
const worker = process.argv[3] !== '0';
const replicas = Number(process.argv[4] ?? 1);

async function round(i) {
  const model = await PersonaModel.load({ model: DEMO, adapters: require('./demo_adapters')(DEMO), router: path.join(DEMO, 'router'), worker, replicas, cacheDir: process.env.PF_CACHE_DIR });
  const ended = [];
  let tokens = 0;
  let disposing;
  const requests = Array.from({ length: 6 }, async (_, j) => {
    try {
      for await (const ev of model.stream({ prompt: `request ${i}.${j}: tell me about the weather`, persona: j % 2 ? 'auto' : { mix: { openness_high: 1 } }, maxNewTokens: 200, ignoreEos: true, temperature: 0 })) {
        if (!ev.done && ++tokens === 20) disposing = model.dispose();
      }
      ended.push('finished');
    } catch (err) {
      ended.push(err instanceof DisposedError ? 'DisposedError' : `other: ${err && err.message}`);
    }
  });
  await Promise.all(requests);
  await disposing;
  let after;
  try {
    await model.generate({ prompt: 'again', maxNewTokens: 2 });
    after = 'generated';
  } catch (err) {
    after = err instanceof DisposedError ? 'DisposedError' : `other: ${err && err.message}`;
  }
  return { ended, after };
}

require('./run_rounds')(rounds, round);
