// createLoraBank({ device }) (lib/kernels/lora_bank.ts, native/lora_bank.cc): a bank on the CUDA
// device, with the CPU bank's checks. Without a device the GPU cases skip (test/helpers/device.ts).
import * as kernels from '../lib/kernels';
import { expectThrows } from './helpers/check';
import { dev, gpuTest, info, logDevice, noGpuTest } from './helpers/device';

logDevice();

describe('createLoraBank (device option)', () => {
  const opts = { experts: 2, rank: 1, din: 3, dout: 2, a: new Float32Array(6), b: new Float32Array(4) };

  test("an unknown device is a TypeError naming device", () => {
    expectThrows(() => kernels.createLoraBank({ ...opts, device: 'gpu' as never }), TypeError,
      /^Expected 'cpu' or 'cuda' for device but received 'gpu' of type string$/);
  });

  test("device: 'cpu' is the default bank", () => {
    const a = kernels.createLoraBank({ ...opts, device: 'cpu' });
    expect(a.device).toBe('cpu');
    expect(kernels.createLoraBank(opts).device).toBe('cpu');
    expect(a.bytes).toBeGreaterThan(0);
  });

  noGpuTest("without a device, device: 'cuda' throws an Error that carries info().cuda.reason", () => {
    const e = expectThrows(() => kernels.createLoraBank({ ...opts, device: 'cuda' }), Error,
      /^createLoraBank\(\{ device: 'cuda' \}\) needs a usable CUDA device, but /);
    expect(e.message).toContain(info.cuda.reason as string);
  });

  gpuTest("device: 'cuda' makes a bank on the GPU with the same argument checks", () => {
    const b = kernels.createLoraBank({ ...opts, device: 'cuda' });
    expect(b.device).toBe('cuda');
    expect(b.bytes).toBeGreaterThan(0);
    b.dispose();
    expect(b.bytes).toBe(0);
    expectThrows(() => kernels.createLoraBank({ ...opts, a: new Float32Array(5), device: 'cuda' }), RangeError,
      /^Expected length 6 \(experts \* rank \* din\) for a but received length 5$/);
    expectThrows(() => kernels.createLoraBank({ ...opts, a: dev(new Float32Array(6)) as never, device: 'cuda' }), TypeError,
      /^Expected a host typed array for a but received DeviceTensor f32 of length 6/);
  });
});
