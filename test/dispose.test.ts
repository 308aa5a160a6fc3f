// dispose() in the middle of generation (issue 15): every open request rejects with DisposedError,
// a later call too, and the process never aborts. Before, the worker was terminated while
// session.run computed, and the native run's callback into the dead thread aborted the process
// (`terminate called after throwing an instance of 'Napi::Error'`, exit 134) in most trials.
// The model runs in a child process from the built package, so an abort fails this test instead
// of killing the jest worker.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const SCRIPT = path.join(__dirname, 'helpers', 'scripts', 'dispose_mid_generation.js');
const ROUTE_SCRIPT = path.join(__dirname, 'helpers', 'scripts', 'dispose_mid_route.js');

describe('dispose() during generation', () => {
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-dispose-'));
  afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

  test.each([['worker thread (default)', '1', '1'], ['worker: false', '0', '1'], ['two replicas (the server\'s default for small models)', '1', '2']])('%s: 4 rounds of 6 streams disposed mid-decode all reject with DisposedError; exit 0', (_name, worker, replicas) => {
    const r = spawnSync(process.execPath, [SCRIPT, '4', worker, replicas], { encoding: 'utf8', timeout: 90_000, env: { ...process.env, PF_CACHE_DIR: cacheDir } });
    if (r.status !== 0) throw new Error(`the child exited with ${r.status} (signal ${r.signal}):\n${r.stdout}\n${r.stderr}`);
    const rounds = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ended: string[]; after: string }[];
    expect(rounds).toHaveLength(4);
    for (const { ended, after } of rounds) {
      // 200 tokens each could not have finished after 20 tokens in all: every request was cut
      expect(ended).toEqual(Array(6).fill('DisposedError'));
      expect(after).toBe('DisposedError');
    }
  });

  // the router's features calls are prefills on the engine's session, beside the batch: dispose()
  // waits for them, they reject with DisposedError, and the closing worker keeps the process alive
  test.each([['one replica', '1'], ['two replicas', '2']])('%s: 8 rounds of 4 route() calls disposed while queued or running all reject with DisposedError; exit 0', (_name, replicas) => {
    const r = spawnSync(process.execPath, [ROUTE_SCRIPT, '8', replicas], { encoding: 'utf8', timeout: 90_000, env: { ...process.env, PF_CACHE_DIR: cacheDir } });
    if (r.status !== 0) throw new Error(`the child exited with ${r.status} (signal ${r.signal}):\n${r.stdout}\n${r.stderr}`);
    const line = r.stdout.trim().split('\n').pop() ?? '';
    // no line at all: the process exited before its work was done (a worker unref'd while closing)
    expect(line).toMatch(/^\[/);
    const rounds = JSON.parse(line) as { ended: string[] }[];
    expect(rounds).toHaveLength(8);
    for (const { ended } of rounds) for (const e of ended) expect(['routed', 'DisposedError']).toContain(e);
  });
});
