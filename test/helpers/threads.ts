// Changing the kernels' thread count safely in tests.
//
// kernels/cpu/thread_pool.cc has a race (see threads.test.ts, "setThreads followed at once by
// a parallel call"): a worker created by setThreads(n >= 2) after any parallel job has run
// starts with `seen = 0` != the pool's generation, so it wakes at once for the finished job
// and decrements the active count; if a new job starts during that wake-up, the count ends at
// -1 and the caller of that job waits forever (a process-wide hang: the main thread for a sync
// call, or the next setThreads for an async one). Letting the new workers go through that
// spurious wake-up before any job starts avoids it, so every test that changes the thread
// count uses this and only the dedicated child-process test exercises the race.
import { kernels } from '../../lib';

export const SETTLE_MS = 20;

export async function setThreadsSettled(n: number): Promise<void> {
  kernels.setThreads(n);
  await new Promise((r) => setTimeout(r, SETTLE_MS));
}
