// The worker's token and done messages, sent one batch per step instead of one message per row.
// A decode step reports a token for every row at once; posted one by one, each woke the main
// thread for one 'message' event. Batched, serve gained +2.9% at 8 clients and +5.7% at 32 in
// paired runs (bench/results/experiments/*exp-paired-kvstore-outbox.json). Messages are queued as the batcher reports them and leave together in one
// microtask: after the step's synchronous part, before the next session.run is scheduled (its
// run starts in a setImmediate), so a token is never held back for a step. Order is kept: a row's
// tokens, then its done, exactly as reported. The worker also flushes before it posts a step's
// stats, so stats that count a row as gone never arrive before that row's done.
//   out: { type: 'events', events: RowEvent[] }
import type { SampledLogprobs } from './sampler';
import type { FinishReason } from './batcher';

export type RowEvent =
  | { type: 'token'; id: number; token: number; logprobs?: SampledLogprobs }
  | { type: 'done'; id: number; reason: FinishReason; error?: string };

export class Outbox {
  #queued: RowEvent[] = [];
  #scheduled = false;

  constructor(private readonly post: (m: { type: 'events'; events: RowEvent[] }) => void) {}

  push(event: RowEvent): void {
    this.#queued.push(event);
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** Sends what is queued now (also called before the port closes). */
  flush(): void {
    this.#scheduled = false;
    if (this.#queued.length === 0) return;
    const events = this.#queued;
    this.#queued = [];
    this.post({ type: 'events', events });
  }
}
