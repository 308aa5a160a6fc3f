// The worker's outbox (lib/engine/outbox.ts): a step's token and done messages leave together, in the
// order the batcher reported them, and none waits for a later step.
import { Outbox, RowEvent } from '../lib/engine/outbox';

function recorder(): { sent: RowEvent[][]; outbox: Outbox } {
  const sent: RowEvent[][] = [];
  return { sent, outbox: new Outbox((m) => sent.push(m.events)) };
}

describe('Outbox: one message per step', () => {
  test('the events of one synchronous step leave as one message, in the order they were reported', async () => {
    const { sent, outbox } = recorder();
    outbox.push({ type: 'token', id: 1, token: 10 });
    outbox.push({ type: 'token', id: 2, token: 20 });
    outbox.push({ type: 'done', id: 1, reason: 'stop' });
    expect(sent).toEqual([]); // not before the step's synchronous part ends
    await Promise.resolve();
    expect(sent).toEqual([[
      { type: 'token', id: 1, token: 10 },
      { type: 'token', id: 2, token: 20 },
      { type: 'done', id: 1, reason: 'stop' },
    ]]);
  });

  test('the next step\'s events leave in a message of their own: nothing is held back for a later step', async () => {
    const { sent, outbox } = recorder();
    outbox.push({ type: 'token', id: 1, token: 1 });
    await new Promise((resolve) => setImmediate(resolve)); // onnxruntime-node's run waits for setImmediate
    expect(sent).toHaveLength(1);
    outbox.push({ type: 'token', id: 1, token: 2 });
    await new Promise((resolve) => setImmediate(resolve));
    expect(sent.map((m) => m.map((e) => (e.type === 'token' ? e.token : -1)))).toEqual([[1], [2]]);
  });

  test('flush() sends what is queued at once (before the port closes), and an empty outbox sends nothing', async () => {
    const { sent, outbox } = recorder();
    outbox.flush();
    expect(sent).toEqual([]);
    outbox.push({ type: 'done', id: 3, reason: 'abort', error: 'closed' });
    outbox.flush();
    expect(sent).toEqual([[{ type: 'done', id: 3, reason: 'abort', error: 'closed' }]]);
    await Promise.resolve();
    expect(sent).toHaveLength(1); // the scheduled flush finds nothing left
  });
});
