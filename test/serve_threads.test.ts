// serve's default onnxruntime thread count (lib/server/threads.ts): a small model leaves a core to the
// event loop, a large one takes every core; the model's size is read from its files on disk.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { modelBytesOnDisk } from '../lib/decoder/model_files';
import { serveThreads, SMALL_MODEL_BYTES } from '../lib/server/threads';

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

describe('modelBytesOnDisk', () => {
  test('counts the .onnx file and its external weights (model.onnx_data, model.onnx.data), nothing else beside it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-bytes-'));
    try {
      const write = (name: string, bytes: number) => fs.writeFileSync(path.join(dir, name), Buffer.alloc(bytes));
      write('model.onnx', 100);
      write('model.onnx_data', 2000);
      write('model.onnx.data', 30000);
      write('model.persona-abc.onnx', 400000); // a cached injected model: another model
      write('tokenizer.json', 5000000);
      expect(modelBytesOnDisk(path.join(dir, 'model.onnx'))).toBe(32100);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
