// Main-thread side of the engine worker (see worker.ts): the same submit/cancel/stats/close as
// the Batcher, over messages. The worker is unref'd while no request is open, so an idle model
// does not keep the process alive. close() asks the worker to finish its step and release its
// session, and waits for the thread to end (terminate() only if it has not after CLOSE_GRACE_MS).
//
// From the compiled package the worker runs dist/lib/engine/worker.js. From the TypeScript
// sources (ts-jest), a worker cannot load .ts files, so it first installs a require hook that
// transpiles them with the `typescript` compiler (a dev dependency, present wherever sources run).
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { BatchStats, SequenceRequest, SequenceSink } from './batcher';
import type { RowEvent } from './outbox';
import type { SequenceRunner } from './runner';
import type { WorkerInit } from './worker';

const TS_BOOTSTRAP = `
const fs = require('node:fs');
const ts = require('typescript');
require.extensions['.ts'] = (m, file) => {
  const out = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
    fileName: file,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, resolveJsonModule: true },
  });
  m._compile(out.outputText, file);
};
require(require('node:worker_threads').workerData.entry);
`;

/** How long close() waits for the worker to finish its step before terminating it. */
const CLOSE_GRACE_MS = 30_000;

export class WorkerClient implements SequenceRunner {
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  readonly #ready: Promise<void>;
  #markReady!: () => void;
  #markFailed!: (err: Error) => void;
  #stats: BatchStats = { running: 0, waiting: 0, kvWidth: 0, longest: 0 };
  readonly #featureCalls = new Map<number, { resolve(d: Float32Array[]): void; reject(e: Error): void }>();
  readonly #sinks = new Map<number, SequenceSink>();
  #next = 1;
  #fatal: string | undefined;
  #closing = false;
  constructor(init: WorkerInit) {
    const fromSources = __filename.endsWith('.ts');
    const entry = path.join(__dirname, fromSources ? 'worker.ts' : 'worker.js');
    this.#worker = fromSources
      ? new Worker(TS_BOOTSTRAP, { eval: true, workerData: { ...init, entry } })
      : new Worker(entry, { workerData: init });
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()));
    this.#ready = new Promise((resolve, reject) => {
      this.#markReady = resolve;
      this.#markFailed = reject;
    });
    this.#ready.catch(() => undefined); // a failure is reported to whoever awaits ready()
    this.#worker.on('message', (m: { type: string; id: number; error?: string; message?: string; stats?: BatchStats; data?: Float32Array[]; events?: RowEvent[] }) => {
      if (m.type === 'ready') return this.#markReady();
      if (m.type === 'fatal') return this.#failAll(`The generation worker could not load the model: ${m.message}`);
      if (m.type === 'stats') {
        this.#stats = m.stats!;
        return;
      }
      if (m.type === 'features') {
        const call = this.#featureCalls.get(m.id);
        this.#featureCalls.delete(m.id);
        this.#unrefWhenIdle();
        if (m.error !== undefined) call?.reject(new Error(m.error));
        else call?.resolve(m.data!);
        return;
      }
      if (m.type === 'events') this.#deliverAll(m.events!);
    });
    this.#worker.on('error', (err) => this.#failAll(`The generation worker failed: ${err.message}`));
    this.#worker.on('exit', () => this.#failAll('The generation worker exited'));
    this.#worker.unref();
  }

  submit(req: SequenceRequest, sink: SequenceSink): number {
    const id = req.id ?? this.#next++;
    if (this.#fatal) {
      const message = this.#fatal;
      queueMicrotask(() => sink.done('abort', message));
      return id;
    }
    if (this.#sinks.size === 0) this.#worker.ref();
    this.#sinks.set(id, sink);
    // the request goes as it is: the worker folds its mix straight into its slot
    this.#worker.postMessage({ type: 'submit', id, req });
    return id;
  }

  cancel(id: number): void {
    const sink = this.#sinks.get(id);
    if (!sink) return;
    this.#forget(id);
    this.#worker.postMessage({ type: 'cancel', id });
    sink.done('abort');
  }

  features(rows: number[][]): Promise<Float32Array[]> {
    if (this.#fatal) return Promise.reject(new Error(this.#fatal));
    const id = this.#next++;
    this.#worker.ref();
    return new Promise((resolve, reject) => {
      this.#featureCalls.set(id, { resolve, reject });
      this.#worker.postMessage({ type: 'features', id, rows });
    });
  }

  /** The batch as of the worker's last report; requests posted since count as waiting. */
  stats(): BatchStats {
    const running = Math.min(this.#stats.running, this.#sinks.size);
    return { ...this.#stats, running, waiting: this.#sinks.size - running };
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#fatal ??= 'The generation engine is closed';
    this.#failAll(this.#fatal);
    this.#worker.ref(); // the close must finish even when nothing else keeps the process alive
    this.#worker.postMessage({ type: 'close' });
    const grace = setTimeout(() => void this.#worker.terminate(), CLOSE_GRACE_MS);
    grace.unref();
    await this.#exited;
    clearTimeout(grace);
  }

  /** A step's events: a sink that throws does not cost the other rows theirs (the error is raised after). */
  #deliverAll(events: readonly RowEvent[]): void {
    let failure: unknown;
    for (const e of events) {
      try {
        this.#deliver(e);
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
  }

  /** A row's token or end, as the worker reported it; a row already forgotten (cancelled) hears nothing. */
  #deliver(e: RowEvent): void {
    const sink = this.#sinks.get(e.id);
    if (!sink) return;
    if (e.type === 'token') sink.token(e.token, e.logprobs);
    else {
      this.#forget(e.id);
      sink.done(e.reason, e.error);
    }
  }

  #forget(id: number): void {
    this.#sinks.delete(id);
    this.#unrefWhenIdle();
  }

  /** Lets the process exit while no request is open, unless close() is waiting for the thread to end:
   *  a message that arrives during the close (the answer to a features call the close cut short)
   *  must not unref it, or the process exits with the thread still running and aborts. */
  #unrefWhenIdle(): void {
    if (!this.#closing && this.#sinks.size === 0 && this.#featureCalls.size === 0) this.#worker.unref();
  }

  /** Why the worker can run nothing any more (set once it failed to load, failed or exited). */
  get failure(): string | undefined {
    return this.#fatal;
  }

  /** Resolves once the worker's session is open; rejects when it could not open (or closed first). */
  ready(): Promise<void> {
    this.#worker.ref();
    return this.#ready.finally(() => this.#unrefWhenIdle());
  }

  #failAll(message: string): void {
    this.#fatal ??= message;
    this.#markFailed(new Error(message));
    for (const [id, call] of [...this.#featureCalls]) {
      this.#featureCalls.delete(id);
      call.reject(new Error(message));
    }
    for (const [id, sink] of [...this.#sinks]) {
      this.#forget(id);
      sink.done('abort', message);
    }
  }
}
