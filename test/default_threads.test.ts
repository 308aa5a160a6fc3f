// Every default thread count starts from the cores this process may use (lib/cores.ts, a cgroup's
// CPU quota included), not from os.availableParallelism() directly. usableCores is replaced here by
// a count that os.availableParallelism() never gives (three more than it), so a default read from
// anywhere else shows.
import * as os from 'node:os';

jest.mock('../lib/cores', () => ({ usableCores: () => jest.requireActual<typeof import('node:os')>('node:os').availableParallelism() + 3 }));

import { decoderSessionOptions } from '../lib/decoder/session_options';
import { servePlan, SMALL_MODEL_REPLICAS_MAX } from '../lib/server/threads';

const cores = os.availableParallelism() + 3;

describe('default thread counts come from usableCores', () => {
  test('a decoder session defaults to the usable cores; a given count is kept', () => {
    expect(decoderSessionOptions({}).intraOpNumThreads).toBe(cores);
    expect(decoderSessionOptions({ intraOpNumThreads: 1 }).intraOpNumThreads).toBe(1);
  });

  test('the server\'s plan shares out the usable cores', () => {
    expect(servePlan(981e6)).toEqual({ threads: cores, replicas: 1 });
    expect(servePlan(1e6)).toEqual({ threads: 1, replicas: Math.min(cores, SMALL_MODEL_REPLICAS_MAX) });
  });
});
