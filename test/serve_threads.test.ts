// serve's default replicas and onnxruntime threads (lib/server/threads.ts): a small model gets one
// single-threaded replica per core (at most SMALL_MODEL_REPLICAS_MAX), a large one one replica with
// every core; the model's size is read from its files on disk.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { modelBytesOnDisk } from '../lib/decoder/model_files';
import { CgroupFiles, cgroupCpuLimit } from '../lib/cores';
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

  /** A fake cgroup tree: files relative to its root, and /proc/self/cgroup's text. */
  const withTree = (tree: Record<string, string>, self: string, fn: (files: CgroupFiles) => void) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-cgroup-'));
    try {
      for (const [rel, text] of Object.entries(tree)) {
        fs.mkdirSync(path.dirname(path.join(dir, 'fs', rel)), { recursive: true });
        fs.writeFileSync(path.join(dir, 'fs', rel), text);
      }
      fs.writeFileSync(path.join(dir, 'self'), self);
      fn({ root: path.join(dir, 'fs'), self: path.join(dir, 'self') });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };

  test('cgroup v2: the tightest cpu.max from the process\'s cgroup up to the root (a parent\'s limit binds)', () => {
    withTree({ 'cpu.max': 'max 100000\n', 'kubepods/cpu.max': '250000 100000\n', 'kubepods/pod1/cpu.max': 'max 100000\n', 'kubepods/pod1/c1/cpu.max': 'max 100000\n' },
      '0::/kubepods/pod1/c1\n', (files) => {
        expect(cgroupCpuLimit(files)).toBe(2.5);
        expect(usableCores(undefined, files)).toBe(Math.min(os.availableParallelism(), 3));
      });
    withTree({ 'cpu.max': '100000 100000\n' }, '0::/\n', (files) => expect(usableCores(undefined, files)).toBe(1));
    withTree({ 'a/cpu.max': 'max 100000\n' }, '0::/a\n', (files) => expect(cgroupCpuLimit(files)).toBeUndefined());
  });

  test('cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us under the cpu controller\'s mount; -1 is no limit', () => {
    const v1 = '12:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n';
    withTree({ 'cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '150000\n', 'cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
      'cpu,cpuacct/cpu.cfs_quota_us': '-1\n', 'cpu,cpuacct/cpu.cfs_period_us': '100000\n' }, v1, (files) => {
      expect(cgroupCpuLimit(files)).toBe(1.5);
      expect(usableCores(undefined, files)).toBe(Math.min(os.availableParallelism(), 2));
    });
    withTree({ 'cpu/cpu.cfs_quota_us': '-1\n', 'cpu/cpu.cfs_period_us': '100000\n' }, '2:cpuacct:/\n1:cpu:/\n', (files) => expect(cgroupCpuLimit(files)).toBeUndefined());
    withTree({}, '', (files) => expect(usableCores(undefined, files)).toBe(os.availableParallelism()));
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
