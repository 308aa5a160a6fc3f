// shareKvHeads (lib/onnx/grouped_attention.ts): the runtime graph's attention reads each key/value
// cache as it is instead of a copy per query head. The rewritten graph must give the same logits,
// hidden states and caches as the graph before it, on fresh random inputs: prompts with and without
// a past, decode steps, rows with holes in the cache. Tolerance: float32 rounding of the reordered
// products, 1e-4 absolute on values of order 1-10 (measured: ~1e-5).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { shareKvHeads } from '../lib/onnx/grouped_attention';
import { keepLastLogits, LAST_INDEX_INPUT } from '../lib/onnx/last_logits';
import { cloneModel, readModel, valueInfoDims } from '../lib/onnx/proto';
import { writeModel } from '../lib/onnx/write';
import { PersonaModel } from '../lib';
import { FIXTURE, tempDir } from './helpers/model';
import { seedNote, testRng } from './helpers/rng';

const DEMO = path.join(__dirname, '..', 'models', 'persona-demo');

/** The model with logits at the last position, without and with the rewrite, written side by side. */
function variants(file: string, dir: string): { before: string; after: string; rewritten: number; nodes: [number, number] } {
  const model = readModel(file);
  if (!keepLastLogits(model)) throw new Error(`${file}: no last-logits form`);
  const rewrittenModel = cloneModel(model);
  const rewritten = shareKvHeads(rewrittenModel.graph!);
  const before = path.join(dir, 'before.onnx');
  const after = path.join(dir, 'after.onnx');
  writeModel(model, before, { sourceDir: path.dirname(file) });
  writeModel(rewrittenModel, after, { sourceDir: path.dirname(file) });
  return { before, after, rewritten, nodes: [model.graph!.node.length, rewrittenModel.graph!.node.length] };
}

async function compare(before: string, after: string, cases: { B: number; S: number; T: number }[]): Promise<number> {
  const source = testRng();
  const rng = () => source.float();
  const opts = { intraOpNumThreads: 1, graphOptimizationLevel: 'all' as const };
  const [a, b] = [await ort.InferenceSession.create(before, opts), await ort.InferenceSession.create(after, opts)];
  const model = readModel(before);
  const pasts = model.graph!.input.filter((i) => i.name.startsWith('past_key_values.'));
  let worst = 0;
  try {
    for (const { B, S, T } of cases) {
      const feeds: Record<string, ort.Tensor> = {};
      const ids = BigInt64Array.from({ length: B * S }, () => BigInt(1 + Math.floor(rng() * 60)));
      feeds.input_ids = new ort.Tensor('int64', ids, [B, S]);
      // row b has b holes at the start of its past (masked columns)
      const mask = new BigInt64Array(B * (T + S)).fill(1n);
      for (let r = 0; r < B; r++) for (let t = 0; t < Math.min(r, T); t++) mask[r * (T + S) + t] = 0n;
      feeds.attention_mask = new ort.Tensor('int64', mask, [B, T + S]);
      if (a.inputNames.includes('position_ids')) {
        feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from({ length: B * S }, (_, i) => BigInt(T + (i % S))), [B, S]);
      }
      feeds[LAST_INDEX_INPUT] = new ort.Tensor('int64', new BigInt64Array(B).fill(BigInt(S - 1)), [B, 1]);
      for (const p of pasts) {
        const [, heads, , D] = valueInfoDims(p)! as number[];
        feeds[p.name] = new ort.Tensor('float32', Float32Array.from({ length: B * heads * T * D }, () => rng() * 2 - 1), [B, heads, T, D]);
      }
      for (const name of a.inputNames.filter((n) => !(n in feeds))) {
        // the bank's gates: a random mix per row
        const dims = valueInfoDims(model.graph!.input.find((i) => i.name === name)!)!.map((d) => (typeof d === 'number' ? d : B));
        feeds[name] = new ort.Tensor('float32', Float32Array.from({ length: dims.reduce((x, y) => x * y, 1) }, () => rng() * 0.5), dims);
      }
      const [x, y] = [await a.run(feeds), await b.run(feeds)];
      expect(Object.keys(y).sort()).toEqual(Object.keys(x).sort());
      for (const name of Object.keys(x)) {
        expect({ name, dims: y[name].dims }).toEqual({ name, dims: x[name].dims });
        const u = x[name].data as Float32Array;
        const v = y[name].data as Float32Array;
        for (let i = 0; i < u.length; i++) worst = Math.max(worst, Math.abs(u[i] - v[i]));
      }
    }
  } finally {
    await a.release();
    await b.release();
  }
  return worst;
}

const CASES = [{ B: 1, S: 1, T: 9 }, { B: 3, S: 1, T: 17 }, { B: 2, S: 6, T: 0 }, { B: 3, S: 4, T: 11 }];

describe('shareKvHeads: grouped-query attention without repeating the cache', () => {
  test('the demo model with its experts in the graph (bank): every cache rewritten, the same outputs', async () => {
    const cacheDir = tempDir('gqa-demo');
    const experts = JSON.parse(fs.readFileSync(path.join(DEMO, 'router', 'router.json'), 'utf8')).experts as string[];
    const m = await PersonaModel.load({ model: DEMO, adapters: Object.fromEntries(experts.map((e) => [e, path.join(DEMO, 'adapters', e)])), loraLayout: 'bank', cacheDir });
    await m.dispose();
    const v = variants(m.injectedFile, tempDir('gqa-demo-variants'));
    // 4 layers x key and value
    expect(v.rewritten).toBe(8);
    // the repeat and its shape arithmetic are gone (about 90 nodes a layer)
    expect(v.nodes[0] - v.nodes[1]).toBeGreaterThan(200);
    const worst = await compare(v.before, v.after, CASES);
    if (!(worst <= 1e-4)) throw new Error(`largest difference ${worst} > 1e-4\n${seedNote()}`);
  });

  test.each(['onnx-legacy', 'onnx-legacy-no-position-ids'])('tiny-llama %s (4 heads, 2 kv heads): rewritten, the same outputs', async (variant) => {
    const v = variants(path.join(FIXTURE, variant, 'model.onnx'), tempDir(`gqa-${variant}`));
    expect(v.rewritten).toBe(4);
    const worst = await compare(v.before, v.after, CASES);
    if (!(worst <= 1e-4)) throw new Error(`largest difference ${worst} > 1e-4\n${seedNote()}`);
  });

  test('a graph without the repeat pattern is left as it is', () => {
    const model = readModel(path.join(FIXTURE, 'onnx-legacy-nocache', 'model.onnx'));
    const nodes = model.graph!.node.length;
    expect(shareKvHeads(model.graph!)).toBe(0);
    expect(model.graph!.node.length).toBe(nodes);
  });
});
