// exposeNewKv (lib/onnx/new_kv.ts): the runtime graph returns the cache columns a run adds as
// outputs of their own, persona_new.N.* = present.N.*[:, :, T:, :], so the engine can keep the
// cache itself instead of taking a copy of the whole of it after every step. Checked on fresh
// random pasts and tokens, prompts and decode steps: the new outputs must equal the present
// outputs' last columns bit for bit (they are the same values, taken before the Concat).
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { exposeNewKv, newKvOutput } from '../lib/onnx/new_kv';
import { keepLastLogits, LAST_INDEX_INPUT } from '../lib/onnx/last_logits';
import { shareKvHeads } from '../lib/onnx/grouped_attention';
import { node, readModel, valueInfoDims } from '../lib/onnx/proto';
import { writeModel } from '../lib/onnx/write';
import { FIXTURE, tempDir } from './helpers/model';
import { seedNote, testRng } from './helpers/rng';

/** The fixture as the runtime graph has it (lib/onnx/cache.ts): last logits, shared kv heads, new columns. */
function runtimeVariant(variant: string): { file: string; added: number } {
  const source = path.join(FIXTURE, variant, 'model.onnx');
  const model = readModel(source);
  if (!keepLastLogits(model)) throw new Error(`${variant}: no last-logits form`);
  shareKvHeads(model.graph!);
  const added = exposeNewKv(model.graph!);
  const file = path.join(tempDir(`new-kv-${variant}`), 'model.onnx');
  writeModel(model, file, { sourceDir: path.dirname(source) });
  return { file, added };
}

describe('exposeNewKv: the columns a run adds, as outputs of their own', () => {
  test.each(['onnx-legacy', 'onnx-dynamo', 'onnx-legacy-no-position-ids'])('tiny-llama %s: persona_new.N.* equal present.N.*[:, :, T:] on random pasts, prompts and steps', async (variant) => {
    const { file, added } = runtimeVariant(variant);
    // 2 layers x key and value
    expect(added).toBe(4);
    const rng = testRng();
    const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
    const model = readModel(file);
    const pasts = model.graph!.input.filter((i) => i.name.startsWith('past_key_values.'));
    try {
      for (const [B, S, T] of [[1, 1, 7], [3, 1, 12], [2, 5, 0], [2, 3, 9]]) {
        const feeds: Record<string, ort.Tensor> = {
          input_ids: new ort.Tensor('int64', BigInt64Array.from({ length: B * S }, () => BigInt(rng.int(1, 60))), [B, S]),
          attention_mask: new ort.Tensor('int64', new BigInt64Array(B * (T + S)).fill(1n), [B, T + S]),
          [LAST_INDEX_INPUT]: new ort.Tensor('int64', new BigInt64Array(B).fill(BigInt(S - 1)), [B, 1]),
        };
        if (session.inputNames.includes('position_ids')) {
          feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from({ length: B * S }, (_, i) => BigInt(T + (i % S))), [B, S]);
        }
        for (const p of pasts) {
          const [, heads, , D] = valueInfoDims(p)! as number[];
          feeds[p.name] = new ort.Tensor('float32', Float32Array.from({ length: B * heads * T * D }, () => rng.uniform(-1, 1)), [B, heads, T, D]);
        }
        const out = await session.run(feeds);
        for (const p of pasts) {
          const present = p.name.replace('past_key_values.', 'present.');
          const whole = out[present];
          const fresh = out[newKvOutput(present)];
          const [, heads, , D] = whole.dims.map(Number);
          expect({ present, dims: fresh.dims }).toEqual({ present, dims: [B, heads, S, D] });
          const [w, f] = [whole.data as Float32Array, fresh.data as Float32Array];
          for (let b = 0; b < B; b++) for (let h = 0; h < heads; h++) for (let s = 0; s < S; s++) for (let d = 0; d < D; d++) {
            const want = w[((b * heads + h) * (T + S) + T + s) * D + d];
            const got = f[((b * heads + h) * S + s) * D + d];
            if (got !== want) throw new Error(`${present} row ${b} head ${h} column ${s}: ${got}, want ${want} (${seedNote()})`);
          }
        }
      }
    } finally {
      await session.release();
    }
  });

  test('a cache not appended by a Concat on axis 2 onto its own layer\'s past gets no new output, and a second pass adds nothing', () => {
    const model = readModel(path.join(FIXTURE, 'onnx-legacy', 'model.onnx'));
    const graph = model.graph!;
    // present.0.key now comes through an Add, so its first Concat input is no longer the past
    const concat = graph.node.find((n) => n.output[0] === 'present.0.key')!;
    graph.node.push(node('Identity', [concat.input[0]], ['moved'], 'moved'));
    const scaled = node('Add', ['moved', 'moved'], ['doubled'], 'doubled');
    graph.node.push(scaled);
    concat.input[0] = 'doubled';
    expect(exposeNewKv(graph)).toBe(3);
    expect(graph.output.map((o) => o.name)).not.toContain('persona_new.0.key');
    expect(graph.output.map((o) => o.name)).toContain('persona_new.0.value');
    // a second pass adds nothing
    expect(exposeNewKv(graph)).toBe(0);
    // a Concat on another axis, or onto another layer's past, is not the cache's append
    const fresh = readModel(path.join(FIXTURE, 'onnx-legacy', 'model.onnx')).graph!;
    const value0 = fresh.node.find((n) => n.output[0] === 'present.0.value')!;
    value0.attribute.find((a) => a.name === 'axis')!.i = BigInt(1);
    const key1 = fresh.node.find((n) => n.output[0] === 'present.1.key')!;
    key1.input[0] = 'past_key_values.0.key';
    expect(exposeNewKv(fresh)).toBe(2);
    expect(fresh.output.map((o) => o.name).filter((n) => n.startsWith('persona_new.')).sort()).toEqual(['persona_new.0.key', 'persona_new.1.value']);
    // a model without a cache is left as it is
    const nocache = readModel(path.join(FIXTURE, 'onnx-legacy-nocache', 'model.onnx'));
    expect(exposeNewKv(nocache.graph!)).toBe(0);
  });
});
