// How many onnxruntime threads the server's decoder session gets when `serve --threads` is not given.
//
// The server's main thread (HTTP, SSE, tokenising, routing) shares the cores with onnxruntime's
// intra-op pool. A small model's decode step is many tiny ops, each split across the pool and joined
// again; when the event loop takes one of those threads' core for a moment, every op waits for it. A
// large model's ops carry enough work that the second thread pays for the wait. Measured on the 2-core
// machine (bench serve, closed loop, tok/s at 1 / 8 clients; bench/results/experiments/serve-*-exp-threads-*.json):
//
//   models/persona-demo, 16 MB of weights     1 thread  683 / 1424    2 threads  668 / 1044
//   llama-h512, 10 random experts, 31 MB      1 thread  291 /  792    2 threads  399 /  698
//   llama-1b-slice, 981 MB                    1 thread 20.5 / 52.2    2 threads 22.4 / 65.7
//
// So: below SMALL_MODEL_BYTES the pool leaves one core to the event loop, which a server under load
// gains by (llama-h512 gives up some single-client speed for it); from there on it takes them all
// (our decoder sessions' default, lib/decoder/session_options.ts). The threshold is a judgement between
// the 31 MB and 981 MB models measured, on 2 cores only; on a many-core machine one core fewer costs
// little either way. `serve --threads` overrides it.
//
// Cores are what this process may use: os.availableParallelism() (Node 20's libuv reads the CPU
// affinity but not a cgroup's CPU quota), capped by the cgroup v2 quota in /sys/fs/cgroup/cpu.max,
// so a container limited to 2 CPUs on a 64-core node counts 2.
import * as fs from 'node:fs';
import * as os from 'node:os';

/** Models under this size on disk leave a core to the event loop. */
export const SMALL_MODEL_BYTES = 64 * 2 ** 20;

export function serveThreads(modelBytes: number, cores: number = usableCores()): number {
  return modelBytes >= SMALL_MODEL_BYTES || cores <= 1 ? cores : cores - 1;
}

/** os.availableParallelism(), capped by a cgroup v2 CPU quota ("<quota> <period>", or "max <period>"). */
export function usableCores(cpuMax = '/sys/fs/cgroup/cpu.max'): number {
  const cores = os.availableParallelism();
  let text: string;
  try {
    text = fs.readFileSync(cpuMax, 'utf8');
  } catch {
    return cores; // no cgroup v2 here
  }
  const [quota, period] = text.trim().split(/\s+/).map(Number);
  if (!(quota > 0) || !(period > 0)) return cores; // 'max': no quota
  return Math.max(1, Math.min(cores, Math.ceil(quota / period)));
}
