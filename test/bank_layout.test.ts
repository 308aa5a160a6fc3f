// loraLayout 'bank' (lib/onnx/inject.ts bank form): every expert side by side as initializers,
// each row feeding only its gates [E]. It must compute what the per-row layout computes: checked
// against PyTorch, against the per-row layout, row by row, and in generation.
//
// Tolerances: forward 1e-4 of the row's largest |logit| against PyTorch (as test/persona_model);
// bankColumns against a float64 sum over experts, every dtype: 1e-6 of the sum of |terms| (the
// fold converts f16/bf16 to f32 exactly and rounds each a·s·b product once in float32).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PersonaModel } from '../lib';
import { bankColumns } from '../lib/decoder/site_banks';
import { autoLoraLayout, bankBytes, BANK_SHARE_LIMIT, weightBytes } from '../lib/decoder/lora_layout';
import { loadPeftAdapter } from '../lib/adapters';
import { byteLength } from '../lib/onnx/tensor_data';
import { GATES_INPUT } from '../lib/onnx/inject';
import { readModel } from '../lib/onnx/proto';
import { DTYPES, randomBank } from './helpers/bank';
import { adapterFolders, FIXTURE, fixtureModels, plainLastLogits, reference, relError, tempDir, VARIANTS, worstRelError } from './helpers/model';
import { seedNote, testRng } from './helpers/rng';

const TOL = 1e-4;
const { cacheDir, load, keep } = fixtureModels('bank-layout');

describe('bankColumns: a bank side by side', () => {
  test.each(DTYPES)('%s bank, ranks 4/0/2/4: x·a·diag(g[expertOf])·b equals Σ_e g_e s_e (x A_eᵀ) B_eᵀ in float64', (dtype) => {
    const rng = testRng();
    const t = randomBank(rng, { E: 4, r: 4, din: 24, dout: 20, dtype, ranks: [4, 0, 2, 4] });
    const cols = bankColumns(t.bank);
    // rank-0 expert 1 has no columns; expert 2 has 2, not the bank's padded 4 (its padding is NaN)
    expect(Array.from(cols.expertOf)).toEqual([0, 0, 0, 0, 2, 2, 3, 3, 3, 3]);
    const C = cols.expertOf.length;
    const { din, dout, rank } = t.ref;
    const x = rng.f32(din);
    const g = Float32Array.from({ length: 4 }, () => rng.signed(0.1, 1));
    const got = new Float64Array(dout);
    for (let c = 0; c < C; c++) {
      let xa = 0;
      for (let i = 0; i < din; i++) xa += x[i] * cols.a[i * C + c];
      for (let o = 0; o < dout; o++) got[o] += xa * g[cols.expertOf[c]] * cols.b[c * dout + o];
    }
    const want = new Float64Array(dout);
    const bound = new Float64Array(dout); // Σ |terms|
    for (let e = 0; e < 4; e++) {
      for (let q = 0; q < t.ref.ranks[e]; q++) {
        let xa = 0;
        let xaAbs = 0;
        for (let i = 0; i < din; i++) {
          xa += x[i] * t.ref.a[(e * rank + q) * din + i];
          xaAbs += Math.abs(x[i] * t.ref.a[(e * rank + q) * din + i]);
        }
        for (let o = 0; o < dout; o++) {
          const gsb = g[e] * t.ref.scales[e] * t.ref.b[(e * dout + o) * rank + q];
          want[o] += gsb * xa;
          bound[o] += Math.abs(gsb) * xaAbs;
        }
      }
    }
    for (let o = 0; o < dout; o++) {
      if (!(Math.abs(got[o] - want[o]) <= 1e-6 * bound[o])) {
        throw new Error(`output ${o}: ${got[o]} vs float64 ${want[o]} (bound ${bound[o]}); ${seedNote()}`);
      }
    }
    t.bank.dispose();
  });
});

describe('forward with the bank in the graph', () => {
  test.each(VARIANTS)('%s: every reference mix, every sequence, within 1e-4 of PyTorch', async (variant) => {
    const m = await load(variant, { loraLayout: 'bank' });
    for (const c of reference.cases) {
      const got = await m.forward({ inputIds: reference.sequences, mix: reference.sequences.map(() => c.mix) });
      const err = worstRelError(got, c.last_logits);
      if (!(err <= TOL)) throw new Error(`${variant} case ${c.name}: relative error ${err}`);
    }
  });

  test('mix {} is the original model; the graph feeds only persona_gates [batch, E], the bank is its initializers and nowhere else', async () => {
    const m = await load('onnx-legacy', { loraLayout: 'bank' });
    const original = await plainLastLogits(path.join(FIXTURE, 'onnx-legacy', 'model.onnx'), reference.sequences);
    const got = await m.forward({ inputIds: reference.sequences, mix: reference.sequences.map(() => ({})) });
    expect(worstRelError(got, original)).toBeLessThanOrEqual(1e-6);
    expect(m.gates).toEqual({ input: GATES_INPUT, experts: reference.experts.length });
    const graph = readModel(m.injectedFile).graph!;
    const src = readModel(path.join(FIXTURE, 'onnx-legacy', 'model.onnx')).graph!;
    expect(graph.input.map((i) => i.name)).toEqual([...src.input.map((i) => i.name), GATES_INPUT]);
    const inits = new Set(graph.initializer.map((t) => t.name));
    for (const { site } of m.sites) expect(inits.has(site.aInput) && inits.has(site.bInput)).toBe(true);
    // the experts live in the graph only: the model keeps no native banks of its own
    expect(m.sites.every((s) => s.bank === null)).toBe(true);
  });

  test.each(['onnx-legacy', 'onnx-legacy-no-position-ids'])('%s: rows of different lengths and mixes each equal the row alone', async (variant) => {
    const m = await load(variant, { loraLayout: 'bank' });
    const rows: number[][] = [];
    const mixes: Record<string, number>[] = [];
    reference.cases.forEach((c, i) => reference.sequences.forEach((s, j) => {
      rows.push(s.slice(0, s.length - ((i + j) % 3)));
      mixes.push(c.mix);
    }));
    const together = await m.forward({ inputIds: rows, mix: mixes });
    for (let b = 0; b < rows.length; b++) {
      const [alone] = await m.forward({ inputIds: [rows[b]], mix: [mixes[b]] });
      expect(relError(together[b], alone)).toBeLessThanOrEqual(1e-5);
    }
  });

  test('the cache keeps one file per layout and adapter set, reused on the next load', async () => {
    const dir = tempDir('bank-cache');
    try {
      const open = async (layout: 'bank' | 'per-row', names = reference.experts) => {
        const m = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(names), cacheDir: dir, loraLayout: layout });
        await m.dispose();
        return m.injectedFile;
      };
      const bank = await open('bank');
      const mtime = fs.statSync(bank).mtimeMs;
      expect(await open('bank')).toBe(bank);
      expect(fs.statSync(bank).mtimeMs).toBe(mtime);
      expect(await open('per-row')).not.toBe(bank);
      expect(await open('bank', ['neuroticism_low', 'openness_high'])).not.toBe(bank);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an unknown layout is refused, naming the option', async () => {
    await expect(PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir, loraLayout: 'rows' as never }))
      .rejects.toThrow(/loraLayout/);
  });
});

describe("loraLayout 'auto' (the default)", () => {
  test('bank when the bank adds at most 1/8 of the weights\' bytes, per-row above that or without weights', () => {
    expect(autoLoraLayout(BANK_SHARE_LIMIT * 1000, 1000)).toBe('bank');
    expect(autoLoraLayout(BANK_SHARE_LIMIT * 1000 + 1, 1000)).toBe('per-row');
    expect(autoLoraLayout(0, 0)).toBe('per-row');
  });

  test('bankBytes is what the bank form puts in the graph; weightBytes counts the source initializers', async () => {
    const m = await load('onnx-legacy', { loraLayout: 'bank' });
    const adapters = reference.experts.map((e) => loadPeftAdapter(adapterFolders()[e], e));
    const graph = readModel(m.injectedFile).graph!;
    const banks = new Set(m.sites.flatMap(({ site }) => [site.aInput, site.bInput]));
    const inGraph = graph.initializer.filter((t) => banks.has(t.name)).reduce((n, t) => n + byteLength(t), 0);
    expect(bankBytes(adapters)).toBe(inGraph);
    const source = readModel(path.join(FIXTURE, 'onnx-legacy', 'model.onnx'));
    const persona = graph.initializer.filter((t) => t.name.startsWith('persona/')).reduce((n, t) => n + byteLength(t), 0);
    expect(weightBytes(source)).toBe(weightBytes(readModel(m.injectedFile)) - persona);
  });

  test('the tiny fixture: per-row with all five experts (43% of its weights) or openness_high alone (14.3%), bank with neuroticism_low alone (3.6%)', async () => {
    const alone = async (name: string, loraLayout?: 'per-row') => {
      return keep(await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders([name]), cacheDir, loraLayout }));
    };
    expect((await load('onnx-legacy', { loraLayout: undefined })).loraLayout).toBe('per-row');
    expect((await alone('openness_high')).loraLayout).toBe('per-row');
    const banked = await alone('neuroticism_low');
    expect(banked.loraLayout).toBe('bank');
    expect(banked.gates).toEqual({ input: GATES_INPUT, experts: 1 });
    const mix = reference.sequences.map(() => ({ neuroticism_low: 0.7 }));
    const perRow = await alone('neuroticism_low', 'per-row');
    expect(worstRelError(await banked.forward({ inputIds: reference.sequences, mix }), await perRow.forward({ inputIds: reference.sequences, mix }))).toBeLessThanOrEqual(1e-5);
  });
});

describe('generate with the bank in the graph', () => {
  const MIXES: Record<string, number>[] = [{}, { openness_high: 1 }, { extraversion_low: 0.6, agreeableness_high: 0.4 }, { neuroticism_low: 0.5, conscientiousness_high: 0.3, openness_high: 0.2 }];
  const ids = reference.sequences.flat();
  const opts = [0, 1, 2, 3].map((i) => ({ inputIds: ids.slice(7 * i, 7 * i + 3 + 5 * i), persona: { mix: MIXES[i] }, maxNewTokens: 10 + 2 * i, temperature: 0 }));

  test('concurrent calls with different mixes get the per-row layout\'s tokens, on this thread and in the worker', async () => {
    const perRow = await load('onnx-legacy');
    const want = [];
    for (const o of opts) want.push((await perRow.generate(o)).tokens);
    for (const extra of [{ loraLayout: 'bank' as const, worker: false }, { loraLayout: 'bank' as const, worker: true }]) {
      const m = await load('onnx-legacy', extra);
      const got = await Promise.all(opts.map((o) => m.generate(o)));
      expect(got.map((r) => r.tokens)).toEqual(want);
    }
  });
});
