// RunnerPool (lib/engine/runner_pool.ts): replicas of the engine behind one runner. Dispatch to the
// least loaded healthy replica, every call about a request going to the replica that holds it, stats
// summed, close reaching every replica. The replicas here are fakes that record what they are asked;
// that real replicas generate what one model alone would is test/isolation.test.ts.
import type { BatchStats, SequenceRequest, SequenceSink } from '../lib/engine/batcher';
import { RunnerPool } from '../lib/engine/runner_pool';
import type { SequenceRunner } from '../lib/engine/runner';

class FakeRunner implements SequenceRunner {
  readonly sinks = new Map<number, SequenceSink>();
  readonly cancelled: number[] = [];
  features_calls = 0;
  closed = false;
  failure: string | undefined;
  constructor(private readonly reported: BatchStats = { running: 0, waiting: 0, kvWidth: 0, longest: 0 }) {}
  submit(req: SequenceRequest, sink: SequenceSink): number {
    if (this.closed) throw new Error('closed');
    this.sinks.set(req.id!, sink);
    return req.id!;
  }
  cancel(id: number): void {
    this.cancelled.push(id);
    const sink = this.sinks.get(id);
    this.sinks.delete(id);
    sink?.done('abort');
  }
  /** the request ends as a real runner would end it */
  finish(id: number): void {
    const sink = this.sinks.get(id)!;
    this.sinks.delete(id);
    sink.done('stop');
  }
  async features(rows: number[][]): Promise<Float32Array[]> {
    this.features_calls++;
    return rows.map(() => new Float32Array(1));
  }
  ready(): Promise<void> {
    return Promise.resolve();
  }
  stats(): BatchStats {
    return this.reported;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

const request = (id: number): SequenceRequest => ({ id, inputIds: [1], mix: [], maxNewTokens: 1, sampling: { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 }, seed: 0, eosIds: [] });
const sink = (log: string[] = []): SequenceSink => ({ token: (t) => void log.push(`token ${t}`), done: (r) => void log.push(`done ${r}`) });

describe('RunnerPool dispatch', () => {
  test('each request goes to the replica with the fewest open requests; ties to the first', () => {
    const [a, b, c] = [new FakeRunner(), new FakeRunner(), new FakeRunner()];
    const pool = new RunnerPool([a, b, c]);
    for (let id = 1; id <= 7; id++) pool.submit(request(id), sink());
    expect([...a.sinks.keys()]).toEqual([1, 4, 7]);
    expect([...b.sinks.keys()]).toEqual([2, 5]);
    expect([...c.sinks.keys()]).toEqual([3, 6]);
    // b's two end: the next two go to b, the least loaded
    b.finish(2);
    b.finish(5);
    pool.submit(request(8), sink());
    pool.submit(request(9), sink());
    expect([...b.sinks.keys()]).toEqual([8, 9]);
  });

  test('light traffic stays on the first replica (one request at a time)', () => {
    const [a, b] = [new FakeRunner(), new FakeRunner()];
    const pool = new RunnerPool([a, b]);
    for (let id = 1; id <= 5; id++) {
      pool.submit(request(id), sink());
      a.finish(id);
    }
    expect(b.sinks.size).toBe(0);
  });

  test('a replica that failed gets nothing while another runs; the pool reports the failure', () => {
    const [a, b] = [new FakeRunner(), new FakeRunner()];
    const pool = new RunnerPool([a, b]);
    expect(pool.failure).toBeUndefined();
    a.failure = 'The generation worker exited';
    for (let id = 1; id <= 4; id++) pool.submit(request(id), sink());
    expect(a.sinks.size).toBe(0);
    expect(b.sinks.size).toBe(4);
    expect(pool.failure).toBe('The generation worker exited');
  });

  test('a features call counts as load while it runs', async () => {
    const [a, b] = [new FakeRunner(), new FakeRunner()];
    const pool = new RunnerPool([a, b]);
    const pending = pool.features([[1, 2]]);
    pool.submit(request(1), sink()); // a is busy with the features call
    expect(b.sinks.has(1)).toBe(true);
    await pending;
    expect(a.features_calls).toBe(1);
  });

  test('a submit that throws leaves no load behind', () => {
    const [a, b] = [new FakeRunner(), new FakeRunner()];
    a.closed = true;
    const pool = new RunnerPool([a, b]);
    expect(() => pool.submit(request(1), sink())).toThrow('closed');
    a.closed = false;
    pool.submit(request(2), sink());
    expect(a.sinks.has(2)).toBe(true);
  });
});

describe('RunnerPool: calls about a request reach the replica that holds it', () => {
  test('cancel goes to the owner only, and its sink hears done once', () => {
    const [a, b] = [new FakeRunner(), new FakeRunner()];
    const pool = new RunnerPool([a, b]);
    const log: string[] = [];
    pool.submit(request(1), sink());
    pool.submit(request(2), sink(log));
    pool.cancel(2);
    pool.cancel(2);
    pool.cancel(99); // unknown ids are ignored
    expect(a.cancelled).toEqual([]);
    expect(b.cancelled).toEqual([2]);
    expect(log).toEqual(['done abort']);
  });

  test('tokens and the end reach the caller\'s sink', () => {
    const a = new FakeRunner();
    const pool = new RunnerPool([a]);
    const log: string[] = [];
    pool.submit(request(5), sink(log));
    a.sinks.get(5)!.token(42);
    a.finish(5);
    expect(log).toEqual(['token 42', 'done stop']);
  });

  test('requests without an id get one of their own', () => {
    const a = new FakeRunner();
    const pool = new RunnerPool([a]);
    const ids = [pool.submit({ ...request(0), id: undefined }, sink()), pool.submit({ ...request(0), id: undefined }, sink())];
    expect(new Set(ids).size).toBe(2);
    expect([...a.sinks.keys()]).toEqual(ids);
  });
});

describe('RunnerPool stats, ready and close', () => {
  test('running and waiting are summed; widths are the widest replica\'s', () => {
    const pool = new RunnerPool([
      new FakeRunner({ running: 3, waiting: 1, kvWidth: 40, longest: 37 }),
      new FakeRunner({ running: 5, waiting: 0, kvWidth: 90, longest: 88 }),
    ]);
    expect(pool.stats()).toEqual({ running: 8, waiting: 1, kvWidth: 90, longest: 88 });
  });

  test('ready() rejects when a replica cannot open its session', async () => {
    const [a, b] = [new FakeRunner(), new FakeRunner()];
    b.ready = () => Promise.reject(new Error('The generation worker could not load the model: no such file'));
    await expect(new RunnerPool([a, b]).ready()).rejects.toThrow('could not load the model');
  });

  test('a features call that fails passes its error on and gives its load back', async () => {
    const [a, b] = [new FakeRunner(), new FakeRunner()];
    a.features = () => Promise.reject(new Error('no hidden states'));
    const pool = new RunnerPool([a, b]);
    await expect(pool.features([[1]])).rejects.toThrow('no hidden states');
    pool.submit(request(1), sink());
    expect(a.sinks.has(1)).toBe(true); // a is the least loaded again
  });

  test('close closes every replica', async () => {
    const runners = [new FakeRunner(), new FakeRunner(), new FakeRunner()];
    await new RunnerPool(runners).close();
    expect(runners.map((r) => r.closed)).toEqual([true, true, true]);
  });

  test('an empty pool is refused', () => {
    expect(() => new RunnerPool([])).toThrow('at least one runner');
  });
});
