// PEFT adapter loading (the fixture adapters were saved by peft's save_pretrained; FIXTURES.md lists their
// configs), refusals of what is not implemented, and banks built from them against a float64 computation.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  buildAdapterBank, buildLoraBank, encodeSafetensors, loadPeftAdapter, parsePeftConfig, patternValue, PeftAdapter, PeftModule,
  TensorToWrite,
} from '../lib/adapters';
import {
  readSafetensors, tensorBits16, tensorF32, SAFETENSORS_DTYPE_SIZES, SafetensorsDtype, SafetensorsTensor,
} from '../lib/adapters/safetensors';
import * as kernels from '../lib/kernels';
import { bf16BitsToF32, f16BitsToF32, toBits, toFloat64 } from '../lib/kernels/dtype';
import { DisposedError } from '../lib/errors';
import { mulberry32 } from './helpers/rng';
import { expectError } from './helpers/check';

const ADAPTERS = path.join(__dirname, 'fixtures', 'tiny-llama', 'adapters');
const EXPERTS = ['openness_high', 'extraversion_low', 'agreeableness_high', 'neuroticism_low', 'conscientiousness_high'];
const ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
// tiny-llama: hidden 64, 2 KV heads of 16, intermediate 128
const SHAPES: Record<string, [number, number]> = {
  q_proj: [64, 64], k_proj: [64, 32], v_proj: [64, 32], o_proj: [64, 64],
  gate_proj: [64, 128], up_proj: [64, 128], down_proj: [128, 64],
};
const MLP = ['gate_proj', 'up_proj', 'down_proj'];
const modulePath = (layer: number, m: string) => `model.layers.${layer}.${MLP.includes(m) ? 'mlp' : 'self_attn'}.${m}`;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-peft-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---- writing adapters for the refusal tests --------------------------------------------------------------

const baseConfig = () => JSON.parse(fs.readFileSync(path.join(ADAPTERS, 'openness_high', 'adapter_config.json'), 'utf8'));

/** The tensors with every byte 0x3c, written by the package's own writer. */
function safetensorsBytes(tensors: Record<string, { dtype: string; shape: number[] }>): Uint8Array {
  const toWrite: Record<string, TensorToWrite> = {};
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = t.dtype as SafetensorsDtype;
    toWrite[name] = { dtype, shape: t.shape, data: new Uint8Array(t.shape.reduce((n, d) => n * d, SAFETENSORS_DTYPE_SIZES[dtype])).fill(0x3c) };
  }
  return encodeSafetensors(toWrite, { format: 'pt' });
}

let dirs = 0;
function adapterDir(config: Record<string, unknown> | null, tensors?: Record<string, { dtype: string; shape: number[] }> | 'copy', extra: Record<string, string> = {}): string {
  const dir = path.join(tmp, `a${dirs++}`);
  fs.mkdirSync(dir);
  if (config) fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config));
  if (tensors === 'copy') {
    fs.copyFileSync(path.join(ADAPTERS, 'openness_high', 'adapter_model.safetensors'), path.join(dir, 'adapter_model.safetensors'));
  } else if (tensors) {
    fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), safetensorsBytes(tensors));
  }
  for (const [f, text] of Object.entries(extra)) fs.writeFileSync(path.join(dir, f), text);
  return dir;
}

const key = (p: string, ab: 'A' | 'B') => `base_model.model.${p}.lora_${ab}.weight`;

// ---- the fixture adapters ---------------------------------------------------------------------------------

describe('fixture adapters', () => {
  const loaded = new Map<string, PeftAdapter>();
  beforeAll(() => {
    for (const name of EXPERTS) loaded.set(name, loadPeftAdapter(path.join(ADAPTERS, name)));
  });

  test('every fixture adapter loads, named after its folder', () => {
    expect([...loaded.keys()]).toEqual(EXPERTS);
    for (const [name, a] of loaded) {
      expect(a.name).toBe(name);
      expect(a.config.peftType).toBe('LORA');
      for (const m of a.modules.values()) {
        const [din, dout] = SHAPES[m.module];
        expect([m.din, m.dout]).toEqual([din, dout]);
        expect(m.a.length).toBe(m.rank * m.din);
        expect(m.b.length).toBe(m.dout * m.rank);
        expect(m.path).toBe(modulePath(m.layer!, m.module));
      }
    }
  });

  test('openness_high: r 8, alpha 16, all 7 modules of both layers, f32, scale alpha/r = 2', () => {
    const a = loaded.get('openness_high')!;
    expect(a.dtype).toBe('f32');
    expect(a.modules.size).toBe(14);
    expect([...a.modules.keys()]).toEqual([0, 1].flatMap((l) => ['self_attn.k_proj', 'self_attn.o_proj', 'self_attn.q_proj', 'self_attn.v_proj', 'mlp.down_proj', 'mlp.gate_proj', 'mlp.up_proj'].map((m) => `model.layers.${l}.${m}`)).sort((x, y) => x.localeCompare(y, 'en', { numeric: true })));
    for (const m of a.modules.values()) {
      expect(m.rank).toBe(8);
      expect(m.scale).toBe(2);
      expect(m.a).toBeInstanceOf(Float32Array);
    }
  });

  test('extraversion_low: rsLoRA scale alpha/sqrt(r) = 8/2, saved in f16', () => {
    const a = loaded.get('extraversion_low')!;
    expect(a.config.useRslora).toBe(true);
    expect(a.dtype).toBe('f16');
    expect(a.modules.size).toBe(14);
    for (const m of a.modules.values()) {
      expect(m.rank).toBe(4);
      expect(m.alpha).toBe(8);
      expect(m.scale).toBe(8 / Math.sqrt(4));
      expect(m.a).toBeInstanceOf(Uint16Array);
      expect(m.dtype).toBe('f16');
    }
  });

  test('agreeableness_high: rank_pattern and alpha_pattern follow PEFT matching, saved in bf16', () => {
    const a = loaded.get('agreeableness_high')!;
    expect(a.dtype).toBe('bf16');
    expect(a.config.rankPattern).toEqual({ down_proj: 4, 'model.layers.1.self_attn.q_proj': 2 });
    expect(a.config.alphaPattern).toEqual({ up_proj: 32, 'model.layers.0.self_attn.v_proj': 4 });
    const expected: Record<string, [number, number]> = {}; // path -> [rank, alpha]
    for (const l of [0, 1]) for (const m of ALL) expected[modulePath(l, m)] = [8, 16];
    expected['model.layers.1.self_attn.q_proj'] = [2, 16];
    expected['model.layers.0.mlp.down_proj'] = [4, 16];
    expected['model.layers.1.mlp.down_proj'] = [4, 16];
    expected['model.layers.0.mlp.up_proj'] = [8, 32];
    expected['model.layers.1.mlp.up_proj'] = [8, 32];
    expected['model.layers.0.self_attn.v_proj'] = [8, 4];
    expect(a.modules.size).toBe(14);
    for (const [p, [rank, alpha]] of Object.entries(expected)) {
      const m = a.modules.get(p)!;
      expect([p, m.rank, m.alpha, m.scale]).toEqual([p, rank, alpha, alpha / rank]);
    }
  });

  test('neuroticism_low: layers_to_transform [0] gives layer-0 modules only', () => {
    const a = loaded.get('neuroticism_low')!;
    expect(a.config.layersToTransform).toEqual([0]);
    expect(a.modules.size).toBe(7);
    for (const m of a.modules.values()) {
      expect(m.layer).toBe(0);
      expect(m.scale).toBe(16 / 4);
    }
    expect(new Set([...a.modules.values()].map((m) => m.module))).toEqual(new Set(ALL));
  });

  test('conscientiousness_high: a subset of target modules', () => {
    const a = loaded.get('conscientiousness_high')!;
    expect(new Set([...a.modules.values()].map((m) => m.module))).toEqual(new Set(['q_proj', 'v_proj', 'down_proj']));
    expect(a.modules.size).toBe(6);
    for (const m of a.modules.values()) expect(m.scale).toBe(1);
  });

  test('module tensors are the file tensors (values and order)', () => {
    for (const [name, a] of loaded) {
      const file = readSafetensors(path.join(ADAPTERS, name, 'adapter_model.safetensors'));
      for (const m of a.modules.values()) {
        const fa = file.tensors.get(key(m.path, 'A'))!;
        expect(Array.from(values64(m.a, m.dtype))).toEqual(Array.from(fileValues(fa)));
        expect(Array.from(values64(m.b, m.dtype))).toEqual(Array.from(fileValues(file.tensors.get(key(m.path, 'B'))!)));
      }
    }
  });

  test('name: the second argument or options.name', () => {
    expect(loadPeftAdapter(path.join(ADAPTERS, 'openness_high'), 'curious').name).toBe('curious');
    expect(loadPeftAdapter(path.join(ADAPTERS, 'openness_high'), { name: 'open' }).name).toBe('open');
  });
});

function values64(v: Float32Array | Uint16Array, dtype: kernels.BankDtype): Float64Array {
  return toFloat64(v, dtype);
}

function fileValues(t: SafetensorsTensor): Float64Array {
  if (t.dtype === 'F32') return Float64Array.from(tensorF32(t));
  const conv = t.dtype === 'F16' ? f16BitsToF32 : bf16BitsToF32;
  return Float64Array.from(tensorBits16(t), (h) => conv(h));
}

// ---- PEFT's pattern rule ---------------------------------------------------------------------------------

describe('rank_pattern / alpha_pattern matching', () => {
  test('a key matches a module path ending in it at a dot boundary', () => {
    const p = { up_proj: 32 };
    expect(patternValue(p, 'model.layers.3.mlp.up_proj', 16)).toBe(32);
    expect(patternValue(p, 'up_proj', 16)).toBe(32);
    expect(patternValue(p, 'model.layers.3.mlp.gate_up_proj', 16)).toBe(16);
    expect(patternValue(p, 'model.layers.3.mlp.up_proj.base', 16)).toBe(16);
  });

  test('a full path matches only that module; keys are regular expressions; the first match wins', () => {
    expect(patternValue({ 'model.layers.0.self_attn.q_proj': 4 }, 'model.layers.0.self_attn.q_proj', 8)).toBe(4);
    expect(patternValue({ 'model.layers.0.self_attn.q_proj': 4 }, 'model.layers.10.self_attn.q_proj', 8)).toBe(8);
    expect(patternValue({ 'layers\\.[01]\\.self_attn\\.q_proj': 2 }, 'model.layers.1.self_attn.q_proj', 8)).toBe(2);
    expect(patternValue({ q_proj: 2, 'model.layers.0.self_attn.q_proj': 4 }, 'model.layers.0.self_attn.q_proj', 8)).toBe(2);
  });

  test('an invalid regular expression in a pattern is a clear error', () => {
    expectError(() => parsePeftConfig({ ...baseConfig(), rank_pattern: { '(q_proj': 4 } }), "'(q_proj'", 'regular expression');
  });
});

// ---- refusals and config errors --------------------------------------------------------------------------

describe('refusals', () => {
  test('adapter_model.bin (a pickle) is refused with how to convert it, never read', () => {
    const dir = adapterDir(baseConfig(), undefined, { 'adapter_model.bin': 'not really a pickle' });
    const e = expectError(() => loadPeftAdapter(dir), 'adapter_model.bin', 'pickle', 'safetensors', 'save_pretrained');
    expect(e.message).toContain(dir);
  });

  test('a folder without weights, without config, or that is not a folder', () => {
    expectError(() => loadPeftAdapter(adapterDir(baseConfig())), 'adapter_model.safetensors', 'adapter_config.json');
    expectError(() => loadPeftAdapter(adapterDir(null, 'copy')), 'adapter_config.json', 'adapter_model.safetensors');
    expectError(() => loadPeftAdapter(path.join(tmp, 'nowhere')), 'not a folder');
  });

  test('adapter_config.json that is not JSON', () => {
    const dir = adapterDir(null, 'copy', { 'adapter_config.json': '{ r: 8' });
    expectError(() => loadPeftAdapter(dir), 'adapter_config.json', 'not JSON');
  });

  test.each(['peft_type', 'r', 'lora_alpha'])('missing %s', (field) => {
    const config = baseConfig();
    delete config[field];
    expectError(() => loadPeftAdapter(adapterDir(config, 'copy')), `${field} in `, 'adapter_config.json', 'undefined');
  });

  test('bad r and lora_alpha values', () => {
    expectError(() => loadPeftAdapter(adapterDir({ ...baseConfig(), r: 0 }, 'copy')), 'r in', 'positive integer');
    expectError(() => loadPeftAdapter(adapterDir({ ...baseConfig(), r: '8' }, 'copy')), 'r in', "'8'");
    expectError(() => loadPeftAdapter(adapterDir({ ...baseConfig(), lora_alpha: null }, 'copy')), 'lora_alpha in', 'null');
  });

  test('peft_type other than LORA', () => {
    expectError(() => loadPeftAdapter(adapterDir({ ...baseConfig(), peft_type: 'IA3' }, 'copy')), 'peft_type', "'IA3'", 'LoRA adapters only');
  });

  test('use_dora, lora_bias, modules_to_save, bias, trainable tokens and PiSSA-style inits are refused', () => {
    const cases: [Record<string, unknown>, string[]][] = [
      [{ use_dora: true }, ['use_dora', 'DoRA']],
      [{ lora_bias: true }, ['lora_bias']],
      [{ modules_to_save: ['lm_head'] }, ['modules_to_save', 'lm_head']],
      [{ bias: 'all' }, ['bias', "'all'"]],
      [{ trainable_token_indices: [1, 2] }, ['trainable_token_indices']],
      [{ init_lora_weights: 'pissa' }, ['init_lora_weights', 'pissa']],
      [{ layer_replication: [[0, 1]] }, ['layer_replication']],
    ];
    for (const [change, fragments] of cases) {
      expectError(() => loadPeftAdapter(adapterDir({ ...baseConfig(), ...change }, 'copy')), ...fragments);
    }
  });

  test('defaults of an old config (no use_rslora, patterns, fan_in_fan_out, ...) are PEFT defaults', () => {
    const c = parsePeftConfig({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj'], modules_to_save: null });
    expect(c).toMatchObject({ r: 4, loraAlpha: 8, useRslora: false, rankPattern: {}, alphaPattern: {}, fanInFanOut: false });
    expect(c.targetModules).toEqual(['q_proj']);
    expect(parsePeftConfig({ ...baseConfig(), modules_to_save: [] }).peftType).toBe('LORA');
  });

  test('fan_in_fan_out is honoured as a statement about the base weight: LoRA shapes are unchanged', () => {
    const a = loadPeftAdapter(adapterDir({ ...baseConfig(), fan_in_fan_out: true }, 'copy'));
    expect(a.config.fanInFanOut).toBe(true);
    const m = a.modules.get('model.layers.0.mlp.down_proj')!;
    expect([m.rank, m.din, m.dout]).toEqual([8, 128, 64]);
  });
});

describe('tensor checks', () => {
  const cfg = { ...baseConfig(), r: 4, lora_alpha: 8, rank_pattern: {}, alpha_pattern: {} };
  const p = 'model.layers.0.self_attn.q_proj';

  test('a module with lora_A but no lora_B (and the reverse)', () => {
    expectError(() => loadPeftAdapter(adapterDir(cfg, { [key(p, 'A')]: { dtype: 'F32', shape: [4, 64] } })), `module '${p}'`, 'lora_B is missing');
    expectError(() => loadPeftAdapter(adapterDir(cfg, { [key(p, 'B')]: { dtype: 'F32', shape: [64, 4] } })), 'lora_A is missing');
  });

  test('ranks of A and B that disagree', () => {
    const dir = adapterDir(cfg, { [key(p, 'A')]: { dtype: 'F32', shape: [4, 64] }, [key(p, 'B')]: { dtype: 'F32', shape: [64, 2] } });
    expectError(() => loadPeftAdapter(dir), key(p, 'B'), '[out_features, 4]', '[64,2]');
  });

  test('a tensor rank that disagrees with r or rank_pattern', () => {
    const t = { [key(p, 'A')]: { dtype: 'F32', shape: [4, 64] }, [key(p, 'B')]: { dtype: 'F32', shape: [64, 4] } };
    expectError(() => loadPeftAdapter(adapterDir({ ...cfg, r: 8 }, t)), `module '${p}'`, 'rank 8 (r in adapter_config.json)', 'rank 4');
    expectError(() => loadPeftAdapter(adapterDir({ ...cfg, rank_pattern: { q_proj: 2 } }, t)), "rank_pattern['q_proj']");
  });

  test('non-2-D tensors (LoRA on convolutions)', () => {
    const dir = adapterDir(cfg, { [key(p, 'A')]: { dtype: 'F32', shape: [4, 64, 1, 1] }, [key(p, 'B')]: { dtype: 'F32', shape: [64, 4, 1, 1] } });
    expectError(() => loadPeftAdapter(dir), '2-D lora_A');
  });

  test('unsupported dtypes, and a file without LoRA tensors', () => {
    const dir = adapterDir(cfg, { [key(p, 'A')]: { dtype: 'F64', shape: [4, 64] }, [key(p, 'B')]: { dtype: 'F64', shape: [64, 4] } });
    expectError(() => loadPeftAdapter(dir), 'F32, F16 or BF16', 'F64');
    expectError(() => loadPeftAdapter(adapterDir(cfg, {})), 'at least one lora_A/lora_B pair');
  });

  test('keys of other methods or layouts are refused by name', () => {
    const cases: [string, string][] = [
      [`base_model.model.${p}.lora_magnitude_vector`, 'DoRA'],
      [`base_model.model.${p}.lora_B.bias`, 'lora_bias'],
      ['base_model.model.model.embed_tokens.lora_embedding_A', 'embedding'],
      [`base_model.model.${p}.lora_A.default.weight`, 'adapter name'],
      ['base_model.model.lm_head.weight', 'modules_to_save'],
      ['base_model.model.lm_head.base_layer.weight', 'save_embedding_layers=False'],
    ];
    for (const [k, fragment] of cases) {
      const dir = adapterDir(cfg, { [k]: { dtype: 'F32', shape: [4] } });
      expectError(() => loadPeftAdapter(dir), `tensor '${k}'`, fragment);
    }
  });

  test('A and B of different dtypes are both read as f32', () => {
    const dir = adapterDir(cfg, {
      [key(p, 'A')]: { dtype: 'F16', shape: [4, 64] },
      [key(p, 'B')]: { dtype: 'F32', shape: [64, 4] },
    });
    const a = loadPeftAdapter(dir);
    const m = a.modules.get(p)!;
    expect(m.dtype).toBe('f32');
    expect(m.a).toBeInstanceOf(Float32Array);
    expect(m.a[0]).toBe(f16BitsToF32(0x3c3c));
    expect(m.layer).toBe(0);
    expect(m.module).toBe('q_proj');
  });
});

// ---- banks -----------------------------------------------------------------------------------------------

/** The reference, straight from each adapter's files: y[t] = Σ_j w[t,j] · scale · B (A x[t]) in float64. The
 *  scale is computed here from adapter_config.json by PEFT's rule, independently of the loader. */
function referenceDelta(
  experts: string[], modulePathName: string, x: Float32Array, T: number, din: number, dout: number,
  ids: Int32Array, weights: Float32Array, k: number, round?: 'f16' | 'bf16',
): Float64Array {
  const y = new Float64Array(T * dout);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const e = ids[t * k + j];
      if (e < 0) continue;
      const dir = path.join(ADAPTERS, experts[e]);
      const conf = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
      const file = readSafetensors(path.join(dir, 'adapter_model.safetensors'));
      const ta = file.tensors.get(key(modulePathName, 'A'));
      if (!ta) continue;
      let A = fileValues(ta);
      let B = fileValues(file.tensors.get(key(modulePathName, 'B'))!);
      if (round) {
        A = toFloat64(toBits(Float32Array.from(A), round), round);
        B = toFloat64(toBits(Float32Array.from(B), round), round);
      }
      const r = ta.shape[0];
      let alpha = conf.lora_alpha;
      for (const [pk, v] of Object.entries(conf.alpha_pattern ?? {})) {
        if (new RegExp(`^(.*\\.)?(${pk})$`).test(modulePathName)) {
          alpha = v;
          break;
        }
      }
      const scale = conf.use_rslora ? alpha / Math.sqrt(r) : alpha / r;
      const h = new Float64Array(r);
      for (let q = 0; q < r; q++) {
        let s = 0;
        for (let i = 0; i < din; i++) s += A[q * din + i] * x[t * din + i];
        h[q] = s;
      }
      for (let o = 0; o < dout; o++) {
        let s = 0;
        for (let q = 0; q < r; q++) s += B[o * r + q] * h[q];
        y[t * dout + o] += weights[t * k + j] * scale * s;
      }
    }
  }
  return y;
}

function compareTarget(
  experts: string[], bankTarget: { path: string; din: number; dout: number; bank: kernels.LoraBank }, seed: number,
  round?: 'f16' | 'bf16',
): number {
  const { din, dout } = bankTarget;
  const T = 7;
  const k = Math.min(3, experts.length);
  const r = mulberry32(seed);
  const x = Float32Array.from({ length: T * din }, () => r() * 2 - 1);
  const ids = new Int32Array(T * k);
  const weights = new Float32Array(T * k);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      ids[t * k + j] = r() < 0.15 ? -1 : Math.floor(r() * experts.length);
      weights[t * k + j] = r() * 2 - 0.5;
    }
  }
  ids[0] = 0;
  ids[1] = 1;
  ids[k - 1] = -1;
  const y = kernels.loraMoe(bankTarget.bank, x, ids, weights);
  const ref = referenceDelta(experts, bankTarget.path, x, T, din, dout, ids, weights, k, round);
  let maxRef = 0;
  let maxErr = 0;
  for (let i = 0; i < ref.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
    maxErr = Math.max(maxErr, Math.abs(ref[i] - y[i]));
  }
  expect(maxRef).toBeGreaterThan(0);
  return maxErr / maxRef;
}

describe('banks from the fixture adapters', () => {
  let adapters: PeftAdapter[];
  beforeAll(() => {
    adapters = EXPERTS.map((n) => loadPeftAdapter(path.join(ADAPTERS, n)));
  });

  test('one bank per target, experts in load order, max rank, per-expert ranks and scales (0 where absent)', () => {
    const bank = buildAdapterBank(adapters);
    try {
      expect(bank.experts).toEqual(EXPERTS);
      expect(bank.dtype).toBe('f32'); // f32, f16 and bf16 experts mixed
      expect(bank.targets.size).toBe(14);
      const q1 = bank.targets.get('model.layers.1.self_attn.q_proj')!;
      expect([q1.layer, q1.module, q1.din, q1.dout, q1.rank]).toEqual([1, 'q_proj', 64, 64, 8]);
      expect(Array.from(q1.ranks)).toEqual([8, 4, 2, 0, 8]);
      expect(Array.from(q1.scales)).toEqual([2, 4, 8, 0, 1]);
      const up0 = bank.targets.get('model.layers.0.mlp.up_proj')!;
      expect(Array.from(up0.ranks)).toEqual([8, 4, 8, 4, 0]);
      expect(Array.from(up0.scales)).toEqual([2, 4, 4, 4, 0]);
      const down1 = bank.targets.get('model.layers.1.mlp.down_proj')!;
      expect([down1.din, down1.dout]).toEqual([128, 64]);
      expect(Array.from(down1.ranks)).toEqual([8, 4, 4, 0, 8]);
      expect(bank.expertIndex('agreeableness_high')).toBe(2);
      expect(bank.expertIndex('nobody')).toBe(-1);
      expect(bank.bytes).toBeGreaterThan(0);
    } finally {
      bank.dispose();
    }
  });

  test('kernels.loraMoe on every target equals a float64 computation from the adapter files', () => {
    const bank = buildAdapterBank(adapters);
    try {
      let worst = 0;
      let seed = 1;
      for (const t of bank.targets.values()) worst = Math.max(worst, compareTarget(EXPERTS, t, seed++));
      expect(worst).toBeLessThan(1e-5);
    } finally {
      bank.dispose();
    }
  });

  test('a bank of one dtype keeps it (f16, bf16), and matches float64 too', () => {
    for (const [name, dtype] of [['extraversion_low', 'f16'], ['agreeableness_high', 'bf16']] as const) {
      const a = adapters[EXPERTS.indexOf(name)];
      const bank = buildAdapterBank([a, a].map((x, i) => ({ ...x, name: `${x.name}${i}` })));
      try {
        expect(bank.dtype).toBe(dtype);
        for (const t of bank.targets.values()) {
          expect(t.bank.dtype).toBe(dtype);
          expect(compareTarget([name, name], t, 7)).toBeLessThan(1e-5);
        }
      } finally {
        bank.dispose();
      }
    }
  });

  test('options.dtype converts every expert (bf16 here: the reference uses the same rounded values)', () => {
    const bank = buildAdapterBank(adapters, { dtype: 'bf16' });
    try {
      expect(bank.dtype).toBe('bf16');
      const t = bank.targets.get('model.layers.0.self_attn.v_proj')!;
      expect(t.bank.dtype).toBe('bf16');
      expect(compareTarget(EXPERTS, t, 3, 'bf16')).toBeLessThan(1e-5);
    } finally {
      bank.dispose();
    }
  });

  test('buildLoraBank: one target from per-expert modules (undefined = rank 0)', () => {
    const parts = adapters.map((a) => a.modules.get('model.layers.1.mlp.gate_proj'));
    expect(parts.map((p) => !!p)).toEqual([true, true, true, false, false]);
    const bank = buildLoraBank(parts, 64, 128);
    try {
      expect([bank.experts, bank.rank, bank.din, bank.dout]).toEqual([5, 8, 64, 128]);
      expect(Array.from(bank.ranks)).toEqual([8, 4, 8, 0, 0]);
      expect(compareTarget(EXPERTS, { path: 'model.layers.1.mlp.gate_proj', din: 64, dout: 128, bank }, 11)).toBeLessThan(1e-5);
    } finally {
      bank.dispose();
    }
    expectError(() => buildLoraBank([undefined, undefined], 64, 128), 'at least one expert');
    expectError(() => buildLoraBank(parts, 64, 64), "module 'model.layers.1.mlp.gate_proj'", 'dout 64', 'dout 128');
  });

  test('experts that disagree on din/dout, duplicate names, no experts: clear errors', () => {
    const odd: PeftAdapter = { ...adapters[1], name: 'odd', modules: new Map(adapters[1].modules) };
    const m = odd.modules.get('model.layers.0.self_attn.k_proj')!;
    odd.modules.set(m.path, { ...m, dout: 48, b: new Uint16Array(48 * m.rank) } as PeftModule);
    expectError(() => buildAdapterBank([adapters[0], odd]), "module 'model.layers.0.self_attn.k_proj' of adapter 'odd'",
      "as in adapter 'openness_high'", 'dout 48');
    expectError(() => buildAdapterBank([adapters[0], adapters[0]]), "'openness_high' twice");
    expectError(() => buildAdapterBank([]), 'non-empty array');
  });

  test('a disposed AdapterBank says so', () => {
    const bank = buildAdapterBank(adapters.slice(0, 2));
    const target = bank.targets.get('model.layers.0.self_attn.q_proj')!;
    bank.dispose();
    expect(() => bank.targets).toThrow(DisposedError);
    expect(() => kernels.loraMoe(target.bank, new Float32Array(64), new Int32Array([0]), new Float32Array([1]))).toThrow(DisposedError);
    expect(bank.bytes).toBe(0);
  });
});

// ---- target_modules as PEFT reads it ----------------------------------------------------------------------

describe('target_modules (PEFT 0.21 semantics)', () => {
  const tensorsFor = (paths: string[]) => Object.fromEntries(paths.flatMap((p) => {
    const [din, dout] = SHAPES[p.split('.').pop()!] ?? [64, 64];
    return [[key(p, 'A'), { dtype: 'F32', shape: [4, din] }], [key(p, 'B'), { dtype: 'F32', shape: [dout, 4] }]];
  }));
  const config = (extra: Record<string, unknown>) => ({ peft_type: 'LORA', r: 4, lora_alpha: 8, ...extra });

  test('a tensor for a module that target_modules (list of suffixes) does not select is refused, naming it and the list', () => {
    const dir = adapterDir(config({ target_modules: ['q_proj'] }), tensorsFor([modulePath(0, 'q_proj'), modulePath(0, 'v_proj')]));
    expectError(() => loadPeftAdapter(dir), 'model.layers.0.self_attn.v_proj', '[q_proj]', 'target_modules', 'does not select');
  });

  test('the regex form selects by a full match of the path', () => {
    const ok = adapterDir(config({ target_modules: '.*\\.(q|v)_proj' }), tensorsFor([modulePath(0, 'q_proj'), modulePath(1, 'v_proj')]));
    expect([...loadPeftAdapter(ok).modules.keys()]).toEqual([modulePath(0, 'q_proj'), modulePath(1, 'v_proj')]);
    // 'q_proj' as a string is a regex that must match the whole path, which it does not
    const bad = adapterDir(config({ target_modules: 'q_proj' }), tensorsFor([modulePath(0, 'q_proj')]));
    expectError(() => loadPeftAdapter(bad), "the pattern 'q_proj'", 'does not select');
  });

  test('exclude_modules and layers_to_transform deselect, all-linear selects everything but the head', () => {
    const excluded = adapterDir(config({ target_modules: ['q_proj'], exclude_modules: ['model.layers.1.self_attn.q_proj'] }), tensorsFor([modulePath(0, 'q_proj'), modulePath(1, 'q_proj')]));
    expectError(() => loadPeftAdapter(excluded), 'model.layers.1.self_attn.q_proj', 'does not select');
    const layers = adapterDir(config({ target_modules: ['q_proj'], layers_to_transform: [0] }), tensorsFor([modulePath(0, 'q_proj'), modulePath(1, 'q_proj')]));
    expectError(() => loadPeftAdapter(layers), 'model.layers.1.self_attn.q_proj', 'does not select');
    const all = adapterDir(config({ target_modules: 'all-linear' }), tensorsFor([modulePath(0, 'q_proj'), modulePath(1, 'down_proj')]));
    expect(loadPeftAdapter(all).modules.size).toBe(2);
  });

  test('a list where only some names are in the model is accepted, as PEFT accepts it', () => {
    const dir = adapterDir(config({ target_modules: ['q_proj', 'c_attn', 'query_key_value'] }), tensorsFor([modulePath(0, 'q_proj')]));
    expect(loadPeftAdapter(dir).modules.size).toBe(1);
  });

  test('target_modules null (PEFT picks the default for the model type) selects whatever the file holds', () => {
    const dir = adapterDir(config({ target_modules: null }), tensorsFor([modulePath(0, 'q_proj')]));
    expect(loadPeftAdapter(dir).modules.size).toBe(1);
  });

  test('an adapter whose target_modules selects none of the model\'s modules is refused at load, naming the adapter, what it asked for and what the model has', async () => {
    const dir = adapterDir(config({ target_modules: ['c_attn'] }), tensorsFor(['model.layers.0.attn.c_attn']));
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-peft-targets-'));
    try {
      const { PersonaModel } = await import('../lib');
      const err = await PersonaModel.load({ model: path.join(__dirname, 'fixtures', 'tiny-llama', 'onnx-legacy'), adapters: { gpt_style: dir }, cacheDir })
        .then(() => undefined, (e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      for (const part of ["'gpt_style'", '[c_attn]', 'not found in the base model', 'q_proj (layers 0-1)']) expect(err!.message).toContain(part);
    } finally {
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});
