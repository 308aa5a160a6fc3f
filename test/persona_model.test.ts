// PersonaModel on a stock torch.onnx export with real PEFT adapters: per-row mixtures through the
// injected graph, checked against PyTorch, against merged weights and row by row.
//
// Tolerance: 1e-4 of the row's largest |logit| (the bound); observed ~1e-6, float32
// rounding of two different summation orders.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { PersonaModel, mergeModel } from '../lib';
import { loadPeftAdapter } from '../lib/adapters';
import { readModel, encodeModel } from '../lib/onnx/proto';
import { tensorFloat32 } from '../lib/onnx/tensor_data';
import {
  adapterFolders, FIXTURE, plainLastLogits, reference, relError, tempDir, VARIANTS, worstRelError,
} from './helpers/model';

const TOL = 1e-4;
const cacheDir = tempDir('inject');
const opened: PersonaModel[] = [];

async function load(variant: string, names: readonly string[] = reference.experts): Promise<PersonaModel> {
  const m = await PersonaModel.load({ model: path.join(FIXTURE, variant), adapters: adapterFolders(names), cacheDir });
  opened.push(m);
  return m;
}

afterAll(async () => {
  for (const m of opened) await m.dispose();
  fs.rmSync(cacheDir, { recursive: true, force: true });
});

describe('forward: every export layout against PyTorch', () => {
  test.each(VARIANTS)('%s: every reference mix, every sequence, within 1e-4 relative', async (variant) => {
    const m = await load(variant);
    expect(m.experts).toEqual(reference.experts);
    for (const c of reference.cases) {
      const got = await m.forward({ inputIds: reference.sequences, mix: reference.sequences.map(() => c.mix) });
      const err = worstRelError(got, c.last_logits);
      if (!(err <= TOL)) throw new Error(`${variant} case ${c.name}: relative error ${err}`);
    }
  });

  test('the reference mixes really differ from the base (the comparison can fail)', () => {
    const base = reference.cases.find((c) => Object.keys(c.mix).length === 0)!;
    for (const c of reference.cases.filter((x) => Object.keys(x.mix).length > 0)) {
      expect(worstRelError(c.last_logits, base.last_logits)).toBeGreaterThan(100 * TOL);
    }
  });
});

describe('forward: R = 0 is the original model', () => {
  test.each(VARIANTS)('%s: mix {} equals the un-injected file run by plain onnxruntime', async (variant) => {
    const m = await load(variant);
    const original = await plainLastLogits(path.join(FIXTURE, variant, 'model.onnx'), reference.sequences);
    const got = await m.forward({ inputIds: reference.sequences, mix: reference.sequences.map(() => ({})) });
    expect(worstRelError(got, original)).toBeLessThanOrEqual(1e-6);
  });

  test('inlineWeights: the external-data export gives the same logits with its weights handed over inline', async () => {
    const create = jest.spyOn(ort.InferenceSession, 'create');
    const m = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-dynamo'), adapters: adapterFolders(), cacheDir, inlineWeights: true });
    opened.push(m);
    await m.openSession();
    // the session was made from bytes, not from the file path
    expect(create.mock.calls.map((c) => c[0] instanceof Uint8Array)).toEqual([true]);
    create.mockRestore();
    const file = readModel(m.injectedFile);
    expect(file.graph!.initializer.some((t) => t.externalData.length > 0)).toBe(true);
    const plain = await load('onnx-dynamo');
    for (const c of reference.cases) {
      const mix = reference.sequences.map(() => c.mix);
      const got = await m.forward({ inputIds: reference.sequences, mix });
      expect(worstRelError(got, await plain.forward({ inputIds: reference.sequences, mix }))).toBe(0);
    }
  });

  test('a model loaded with no adapters runs the base model', async () => {
    const m = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), cacheDir });
    opened.push(m);
    expect(m.experts).toEqual([]);
    const original = await plainLastLogits(path.join(FIXTURE, 'onnx-legacy', 'model.onnx'), reference.sequences);
    const got = await m.forward({ inputIds: reference.sequences, mix: reference.sequences.map(() => ({})) });
    expect(worstRelError(got, original)).toBeLessThanOrEqual(1e-6);
  });
});

describe('forward: batch invariance', () => {
  test.each(['onnx-legacy', 'onnx-dynamo', 'onnx-legacy-no-position-ids'])(
    '%s: rows of different lengths and mixes (one base-only) each equal the row run alone', async (variant) => {
      const m = await load(variant);
      const mixes = reference.cases.map((c) => c.mix);
      // 3 sequences x every mix, shuffled so neighbours differ in both length and mix
      const rows: number[][] = [];
      const rowMix: Record<string, number>[] = [];
      mixes.forEach((mix, i) => reference.sequences.forEach((s, j) => {
        rows.push(s.slice(0, s.length - ((i + j) % 3)));
        rowMix.push(mix);
      }));
      const order = rows.map((_, i) => (i * 7) % rows.length);
      const batchRows = order.map((i) => rows[i]);
      const batchMixes = order.map((i) => rowMix[i]);
      const together = await m.forward({ inputIds: batchRows, mix: batchMixes });
      for (let b = 0; b < batchRows.length; b++) {
        const [alone] = await m.forward({ inputIds: [batchRows[b]], mix: [batchMixes[b]] });
        const err = relError(together[b], alone);
        if (!(err <= 1e-5)) throw new Error(`row ${b} (mix ${JSON.stringify(batchMixes[b])}) differs from itself alone by ${err}`);
      }
    });
});

describe('merge: a fixed mix compiled into the weights', () => {
  const mixOne = { openness_high: 1 };
  const mixMany = reference.cases.find((c) => Object.keys(c.mix).length >= 3)!.mix;

  test.each([['one expert at weight 1', mixOne], ['a mixture of several', mixMany]])(
    '%s: the merged model equals the injected model with that mix', async (_what, mix) => {
      const m = await load('onnx-legacy');
      const out = path.join(cacheDir, `merged-${Object.keys(mix).length}.onnx`);
      const res = mergeModel({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), mix, out });
      expect(res.merged).toBe(14);
      const merged = await plainLastLogits(out, reference.sequences);
      const injected = await m.forward({ inputIds: reference.sequences, mix: reference.sequences.map(() => mix) });
      expect(worstRelError(merged, injected)).toBeLessThanOrEqual(TOL);
      const base = await plainLastLogits(path.join(FIXTURE, 'onnx-legacy', 'model.onnx'), reference.sequences);
      expect(worstRelError(merged, base)).toBeGreaterThan(100 * TOL);
    });

  test('one expert at weight 1 equals an independent float64 merge written in this test', async () => {
    // W [din, dout] += scale * (B A)^T, from the adapter's tensors, on the legacy export whose
    // linear nodes are named /model/layers.N/<block>/<module>/MatMul
    const adapter = loadPeftAdapter(path.join(FIXTURE, 'adapters', 'openness_high'), 'openness_high');
    const file = path.join(FIXTURE, 'onnx-legacy', 'model.onnx');
    const model = readModel(file);
    const inits = new Map(model.graph!.initializer.map((t) => [t.name, t]));
    let merged = 0;
    for (const n of model.graph!.node) {
      const m = /^\/model\/layers\.(\d+)\/\w+\/(\w+)\/MatMul$/.exec(n.name);
      if (!m) continue;
      const mod = [...adapter.modules.values()].find((x) => x.layer === Number(m[1]) && x.module === m[2]);
      const w = inits.get(n.input[1]);
      if (!mod || !w) continue;
      const a = mod.a as Float32Array; // f32 adapter: [r, din]
      const b = mod.b as Float32Array; // [dout, r]
      const W = tensorFloat32(w, path.dirname(file));
      const out = new Float32Array(W.length);
      for (let i = 0; i < mod.din; i++) {
        for (let o = 0; o < mod.dout; o++) {
          let s = 0;
          for (let r = 0; r < mod.rank; r++) s += b[o * mod.rank + r] * a[r * mod.din + i];
          out[i * mod.dout + o] = W[i * mod.dout + o] + mod.scale * s;
        }
      }
      w.rawData = new Uint8Array(out.buffer);
      w.floatData = [];
      merged++;
    }
    expect(merged).toBe(14);
    const mergedFile = path.join(cacheDir, 'independent.onnx');
    fs.writeFileSync(mergedFile, encodeModel(model));
    const independent = await plainLastLogits(mergedFile, reference.sequences);
    const m = await load('onnx-legacy');
    const ours = await m.forward({ inputIds: reference.sequences, mix: reference.sequences.map(() => ({ openness_high: 1 })) });
    expect(worstRelError(ours, independent)).toBeLessThanOrEqual(TOL);
  });
});

describe('injected model file', () => {
  test('is built once: a second load reuses the cached file untouched', async () => {
    const dir = tempDir('cache');
    try {
      const first = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir: dir });
      const stat = fs.statSync(first.injectedFile);
      await first.dispose();
      const second = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir: dir });
      expect(second.injectedFile).toBe(first.injectedFile);
      expect(fs.statSync(second.injectedFile).mtimeMs).toBe(stat.mtimeMs);
      await second.dispose();
      // a different adapter set is a different plan, so a different file
      const third = await PersonaModel.load({
        model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(['neuroticism_low']), cacheDir: dir,
      });
      expect(third.injectedFile).not.toBe(first.injectedFile);
      await third.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each(['onnx-legacy', 'onnx-dynamo'])('%s: keeps opset, producer, metadata and functions; adds A_in/B_in per site', async (variant) => {
    const m = await load(variant);
    const src = readModel(path.join(FIXTURE, variant, 'model.onnx'));
    const out = readModel(m.injectedFile);
    expect(out.opsetImport).toEqual(src.opsetImport);
    expect(out.irVersion).toEqual(src.irVersion);
    expect(out.producerName).toEqual(src.producerName);
    expect(out.functions.map((f) => f.name)).toEqual(src.functions.map((f) => f.name));
    for (const kv of src.metadataProps) expect(out.metadataProps).toContainEqual(kv);
    expect(out.graph!.initializer.length).toBe(src.graph!.initializer.length);
    const inputs = new Map(out.graph!.input.map((i) => [i.name, i]));
    expect(m.sites).toHaveLength(14);
    const rankSymbols = new Set<string>();
    for (const { site } of m.sites) {
      for (const name of [site.aInput, site.bInput]) expect(inputs.has(name)).toBe(true);
      const dims = inputs.get(site.aInput)!.type!.value.case === 'tensorType'
        ? (inputs.get(site.aInput)!.type!.value.value as { shape?: { dim: { value: { case?: string; value?: unknown } }[] } }).shape!.dim
        : [];
      expect(dims[1].value).toEqual({ case: 'dimValue', value: BigInt(site.din) });
      expect(dims[2].value.case).toBe('dimParam');
      rankSymbols.add(String(dims[2].value.value));
    }
    expect(rankSymbols.size).toBe(14); // each site has its own symbolic rank
  });
});

describe('model folders', () => {
  test('a folder with onnx/model.onnx (the Hub layout of Optimum and transformers.js) loads it; one with neither names both', async () => {
    const dir = tempDir('hub-layout');
    try {
      fs.mkdirSync(path.join(dir, 'onnx'));
      fs.copyFileSync(path.join(FIXTURE, 'onnx-legacy', 'model.onnx'), path.join(dir, 'onnx', 'model.onnx'));
      const m = await PersonaModel.load({ model: dir, adapters: adapterFolders(), cacheDir });
      opened.push(m);
      expect(m.modelFile).toBe(path.join(dir, 'onnx', 'model.onnx'));
      const c = reference.cases[reference.cases.length - 1];
      const got = await m.forward({ inputIds: reference.sequences, mix: reference.sequences.map(() => c.mix) });
      expect(worstRelError(got, c.last_logits)).toBeLessThanOrEqual(TOL);
      fs.rmSync(path.join(dir, 'onnx'), { recursive: true });
      await expect(PersonaModel.load({ model: dir, cacheDir })).rejects.toThrow(/neither model\.onnx nor onnx\/model\.onnx/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('errors', () => {
  test('an unknown expert, a non-finite weight, a mix per row: named in the error', async () => {
    const m = await load('onnx-legacy');
    const ids = [reference.sequences[0]];
    await expect(m.forward({ inputIds: ids, mix: [{ nobody: 1 }] })).rejects.toThrow(/mix\[0\].*'nobody'/);
    await expect(m.forward({ inputIds: ids, mix: [{ openness_high: NaN }] })).rejects.toThrow(/mix\[0\]\.openness_high/);
    await expect(m.forward({ inputIds: ids, mix: [] })).rejects.toThrow(/mix/);
    await expect(m.forward({ inputIds: [[1, -2]], mix: [{}] })).rejects.toThrow(/inputIds\[0\]\[1\]/);
    await expect(m.forward({ inputIds: [[]], mix: [{}] })).rejects.toThrow(/inputIds\[0\]/);
  });

  test('token ids past the vocabulary are refused before the model runs', async () => {
    const m = await load('onnx-legacy');
    await expect(m.forward({ inputIds: [[1, 100000]], mix: [{}] })).rejects.toThrow(/inputIds\[0\]\[1\]/);
  });

  test('an adapter for another model (other widths) names both shapes', async () => {
    const bench = path.join(__dirname, '..', 'bench', 'models', 'llama-h512', 'onnx');
    await expect(PersonaModel.load({ model: bench, adapters: adapterFolders(['openness_high']), cacheDir }))
      .rejects.toThrow(/expects 64 inputs .* has 512 .*another model/);
  });

  test('modules the model does not have (layer 7 of 2, GPT-2 names) list what the model has', async () => {
    const dir = tempDir('foreign');
    try {
      for (const [name, from, to] of [['deep', 'layers.0.', 'layers.7.'], ['gpt2', 'self_attn.q_proj', 'self_attn.c_proj']]) {
        const src = path.join(FIXTURE, 'adapters', 'openness_high');
        const dst = path.join(dir, name);
        fs.mkdirSync(dst);
        // same-length key renames inside the safetensors header keep every offset valid
        const bytes = Buffer.from(fs.readFileSync(path.join(src, 'adapter_model.safetensors')));
        const headerLen = Number(bytes.readBigUInt64LE(0));
        const header = bytes.subarray(8, 8 + headerLen).toString('utf8').split(from).join(to);
        Buffer.from(header, 'utf8').copy(bytes, 8);
        fs.writeFileSync(path.join(dst, 'adapter_model.safetensors'), bytes);
        const cfg = JSON.parse(fs.readFileSync(path.join(src, 'adapter_config.json'), 'utf8'));
        if (name === 'gpt2') cfg.target_modules = cfg.target_modules.map((t: string) => (t === 'q_proj' ? 'c_proj' : t));
        fs.writeFileSync(path.join(dst, 'adapter_config.json'), JSON.stringify(cfg));
        await expect(PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: { [name]: dst }, cacheDir }))
          .rejects.toThrow(/no such linear layer.*q_proj \(layers 0-1\)/);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a missing model path or folder without model.onnx', async () => {
    await expect(PersonaModel.load({ model: path.join(FIXTURE, 'nope') })).rejects.toThrow(/does not exist/);
    await expect(PersonaModel.load({ model: path.join(FIXTURE, 'adapters') })).rejects.toThrow(/neither model.onnx nor onnx\/model.onnx/);
  });

  test('replicas: an integer from 1 to 64, and 1 without the worker, refused with its name', async () => {
    const model = path.join(FIXTURE, 'onnx-legacy');
    await expect(PersonaModel.load({ model, cacheDir, replicas: 0 })).rejects.toThrow(RangeError);
    await expect(PersonaModel.load({ model, cacheDir, replicas: 0 })).rejects.toThrow(/integer between 1 and 64 for replicas but received 0/);
    await expect(PersonaModel.load({ model, cacheDir, replicas: 1.5 })).rejects.toThrow(/for replicas but received 1.5/);
    await expect(PersonaModel.load({ model, cacheDir, replicas: 65 })).rejects.toThrow(/for replicas but received 65/);
    await expect(PersonaModel.load({ model, cacheDir, replicas: 2, worker: false })).rejects.toThrow(/1 with \{ worker: false \}.* for replicas but received 2/);
  });

  test('two replicas: loadStats counts both batches; concurrent requests all finish', async () => {
    const m = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir, replicas: 2, maxBatch: 3 });
    try {
      expect(m.engine.loadStats().maxBatch).toBe(6);
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => m.generate({ inputIds: [1, 2, 3 + i], maxNewTokens: 4, ignoreEos: true })));
      expect(results.map((r) => r.tokens.length)).toEqual(Array(8).fill(4));
      expect(m.engine.loadStats()).toMatchObject({ running: 0, waiting: 0 });
    } finally {
      await m.dispose();
    }
  });

  test('a disposed model says so', async () => {
    const m = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), cacheDir });
    await m.dispose();
    await expect(m.forward({ inputIds: [[1, 2]], mix: [{}] })).rejects.toThrow(/disposed/i);
  });
});
