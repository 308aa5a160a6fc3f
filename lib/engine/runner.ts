// What the engine needs of whatever runs the decoder: the in-thread Batcher, or a WorkerClient
// that drives a Batcher in a worker thread.
import type { BatchStats, SequenceRequest, SequenceSink } from './batcher';

export interface SequenceRunner {
  submit(req: SequenceRequest, sink: SequenceSink): number;
  /** ends a request now; its sink hears done('abort') */
  cancel(id: number): void;
  /** pooled hidden states of the base model for each row (Batcher.features) */
  features(rows: number[][]): Promise<Float32Array[]>;
  /** resolves when requests can run (the worker's session is open); rejects when it cannot */
  ready(): Promise<void>;
  /** why nothing can run any more (the worker could not open the session, failed or exited); undefined while it can */
  readonly failure?: string;
  /** what the batch holds now (from the worker: as of its last step) */
  stats(): BatchStats;
  /** ends every request ('abort' with the reason) and releases the session; no crash mid-step */
  close(): Promise<void>;
}
