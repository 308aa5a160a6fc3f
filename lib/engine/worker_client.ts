// Main-thread side of the engine worker (see worker.ts): the same submit/cancel/close as the
// Batcher, over messages. The worker is unref'd while no request is open, so an idle model
// does not keep the process alive.
//
// From the compiled package the worker runs dist/lib/engine/worker.js. From the TypeScript
// sources (ts-jest), a worker cannot load .ts files, so it first installs a require hook that
// transpiles them with the `typescript` compiler (a dev dependency, present wherever sources run).
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { SequenceRequest, SequenceSink } from './batcher';
import type { SequenceRunner } from './runner';
import type { WorkerInit } from './worker';
import { foldMix, SiteShape } from './mix_slots';

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

export class WorkerClient implements SequenceRunner {
  readonly #worker: Worker;
  readonly #sinks = new Map<number, SequenceSink>();
  #next = 1;
  #fatal: string | undefined;
  /** the sites with their banks: requests are folded here, on the thread that holds them */
  readonly #sites: readonly SiteShape[];
  /** the bank is in the graph: requests go as they are (their mix becomes gates in the worker) */
  readonly #gated: boolean;

  constructor(init: Omit<WorkerInit, 'sites'>, sites: readonly SiteShape[]) {
    this.#sites = sites;
    this.#gated = init.gates !== undefined;
    const fromSources = __filename.endsWith('.ts');
    const entry = path.join(__dirname, fromSources ? 'worker.ts' : 'worker.js');
    this.#worker = fromSources
      ? new Worker(TS_BOOTSTRAP, { eval: true, workerData: { ...init, sites: this.#shapes(), entry } })
      : new Worker(entry, { workerData: { ...init, sites: this.#shapes() } });
    this.#worker.on('message', (m: { type: string; id: number; token: number; reason: 'stop' | 'length' | 'abort'; error?: string; message?: string }) => {
      if (m.type === 'fatal') return this.#failAll(`The generation worker could not load the model: ${m.message}`);
      const sink = this.#sinks.get(m.id);
      if (!sink) return;
      if (m.type === 'token') sink.token(m.token);
      else if (m.type === 'done') {
        this.#forget(m.id);
        sink.done(m.reason, m.error);
      }
    });
    this.#worker.on('error', (err) => this.#failAll(`The generation worker failed: ${err.message}`));
    this.#worker.on('exit', () => this.#failAll('The generation worker exited'));
    this.#worker.unref();
  }

  submit(req: SequenceRequest, sink: SequenceSink): number {
    const id = this.#next++;
    if (this.#fatal) {
      const message = this.#fatal;
      queueMicrotask(() => sink.done('abort', message));
      return id;
    }
    if (this.#sinks.size === 0) this.#worker.ref();
    this.#sinks.set(id, sink);
    if (this.#gated) {
      this.#worker.postMessage({ type: 'submit', id, req });
      return id;
    }
    const folded = foldMix(this.#sites, req.mix);
    const buffers = [...folded.a, ...folded.b].map((x) => x.buffer as ArrayBuffer);
    this.#worker.postMessage({ type: 'submit', id, req: { ...req, folded } }, buffers);
    return id;
  }

  cancel(id: number): void {
    const sink = this.#sinks.get(id);
    if (!sink) return;
    this.#forget(id);
    this.#worker.postMessage({ type: 'cancel', id });
    sink.done('abort');
  }

  async close(): Promise<void> {
    this.#fatal ??= 'The generation engine is closed';
    this.#failAll(this.#fatal);
    await this.#worker.terminate();
  }

  /** the sites without their banks (native handles cannot cross threads) */
  #shapes(): SiteShape[] {
    return this.#sites.map(({ din, dout, rank, aInput, bInput }) => ({ din, dout, rank, aInput, bInput }));
  }

  #forget(id: number): void {
    this.#sinks.delete(id);
    if (this.#sinks.size === 0) this.#worker.unref();
  }

  #failAll(message: string): void {
    this.#fatal ??= message;
    for (const [id, sink] of [...this.#sinks]) {
      this.#forget(id);
      sink.done('abort', message);
    }
  }
}
