// What the engine needs of whatever runs the decoder: the in-thread Batcher, or a WorkerClient
// that drives a Batcher in a worker thread.
import type { SequenceRequest, SequenceSink } from './batcher';

export interface SequenceRunner {
  submit(req: SequenceRequest, sink: SequenceSink): number;
  /** ends a request now; its sink hears done('abort') */
  cancel(id: number): void;
  close(): Promise<void>;
}
