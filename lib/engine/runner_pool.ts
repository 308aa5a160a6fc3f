// Several runners (engine workers, each with its own session) behind one SequenceRunner: data-parallel
// replicas of the decoder in one process.
//
// Why: a small model's decode step is many tiny operators, and splitting each over two onnxruntime
// threads costs more in joins than it gains (lib/server/threads.ts), so one session keeps to one core
// while the others sit idle under load; and a session runs one call at a time, so every joiner's
// prefill stalls the decode step of the whole batch. Two sessions on two cores each decode their own
// rows, and one's prefill overlaps the other's steps. Each request lives in one replica from submit to
// done, so what it generates is exactly what that replica alone would give (rows never see each
// other: lib/engine/batcher.ts).
//
// Dispatch: the replica with the fewest open requests (submitted and not done, features calls
// included) among those that have not failed; ties go to the lowest index, so light traffic stays on
// one warm replica.
import { usableCores } from '../cores';
import type { BatchStats, SequenceRequest, SequenceSink } from './batcher';
import type { SequenceRunner } from './runner';

/** Most replicas a model may ask for (each is a thread with a copy of the weights). */
export const MAX_REPLICAS = 64;

/** Cores each of `parts` gets when they are shared out (replicas' threads, or replicas of so many
 *  threads): at least 1. */
export function shareCores(cores: number, parts: number): number {
  return Math.max(1, Math.floor(cores / parts));
}

/** onnxruntime threads for each of `replicas` engine workers when none were asked for: the usable
 *  cores shared out; undefined for one replica (its session takes the session default, every core). */
export function replicaThreads(replicas: number): number | undefined {
  return replicas > 1 ? shareCores(usableCores(), replicas) : undefined;
}

export class RunnerPool implements SequenceRunner {
  readonly #runners: readonly SequenceRunner[];
  /** open requests and features calls per replica */
  readonly #open: number[];
  /** request id -> replica */
  readonly #owner = new Map<number, number>();
  #next = 1;

  constructor(runners: readonly SequenceRunner[]) {
    if (runners.length === 0) throw new Error('RunnerPool needs at least one runner');
    this.#runners = runners;
    this.#open = runners.map(() => 0);
  }

  get size(): number {
    return this.#runners.length;
  }

  submit(req: SequenceRequest, sink: SequenceSink): number {
    const id = req.id ?? this.#next++;
    const r = this.#leastLoaded();
    this.#open[r]++;
    this.#owner.set(id, r);
    const forget = () => {
      if (this.#owner.delete(id)) this.#open[r]--;
    };
    try {
      this.#runners[r].submit({ ...req, id }, {
        token: (t, logprobs) => sink.token(t, logprobs),
        done: (reason, error) => {
          forget();
          sink.done(reason, error);
        },
      });
    } catch (err) {
      forget();
      throw err;
    }
    return id;
  }

  cancel(id: number): void {
    const r = this.#owner.get(id);
    if (r !== undefined) this.#runners[r].cancel(id);
  }

  async features(rows: number[][]): Promise<Float32Array[]> {
    const r = this.#leastLoaded();
    this.#open[r]++;
    try {
      return await this.#runners[r].features(rows);
    } finally {
      this.#open[r]--;
    }
  }

  async ready(): Promise<void> {
    await Promise.all(this.#runners.map((r) => r.ready()));
  }

  /** The first failed replica's reason: the pool reports itself as healthy as its worst replica, so a
   *  readiness probe takes the server out rather than leave it at part of its capacity unnoticed;
   *  meanwhile dispatch keeps to the replicas that still run. */
  get failure(): string | undefined {
    for (const r of this.#runners) if (r.failure !== undefined) return r.failure;
    return undefined;
  }

  /** Rows and waiting requests summed over the replicas; widths are the widest replica's. */
  stats(): BatchStats {
    const all = this.#runners.map((r) => r.stats());
    return {
      running: all.reduce((n, s) => n + s.running, 0),
      waiting: all.reduce((n, s) => n + s.waiting, 0),
      kvWidth: Math.max(...all.map((s) => s.kvWidth)),
      longest: Math.max(...all.map((s) => s.longest)),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.#runners.map((r) => r.close()));
  }

  /** The healthy replica with the fewest open requests (the least loaded of all when none is healthy,
   *  which then answers with its failure). */
  #leastLoaded(): number {
    let best = -1;
    for (let r = 0; r < this.#open.length; r++) {
      if (this.#runners[r].failure !== undefined) continue;
      if (best < 0 || this.#open[r] < this.#open[best]) best = r;
    }
    return best >= 0 ? best : this.#open.indexOf(Math.min(...this.#open));
  }
}
