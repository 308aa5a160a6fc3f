// bench/synthetic_weights.ts: the committed wide benchmark graph (bench/models/llama-1b-slice) is
// a real export whose weight file is not committed; the bench refills it from a seed. Checked on
// the fixture export moved into the same shape (so no gigabyte is written here), and on the
// committed graph's own description of its weights.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ensureSyntheticWeights, SYNTHETIC_KEY } from '../bench/synthetic_weights';
import { metadataEntry, ModelProto, ONNX_FLOAT, readModel } from '../lib/onnx/proto';
import { elementCount, externalField, isExternal } from '../lib/onnx/tensor_data';
import { writeModel } from '../lib/onnx/write';
import { FIXTURE, plainFeeds, reference, tempDir } from './helpers/model';

const SLICE = path.join(__dirname, '..', 'bench', 'models', 'llama-1b-slice');
const work = tempDir('synthetic');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const STD = 0.05;

/** The fixture's legacy export with its initializers external and the data file removed. */
function weightless(tag: string, spec: object = { file: 'model.onnx.data', distribution: 'uniform', std: STD, seed: 3 }): string {
  const src = path.join(FIXTURE, 'onnx-legacy', 'model.onnx');
  const model: ModelProto = readModel(src);
  model.metadataProps.push(metadataEntry(SYNTHETIC_KEY, JSON.stringify(spec)));
  const file = path.join(work, tag, 'model.onnx');
  writeModel(model, file, { sourceDir: path.dirname(src) });
  fs.rmSync(`${file}.data`);
  return file;
}

function externalFloats(file: string): { name: string; offset: number; length: number }[] {
  return (readModel(file).graph?.initializer ?? []).filter(isExternal).map((t) => {
    expect(t.dataType).toBe(ONNX_FLOAT);
    return { name: t.name, offset: Number(externalField(t, 'offset') ?? 0), length: Number(externalField(t, 'length')) };
  });
}

describe('ensureSyntheticWeights', () => {
  test('fills every external tensor with seeded uniform values of the stated std, and onnxruntime runs the model', async () => {
    const file = weightless('fill');
    const data = ensureSyntheticWeights(file);
    expect(data).toBe(`${file}.data`);
    const bytes = fs.readFileSync(data!);
    const tensors = externalFloats(file);
    expect(bytes.length).toBe(Math.max(...tensors.map((t) => t.offset + t.length)));
    const half = STD * Math.sqrt(3);
    for (const t of tensors) {
      const v = new Float32Array(bytes.buffer.slice(bytes.byteOffset + t.offset, bytes.byteOffset + t.offset + t.length));
      if (v.length < 4096) continue; // too few values for the moments to be tight
      let sum = 0;
      let sq = 0;
      let outside = 0;
      for (const x of v) {
        sum += x;
        sq += x * x;
        if (!(Math.abs(x) <= half)) outside++;
      }
      expect(outside).toBe(0);
      expect(Math.abs(sum / v.length)).toBeLessThan((5 * STD) / Math.sqrt(v.length));
      expect(Math.sqrt(sq / v.length)).toBeGreaterThan(STD * 0.95);
      expect(Math.sqrt(sq / v.length)).toBeLessThan(STD * 1.05);
    }
    const session = await ort.InferenceSession.create(file);
    try {
      const out = await session.run(plainFeeds(session, [reference.sequences[0]]));
      const logits = out.logits.data as Float32Array;
      expect(logits.length).toBeGreaterThan(0);
      expect(logits.every(Number.isFinite)).toBe(true);
    } finally {
      await session.release();
    }
  });

  test('the same seed writes the same bytes; a different seed different ones', () => {
    const a = fs.readFileSync(ensureSyntheticWeights(weightless('seed-a'))!);
    const b = fs.readFileSync(ensureSyntheticWeights(weightless('seed-b'))!);
    const c = fs.readFileSync(ensureSyntheticWeights(weightless('seed-c', { file: 'model.onnx.data', distribution: 'uniform', std: STD, seed: 4 }))!);
    expect(Buffer.compare(a, b)).toBe(0);
    expect(Buffer.compare(a, c)).not.toBe(0);
  });

  test('a complete file is left alone; a file of the wrong size is an error and stays as it was', () => {
    const file = weightless('twice');
    const data = ensureSyntheticWeights(file)!;
    const before = fs.statSync(data).mtimeMs;
    expect(ensureSyntheticWeights(file)).toBeNull();
    expect(fs.statSync(data).mtimeMs).toBe(before);
    fs.truncateSync(data, 100);
    expect(() => ensureSyntheticWeights(file)).toThrow(/100 bytes, but the graph's synthetic weights need \d+; delete it/);
    expect(fs.statSync(data).size).toBe(100);
  });

  test('a model without the metadata entry is not touched', () => {
    expect(ensureSyntheticWeights(path.join(FIXTURE, 'onnx-legacy', 'model.onnx'))).toBeNull();
  });

  test.each([
    ['not JSON', '{', /is not JSON/],
    ['a path as the file name', JSON.stringify({ file: '../x.data', distribution: 'uniform', std: 0.02, seed: 0 }), /plain file name/],
    ['another distribution', JSON.stringify({ file: 'model.onnx.data', distribution: 'normal', std: 0.02, seed: 0 }), /distribution: "uniform"/],
    ['a file no initializer lives in', JSON.stringify({ file: 'other.data', distribution: 'uniform', std: 0.02, seed: 0 }), /no initializer lives in other.data/],
  ])('metadata with %s is a clear error', (_what, value, message) => {
    const file = weightless(`bad-${_what.replace(/\W+/g, '-')}`);
    const model = readModel(file);
    model.metadataProps.find((p) => p.key === SYNTHETIC_KEY)!.value = value;
    writeModel(model, file, { sourceDir: path.dirname(file) });
    expect(() => ensureSyntheticWeights(file)).toThrow(message);
  });
});

describe('bench/models/llama-1b-slice (the committed graph)', () => {
  const file = path.join(SLICE, 'onnx', 'model.onnx');
  const config = JSON.parse(fs.readFileSync(path.join(SLICE, 'config.json'), 'utf8'));

  test('has Llama-3.2-1B\'s layer shapes, four layers and a 512-token vocabulary', () => {
    expect(config).toMatchObject({ hidden_size: 2048, intermediate_size: 8192, num_attention_heads: 32, num_key_value_heads: 8, num_hidden_layers: 4, vocab_size: 512 });
  });

  test('every float weight of 1 MiB or more lives in model.onnx_data, without overlaps; the metadata says how to fill it', () => {
    const model = readModel(file);
    const spec = JSON.parse(model.metadataProps.find((p) => p.key === SYNTHETIC_KEY)!.value);
    expect(spec).toEqual({ file: 'model.onnx_data', distribution: 'uniform', std: 0.02, seed: 0 });
    const inits = model.graph?.initializer ?? [];
    const inline = inits.filter((t) => !isExternal(t) && t.dataType === ONNX_FLOAT && 4 * elementCount(t) >= 1 << 20);
    expect(inline.map((t) => t.name)).toEqual([]);
    const ext = externalFloats(file).sort((a, b) => a.offset - b.offset);
    // 4 layers x 7 projections, the embedding and the LM head
    expect(ext.length).toBe(4 * 7 + 2);
    ext.forEach((e, i) => i > 0 && expect(e.offset).toBeGreaterThanOrEqual(ext[i - 1].offset + ext[i - 1].length));
    const params = ext.reduce((n, e) => n + e.length / 4, 0);
    const h = 2048, kv = 8 * 64, ff = 8192, v = 512;
    expect(params).toBe(4 * (2 * h * h + 2 * h * kv + 3 * h * ff) + 2 * v * h);
  });
});
