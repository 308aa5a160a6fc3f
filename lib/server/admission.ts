// Admission control: at most maxBatch + maxQueue chat requests admitted and not finished; past
// that a request is refused (429) before it reaches the model, so a burst cannot grow the
// engine's queue, and the memory its prompts hold, without bound.
//
// It also keeps the server's own picture of the batch: the engine seats requests first come,
// first served as slots free, so the first maxBatch open tickets are the running ones and the
// rest wait. That gives running / waiting when the engine reports no load, and each request's
// queue time (from admission to the moment it would take a slot), which the engine does not
// report per request.

export interface Ticket {
  /** performance.now() at admission */
  readonly admittedAt: number;
  /** ms from admission to a slot; undefined while it waits */
  readonly queueMs: number | undefined;
  /** the request finished (or failed): its place goes to the next one; idempotent */
  release(): void;
}

export class Admission {
  readonly #open = new Set<TicketImpl>();
  readonly #maxBatch: number;
  readonly #capacity: number;
  readonly #onStart: (queueMs: number) => void;

  /** onStart: called once per ticket with its queue time, when it takes a slot */
  constructor(maxBatch: number, maxQueue: number, onStart: (queueMs: number) => void = () => undefined) {
    this.#maxBatch = maxBatch;
    this.#capacity = maxBatch + maxQueue;
    this.#onStart = onStart;
  }

  /** requests admitted and not finished */
  get admitted(): number {
    return this.#open.size;
  }

  get running(): number {
    return Math.min(this.#open.size, this.#maxBatch);
  }

  get waiting(): number {
    return Math.max(0, this.#open.size - this.#maxBatch);
  }

  /** A ticket, or undefined when the server is full (answer 429). */
  tryAdmit(): Ticket | undefined {
    if (this.#open.size >= this.#capacity) return undefined;
    const t = new TicketImpl(performance.now(), (ticket) => {
      if (this.#open.delete(ticket)) this.#seat();
    });
    this.#open.add(t);
    if (this.#open.size <= this.#maxBatch) this.#start(t, 0);
    return t;
  }

  /** Seats the oldest waiting tickets while slots are free (a Set iterates in admission order). */
  #seat(): void {
    let slot = 0;
    for (const t of this.#open) {
      if (slot++ >= this.#maxBatch) return;
      if (t.queueMs === undefined) this.#start(t, performance.now() - t.admittedAt);
    }
  }

  #start(t: TicketImpl, queueMs: number): void {
    t.queueMs = queueMs;
    this.#onStart(queueMs);
  }
}

class TicketImpl implements Ticket {
  queueMs: number | undefined;
  readonly #done: (t: TicketImpl) => void;

  constructor(readonly admittedAt: number, done: (t: TicketImpl) => void) {
    this.#done = done;
  }

  release(): void {
    this.#done(this);
  }
}
