// Hidden-state routers (issue 16): the head's maths against finite differences, training that is
// deterministic for a seed and learns a separable task, the router folder round trip, routing
// through the model's own hidden states (worker thread and in-thread alike), the report's scoring,
// and the CLI (router train / eval, route) on the fixture model.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PersonaModel } from '../lib';
import { emptyHead, forwardLayers, readHead, writeHead } from '../lib/router/head';
import { accumulateGradients, trainHead } from '../lib/router/train';
import { scoreRoutes } from '../lib/router/report';
import { BIG_FIVE_POLES, readSituationTable, readSplit, targetDistribution } from '../lib/router/situations';
import { evaluateRouter, trainRouter } from '../lib/model/router_training';
import { poolHidden } from '../lib/decoder/hidden';
import * as ort from 'onnxruntime-node';
import { encodeSafetensors, readSafetensors, tensorBits16, tensorF32 } from '../lib/adapters';
import { toBits } from '../lib/kernels/dtype';
import { adapterFolders, FIXTURE } from './helpers/model';
import { seedNote, testRng } from './helpers/rng';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-router-train-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('head gradients', () => {
  test('accumulateGradients equals central finite differences of the loss (linear and one tanh layer), float64 check', () => {
    const rng = testRng();
    for (const sizes of [[6, 4], [6, 5, 4]]) {
      const head = emptyHead(sizes);
      for (const l of head.layers) l.w.set(rng.f32(l.w.length, -0.8, 0.8)), l.b.set(rng.f32(l.b.length, -0.3, 0.3));
      const zs = Array.from({ length: 3 }, () => rng.f32(sizes[0], -1.5, 1.5));
      const targets = zs.map(() => {
        const t = new Float32Array(4);
        const [a, b] = rng.distinct(4, 2);
        t[a] = 0.6;
        t[b] = 0.4;
        return t;
      });
      const grads = head.layers.flatMap((l) => [new Float32Array(l.w.length), new Float32Array(l.b.length)]);
      accumulateGradients(head, zs, targets, grads);
      const params = head.layers.flatMap((l) => [l.w, l.b]);
      const lossAt = () => accumulateGradients(head, zs, targets, head.layers.flatMap((l) => [new Float32Array(l.w.length), new Float32Array(l.b.length)]));
      params.forEach((p, pi) => {
        for (let i = 0; i < p.length; i++) {
          const keep = p[i];
          const h = 1e-2;
          p[i] = keep + h;
          const up = lossAt();
          p[i] = keep - h;
          const down = lossAt();
          p[i] = keep;
          const numeric = (up - down) / (2 * h);
          // float32 forward: finite differences agree to ~1e-3 of the loss's scale
          if (Math.abs(numeric - grads[pi][i]) > 2e-3) throw new Error(`sizes ${sizes} param ${pi}[${i}]: analytic ${grads[pi][i]}, numeric ${numeric} (${seedNote()})`);
        }
      });
    }
  });
});

describe('trainHead', () => {
  /** Three clusters in 8-d, each labelled with a pair of experts. */
  function clusters(seed: number, n: number) {
    // centres 3 apart on their own axes, noise of at most 0.5 per coordinate: separable for any seed
    const centres = [0, 1, 2].map((c) => Float32Array.from({ length: 8 }, (_, i) => (i === c ? 3 : 0)));
    const rng = testRng(`noise${seed}`);
    const pairs = [[0, 1], [2, 3], [4, 0]];
    return Array.from({ length: n }, (_, i) => {
      const c = i % 3;
      const x = centres[c].map((v) => v + rng.uniform(-0.5, 0.5));
      const target = new Float32Array(5);
      target[pairs[c][0]] = 0.6;
      target[pairs[c][1]] = 0.4;
      return { x: Float32Array.from(x), target };
    });
  }

  test('learns separable clusters (validation top-2 >= 90%), the loss falls, and the same seed gives the same head', () => {
    const train = clusters(1, 120);
    const val = clusters(2, 30);
    const a = trainHead(train, val, { seed: 7 });
    const b = trainHead(train, val, { seed: 7 });
    const best = a.curve.reduce((x, y) => (y.validationLoss < x.validationLoss ? y : x));
    expect(best.validationTop2).toBeGreaterThanOrEqual(0.9); // chance: 1 in 10 pairs
    expect(a.curve[a.curve.length - 1].trainLoss).toBeLessThan(a.curve[0].trainLoss);
    expect(Buffer.from(a.head.layers[0].w.buffer).equals(Buffer.from(b.head.layers[0].w.buffer))).toBe(true);
    const c = trainHead(train, val, { seed: 8, epochs: 80, hidden: [6] });
    expect(c.head.layers).toHaveLength(2);
  });

  test('head.safetensors round trip, and a file that disagrees with the declared sizes is refused by name', () => {
    const head = trainHead(clusters(3, 30), [], { seed: 1, epochs: 3, hidden: [4] }).head;
    const file = path.join(tmp, 'head.safetensors');
    writeHead(head, file);
    const back = readHead(file, [8, 4, 5]);
    const z = Float32Array.from({ length: 8 }, (_, i) => i / 8);
    expect(Array.from(forwardLayers(back, z).pop()!)).toEqual(Array.from(forwardLayers(head, z).pop()!));
    expect(() => readHead(file, [8, 3, 5])).toThrow(/layers.0.weight has shape \[4,8\]/);
  });
});

describe('poolHidden', () => {
  test('mean over each row\'s own tokens and its last token, right padding ignored', () => {
    const rng = testRng();
    const [B, S, H] = [3, 5, 4];
    const data = rng.f32(B * S * H);
    const lens = [5, 2, 1];
    const out = poolHidden(new ort.Tensor('float32', data, [B, S, H]), lens);
    lens.forEach((len, b) => {
      for (let i = 0; i < H; i++) {
        let mean = 0;
        for (let t = 0; t < len; t++) mean += data[(b * S + t) * H + i] / len;
        expect(out[b][i]).toBeCloseTo(mean, 5);
        expect(out[b][H + i]).toBe(data[(b * S + len - 1) * H + i]);
      }
    });
  });
});

describe('scoreRoutes', () => {
  test('top-2 is the pair in either order, top-1 is in the pair; per situation with what was picked', () => {
    const table = { weights: [0.6, 0.4], situations: [{ name: 'a', experts: ['x', 'y'] }, { name: 'b', experts: ['z', 'x'] }] };
    const msgs = [{ text: '1', situation: 'a' }, { text: '2', situation: 'a' }, { text: '3', situation: 'b' }, { text: '4', situation: 'b' }];
    const r = scoreRoutes('test', table, msgs, [['y', 'x', 'z'], ['x', 'z', 'y'], ['z', 'y', 'x'], ['y', 'z', 'x']]);
    expect([r.top2, r.top1InPair]).toEqual([0.25, 0.75]);
    expect(r.perSituation.map((s) => [s.situation, s.top2, s.top1InPair])).toEqual([['a', 0.5, 1], ['b', 0, 0.5]]);
    expect(r.perSituation[1].picked).toEqual([{ pair: 'y + z', count: 2 }]);
  });
});

describe('a hidden-state router for the tiny-llama fixture', () => {
  const data = path.join(tmp, 'data');
  const texts: Record<string, string[]> = {
    numbers: ['one two three', 'four five six', 'seven eight', 'nine ten eleven', 'twelve thirteen', 'fourteen fifteen', 'sixteen', 'three four'],
    animals: ['cat dog bird', 'horse cow', 'sheep goat pig', 'fish whale', 'lion tiger', 'mouse rat', 'owl hawk', 'frog toad'],
  };
  beforeAll(() => {
    fs.mkdirSync(data);
    fs.writeFileSync(path.join(data, 'table.json'), JSON.stringify({ weights: [0.6, 0.4], situations: [
      { name: 'numbers', experts: ['openness_high', 'neuroticism_low'] }, { name: 'animals', experts: ['agreeableness_high', 'extraversion_low'] }] }));
    const rows = (from: number, to: number) => Object.entries(texts).flatMap(([s, list]) => list.slice(from, to).map((text) => JSON.stringify({ text, situation: s }))).join('\n');
    fs.writeFileSync(path.join(data, 'train.jsonl'), rows(0, 5));
    fs.writeFileSync(path.join(data, 'validation.jsonl'), rows(5, 7));
    fs.writeFileSync(path.join(data, 'test.jsonl'), rows(7, 8));
  });

  test('situations: table, splits and targets; an unknown situation is refused with its line, a situation listed twice by name', () => {
    const table = readSituationTable(data);
    expect(readSplit(data, 'train', table)).toHaveLength(10);
    const t = targetDistribution(table, 'animals', BIG_FIVE_POLES);
    expect(t[BIG_FIVE_POLES.indexOf('agreeableness_high')]).toBeCloseTo(0.6);
    fs.writeFileSync(path.join(data, 'bad.jsonl'), '{"text":"x","situation":"weather"}\n');
    expect(() => readSplit(data, 'bad', table)).toThrow(/bad.jsonl:1: situation 'weather' is not in table.json/);
    const twice = path.join(tmp, 'data-twice');
    fs.mkdirSync(twice);
    fs.writeFileSync(path.join(twice, 'table.json'), JSON.stringify({ situations: [{ name: 'a', experts: ['x', 'y'] }, { name: 'a', experts: ['y', 'x'] }] }));
    expect(() => readSituationTable(twice)).toThrow(/the situation 'a' is listed twice/);
  });

  test('trainRouter writes a version 3 folder (n-grams beside the hidden states, situations mapped to experts) the model loads; routes equal from the worker and in-thread; same seed, same bytes', async () => {
    const base = { model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir: tmp };
    const model = await PersonaModel.load(base); // trained as `router train` runs it: the default runner
    try {
      const out = path.join(tmp, 'router-a');
      const report = await trainRouter(model, { data, out, seed: 3, epochs: 40 });
      await trainRouter(model, { data, out: path.join(tmp, 'router-b'), seed: 3, epochs: 40 });
      expect(fs.readFileSync(path.join(out, 'head.safetensors')).equals(fs.readFileSync(path.join(tmp, 'router-b', 'head.safetensors')))).toBe(true);
      const config = JSON.parse(fs.readFileSync(path.join(out, 'router.json'), 'utf8'));
      // the experts the table names, in the Big Five poles' order; the head answers the two situations
      expect(config).toMatchObject({
        format: 'personafuse-router', version: 3, kind: 'hidden-state', experts: ['openness_high', 'extraversion_low', 'agreeableness_high', 'neuroticism_low'],
        features: { hiddenSize: 64, ngrams: { word: [1, 2], char: [2, 5], buckets: 8192 } },
        situations: { names: ['numbers', 'animals'], experts: [['openness_high', 'neuroticism_low'], ['agreeableness_high', 'extraversion_low']], weights: [0.6, 0.4], sharpen: 4 },
        head: { sizes: [128 + 2 * 8192, 2] },
      });
      expect(report.n).toBe(2);
      expect(report.curve!.length).toBeGreaterThan(0);
      for (const worker of [true, false]) {
        const routed = await PersonaModel.load({ ...base, router: out, worker });
        try {
          const r = await routed.route('cat dog bird');
          // a training message of 'animals': its pair, strongest first
          expect(Object.keys(r.mix)).toEqual(['agreeableness_high', 'extraversion_low']);
          const again = await routed.generate({ prompt: 'cat dog bird', maxNewTokens: 2 });
          expect(again.mix).toEqual(Object.fromEntries(Object.entries(r.mix)));
          const ev = await evaluateRouter(routed, { data, split: 'train' });
          expect(ev.n).toBe(10);
          expect(ev.routeMs).toBeGreaterThan(0);
        } finally {
          await routed.dispose();
        }
      }
    } finally {
      await model.dispose();
    }
  });

  test('headDtype float16 writes version 4: the layer weights are the float32 head\'s rounded to float16, the rest is unchanged; it loads, routes, and evaluates as its report says', async () => {
    const base = { model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir: tmp };
    const model = await PersonaModel.load(base);
    const out = path.join(tmp, 'router-a16');
    let report;
    try {
      // the same training twice (it is deterministic for a seed), stored both ways
      await trainRouter(model, { data, out: path.join(tmp, 'router-a32'), seed: 3, epochs: 40 });
      report = await trainRouter(model, { data, out, seed: 3, epochs: 40, headDtype: 'float16' });
    } finally {
      await model.dispose();
    }
    expect(JSON.parse(fs.readFileSync(path.join(out, 'router.json'), 'utf8')).version).toBe(4);
    const f32 = readSafetensors(path.join(tmp, 'router-a32', 'head.safetensors')).tensors;
    const f16 = readSafetensors(path.join(out, 'head.safetensors')).tensors;
    expect([...f16.keys()].sort()).toEqual([...f32.keys()].sort());
    for (const [name, t] of f16) {
      if (name.endsWith('.weight')) {
        expect(t.dtype).toBe('F16');
        expect(Buffer.from(tensorBits16(t).buffer, tensorBits16(t).byteOffset, t.data.byteLength).equals(Buffer.from(toBits(tensorF32(f32.get(name)!), 'f16').buffer))).toBe(true);
      } else {
        expect(t.dtype).toBe('F32');
        expect(Buffer.from(t.data).equals(Buffer.from(f32.get(name)!.data))).toBe(true);
      }
    }
    // the weights' bytes halve; the rest (the n-gram idf, biases, standardization) stays float32
    const bytes = (ts: Map<string, { data: Uint8Array }>, weights: boolean) => [...ts].filter(([n]) => n.endsWith('.weight') === weights).reduce((a, [, t]) => a + t.data.byteLength, 0);
    expect([bytes(f16, true), bytes(f16, false)]).toEqual([bytes(f32, true) / 2, bytes(f32, false)]);
    const routed = await PersonaModel.load({ ...base, router: out });
    try {
      expect(Object.keys((await routed.route('cat dog bird')).mix)).toEqual(['agreeableness_high', 'extraversion_low']);
      const ev = await evaluateRouter(routed, { data, split: 'test' });
      expect([ev.top2, ev.top1InPair]).toEqual([report.top2, report.top1InPair]);
    } finally {
      await routed.dispose();
    }
  });

  test('float16 heads: a weight past float16\'s range is refused by name, never stored as Inf; only version 4 reads F16, and only in the layers\' weights', () => {
    const head = emptyHead([4, 3]);
    head.layers[0].w[5] = 1e5;
    const file = path.join(tmp, 'head-range.safetensors');
    expect(() => writeHead(head, file, 'float16')).toThrow(/Expected weights within float16's range \(\|w\| <= 65504; use float32\) for headDtype \(--head-dtype\) but received \|w\| = 100000 in layers.0.weight/);
    expect(fs.existsSync(file)).toBe(false);
    // a NaN anywhere, even before finite weights, is refused too
    head.layers[0].w[5] = 0.5;
    head.layers[0].w[0] = NaN;
    expect(() => writeHead(head, file, 'float16')).toThrow(/but received \|w\| = NaN in layers.0.weight/);
    head.layers[0].w[0] = 0;
    writeHead(head, file, 'float16');
    expect(readHead(file, [4, 3], 4, 0, true).layers[0].w[5]).toBe(0.5);
    expect(() => readHead(file, [4, 3])).toThrow(/Expected a tensor of dtype F32 \(router format version 4 for F16 weights\) for .*head-range.safetensors: layers.0.weight/);
    const bias16 = path.join(tmp, 'head-bias16.safetensors');
    fs.writeFileSync(bias16, encodeSafetensors({
      feature_mean: { dtype: 'F32', shape: [4], data: new Float32Array(4) }, feature_std: { dtype: 'F32', shape: [4], data: new Float32Array(4).fill(1) },
      'layers.0.weight': { dtype: 'F16', shape: [3, 4], data: new Uint16Array(12) }, 'layers.0.bias': { dtype: 'F16', shape: [3], data: new Uint16Array(3) },
    }));
    expect(() => readHead(bias16, [4, 3], 4, 0, true)).toThrow(/only the layers' weights may be F16 or BF16\) for .*layers.0.bias/);
  });

  test('hidden states only (ngramBuckets 0, targets experts) with a tanh layer is written as version 2, and routes as softmax(W1 tanh(W0 z + b0) + b1) in float64', async () => {
    const model = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir: tmp });
    const out = path.join(tmp, 'router-c');
    try {
      await trainRouter(model, { data, out, seed: 1, epochs: 20, ngramBuckets: 0, targets: 'experts', hidden: [5] });
    } finally {
      await model.dispose();
    }
    const config = JSON.parse(fs.readFileSync(path.join(out, 'router.json'), 'utf8'));
    // the version 2 shape, so releases before version 3 load it too
    expect(config.version).toBe(2);
    expect(config.features).toEqual({ pooling: ['mean', 'last'], hiddenSize: 64 });
    expect(config.head.sizes).toEqual([128, 5, 4]);
    expect(config.situations).toBeUndefined();
    const head = readHead(path.join(out, 'head.safetensors'), [128, 5, 4]);
    const routed = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir: tmp, router: out });
    try {
      for (const text of ['cat dog', 'seven eight nine', 'hello there']) {
        const r = await routed.route(text);
        const [x] = await routed.features([text], config.maxLength);
        const z = Array.from(x, (v, i) => (v - head.mean[i]) / head.std[i]);
        const [l0, l1] = head.layers;
        const h = Array.from({ length: 5 }, (_, o) => Math.tanh(z.reduce((acc, v, i) => acc + l0.w[o * 128 + i] * v, l0.b[o])));
        const logits = Array.from({ length: 4 }, (_, o) => h.reduce((acc, v, i) => acc + l1.w[o * 5 + i] * v, l1.b[o]));
        const m = Math.max(...logits);
        const p = logits.map((v) => Math.exp(v - m));
        const sum = p.reduce((a, v) => a + v, 0);
        config.experts.forEach((e: string, i: number) => expect(Math.abs(r.distribution[e] - p[i] / sum)).toBeLessThan(1e-5));
      }
    } finally {
      await routed.dispose();
    }
  });

  test('bad training options are refused by name before any work', async () => {
    const model = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir: tmp });
    try {
      const out = path.join(tmp, 'router-bad');
      await expect(trainRouter(model, { data, out, hiddenWeight: -1 })).rejects.toThrow(/Expected a positive number for hiddenWeight \(--hidden-weight\) but received -1/);
      await expect(trainRouter(model, { data, out, sharpen: 0 })).rejects.toThrow(/for sharpen/);
      await expect(trainRouter(model, { data, out, ngramBuckets: 1.5 })).rejects.toThrow(/for ngramBuckets/);
      await expect(trainRouter(model, { data, out, targets: 'pairs' as never })).rejects.toThrow(/for targets/);
      await expect(trainRouter(model, { data, out, headDtype: 'bf16' as never })).rejects.toThrow(/Expected 'float32' or 'float16' for headDtype \(--head-dtype\) but received bf16/);
      await expect(trainRouter(model, { data, out, hidden: [4] })).rejects.toThrow(/linear head: hidden layers need ngramBuckets 0 \(--ngram-buckets 0\)/);
      await expect(trainRouter(model, { data, out, batchSize: 0 })).rejects.toThrow(/for batchSize \(--batch-size\) but received 0/);
      await expect(trainRouter(model, { data, out, lr: NaN })).rejects.toThrow(/positive number for lr \(--lr\)/);
      await expect(trainRouter(model, { data, out, ngramBuckets: 0, hidden: [0] })).rejects.toThrow(/for hidden \(--hidden\)/);
      await expect(trainRouter(model, { data, out, ngramBuckets: 0, hiddenWeight: 0.5 })).rejects.toThrow(/needs ngramBuckets > 0/);
      await expect(trainRouter(model, { data, out, targets: 'experts', sharpen: 2 })).rejects.toThrow(/no effect with targets 'experts'/);
      const empty = path.join(tmp, 'data-empty');
      fs.mkdirSync(empty);
      for (const f of ['table.json', 'validation.jsonl', 'test.jsonl']) fs.copyFileSync(path.join(data, f), path.join(empty, f));
      fs.writeFileSync(path.join(empty, 'train.jsonl'), '');
      await expect(trainRouter(model, { data: empty, out })).rejects.toThrow(/train.jsonl has no messages to train on/);
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      await model.dispose();
    }
  });

  test('a router trained for another hidden size says so when it routes', async () => {
    const other = path.join(tmp, 'router-wrong');
    fs.mkdirSync(other);
    const cfg = JSON.parse(fs.readFileSync(path.join(tmp, 'router-c', 'router.json'), 'utf8'));
    cfg.features.hiddenSize = 32;
    cfg.head.sizes = [64, 4];
    fs.writeFileSync(path.join(other, 'router.json'), JSON.stringify(cfg));
    writeHead(emptyHead([64, 4]), path.join(other, 'head.safetensors'));
    const model = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir: tmp, router: other });
    try {
      await expect(model.route('hello')).rejects.toThrow(/trained on a model with hidden size 32; this model's features have 64/);
    } finally {
      await model.dispose();
    }
  });

  test('CLI: router eval prints the report as JSON for the trained router; route --json keeps its fields', () => {
    const cli = path.join(__dirname, '..', 'dist', 'lib', 'cli', 'main.js');
    const common = ['--model', path.join(FIXTURE, 'onnx-legacy'), '--adapters', path.join(FIXTURE, 'adapters'), '--router', path.join(tmp, 'router-a'), '--cache-dir', tmp, '--json'];
    const ev = spawnSync(process.execPath, [cli, 'router', 'eval', '--data', data, '--split', 'validation', ...common], { encoding: 'utf8' });
    expect(ev.status).toBe(0);
    const report = JSON.parse(ev.stdout);
    expect(report).toMatchObject({ split: 'validation', n: 4 });
    const route = spawnSync(process.execPath, [cli, 'route', 'cat dog', ...common], { encoding: 'utf8' });
    expect(route.status).toBe(0);
    expect(Object.keys(JSON.parse(route.stdout))).toEqual(['mix', 'distribution', 'topK', 'experts']);
  });
});

describe('the demo model\'s default router (models/persona-demo/router, trained by router train)', () => {
  test('loads through the model and scores on the test and everyday splits exactly what its report.json and eval.json say', async () => {
    const DEMO = path.join(__dirname, '..', 'models', 'persona-demo');
    const dir = path.join(DEMO, 'router');
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8'));
    const everyday = JSON.parse(fs.readFileSync(path.join(DEMO, 'eval.json'), 'utf8')).router.everyday_report;
    const model = await PersonaModel.load({ model: DEMO, adapters: Object.fromEntries(BIG_FIVE_POLES.map((e) => [e, path.join(DEMO, 'adapters', e)])), router: dir, cacheDir: tmp });
    try {
      const data = path.join(__dirname, '..', 'data', 'situations');
      const r = await evaluateRouter(model, { data, split: 'test' });
      expect({ n: r.n, top2: r.top2, top1InPair: r.top1InPair }).toEqual({ n: report.n, top2: report.top2, top1InPair: report.top1InPair });
      const e = await evaluateRouter(model, { data, split: 'everyday' });
      expect({ n: e.n, top2: e.top2, top1InPair: e.top1InPair }).toEqual({ n: everyday.n, top2: everyday.top2, top1InPair: everyday.top1InPair });
    } finally {
      await model.dispose();
    }
  });
});
