// Every default thread count starts from the cores this process may use (lib/cores.ts, a cgroup's
// CPU quota included), not from os.availableParallelism() or the hardware directly. usableCores is
// replaced here by counts os.availableParallelism() does not give, so a default read from anywhere
// else shows.
import * as os from 'node:os';

let mockCores = os.availableParallelism() + 3;
jest.mock('../lib/cores', () => ({ usableCores: () => mockCores }));

import { kernels } from '../lib';
import { decoderSessionOptions } from '../lib/decoder/session_options';
import { replicaThreads } from '../lib/engine/runner_pool';
import { initialKernelThreads, kernelThreadsFromEnv } from '../lib/kernels/binding';
import { servePlan, SMALL_MODEL_REPLICAS_MAX } from '../lib/server/threads';
import { setThreadsSettled } from './helpers/threads';

const more = os.availableParallelism() + 3;
beforeEach(() => (mockCores = more));
afterAll(async () => {
  mockCores = os.availableParallelism();
  await setThreadsSettled(0);
});

describe('default thread counts come from usableCores', () => {
  test('a decoder session defaults to the usable cores; a given count is kept', () => {
    expect(decoderSessionOptions({}).intraOpNumThreads).toBe(more);
    expect(decoderSessionOptions({ intraOpNumThreads: 1 }).intraOpNumThreads).toBe(1);
  });

  test('replicas share out the usable cores (one replica keeps the session default)', () => {
    expect(replicaThreads(3)).toBe(Math.floor(more / 3));
    expect(replicaThreads(1)).toBeUndefined();
    mockCores = 1;
    expect(replicaThreads(4)).toBe(1);
  });

  test('the server\'s plan shares out the usable cores', () => {
    expect(servePlan(981e6)).toEqual({ threads: more, replicas: 1 });
    expect(servePlan(1e6)).toEqual({ threads: 1, replicas: Math.min(more, SMALL_MODEL_REPLICAS_MAX) });
  });

  test('the kernels\' pool: setThreads(0) restores the usable cores, unless PERSONAFUSE_NUM_THREADS sets them', async () => {
    await setThreadsSettled(0);
    expect(kernels.info().threads).toBe(kernelThreadsFromEnv() ?? more);
  });

  test('the kernels\' pool at load: set to the usable cores only under a quota (fewer than the machine\'s)', () => {
    expect(initialKernelThreads()).toBeUndefined();
    mockCores = 1;
    expect(initialKernelThreads()).toBe(kernelThreadsFromEnv() === undefined && os.availableParallelism() > 1 ? 1 : undefined);
  });
});
