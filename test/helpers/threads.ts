// Changing the kernels' thread count safely in tests.
//
// The pool once had a start-up race (see threads.test.ts, "setThreads followed at once by a
// parallel call"): new workers could count a finished job against the next one and hang it. It is
// fixed (workers start from the pool's current job), and that child-process test guards it. The
// other tests still let new workers start before the first job, so a regression shows up in the
// dedicated test, as a clear failure, rather than as a hung jest worker anywhere in the suite.
import { kernels } from '../../lib';

export const SETTLE_MS = 20;

export async function setThreadsSettled(n: number): Promise<void> {
  kernels.setThreads(n);
  await new Promise((r) => setTimeout(r, SETTLE_MS));
}
