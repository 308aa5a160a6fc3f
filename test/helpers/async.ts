// Evidence that an async variant does its work off the main thread: while its Promise is
// pending, the event loop keeps turning.
//
//   D       the sync call's duration (the work the async call must not do on the main thread)
//   callMs  how long the async call takes to return its Promise (parse + queue only)
//   maxGap  the longest stall of a 1 ms timer loop while the Promise is pending
// A sync call behind a Promise facade (work done before returning, or inside a later
// setImmediate as onnxruntime-node's js backend does) shows callMs ≈ D or maxGap ≈ D.
import { performance } from 'node:perf_hooks';

export interface OffThreadEvidence {
  syncMs: number;
  callMs: number;
  pendingMs: number;
  maxGapMs: number;
  ticks: number;
}

export async function measureOffThread(
  syncRun: () => unknown, asyncRun: () => Promise<unknown>,
): Promise<OffThreadEvidence> {
  let syncMs = Infinity;
  for (let i = 0; i < 2; i++) {
    const t = performance.now();
    syncRun();
    syncMs = Math.min(syncMs, performance.now() - t);
  }
  const t0 = performance.now();
  const p = asyncRun();
  const callMs = performance.now() - t0;
  let settled = false;
  p.then(
    () => { settled = true; },
    () => { settled = true; },
  );
  let ticks = 0;
  let maxGapMs = 0;
  let last = performance.now();
  while (!settled) {
    await new Promise((r) => setTimeout(r, 1));
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    ticks++;
  }
  await p;
  return { syncMs, callMs, pendingMs: performance.now() - t0, maxGapMs, ticks };
}

/** Why the evidence does not show off-main-thread work, or undefined when it does. */
export function offThreadProblem(ev: OffThreadEvidence, minSyncMs = 40): string | undefined {
  const msg = JSON.stringify(ev, (_k, v) => (typeof v === 'number' ? Math.round(v * 10) / 10 : v));
  if (!(ev.syncMs >= minSyncMs)) return `workload too small to tell (sync took < ${minSyncMs} ms): ${msg}`;
  if (!(ev.callMs < ev.syncMs / 4)) return `the async call did the work before returning: ${msg}`;
  if (!(ev.ticks >= 5 && ev.maxGapMs < ev.syncMs / 2)) return `the event loop stalled while the Promise was pending: ${msg}`;
  return undefined;
}

/**
 * Up to `attempts` measurements; passes on the first that shows the work off the main thread.
 * Timing on a shared 2-core machine can be disturbed once; a Promise facade over sync work
 * fails every attempt.
 */
export async function expectOffThread(
  syncRun: () => unknown, asyncRun: () => Promise<unknown>, attempts = 3, minSyncMs = 40,
): Promise<void> {
  const problems: string[] = [];
  for (let i = 0; i < attempts; i++) {
    const problem = offThreadProblem(await measureOffThread(syncRun, asyncRun), minSyncMs);
    if (problem === undefined) return;
    problems.push(problem);
  }
  throw new Error(`no attempt showed the work off the main thread:\n${problems.join('\n')}`);
}

/**
 * Stronger evidence for ops that write into caller arrays: the output is watched while the main
 * thread spins in JavaScript without ever yielding to the event loop.
 *   - right after the async call returns, the watched element is not yet written (the call did
 *     not do the work before returning);
 *   - it becomes written while the main thread is still spinning (so the work is not waiting for
 *     a later turn of the event loop: it runs on another thread).
 * `prepare` resets the outputs, `start` makes the call, `written` reads the watched element
 * (the last element of the output; performance.now() in the loop keeps the read from being
 * hoisted). Retried up to `attempts` times, as the first check can lose a race when the main
 * thread is descheduled for longer than the whole job right after queueing it.
 */
export async function expectWritesWhileMainThreadSpins(
  prepare: () => void, start: () => Promise<unknown>, written: () => boolean,
  attempts = 3, timeoutMs = 5000,
): Promise<void> {
  const problems: string[] = [];
  for (let i = 0; i < attempts; i++) {
    prepare();
    if (written()) throw new Error('prepare() must leave the watched element unwritten');
    const p = start();
    const atReturn = written();
    const t0 = performance.now();
    let seen = atReturn;
    while (!seen && performance.now() - t0 < timeoutMs) seen = written();
    const spunMs = performance.now() - t0;
    await p;
    if (!written()) throw new Error('the watched element was never written, not even after the Promise resolved');
    if (!atReturn && seen) return;
    problems.push(atReturn ? 'written before the async call returned' : `not written after spinning ${Math.round(spunMs)} ms on the main thread`);
  }
  throw new Error(`no attempt showed the work off the main thread: ${problems.join('; ')}`);
}
