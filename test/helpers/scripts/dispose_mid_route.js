// Run by test/dispose.test.ts in a child process: dispose() while the router's features calls (a
// prefill of each message on the engine's session) are in flight or still queued behind the session's
// opening. Each call must reject with DisposedError, and the process must wait for the worker threads
// to end: before, the answer to a cut-short features call unref'd a closing worker, the process exited
// under it and aborted (or exited 0 with its work unfinished).
//   argv: <rounds> <replicas>
// Exit 0 and one JSON line on stdout when nothing crashed.
const path = require('node:path');
const { PersonaModel, DisposedError } = require(path.join(__dirname, '..', '..', '..', 'dist', 'lib'));

const DEMO = path.join(__dirname, '..', '..', '..', 'models', 'persona-demo');
const rounds = Number(process.argv[2] ?? 5);
const replicas = Number(process.argv[3] ?? 1);

async function round(i) {
  const model = await PersonaModel.load({ model: DEMO, adapters: require('./demo_adapters')(DEMO), router: path.join(DEMO, 'router'), replicas, cacheDir: process.env.PF_CACHE_DIR });
  // even rounds: the calls queue behind the session's opening; odd rounds: the session is open and they run
  if (i % 2 === 1) await model.ready();
  const calls = Array.from({ length: 4 }, (_, j) => model.route(`round ${i}, call ${j}: my flight got cancelled and I am stuck at the airport`).then(
    () => 'routed',
    (err) => (err instanceof DisposedError ? 'DisposedError' : `other: ${err && err.message}`),
  ));
  await new Promise((resolve) => setImmediate(resolve));
  await model.dispose();
  return { ended: await Promise.all(calls) };
}

require('./run_rounds')(rounds, round);
