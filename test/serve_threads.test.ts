// serve's default replicas and onnxruntime threads (lib/server/threads.ts): a small model gets one
// single-threaded replica per core (at most SMALL_MODEL_REPLICAS_MAX), a large one one replica with
// every core; the model's size is read from its files on disk.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { modelBytesOnDisk } from '../lib/decoder/model_files';
import { servePlan, SMALL_MODEL_BYTES, SMALL_MODEL_REPLICAS_MAX, usableCores } from '../lib/server/threads';

describe('servePlan', () => {
  test('below SMALL_MODEL_BYTES: one single-threaded replica per core, at most SMALL_MODEL_REPLICAS_MAX', () => {
    expect(servePlan(16e6, 2)).toEqual({ threads: 1, replicas: 2 });
    expect(servePlan(SMALL_MODEL_BYTES - 1, 3)).toEqual({ threads: 1, replicas: 3 });
    expect(servePlan(16e6, 16)).toEqual({ threads: 1, replicas: SMALL_MODEL_REPLICAS_MAX });
  });

  test('from SMALL_MODEL_BYTES on: one replica with every core', () => {
    expect(servePlan(SMALL_MODEL_BYTES, 2)).toEqual({ threads: 2, replicas: 1 });
    expect(servePlan(981e6, 16)).toEqual({ threads: 16, replicas: 1 });
  });

  test('one flag given: the other shares the cores out; both given: both kept', () => {
    expect(servePlan(16e6, 2, { threads: 2 })).toEqual({ threads: 2, replicas: 1 });
    expect(servePlan(981e6, 16, { replicas: 2 })).toEqual({ threads: 8, replicas: 2 });
    expect(servePlan(981e6, 2, { replicas: 4 })).toEqual({ threads: 1, replicas: 4 });
    expect(servePlan(16e6, 16, { threads: 3 })).toEqual({ threads: 3, replicas: 5 });
    expect(servePlan(16e6, 2, { threads: 4, replicas: 3 })).toEqual({ threads: 4, replicas: 3 });
  });

  test('a one-core machine gets one replica of one thread', () => {
    expect(servePlan(1e6, 1)).toEqual({ threads: 1, replicas: 1 });
    expect(servePlan(981e6, 1)).toEqual({ threads: 1, replicas: 1 });
  });
});

describe('usableCores', () => {
  const withCpuMax = (text: string | undefined, fn: (file: string) => void) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-cpumax-'));
    try {
      const file = path.join(dir, 'cpu.max');
      if (text !== undefined) fs.writeFileSync(file, text);
      fn(file);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };

  test('a cgroup quota caps the cores (rounded up); no quota or no cgroup file leaves them all', () => {
    const all = os.availableParallelism();
    withCpuMax('150000 100000\n', (f) => expect(usableCores(f)).toBe(Math.min(all, 2)));
    withCpuMax('50000 100000\n', (f) => expect(usableCores(f)).toBe(1));
    withCpuMax('max 100000\n', (f) => expect(usableCores(f)).toBe(all));
    withCpuMax(undefined, (f) => expect(usableCores(f)).toBe(all));
  });
});

describe('modelBytesOnDisk', () => {
  test('counts the .onnx file and its external weights (model.onnx_data, model.onnx.data), nothing else beside it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-bytes-'));
    try {
      const write = (name: string, bytes: number) => fs.writeFileSync(path.join(dir, name), Buffer.alloc(bytes));
      write('model.onnx', 100);
      write('model.onnx_data', 2000);
      write('model.onnx.data', 30000);
      write('model.onnx_data_1', 400000); // a shard
      write('model.persona-abc.onnx', 5000000); // a cached injected model: another model
      write('tokenizer.json', 60000000);
      expect(modelBytesOnDisk(path.join(dir, 'model.onnx'))).toBe(432100);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
