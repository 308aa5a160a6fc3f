// Worker-thread side of the engine: an onnxruntime session of the injected model and a Batcher,
// so session.run never blocks the main thread's event loop. With the per-row layout the worker
// reads the adapter folders and holds the banks itself, so a joining request's mix is folded
// (kernels.foldExperts) straight into its slot of the inputs the next step feeds: one write, no
// fold into staging arrays on the main thread, no copy here. With the bank in the graph the mix
// is the row's gates (no fold).
//   in:  { type: 'submit', id, req } | { type: 'cancel', id } | { type: 'features', id, rows } | { type: 'close' }
//   out: { type: 'events', events } (each row's tokens and done, one message per step: lib/engine/outbox.ts) | { type: 'fatal', message }
//        | { type: 'ready' } (the session is open) | { type: 'features', id, data | error } | { type: 'stats', stats } (after a step, at most every STATS_EVERY_MS, and when idle)
// 'close' ends every request, waits for the step in flight, releases the session and closes the
// port, so the thread ends by itself: terminating it while session.run computes would let the
// native run call back into a dead environment and abort the whole process.
import { parentPort, workerData } from 'node:worker_threads';
import type * as ort from 'onnxruntime-node';
import type { DecoderIO } from '../decoder/feeds';
import { openDecoderSession } from '../decoder/session_options';
import { Batcher, BatchStats, SequenceRequest } from './batcher';
import { openSiteBanks, SlotLayoutSource, slotLayoutOf } from '../decoder/slot_layout';
import { Outbox } from './outbox';

type Message = { type: 'submit'; id: number; req: SequenceRequest } | { type: 'cancel'; id: number } | { type: 'features'; id: number; rows: number[][] } | { type: 'close' };

export interface WorkerInit {
  /** the injected .onnx file */
  file: string;
  executionProviders: string[];
  intraOpNumThreads?: number;
  inlineWeights?: boolean;
  /** how rows feed their persona, as plain data: the banks are built here from it */
  layout: SlotLayoutSource;
  hidden?: string;
  io: DecoderIO;
  padId: number;
  maxBatch: number;
}

const STATS_EVERY_MS = 50;

function main(): void {
  const port = parentPort!;
  const init = workerData as WorkerInit;
  const pending: Message[] = [];
  let batcher: Batcher | undefined;
  let session: ort.InferenceSession | undefined;
  const outbox = new Outbox((m) => port.postMessage(m));

  let failed = false;
  const handle = (m: Message): void => {
    if (!batcher) {
      // the session could not open: nothing will run; a close still ends the thread
      if (failed) {
        if (m.type === 'close') port.close();
        return;
      }
      pending.push(m);
      return;
    }
    if (m.type === 'submit') {
      // the client's id is the request's id here too: cancel names it directly
      const id = m.id;
      batcher.submit({ ...m.req, id }, {
        token: (token, logprobs) => outbox.push({ type: 'token', id, token, logprobs }),
        done: (reason, error) => outbox.push({ type: 'done', id, reason, error }),
      });
    } else if (m.type === 'features') {
      const id = m.id;
      batcher.features(m.rows).then(
        (data) => port.postMessage({ type: 'features', id, data }, data.map((d) => d.buffer as ArrayBuffer)),
        (err: unknown) => port.postMessage({ type: 'features', id, error: err instanceof Error ? err.message : String(err) }),
      );
    } else if (m.type === 'cancel') {
      batcher.cancel(m.id);
    } else {
      void batcher.close().then(() => session?.release()).finally(() => {
        for (const site of sites) site.bank?.dispose();
        outbox.flush();
        port.close();
      });
    }
  };
  let lastStats = 0;
  const onStep = (stats: BatchStats) => {
    // the step's events first: stats that count a row as gone arrive after its done
    outbox.flush();
    const now = Date.now();
    if (stats.running > 0 && now - lastStats < STATS_EVERY_MS) return;
    lastStats = now;
    port.postMessage({ type: 'stats', stats });
  };
  port.on('message', handle);

  let sites: ReturnType<typeof openSiteBanks> = [];
  openDecoderSession(init.file, init)
    .then((s) => {
      session = s;
      sites = openSiteBanks(init.layout);
      batcher = new Batcher({ session: s, layout: slotLayoutOf(init.layout, sites), hidden: init.hidden, io: init.io, padId: init.padId }, { maxBatch: init.maxBatch, onStep });
      port.postMessage({ type: 'ready' });
      pending.splice(0).forEach(handle);
    })
    .catch((err: unknown) => {
      failed = true;
      port.postMessage({ type: 'fatal', message: err instanceof Error ? err.message : String(err) });
      // nothing will run here: a close already queued ends the thread now, a later one in handle()
      if (pending.some((m) => m.type === 'close')) port.close();
    });
}

main();
