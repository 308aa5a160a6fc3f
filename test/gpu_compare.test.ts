// scripts/gpu-compare.js: our CUDA lora_moe timings beside the PyTorch gather + bmm reference
// (issue 4). Hand-made bench files whose ratios are worked out here by hand; no GPU, no Python.
import { compareGpu, formatComparison, reportPathFor } from '../scripts/gpu-compare';

const SHAPE = { d: 4096, E: 10, r: 16, k: 2 };

// Our bench: copy at 1000 GB/s; f16 at T 1 (decode faster) and T 4096 (grouped faster, then fused);
// bf16 at T 4096 with only decode; and the checks-on row, which the comparison leaves out.
function ours(): Record<string, unknown> {
  const row = (dtype: string, path: string, T: number, median_us: number, bytes: number, note = '') => ({
    op: 'lora_moe', dtype, path, note, ...SHAPE, T, median_us, p10_us: median_us, p90_us: median_us, runs: 30, bytes,
  });
  return {
    device: 'NVIDIA Test', copy_gbps: 1000,
    results: [
      { op: 'copy', dtype: '', path: '', note: '', d: 0, E: 0, r: 0, k: 0, T: 0, median_us: 2000, bytes: 2e9 },
      row('f16', 'decode', 1, 30, 1e6, 'checks on'),
      row('f16', 'decode', 1, 10, 1e6),
      row('f16', 'grouped', 1, 50, 1e6),
      row('f16', 'decode', 4096, 500, 2e8),
      row('f16', 'grouped', 4096, 250, 2e8),
      row('f16', 'fused', 4096, 200, 2e8),
      row('bf16', 'decode', 4096, 400, 2e8),
    ],
  };
}

function torch(): Record<string, unknown> {
  const row = (dtype: string, T: number, extra: Record<string, unknown>) => ({
    op: 'lora_moe_torch', path: 'gather+bmm', dtype, ...SHAPE, T, ...extra,
  });
  return {
    device: 'NVIDIA Test', device_type: 'cuda', torch: '2.11.0+cu130',
    results: [
      row('f16', 1, { median_us: 45, runs: 30 }),
      row('f16', 4096, { median_us: 300, runs: 30 }),
      row('bf16', 4096, { skipped: 'out of memory: CUDA out of memory' }),
      row('f16', 64, { median_us: 70, runs: 30 }), // a shape ours does not have: ignored
    ],
  };
}

describe('compareGpu', () => {
  it('picks our best path per shape and divides torch by it', () => {
    const cmp = compareGpu(ours(), torch());
    expect(cmp.paths).toEqual(['decode', 'grouped', 'fused']);
    expect(cmp.copyGbps).toBe(1000);
    expect(cmp.rows.map((r) => [r.dtype, r.T])).toEqual([['f16', 1], ['f16', 4096], ['bf16', 4096]]);

    const [t1, t4096] = cmp.rows;
    // T 1: decode 10 µs beats grouped 50 µs; torch 45 µs → 4.5×; 1e6 B in 10 µs = 100 GB/s = 10 % of copy.
    expect(t1.paths).toEqual({ decode: 10, grouped: 50 });
    expect(t1.best).toBe('decode');
    expect(t1.bestUs).toBe(10);
    expect(t1.torchUs).toBe(45);
    expect(t1.speedup).toBeCloseTo(4.5, 12);
    expect(t1.ofCopy).toBeCloseTo(0.1, 12);
    expect(t1.target).toBeNull(); // the target is set at T = 4096 only

    // T 4096: fused 200 µs is best; torch 300 µs → 1.5×, under the 2× target; 2e8 B in 200 µs = 1000 GB/s = 100 %.
    expect(t4096.best).toBe('fused');
    expect(t4096.bestUs).toBe(200);
    expect(t4096.speedup).toBeCloseTo(1.5, 12);
    expect(t4096.ofCopy).toBeCloseTo(1, 12);
    expect(t4096.target).toBe('not met');
  });

  it('meets the target at T = 4096 from 2× on', () => {
    const t = torch();
    (t.results as Record<string, unknown>[])[1].median_us = 400; // 400 / 200 = 2.0×
    const row = compareGpu(ours(), t).rows[1];
    expect(row.speedup).toBe(2);
    expect(row.target).toBe('met');
  });

  it('shows a skipped torch shape as skipped, with its reason, and a missing one as –', () => {
    const cmp = compareGpu(ours(), torch());
    const bf16 = cmp.rows[2];
    expect(bf16.torchUs).toBeNull();
    expect(bf16.torchSkipped).toBe('out of memory: CUDA out of memory');
    expect(bf16.speedup).toBeNull();
    expect(bf16.target).toBe('–');

    const t = torch();
    t.results = (t.results as Record<string, unknown>[]).filter((r) => r.T !== 1);
    const missing = compareGpu(ours(), t).rows[0];
    expect(missing.torchUs).toBeNull();
    expect(missing.torchSkipped).toBeNull();
    expect(missing.speedup).toBeNull();

    const text = formatComparison(compareGpu(ours(), t));
    const line = (dtype: string, T: number) =>
      text.split('\n').find((l) => new RegExp(`^${dtype}\\s+4096\\s+10\\s+16\\s+2\\s+${T}\\s`).test(l)) ?? '';
    expect(line('f16', 1)).toMatch(/decode\s+10\.00\s+–\s+–\s+10\.0%$/);
    expect(line('bf16', 4096)).toMatch(/decode\s+400\.00\s+skipped\s+–\s+50\.0%\s+–$/);
    expect(text).toContain('torch skipped bf16 d=4096 E=10 T=4096: out of memory: CUDA out of memory');
  });

  it('formats ratios with ×, the copy bandwidth and the T = 4096 target', () => {
    const text = formatComparison(compareGpu(ours(), torch()));
    expect(text).toContain('copy 1000.0 GB/s');
    expect(text).toContain('torch 2.11.0+cu130');
    expect(text).toMatch(/^f16 .*decode\s+10\.00\s+45\.00\s+4\.50×\s+10\.0%$/m);
    expect(text).toMatch(/^f16 .*fused\s+200\.00\s+300\.00\s+1\.50×\s+100\.0%\s+not met$/m);
    expect(text).toContain('target: lora_moe at T = 4096 ≥ 2× torch: met for 0 of 2 shapes (1 without a torch time)');
    expect(text).not.toContain('CPU');
  });

  it('warns when the torch timings come from the CPU smoke test', () => {
    const t = { ...torch(), device_type: 'cpu' };
    expect(formatComparison(compareGpu(ours(), t))).toContain('ran on the CPU');
  });

  it('names the malformed argument', () => {
    expect(() => compareGpu(undefined, torch())).toThrow(
      new TypeError("Expected pf_bench_gpu's JSON object for ours but received undefined"));
    expect(() => compareGpu({ copy_gbps: 1 }, torch())).toThrow(
      new TypeError('Expected an array of result rows for ours.results but received undefined'));
    expect(() => compareGpu({ ...ours(), copy_gbps: 0 }, torch())).toThrow(
      new TypeError('Expected a positive number for ours.copy_gbps but received 0 of type number'));
    expect(() => compareGpu(ours(), [])).toThrow(
      new TypeError("Expected torch_lora_moe.py's JSON object for torch but received Array of length 0"));

    const o = ours();
    (o.results as Record<string, unknown>[])[3].median_us = 'fast';
    expect(() => compareGpu(o, torch())).toThrow(
      new TypeError("Expected a positive number for ours.results[3].median_us but received 'fast' of type string"));
    const t = torch();
    delete (t.results as Record<string, unknown>[])[1].T;
    expect(() => compareGpu(ours(), t)).toThrow(
      new TypeError('Expected a non-negative integer for torch.results[1].T but received undefined'));

    const twice = ours();
    (twice.results as unknown[]).push((twice.results as unknown[])[2]);
    expect(() => compareGpu(twice, torch())).toThrow(RangeError);
    expect(() => compareGpu(twice, torch())).toThrow(/ours\.results\[8\].*f16 d=4096 E=10 r=16 k=2 T=1/);
  });

  it('writes its report beside our bench file', () => {
    expect(reportPathFor('bench/results/gpu-nvidia-h200-20261126-020522.json')).toBe(
      'bench/results/gpu-nvidia-h200-20261126-020522-vs-torch.txt');
  });
});
