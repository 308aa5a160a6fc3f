// The runtime graph (lib/onnx/last_logits.ts): logits at one position per row, the rest of the
// model unchanged. Checked against the injected model's full logits on every fixture export, by
// plain onnxruntime runs; and the exports it cannot rewrite keep their full logits.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadPeftAdapter } from '../lib/adapters';
import { injectedModel, runtimeModel } from '../lib/onnx/cache';
import { HIDDEN_OUTPUT, keepLastLogits, LAST_INDEX_INPUT } from '../lib/onnx/last_logits';
import { cloneModel, readModel } from '../lib/onnx/proto';
import { findLinearTargets } from '../lib/onnx/targets';
import { adapterFolders, FIXTURE, plainFeeds, reference, relError, tempDir, VARIANTS } from './helpers/model';
import { seedNote, testRng } from './helpers/rng';

const cacheDir = tempDir('last-logits');
afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));
const adapters = Object.entries(adapterFolders()).map(([name, dir]) => loadPeftAdapter(dir, name));

/** plainFeeds, zero adapter ranks, and the last-position input when the graph takes it. */
function feedsFor(session: ort.InferenceSession, rows: number[][], withLast: boolean, sites: { aInput: string; bInput: string; din: number; dout: number }[]) {
  const B = rows.length;
  const feeds = plainFeeds(session, rows);
  for (const s of sites) {
    feeds[s.aInput] = new ort.Tensor('float32', new Float32Array(0), [B, s.din, 0]);
    feeds[s.bInput] = new ort.Tensor('float32', new Float32Array(0), [B, 0, s.dout]);
  }
  if (withLast) feeds[LAST_INDEX_INPUT] = new ort.Tensor('int64', BigInt64Array.from(rows, (r) => BigInt(r.length - 1)), [B, 1]);
  return feeds;
}

describe('keepLastLogits (runtime graph)', () => {
  const rows = [reference.sequences[0].slice(0, 5), reference.sequences[1].slice(0, 11), reference.sequences[2].slice(0, 2)];

  test.each(VARIANTS)('%s: each row\'s logits equal the full model\'s at its last position, as [batch, 1, vocab]', async (variant) => {
    const built = injectedModel(path.join(FIXTURE, variant, 'model.onnx'), adapters, { cacheDir });
    const runtime = runtimeModel(built);
    expect(runtime.lastIndex).toBe(true);
    expect(runtime.file).not.toBe(built.file);
    const full = await ort.InferenceSession.create(built.file);
    const last = await ort.InferenceSession.create(runtime.file);
    try {
      expect(last.inputNames).toContain(LAST_INDEX_INPUT);
      const a = await full.run(feedsFor(full, rows, false, built.injection.sites), ['logits']);
      const b = await last.run(feedsFor(last, rows, true, built.injection.sites), ['logits']);
      const [, L, V] = a.logits.dims.map(Number);
      expect(b.logits.dims.map(Number)).toEqual([rows.length, 1, V]);
      const fa = a.logits.data as Float32Array;
      const fb = b.logits.data as Float32Array;
      rows.forEach((r, i) => {
        const want = fa.subarray((i * L + r.length - 1) * V, (i * L + r.length) * V);
        const got = fb.subarray(i * V, (i + 1) * V);
        let worst = 0;
        want.forEach((w, j) => (worst = Math.max(worst, Math.abs(w - got[j]) / (Math.abs(w) + 1e-3))));
        expect(worst).toBeLessThan(1e-5);
      });
    } finally {
      await full.release();
      await last.release();
    }
  });

  test('an adapted LM head: the head and its adapter both read the last position, and each row\'s logits equal the full model\'s there', async () => {
    const file = path.join(FIXTURE, 'onnx-legacy', 'model.onnx');
    const head = findLinearTargets(readModel(file)).find((t) => t.module === 'lm_head')!;
    const headAdapter = { name: 'head', modules: new Map([['lm_head', { layer: null, module: 'lm_head', din: head.din, dout: head.dout }]]) };
    const built = injectedModel(file, [...adapters, headAdapter], { cacheDir });
    const site = built.injection.sites.find((x) => x.module === 'lm_head')!;
    expect(site).toBeDefined();
    const runtime = runtimeModel(built);
    expect(runtime.lastIndex).toBe(true);
    // a rank-3 adapter on the head for every row, different per row, large enough to change the logits
    const rng = testRng();
    const B = rows.length;
    const R = 3;
    const a = new ort.Tensor('float32', rng.f32(B * site.din * R, -0.5, 0.5), [B, site.din, R]);
    const b = new ort.Tensor('float32', rng.f32(B * R * site.dout, -0.5, 0.5), [B, R, site.dout]);
    const full = await ort.InferenceSession.create(built.file);
    const last = await ort.InferenceSession.create(runtime.file);
    try {
      const run = async (s: ort.InferenceSession, withLast: boolean, adapted: boolean) => {
        const feeds = feedsFor(s, rows, withLast, built.injection.sites);
        if (adapted) Object.assign(feeds, { [site.aInput]: a, [site.bInput]: b });
        return (await s.run(feeds, ['logits'])).logits;
      };
      const want = await run(full, false, true);
      const got = await run(last, true, true);
      const plain = await run(last, true, false);
      // the hidden states a router pools stay an output, at every position
      const feeds = feedsFor(last, rows, true, built.injection.sites);
      const hidden = (await last.run(feeds, [HIDDEN_OUTPUT]))[HIDDEN_OUTPUT];
      expect(hidden.dims.map(Number)).toEqual([rows.length, Math.max(...rows.map((r) => r.length)), site.din]);
      const [, L, V] = want.dims.map(Number);
      expect(got.dims.map(Number)).toEqual([B, 1, V]);
      const fw = want.data as Float32Array;
      rows.forEach((r, i) => {
        const w = fw.subarray((i * L + r.length - 1) * V, (i * L + r.length) * V);
        const adapted = relError((got.data as Float32Array).subarray(i * V, (i + 1) * V), w);
        // the adapter is there: without it the logits differ
        const without = relError((plain.data as Float32Array).subarray(i * V, (i + 1) * V), w);
        if (!(adapted < 1e-5 && without > 1e-2)) throw new Error(`row ${i}: error ${adapted} with the adapter (bound 1e-5), ${without} without (must exceed 1e-2); ${seedNote()}`);
      });
    } finally {
      await full.release();
      await last.release();
    }
  });

  test('the runtime copy shares the injected model\'s weights file and is reused', () => {
    const built = injectedModel(path.join(FIXTURE, 'onnx-legacy', 'model.onnx'), adapters, { cacheDir });
    const first = runtimeModel(built);
    const mtime = fs.statSync(first.file).mtimeMs;
    expect(runtimeModel(built).file).toBe(first.file);
    expect(fs.statSync(first.file).mtimeMs).toBe(mtime);
    expect(fs.existsSync(`${first.file}.data`)).toBe(false);
    expect(fs.statSync(first.file).size).toBeLessThan(fs.statSync(built.file).size * 1.1 + 4096);
  });

  test('an LM head that is not a MatMul, or an opset before 12, is left alone', () => {
    const model = readModel(path.join(FIXTURE, 'onnx-legacy', 'model.onnx'));
    const gemm = cloneModel(model);
    gemm.graph!.node.find((n) => n.output[0] === 'logits')!.opType = 'Gemm';
    expect(keepLastLogits(gemm)).toBe(false);
    expect(gemm.graph!.input.map((i) => i.name)).not.toContain(LAST_INDEX_INPUT);
    const old = cloneModel(model);
    old.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx')!.version = 11n;
    expect(keepLastLogits(old)).toBe(false);
    expect(old.graph!.node.length).toBe(model.graph!.node.length);
  });
});
