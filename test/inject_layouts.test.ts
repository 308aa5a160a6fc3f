// Injection on the layouts other exporters write, built here as small graphs and run by
// onnxruntime: onnxruntime-genai's fused qkv_proj / gate_up_proj and int4 MatMulNBits weights,
// Gemm with transB (tokens flattened to 2-D) and a float16 layer. For every site, the injected
// output must be base + x·A_in·B_in in that module's own output columns.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { create } from '@bufbuild/protobuf';
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from 'onnx-buf';
import { f32ToF16Bits } from '../lib/kernels/dtype';
import { AdapterShape, injectedModel } from '../lib/onnx/cache';
import {
  encodeModel, int64Tensor, metadataEntry, readModel, node, ONNX_FLOAT, ONNX_FLOAT16, ONNX_INT64, ONNX_UINT8, tensorValueInfo, TensorProtoSchema,
} from '../lib/onnx/proto';
import { findLinearTargets } from '../lib/onnx/targets';
import { tensorFloat32 } from '../lib/onnx/tensor_data';
import { tempDir } from './helpers/model';
import { testRng } from './helpers/rng';

const D = 8; // hidden size (din of every layer)
const B = 2;
const S = 3;
const rng = testRng('inject-layouts');
const rand = (n: number, scale = 1) => Float32Array.from({ length: n }, () => rng.uniform(-scale, scale));
const dir = tempDir('layouts');
const F16_TOL = 4 * 2 ** -10;
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function floatInit(name: string, dims: number[], values: Float32Array, dataType = ONNX_FLOAT) {
  const raw = dataType === ONNX_FLOAT16
    ? new Uint8Array(Uint16Array.from(values, f32ToF16Bits).buffer)
    : new Uint8Array(Float32Array.from(values).buffer);
  return create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType, rawData: raw });
}

// The graph: x [B, S, 8] feeds four layers, each an output of the graph.
//   /model/layers.0/attn/qkv_proj/MatMul       W [8, 16] = q 8 | k 4 | v 4
//   /model/layers.0/mlp/down_proj/Gemm          Reshape(x, [-1, 8]) · Wᵀ + bias, W [6, 8], transB = 1
//   /model/layers.1/attn/o_proj/MatMulNBits     int4 weights, N 6, K 8, block 16, float scales
//   /model/layers.1/mlp/gate_up_proj/MatMul     float16: Cast(x) · W16 [8, 10] = gate 5 | up 5
function buildModel(file: string): void {
  const qint = Uint8Array.from({ length: 6 * 8 }, (_, i) => (i * 7 + 3) % 16); // int4 values, zero point 8
  const packed = new Uint8Array(6 * 1 * 8); // [N, blocks, 16 * 4 / 8]; padding nibbles stay 0
  for (let n = 0; n < 6; n++) for (let k = 0; k < 8; k++) packed[n * 8 + (k >> 1)] |= qint[n * 8 + k] << ((k & 1) * 4);
  const graph = create(GraphProtoSchema, {
    name: 'layouts',
    input: [tensorValueInfo('input_ids', ONNX_INT64, ['batch', 'seq']), tensorValueInfo('x', ONNX_FLOAT, ['batch', 'seq', D])],
    output: [
      tensorValueInfo('qkv', ONNX_FLOAT, ['batch', 'seq', 16]),
      tensorValueInfo('down', ONNX_FLOAT, ['rows', 6]),
      tensorValueInfo('o', ONNX_FLOAT, ['batch', 'seq', 6]),
      tensorValueInfo('gate_up', ONNX_FLOAT, ['batch', 'seq', 10]),
    ],
    initializer: [
      floatInit('w_qkv', [D, 16], rand(D * 16)),
      floatInit('w_down', [6, D], rand(6 * D)),
      floatInit('b_down', [6], rand(6)),
      create(TensorProtoSchema, { name: 'w_o', dims: [6n, 1n, 8n], dataType: ONNX_UINT8, rawData: packed }),
      floatInit('s_o', [6], rand(6, 0.2)),
      floatInit('w_gu', [D, 10], rand(D * 10), ONNX_FLOAT16),
      int64Tensor('flat', [-1, D]),
    ],
    node: [
      node('MatMul', ['x', 'w_qkv'], ['qkv'], '/model/layers.0/attn/qkv_proj/MatMul'),
      node('Reshape', ['x', 'flat'], ['x2d'], '/model/layers.0/mlp/Reshape'),
      node('Gemm', ['x2d', 'w_down', 'b_down'], ['down'], '/model/layers.0/mlp/down_proj/Gemm', { transB: 1 }),
      node('MatMulNBits', ['x', 'w_o', 's_o'], ['o'], '/model/layers.1/attn/o_proj/MatMulNBits', { K: 8, N: 6, bits: 4, block_size: 16 }),
      node('Cast', ['x'], ['x16'], '/model/layers.1/mlp/Cast', { to: ONNX_FLOAT16 }),
      node('MatMul', ['x16', 'w_gu'], ['gu16'], '/model/layers.1/mlp/gate_up_proj/MatMul'),
      node('Cast', ['gu16'], ['gate_up'], '/model/layers.1/mlp/Cast_1', { to: ONNX_FLOAT }),
    ],
  });
  graph.node[3].domain = 'com.microsoft';
  const model = create(ModelProtoSchema, {
    irVersion: 10n,
    producerName: 'personafuse-test',
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 21n }), create(OperatorSetIdProtoSchema, { domain: 'com.microsoft', version: 1n })],
    graph,
  });
  fs.writeFileSync(file, encodeModel(model));
}

const MODULES: [number, string, number][] = [
  [0, 'q_proj', 8], [0, 'k_proj', 4], [0, 'v_proj', 4], [0, 'down_proj', 6],
  [1, 'o_proj', 6], [1, 'gate_proj', 5], [1, 'up_proj', 5],
];
const shape: AdapterShape = {
  name: 'synthetic',
  modules: new Map(MODULES.map(([layer, module, dout]) => [`model.layers.${layer}.${module}`, { layer, module, din: D, dout }])),
};

// which output and which columns each PEFT module writes
const COLUMNS: Record<string, [string, number]> = {
  q_proj: ['qkv', 0], k_proj: ['qkv', 8], v_proj: ['qkv', 12], down_proj: ['down', 0],
  o_proj: ['o', 0], gate_proj: ['gate_up', 0], up_proj: ['gate_up', 5],
};

describe('findLinearTargets on other exporters\' layouts', () => {
  test('fused, Gemm transB, int4 and float16 layers are found with their widths and layouts', () => {
    const file = path.join(dir, 'layouts.onnx');
    buildModel(file);
    const targets = findLinearTargets(readModel(file));
    const summary = targets.map((t) => [t.layer, t.module, t.kind, t.layout, t.din, t.dout, t.activation]);
    expect(summary).toEqual([
      [0, 'qkv_proj', 'MatMul', 'in_out', 8, 16, ONNX_FLOAT],
      [0, 'down_proj', 'Gemm', 'out_in', 8, 6, ONNX_FLOAT],
      [1, 'o_proj', 'MatMulNBits', 'out_in', 8, 6, ONNX_FLOAT],
      [1, 'gate_up_proj', 'MatMul', 'in_out', 8, 10, ONNX_FLOAT16],
    ]);
  });
});

describe('injectLora on other exporters\' layouts', () => {
  test('each PEFT module\'s delta lands in its own output columns; R = 0 is the base model', async () => {
    const file = path.join(dir, 'layouts.onnx');
    buildModel(file);
    const built = injectedModel(file, [shape], { cacheDir: dir });
    expect(built.injection.sites.map((s) => `${s.layer}.${s.module}`)).toEqual(MODULES.map(([l, m]) => `${l}.${m}`));
    const x = rand(B * S * D);
    const ids = new ort.Tensor('int64', new BigInt64Array(B * S), [B, S]);
    const base = await (await ort.InferenceSession.create(file)).run({ input_ids: ids, x: new ort.Tensor('float32', x, [B, S, D]) });
    const session = await ort.InferenceSession.create(built.file);

    const feeds = (R: number) => {
      const f: Record<string, ort.Tensor> = { input_ids: ids, x: new ort.Tensor('float32', x, [B, S, D]) };
      const ab: Record<string, { a: Float32Array; b: Float32Array }> = {};
      for (const s of built.injection.sites) {
        const a = rand(B * D * R), b = rand(B * R * s.dout);
        ab[s.module] = { a, b };
        f[s.aInput] = new ort.Tensor('float32', a, [B, D, R]);
        f[s.bInput] = new ort.Tensor('float32', b, [B, R, s.dout]);
      }
      return { f, ab };
    };

    const zero = await session.run(feeds(0).f);
    for (const out of ['qkv', 'down', 'o']) {
      expect(Array.from(zero[out].data as Float32Array)).toEqual(Array.from(base[out].data as Float32Array));
    }
    // float16: onnxruntime fuses the injected Add into the half-precision MatMul, which changes
    // where it rounds to f16 (a few f16 ulps, 2^-10 relative each); F16_TOL allows 4
    const gu = zero.gate_up.data as Float32Array, guBase = base.gate_up.data as Float32Array;
    gu.forEach((v, i) => expect(Math.abs(v - guBase[i])).toBeLessThanOrEqual(F16_TOL * Math.max(1, Math.abs(guBase[i]))));

    const R = 3;
    const { f, ab } = feeds(R);
    const got = await session.run(f);
    for (const s of built.injection.sites) {
      const [out, col0] = COLUMNS[s.module];
      const width = Number(base[out].dims[base[out].dims.length - 1]);
      const half = out === 'gate_up'; // float16 layer: base and sum rounded to f16
      const { a, b } = ab[s.module];
      for (let bi = 0; bi < B; bi++) {
        for (let t = 0; t < S; t++) {
          const row = bi * S + t;
          for (let o = 0; o < s.dout; o++) {
            let delta = 0;
            for (let r = 0; r < R; r++) {
              let xa = 0;
              for (let i = 0; i < D; i++) xa += x[row * D + i] * a[(bi * D + i) * R + r];
              delta += xa * b[(bi * R + r) * s.dout + o];
            }
            const idx = row * width + col0 + o;
            const want = (base[out].data as Float32Array)[idx] + delta;
            const gotV = (got[out].data as Float32Array)[idx];
            const tol = half ? F16_TOL * Math.max(1, Math.abs(want)) : 1e-5 * Math.max(1, Math.abs(want));
            if (!(Math.abs(gotV - want) <= tol)) {
              throw new Error(`${s.module} batch ${bi} token ${t} column ${col0 + o}: got ${gotV}, want ${want}`);
            }
          }
        }
      }
    }
  });

  test('the bank form: base + ((x·A_bank) ⊙ gates[expertOf])·B_bank in each module\'s columns; zero gates are the base model; a large int64 column map goes to external data', async () => {
    // 3 experts; modules differ in which experts adapt them and at what rank, so several gate
    // layouts; k_proj has no expert at all (one zero column)
    const E = 3;
    const layouts: Record<string, number[]> = {
      q_proj: [0, 0, 1, 2, 2], k_proj: [], v_proj: [1, 1, 1], down_proj: [0, 0, 1, 2, 2],
      // o_proj: 130 columns, so its int64 column map (1040 bytes) goes to the external data file
      o_proj: [...new Array<number>(65).fill(0), ...new Array<number>(65).fill(2)], gate_proj: [0, 1], up_proj: [0, 0, 1, 2, 2],
    };
    const banks = new Map<string, { a: Float32Array<ArrayBuffer>; b: Float32Array<ArrayBuffer>; expertOf: Int32Array }>();
    const bankFile = path.join(dir, 'layouts-bank.onnx');
    buildModel(bankFile);
    const built = injectedModel(bankFile, [shape], {
      cacheDir: dir,
      bank: {
        identity: 'test',
        source: {
          experts: E,
          columns: (site) => {
            const expertOf = layouts[site.module];
            if (expertOf.length === 0) return null;
            const C = expertOf.length;
            const cols = { a: rand(site.din * C), b: rand(C * site.dout), expertOf: Int32Array.from(expertOf) };
            banks.set(site.module, cols);
            return cols;
          },
        },
      },
    });
    expect(built.injection.gates).toEqual({ input: 'persona_gates', experts: E });
    expect(built.file).toMatch(/\.persona-bank-/);
    const x = rand(B * S * D);
    const ids = new ort.Tensor('int64', new BigInt64Array(B * S), [B, S]);
    const plain = { input_ids: ids, x: new ort.Tensor('float32', x, [B, S, D]) };
    const base = await (await ort.InferenceSession.create(bankFile)).run(plain);
    const session = await ort.InferenceSession.create(built.file);
    const zero = await session.run({ ...plain, persona_gates: new ort.Tensor('float32', new Float32Array(B * E), [B, E]) });
    for (const out of ['qkv', 'down', 'o']) expect(Array.from(zero[out].data as Float32Array)).toEqual(Array.from(base[out].data as Float32Array));
    const gates = rand(B * E);
    const got = await session.run({ ...plain, persona_gates: new ort.Tensor('float32', gates, [B, E]) });
    for (const s of built.injection.sites) {
      const [out, col0] = COLUMNS[s.module];
      const width = Number(base[out].dims[base[out].dims.length - 1]);
      const half = out === 'gate_up';
      const bank = banks.get(s.module);
      const C = bank?.expertOf.length ?? 0;
      for (let row = 0; row < B * S; row++) {
        const bi = Math.floor(row / S);
        for (let o = 0; o < s.dout; o++) {
          let delta = 0;
          for (let c = 0; c < C; c++) {
            let xa = 0;
            for (let i = 0; i < D; i++) xa += x[row * D + i] * bank!.a[i * C + c];
            delta += xa * gates[bi * E + bank!.expertOf[c]] * bank!.b[c * s.dout + o];
          }
          const idx = row * width + col0 + o;
          const want = (base[out].data as Float32Array)[idx] + delta;
          const gotV = (got[out].data as Float32Array)[idx];
          const tol = half ? F16_TOL * Math.max(1, Math.abs(want)) : 1e-5 * Math.max(1, Math.abs(want));
          if (!(Math.abs(gotV - want) <= tol)) throw new Error(`${s.module} row ${row} column ${col0 + o}: got ${gotV}, want ${want}`);
        }
      }
    }
    // one gate per distinct layout: [0,0,1,2,2] is shared by three modules
    const gathers = readModel(built.file).graph!.node.filter((n) => n.opType === 'Gather' && n.input[0] === 'persona_gates');
    expect(gathers).toHaveLength(5);
    const bigMap = readModel(built.file).graph!.initializer.find((t) => t.dataType === ONNX_INT64 && t.dims[0] === 130n);
    expect(bigMap?.externalData.length).toBeGreaterThan(0);
  });

  test('adapter widths that do not add up to the fused layer are refused, naming the layer', () => {
    const file = path.join(dir, 'layouts.onnx');
    buildModel(file);
    const wrong: AdapterShape = { name: 'wrong', modules: new Map([['model.layers.0.k_proj', { layer: 0, module: 'k_proj', din: D, dout: 6 }]]) };
    expect(() => injectedModel(file, [wrong], { cacheDir: dir })).toThrow(/qkv_proj.*do not add up to the layer's 16 outputs/);
  });
});

describe('external data past 2 GiB', () => {
  test('a weight stored at a 2.1 GB offset is read, kept in place by injection, and the injected model runs', async () => {
    // a sparse data file: 2.1 GB long on paper, a few KB on disk
    const big = tempDir('big');
    try {
      const offset = 2 ** 31 + 64 * 1024 * 1024;
      const w = rand(D * 4);
      const fd = fs.openSync(path.join(big, 'model.onnx.data'), 'w');
      fs.writeSync(fd, new Uint8Array(w.buffer), 0, w.byteLength, offset);
      fs.closeSync(fd);
      const weight = create(TensorProtoSchema, {
        name: 'w_q', dims: [BigInt(D), 4n], dataType: ONNX_FLOAT, dataLocation: 1,
        externalData: [metadataEntry('location', 'model.onnx.data'), metadataEntry('offset', String(offset)), metadataEntry('length', String(w.byteLength))],
      });
      const graph = create(GraphProtoSchema, {
        name: 'big',
        input: [tensorValueInfo('input_ids', ONNX_INT64, ['batch', 'seq']), tensorValueInfo('x', ONNX_FLOAT, ['batch', 'seq', D])],
        output: [tensorValueInfo('q', ONNX_FLOAT, ['batch', 'seq', 4])],
        initializer: [weight],
        node: [node('MatMul', ['x', 'w_q'], ['q'], '/model/layers.0/self_attn/q_proj/MatMul')],
      });
      const file = path.join(big, 'model.onnx');
      fs.writeFileSync(file, encodeModel(create(ModelProtoSchema, {
        irVersion: 10n, opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 21n })], graph,
      })));
      const [target] = findLinearTargets(readModel(file));
      expect(Array.from(tensorFloat32(target.weight!, big))).toEqual(Array.from(w));

      const q: AdapterShape = { name: 'q', modules: new Map([['model.layers.0.self_attn.q_proj', { layer: 0, module: 'q_proj', din: D, dout: 4 }]]) };
      const built = injectedModel(file, [q], { cacheDir: big });
      const kept = readModel(built.file).graph!.initializer.find((t) => t.name === 'w_q')!;
      expect(kept.externalData.find((e) => e.key === 'offset')!.value).toBe(String(offset));
      expect(fs.existsSync(`${built.file}.data`)).toBe(false); // nothing copied

      const x = rand(B * S * D);
      const R = 2;
      const a = rand(B * D * R), b = rand(B * R * 4);
      const session = await ort.InferenceSession.create(built.file);
      const res = await session.run({
        input_ids: new ort.Tensor('int64', new BigInt64Array(B * S), [B, S]), x: new ort.Tensor('float32', x, [B, S, D]),
        [built.injection.sites[0].aInput]: new ort.Tensor('float32', a, [B, D, R]),
        [built.injection.sites[0].bInput]: new ort.Tensor('float32', b, [B, R, 4]),
      });
      const got = res.q.data as Float32Array;
      for (let bi = 0; bi < B; bi++) for (let t = 0; t < S; t++) for (let o = 0; o < 4; o++) {
        const row = bi * S + t;
        let want = 0;
        for (let i = 0; i < D; i++) want += x[row * D + i] * w[i * 4 + o];
        for (let r = 0; r < R; r++) {
          let xa = 0;
          for (let i = 0; i < D; i++) xa += x[row * D + i] * a[(bi * D + i) * R + r];
          want += xa * b[(bi * R + r) * 4 + o];
        }
        expect(Math.abs(got[row * 4 + o] - want)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want)));
      }
      await session.release();
    } finally {
      fs.rmSync(big, { recursive: true, force: true });
    }
  });
});
