// Graceful shutdown: drain() turns the server unready (GET /ready 503, new /v1 requests 503 with
// Connection: close, so load balancers and clients go elsewhere), lets the requests in flight,
// streams included, finish until the deadline, then aborts the rest (a stream gets an error
// event, a plain request a 503). The server keeps listening meanwhile: Kubernetes keeps probing
// /ready during termination, and a refused connection there reads as a crash, not a drain.
// A request counts as in flight from its parsed headers until its response is closed (server.ts),
// so a body still arriving when the drain starts is waited for (and answered 503), and a finished
// generation whose last bytes are still being written is waited for too. When the drain is over the
// server stops listening and still reads for a moment (startServer's drain), so a request on a
// connection accepted in that last instant is answered too.

/** How long aborted requests get to write their error before the connections are closed anyway. */
const ABORT_GRACE_MS = 1000;

export interface DrainResult {
  /** requests still running at the deadline, aborted */
  aborted: number;
}

export class Drainer {
  #draining = false;
  #result: Promise<DrainResult> | undefined;
  readonly #inFlight = new Set<() => void>();
  #onIdle: (() => void) | undefined;

  get draining(): boolean {
    return this.#draining;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Tracks a request until the returned release() is called; abort() ends it at the deadline. */
  track(abort: () => void): () => void {
    const entry = () => abort();
    this.#inFlight.add(entry);
    return () => {
      if (this.#inFlight.delete(entry) && this.#inFlight.size === 0) this.#onIdle?.();
    };
  }

  /** Stops taking requests and waits for those in flight, at most timeoutMs (then aborts them). */
  drain(timeoutMs: number): Promise<DrainResult> {
    this.#draining = true;
    this.#result ??= this.#run(timeoutMs);
    return this.#result;
  }

  async #run(timeoutMs: number): Promise<DrainResult> {
    if (await this.idleWithin(timeoutMs)) return { aborted: 0 };
    const late = [...this.#inFlight];
    for (const abort of late) abort();
    await this.idleWithin(ABORT_GRACE_MS);
    return { aborted: late.length };
  }

  /** true when nothing is in flight within ms */
  idleWithin(ms: number): Promise<boolean> {
    if (this.#inFlight.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#onIdle = undefined;
        resolve(false);
      }, ms);
      this.#onIdle = () => {
        clearTimeout(timer);
        this.#onIdle = undefined;
        resolve(true);
      };
    });
  }
}
