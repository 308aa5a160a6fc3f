// How the server runs the decoder when `serve --threads` / `--replicas` are not given: how many
// engine replicas (worker threads, each with its own session and batch: lib/engine/runner_pool.ts)
// and how many onnxruntime threads each session gets.
//
// A small model's decode step is many tiny ops; split across an intra-op pool, each is joined again,
// and when the event loop takes one of the pool's cores for a moment every op waits for it. A large
// model's ops carry enough work that a second thread pays for the wait. Measured on the 2-core
// machine (bench serve, closed loop, tok/s at 1 / 8 clients; bench/results/experiments/serve-*-exp-threads-*.json):
//
//   models/persona-demo, 16 MB of weights     1 thread  683 / 1424    2 threads  668 / 1044
//   llama-h512, 10 random experts, 31 MB      1 thread  291 /  792    2 threads  399 /  698
//   llama-1b-slice, 981 MB                    1 thread 20.5 / 52.2    2 threads 22.4 / 65.7
//
// One single-threaded session, though, leaves the other core idle under load (the machine was 1.3-1.5
// cores busy at 8 clients), and every joiner's prefill stalls its whole batch. So a small model gets one
// single-threaded replica per core instead: at 8 / 32 clients, interleaved runs of the demo gave
// 1,431-1,708 / 1,475-1,903 tok/s with two replicas against 1,136-1,322 / 1,284-1,289 with one, TTFT p50
// at 32 clients 39-48 ms against 383 ms, the same at 1 client, for 70-150 MB more memory; three
// replicas on the two cores gave no more (bench/results/experiments/serve-persona-demo-*-exp-replicas-*.json).
// A large model keeps one replica with every core (a copy of 1 GB of weights per core is not what a
// server should take unasked). The size threshold is a judgement between the 31 MB and 981 MB models
// measured, on 2 cores only.
//
// Cores are what this process may use, a cgroup's CPU quota included (lib/cores.ts).
import { usableCores } from '../cores';
import { shareCores } from '../engine/runner_pool';

export { usableCores };

/** Models under this size on disk are served by single-threaded replicas, one per core. */
export const SMALL_MODEL_BYTES = 64 * 2 ** 20;

/** Most replicas the server starts by itself for a small model (each holds a copy of the weights). */
export const SMALL_MODEL_REPLICAS_MAX = 4;

/**
 * The server's onnxruntime threads per replica and replica count. What `serve --threads` /
 * `--replicas` give is kept; when only one is given the other shares the cores out (replicas x
 * threads <= cores, at least 1), so `--threads 2` on two cores is one replica of two threads, not two
 * of two, and `--replicas 2` on a large model two replicas of half the cores each.
 */
export function servePlan(modelBytes: number, cores: number = usableCores(), given: { threads?: number; replicas?: number } = {}): { threads: number; replicas: number } {
  // threads x replicas <= cores, whichever of the two is given
  if (given.threads !== undefined && given.replicas !== undefined) return { threads: given.threads, replicas: given.replicas };
  if (given.threads !== undefined) return { threads: given.threads, replicas: shareCores(cores, given.threads) };
  if (given.replicas !== undefined) return { threads: shareCores(cores, given.replicas), replicas: given.replicas };
  if (modelBytes >= SMALL_MODEL_BYTES) return { threads: cores, replicas: 1 };
  return { threads: 1, replicas: Math.min(cores, SMALL_MODEL_REPLICAS_MAX) };
}
