// The parts a version 3 hidden-state router adds (issue 16): hashed n-gram features against an
// independent reference (BigInt FNV-1a, n-grams listed by hand), the situation -> expert mapping
// against a float64 reference, the head's gradient with sparse inputs against finite differences,
// and router.json's new fields refused by name when malformed.
import { emptyHead, forwardLayers } from '../lib/router/head';
import { fitIdf, MAX_NGRAM_CHARS, ngramCounts, ngramFeatures, NgramConfig } from '../lib/router/ngrams';
import { parseRouterConfig } from '../lib/router/router_config';
import { routeFromLogits } from '../lib/router/route_result';
import { expertLogitsOfSituations, expertsOfSituations, situationTable } from '../lib/router/situation_outputs';
import { accumulateGradients } from '../lib/router/train';
import { seedNote, testRng } from './helpers/rng';

/** FNV-1a over UTF-16 code units, in BigInt arithmetic (an implementation apart from the library's). */
function fnvReference(s: string): number {
  let h = 0x811c9dc5n;
  for (let i = 0; i < s.length; i++) h = ((h ^ BigInt(s.charCodeAt(i))) * 0x01000193n) % 2n ** 32n;
  return Number(h);
}

describe('ngramCounts', () => {
  test('word n-grams of the lower-cased words and character n-grams of each space-padded piece, in their own blocks', () => {
    const cfg: NgramConfig = { word: [1, 2], char: [3, 3], buckets: 1 << 20 };
    const counts = ngramCounts('Hi hi, THERE!', cfg);
    const expected = new Map<number, number>();
    const add = (g: string, offset: number) => {
      const b = offset + (fnvReference(g) % cfg.buckets);
      expected.set(b, (expected.get(b) ?? 0) + 1);
    };
    for (const g of ['hi', 'hi', 'there', 'hi hi', 'hi there']) add(g, 0);
    for (const g of [' hi', 'hi ', ' hi', 'hi,', 'i, ', ', ', ' th', 'the', 'her', 'ere', 're!', 'e! '].filter((g) => g.length === 3)) add(g, cfg.buckets);
    expect(counts).toEqual(expected);
  });

  test('Unicode letters, digits and apostrophes make words; only the first MAX_NGRAM_CHARS characters are read; a message with no word still has character n-grams', () => {
    const cfg: NgramConfig = { word: [1, 1], char: [2, 2], buckets: 1 << 20 };
    const words = [...ngramCounts("Ça VA? don't 2day", cfg).keys()].filter((b) => b < cfg.buckets).sort((a, b) => a - b);
    expect(words).toEqual(['ça', 'va', "don't", '2day'].map((w) => fnvReference(w) % cfg.buckets).sort((a, b) => a - b));
    const long = 'word '.repeat(2000);
    expect(ngramCounts(long, cfg)).toEqual(ngramCounts(long.slice(0, MAX_NGRAM_CHARS), cfg));
    const only = [...ngramCounts('!!!', cfg).keys()];
    expect(only.length).toBeGreaterThan(0);
    expect(only.every((b) => b >= cfg.buckets)).toBe(true);
  });
});

describe('fitIdf and ngramFeatures', () => {
  const cfg: NgramConfig = { word: [1, 1], char: [2, 3], buckets: 64 };
  const texts = ['the printer is offline', 'my cat died', 'the cat is fine', 'printer jam again'];

  test('idf = ln((1 + n) / (1 + df)) + 1 with df counted once per message', () => {
    const idf = fitIdf(texts, cfg);
    const df = new Array(2 * cfg.buckets).fill(0);
    for (const t of texts) for (const b of new Set(ngramCounts(t, cfg).keys())) df[b]++;
    df.forEach((d, b) => expect(idf[b]).toBeCloseTo(Math.log(5 / (1 + d)) + 1, 6));
  });

  test('values are (1 + ln count) * idf, each block of unit norm, indices ascending', () => {
    const idf = fitIdf(texts, cfg);
    const text = 'the the cat';
    const f = ngramFeatures(text, cfg, idf);
    const counts = ngramCounts(text, cfg);
    expect(Array.from(f.idx)).toEqual([...counts.keys()].sort((a, b) => a - b));
    for (const block of [0, 1]) {
      const inBlock = Array.from(f.idx.keys()).filter((i) => Math.floor(f.idx[i] / cfg.buckets) === block);
      const raw = inBlock.map((i) => (1 + Math.log(counts.get(f.idx[i])!)) * idf[f.idx[i]]);
      const norm = Math.hypot(...raw);
      inBlock.forEach((i, j) => expect(f.val[i]).toBeCloseTo(raw[j] / norm, 6));
    }
    expect(() => ngramFeatures(text, cfg, new Float32Array(10))).toThrow(/idf has 10 entries; 64 buckets per block need 128/);
  });
});

describe('situation outputs', () => {
  const experts = ['a', 'b', 'c', 'd'];
  const outputs = { names: ['s0', 's1', 's2'], experts: [['a', 'b'], ['c', 'a'], ['d', 'c']], weights: [0.6, 0.4], sharpen: 4 };

  test('w_e = sum_c p_c^k / sum p^k * t_ce, against a float64 reference on random distributions', () => {
    const rng = testRng();
    const table = situationTable(outputs, experts);
    for (let trial = 0; trial < 20; trial++) {
      const raw = Array.from({ length: 3 }, () => rng.uniform(0.01, 1));
      const p = Float32Array.from(raw, (v) => v / raw.reduce((a, x) => a + x, 0));
      for (const k of [1, 4]) {
        const s = Array.from(p, (v) => Math.pow(v, k));
        const z = s.reduce((a, v) => a + v, 0);
        const ref = experts.map((e) => outputs.experts.reduce((acc, list, c) => acc + (s[c] / z) * (list[0] === e ? 0.6 : list[1] === e ? 0.4 : 0), 0));
        const got = expertsOfSituations(p, table, k);
        ref.forEach((v, e) => {
          if (Math.abs(got[e] - v) > 1e-6) throw new Error(`trial ${trial} k ${k} expert ${e}: ${got[e]} vs ${v} (${seedNote()})`);
        });
      }
    }
  });

  test('a huge sharpen on a nearly flat distribution picks the likeliest situation (log space, no underflow to zeros)', () => {
    const table = situationTable(outputs, experts);
    const w = expertsOfSituations(Float32Array.from([0.3333, 0.3334, 0.3333]), table, 1e6);
    expect(Array.from(w).every(Number.isFinite)).toBe(true);
    expect(w[2]).toBeCloseTo(0.6, 5); // s1's pair: c 0.6, a 0.4
    expect(w[0]).toBeCloseTo(0.4, 5);
  });

  test('a sure situation routes to its own pair with the table\'s weights', () => {
    const table = situationTable(outputs, experts);
    const config = parseRouterConfig({ kind: 'encoder', experts, topK: 2 });
    const r = routeFromLogits(expertLogitsOfSituations(Float32Array.from([0, 30, 0]), table, 4), config, 'x');
    expect(Object.keys(r.mix)).toEqual(['c', 'a']);
    expect(r.mix.c).toBeCloseTo(0.6, 4);
    expect(r.mix.a).toBeCloseTo(0.4, 4);
  });
});

describe('head gradients with n-gram inputs', () => {
  test('a linear head over dense + sparse inputs: accumulateGradients equals central finite differences', () => {
    const rng = testRng();
    const [D, S, E] = [3, 7, 4];
    const head = emptyHead([D + S, E], D);
    const layer = head.layers[0];
    layer.w.set(rng.f32(layer.w.length, -0.8, 0.8));
    layer.b.set(rng.f32(E, -0.3, 0.3));
    const zs = Array.from({ length: 3 }, () => rng.f32(D, -1.5, 1.5));
    const sparse = [{ idx: Int32Array.from([0, 4]), val: rng.f32(2) }, { idx: Int32Array.from([2, 5, 6]), val: rng.f32(3) }, undefined];
    const targets = zs.map((_, i) => Float32Array.from({ length: E }, (__, e) => (e === i ? 1 : 0)));
    // the forward pass reads the sparse part at offset D
    const manual = new Float64Array(E);
    for (let e = 0; e < E; e++) {
      manual[e] = layer.b[e];
      for (let i = 0; i < D; i++) manual[e] += layer.w[e * (D + S) + i] * zs[1][i];
      sparse[1]!.idx.forEach((j, k) => (manual[e] += layer.w[e * (D + S) + D + j] * sparse[1]!.val[k]));
    }
    forwardLayers(head, zs[1], sparse[1]).pop()!.forEach((v, e) => expect(v).toBeCloseTo(manual[e], 5));
    const grads = [new Float32Array(layer.w.length), new Float32Array(E)];
    accumulateGradients(head, zs, targets, grads, sparse);
    const lossAt = () => accumulateGradients(head, zs, targets, [new Float32Array(layer.w.length), new Float32Array(E)], sparse);
    [layer.w, layer.b].forEach((p, pi) => {
      for (let i = 0; i < p.length; i++) {
        const keep = p[i];
        p[i] = keep + 1e-2;
        const up = lossAt();
        p[i] = keep - 1e-2;
        const down = lossAt();
        p[i] = keep;
        const numeric = (up - down) / 2e-2;
        if (Math.abs(numeric - grads[pi][i]) > 2e-3) throw new Error(`param ${pi}[${i}]: analytic ${grads[pi][i]}, numeric ${numeric} (${seedNote()})`);
      }
    });
  });
});

describe('router.json version 3', () => {
  const base = {
    format: 'personafuse-router', version: 3, kind: 'hidden-state', experts: ['a', 'b', 'c'], topK: 2,
    features: { pooling: ['mean', 'last'], hiddenSize: 2, ngrams: { word: [1, 2], char: [2, 5], buckets: 8 } },
    situations: { names: ['x', 'y'], experts: [['a', 'b'], ['c', 'a']], weights: [0.6, 0.4], sharpen: 4 },
    head: { sizes: [4 + 16, 2], activation: 'tanh' },
  };

  test('n-grams and situations parse; a version 2 folder without them still does', () => {
    const c = parseRouterConfig(base);
    expect(c).toMatchObject({ kind: 'hidden-state', version: 3, features: { ngrams: { buckets: 8 } }, situations: { names: ['x', 'y'], sharpen: 4 } });
    const v2 = parseRouterConfig({ ...base, version: 2, features: { pooling: ['mean', 'last'], hiddenSize: 2 }, situations: undefined, head: { sizes: [4, 5, 3], activation: 'tanh' } });
    expect(v2).toMatchObject({ version: 2, head: { sizes: [4, 5, 3] } });
    expect(v2.kind === 'hidden-state' && v2.situations).toBeUndefined();
    // version 4 has version 3's fields (its head's weights may be float16: head.safetensors says)
    expect(parseRouterConfig({ ...base, version: 4 })).toMatchObject({ version: 4, features: { ngrams: { buckets: 8 } } });
  });

  test.each([
    ['features', { features: { ...base.features, ngrams: { word: [2, 1], char: [2, 5], buckets: 8 } } }],
    ['features', { features: { ...base.features, ngrams: { word: [1, 2], char: [2, 5], buckets: 0 } } }],
    ['situations', { situations: { ...base.situations, experts: [['a', 'b'], ['c', 'zz']] } }],
    ['situations', { situations: { ...base.situations, sharpen: 0 } }],
    ['situations', { situations: { ...base.situations, experts: [['a', 'b']] } }],
    ['head', { head: { sizes: [4, 2], activation: 'tanh' } }],
    ['head', { head: { sizes: [20, 3], activation: 'tanh' } }],
    ['head', { head: { sizes: [20, 5, 2], activation: 'tanh' } }],
    ['version', { version: 5 }],
    ['version', { version: 2.5 }],
    ['version', { version: 2 }],
    ['situations', { situations: { ...base.situations, sharpen: Infinity } }],
    ['situations', { situations: { ...base.situations, weights: [Infinity, 0.4] } }],
  ])('a bad %s is refused by name', (field, change) => {
    expect(() => parseRouterConfig({ ...base, ...change })).toThrow(new RegExp(`for ${field} but received`));
  });
});
