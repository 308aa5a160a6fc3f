// serve's default onnxruntime thread count (lib/server/threads.ts): a small model leaves a core to the
// event loop, a large one takes every core; the model's size is read from its files on disk.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { modelBytesOnDisk } from '../lib/decoder/model_files';
import { serveThreads, SMALL_MODEL_BYTES, usableCores } from '../lib/server/threads';

describe('serveThreads', () => {
  test('below SMALL_MODEL_BYTES one core is left to the event loop; from there on every core', () => {
    expect(serveThreads(16e6, 2)).toBe(1);
    expect(serveThreads(16e6, 16)).toBe(15);
    expect(serveThreads(SMALL_MODEL_BYTES - 1, 4)).toBe(3);
    expect(serveThreads(SMALL_MODEL_BYTES, 2)).toBe(2);
    expect(serveThreads(981e6, 16)).toBe(16);
  });

  test('a one-core machine keeps its one thread', () => {
    expect(serveThreads(1e6, 1)).toBe(1);
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
