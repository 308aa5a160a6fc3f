// The onnxruntime-node peers: the same maths as each kernel, written as a small ONNX graph with
// onnx-buf and run on onnxruntime's CPU execution provider.
//
// Weights constant for the whole benchmark (the bank) are initializers, so onnxruntime may
// constant-fold and prepack them; per-call data (x, ids, gates, W) are graph inputs. Each
// expert's PEFT scale is folded into its B initializer (a constant), so the graphs take the
// router weights w as gates, like our kernels.
//
// Session options (sessionOptions below): graphOptimizationLevel 'all', intraOpNumThreads 2 (our
// kernels' thread count on this 2-core machine), interOpNumThreads 1, sequential execution,
// memory arena and memory patterns on (the defaults), workers spinning during a run (the default)
// but stopped as soon as it returns (session.force_spinning_stop = 1): onnxruntime's default
// spinning after a run takes a core from whatever runs next (our kernel), see bench/README.md (Method).
//
// Timing uses onnxruntime-node's synchronous native session (onnxruntime-node/dist/binding),
// loaded from the same bytes with the same options as the public InferenceSession: the
// public `session.run` wraps the same call in a Promise resolved from setImmediate, a hop of
// the event loop that is not onnxruntime's work (its cost is measured once per size at T = 1,
// see lora_moe.ts). The public session gives the outputs the correctness checks compare.
import { create, toBinary } from '@bufbuild/protobuf';
import {
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProto,
  OperatorSetIdProtoSchema,
  TensorProto,
  TensorProtoSchema,
  TensorProto_DataType,
  ValueInfoProto,
} from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { Dim, node as protoNode, tensorValueInfo } from '../lib/onnx/proto';

export const OPSET = 17;
export const IR_VERSION = 8n;

type Elem = 'f32' | 'f16' | 'i64';

const ELEM: Record<Elem, number> = {
  f32: TensorProto_DataType.FLOAT,
  f16: TensorProto_DataType.FLOAT16,
  i64: TensorProto_DataType.INT64,
};

// ---- graph building -------------------------------------------------------------------------

function valueInfo(name: string, elem: Elem, dims: Dim[]): ValueInfoProto {
  return tensorValueInfo(name, ELEM[elem], dims);
}

/** A node named after its op and first output. */
function node(opType: string, input: string[], output: string[], attrs: Record<string, number | number[]> = {}): NodeProto {
  return protoNode(opType, input, output, `${opType}_${output[0]}`, attrs);
}

function bytesOf(a: ArrayBufferView): Uint8Array<ArrayBuffer> {
  // a copy: the model keeps its own bytes
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength) as ArrayBuffer);
}

/** f32 initializer, or f16 when given Uint16Array bits. */
function initializer(name: string, dims: number[], data: Float32Array | Uint16Array): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: dims.map(BigInt),
    dataType: data instanceof Float32Array ? TensorProto_DataType.FLOAT : TensorProto_DataType.FLOAT16,
    rawData: bytesOf(data),
  });
}

function initI64(name: string, values: number[]): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: [BigInt(values.length)],
    dataType: TensorProto_DataType.INT64,
    int64Data: values.map(BigInt),
  });
}

interface GraphSpec {
  name: string;
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
  nodes: NodeProto[];
  initializers: TensorProto[];
}

export function modelBytes(g: GraphSpec): Uint8Array {
  const model = create(ModelProtoSchema, {
    irVersion: IR_VERSION,
    producerName: 'personafuse-bench',
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(OPSET) })],
    graph: create(GraphProtoSchema, {
      name: g.name,
      input: g.inputs,
      output: g.outputs,
      node: g.nodes,
      initializer: g.initializers,
    }),
  });
  return toBinary(ModelProtoSchema, model);
}

// ---- the bank in the layouts the graphs want ------------------------------------------------

/** A LoRA bank as float values (f16 banks already rounded), PEFT layout, scales separate. */
export interface PeerBank {
  E: number;
  r: number;
  din: number;
  dout: number;
  a: Float32Array; // [E, r, din]
  b: Float32Array; // [E, dout, r]
  scales: Float32Array; // [E]
}

/** A_eᵀ stacked: [E, din, r]. */
export function stackAT(bk: PeerBank): Float32Array {
  const { E, r, din } = bk;
  const out = new Float32Array(E * din * r);
  for (let e = 0; e < E; e++)
    for (let q = 0; q < r; q++) for (let i = 0; i < din; i++) out[(e * din + i) * r + q] = bk.a[(e * r + q) * din + i];
  return out;
}

/** s_e B_eᵀ stacked: [E, r, dout]. */
export function stackBT(bk: PeerBank): Float32Array {
  const { E, r, dout } = bk;
  const out = new Float32Array(E * r * dout);
  for (let e = 0; e < E; e++)
    for (let o = 0; o < dout; o++)
      for (let q = 0; q < r; q++) out[(e * r + q) * dout + o] = bk.scales[e] * bk.b[(e * dout + o) * r + q];
  return out;
}

/** All experts side by side: A_all [din, E·r] (column e·r+q = A_e[q, :]). */
export function denseA(bk: PeerBank): Float32Array {
  const { E, r, din } = bk;
  const out = new Float32Array(din * E * r);
  for (let e = 0; e < E; e++)
    for (let q = 0; q < r; q++) for (let i = 0; i < din; i++) out[i * E * r + e * r + q] = bk.a[(e * r + q) * din + i];
  return out;
}

/** B_all [E·r, dout] (row e·r+q = s_e B_e[:, q]ᵀ) — the same bytes as stackBT. */
export const denseB = stackBT;

// ---- the graphs -----------------------------------------------------------------------------

/**
 * lora_moe, formulation (1), gather + batched MatMul, per request:
 *   x [B, S, din], ids [B, k] i64, w [B, k]  ->  y [B, S, dout]
 *   Ag = Gather(AT, ids) [B,k,din,r];  Bg = Gather(BT, ids) [B,k,r,dout]
 *   y  = ReduceSum_k( ((x[B,1,S,din] · Ag) ⊙ w[B,k,1,1]) · Bg )
 * Decode is B = T requests of S = 1 token; a prefill is B = 1 request of S = T tokens (the
 * experts are gathered once per request, not per token). With f16 = true the bank
 * initializers are f16 and the gathered blocks are Cast to f32 (the MLAS CPU MatMul has no
 * f16 kernel on x86; a Cast of a whole initializer would be constant-folded back to f32).
 */
export function loraGatherModel(bk: PeerBank, f16bits?: { at: Uint16Array; bt: Uint16Array }): Uint8Array {
  const { E, r, din, dout } = bk;
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [initI64('axes1', [1]), initI64('axes23', [2, 3])];
  if (f16bits) {
    inits.push(initializer('AT', [E, din, r], f16bits.at), initializer('BT', [E, r, dout], f16bits.bt));
    nodes.push(node('Gather', ['AT', 'ids'], ['Ag16'], { axis: 0 }), node('Cast', ['Ag16'], ['Ag'], { to: ELEM.f32 }));
    nodes.push(node('Gather', ['BT', 'ids'], ['Bg16'], { axis: 0 }), node('Cast', ['Bg16'], ['Bg'], { to: ELEM.f32 }));
  } else {
    inits.push(initializer('AT', [E, din, r], stackAT(bk)), initializer('BT', [E, r, dout], stackBT(bk)));
    nodes.push(node('Gather', ['AT', 'ids'], ['Ag'], { axis: 0 }), node('Gather', ['BT', 'ids'], ['Bg'], { axis: 0 }));
  }
  nodes.push(
    node('Unsqueeze', ['x', 'axes1'], ['xu']),
    node('MatMul', ['xu', 'Ag'], ['h']),
    node('Unsqueeze', ['w', 'axes23'], ['wu']),
    node('Mul', ['h', 'wu'], ['hw']),
    node('MatMul', ['hw', 'Bg'], ['yk']),
    node('ReduceSum', ['yk', 'axes1'], ['y'], { keepdims: 0 }),
  );
  return modelBytes({
    name: 'lora_moe_gather',
    inputs: [valueInfo('x', 'f32', ['B', 'S', din]), valueInfo('ids', 'i64', ['B', 'k']), valueInfo('w', 'f32', ['B', 'k'])],
    outputs: [valueInfo('y', 'f32', ['B', 'S', dout])],
    nodes,
    initializers: inits,
  });
}

/**
 * lora_moe, formulation (2), dense all-experts:
 *   x [T, din], g [T, E·r] (w[t,j] over expert ids[t,j]'s r columns, zero elsewhere)
 *   y = ((x · A_all) ⊙ g) · B_all           A_all [din, E·r], B_all [E·r, dout]
 */
export function loraDenseModel(bk: PeerBank): Uint8Array {
  const { E, r, din, dout } = bk;
  return modelBytes({
    name: 'lora_moe_dense',
    inputs: [valueInfo('x', 'f32', ['T', din]), valueInfo('g', 'f32', ['T', E * r])],
    outputs: [valueInfo('y', 'f32', ['T', dout])],
    nodes: [node('MatMul', ['x', 'A_all'], ['h']), node('Mul', ['h', 'g'], ['hg']), node('MatMul', ['hg', 'B_all'], ['y'])],
    initializers: [initializer('A_all', [din, E * r], denseA(bk)), initializer('B_all', [E * r, dout], denseB(bk))],
  });
}

/** Routing: logits [T, E] -> Softmax -> TopK(k): values [T, k] f32, indices [T, k] i64. */
export function topkSoftmaxModel(E: number, k: number): Uint8Array {
  return modelBytes({
    name: 'topk_softmax',
    inputs: [valueInfo('logits', 'f32', ['T', E])],
    outputs: [valueInfo('weights', 'f32', ['T', k]), valueInfo('ids', 'i64', ['T', k])],
    nodes: [
      node('Softmax', ['logits'], ['p'], { axis: -1 }),
      node('TopK', ['p', 'K'], ['weights', 'ids'], { axis: -1, largest: 1, sorted: 1 }),
    ],
    initializers: [initI64('K', [k])],
  });
}

/**
 * merge_experts, gather form (the same FLOPs as ours):
 *   in_out: W [din, dout], ids [n] i64, w [n] -> W + A_cat · (w ⊙ B_cat)
 *     A_cat = Reshape(Transpose(Gather(AT, ids), [1,0,2]), [din, n·r]),  B_cat = Gather(BT, ids) [n·r, dout]
 *   out_in: W [dout, din] -> W + (Bcat_t ⊙ w) · Acat_t,  Bcat_t [dout, n·r], Acat_t [n·r, din]
 */
export function mergeGatherModel(bk: PeerBank, n: number, layout: 'in_out' | 'out_in'): Uint8Array {
  const { E, r, din, dout } = bk;
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [initI64('wshape', [n, 1, 1])];
  if (layout === 'in_out') {
    inits.push(
      initializer('AT', [E, din, r], stackAT(bk)),
      initializer('BT', [E, r, dout], stackBT(bk)),
      initI64('ashape', [din, n * r]),
      initI64('bshape', [n * r, dout]),
    );
    nodes.push(
      node('Gather', ['AT', 'ids'], ['Ag'], { axis: 0 }),
      node('Transpose', ['Ag'], ['Agt'], { perm: [1, 0, 2] }),
      node('Reshape', ['Agt', 'ashape'], ['Acat']),
      node('Gather', ['BT', 'ids'], ['Bg'], { axis: 0 }),
      node('Reshape', ['w', 'wshape'], ['wr']),
      node('Mul', ['Bg', 'wr'], ['Bgw']),
      node('Reshape', ['Bgw', 'bshape'], ['Bcat']),
      node('MatMul', ['Acat', 'Bcat'], ['D']),
      node('Add', ['W', 'D'], ['Wout']),
    );
  } else {
    // PEFT layouts: B [E, dout, r] with scales folded, A [E, r, din]
    const bs = new Float32Array(bk.b.length);
    for (let e = 0; e < E; e++) for (let i = 0; i < dout * r; i++) bs[e * dout * r + i] = bk.scales[e] * bk.b[e * dout * r + i];
    inits.push(
      initializer('A', [E, r, din], bk.a),
      initializer('Bp', [E, dout, r], bs),
      initI64('ashape', [n * r, din]),
      initI64('bshape', [dout, n * r]),
    );
    nodes.push(
      node('Gather', ['Bp', 'ids'], ['Bg'], { axis: 0 }),
      node('Reshape', ['w', 'wshape'], ['wr']),
      node('Mul', ['Bg', 'wr'], ['Bgw']),
      node('Transpose', ['Bgw'], ['Bgt'], { perm: [1, 0, 2] }),
      node('Reshape', ['Bgt', 'bshape'], ['Bcat']),
      node('Gather', ['A', 'ids'], ['Ag'], { axis: 0 }),
      node('Reshape', ['Ag', 'ashape'], ['Acat']),
      node('MatMul', ['Bcat', 'Acat'], ['D']),
      node('Add', ['W', 'D'], ['Wout']),
    );
  }
  const wdims = layout === 'in_out' ? [din, dout] : [dout, din];
  return modelBytes({
    name: `merge_gather_${layout}`,
    inputs: [valueInfo('W', 'f32', wdims), valueInfo('ids', 'i64', [n]), valueInfo('w', 'f32', [n])],
    outputs: [valueInfo('Wout', 'f32', wdims)],
    nodes,
    initializers: inits,
  });
}

/** merge_experts in_out, dense form: W + (A_all ⊙ g) · B_all, g [1, E·r] (zero for experts not merged). */
export function mergeDenseModel(bk: PeerBank): Uint8Array {
  const { E, r, din, dout } = bk;
  return modelBytes({
    name: 'merge_dense_in_out',
    inputs: [valueInfo('W', 'f32', [din, dout]), valueInfo('g', 'f32', [1, E * r])],
    outputs: [valueInfo('Wout', 'f32', [din, dout])],
    nodes: [node('Mul', ['A_all', 'g'], ['Ag']), node('MatMul', ['Ag', 'B_all'], ['D']), node('Add', ['W', 'D'], ['Wout'])],
    initializers: [initializer('A_all', [din, E * r], denseA(bk)), initializer('B_all', [E * r, dout], denseB(bk))],
  });
}

/** Dense GEMM for the machine's limit: C [M, N] = X [M, K] · Wt [K, N] (Wt an initializer). */
export function matmulModel(M: number, K: number, N: number, w: Float32Array): Uint8Array {
  return modelBytes({
    name: 'matmul',
    inputs: [valueInfo('X', 'f32', [M, K])],
    outputs: [valueInfo('C', 'f32', [M, N])],
    nodes: [node('MatMul', ['X', 'Wt'], ['C'])],
    initializers: [initializer('Wt', [K, N], w)],
  });
}

// ---- sessions -------------------------------------------------------------------------------

export interface PeerSettings {
  intraOpNumThreads: number;
  /** onnxruntime's workers spin while waiting for work (its default); false: they sleep. */
  allowSpinning: boolean;
  /** Stop the spinning as soon as a run returns (session.force_spinning_stop); see bench/README.md (Method). */
  forceSpinningStop: boolean;
}

export const DEFAULT_PEER_SETTINGS: PeerSettings = { intraOpNumThreads: 2, allowSpinning: true, forceSpinningStop: true };

export function sessionOptions(s: PeerSettings): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: s.intraOpNumThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    enableCpuMemArena: true,
    enableMemPattern: true,
    extra: {
      session: {
        intra_op: { allow_spinning: s.allowSpinning ? '1' : '0' },
        force_spinning_stop: s.forceSpinningStop ? '1' : '0',
      },
    },
  };
}

type Feeds = Record<string, ort.Tensor>;
type Fetches = Record<string, ort.Tensor | null>;

interface NativeSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: ort.InferenceSession.SessionOptions): void;
  run(feeds: Feeds, fetches: Fetches, options: ort.InferenceSession.RunOptions): Record<string, ort.Tensor>;
  dispose(): void;
}

let nativeBinding: { InferenceSession: new () => NativeSession; initOrtOnce?: unknown } | null | undefined;

function loadNativeBinding(): typeof nativeBinding {
  if (nativeBinding !== undefined) return nativeBinding;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require('onnxruntime-node/dist/binding') as {
      binding: { InferenceSession: new () => NativeSession };
      initOrt: () => void;
    };
    mod.initOrt();
    nativeBinding = mod.binding;
  } catch {
    nativeBinding = null;
  }
  return nativeBinding;
}

/** One ONNX graph ready to run: the public session, and a synchronous runner for timing. */
export class OrtPeer {
  readonly outputNames: string[];
  private constructor(
    readonly session: ort.InferenceSession,
    private readonly native: NativeSession | null,
  ) {
    this.outputNames = [...session.outputNames];
  }

  static async create(bytes: Uint8Array, settings: PeerSettings = DEFAULT_PEER_SETTINGS): Promise<OrtPeer> {
    const options = sessionOptions(settings);
    const session = await ort.InferenceSession.create(bytes, options);
    const nb = loadNativeBinding();
    let native: NativeSession | null = null;
    if (nb) {
      native = new nb.InferenceSession();
      const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      native.loadModel(buf, 0, buf.byteLength, options);
    }
    return new OrtPeer(session, native);
  }

  /** True when runSync calls onnxruntime directly (false: it cannot, see runSync). */
  get synchronous(): boolean {
    return this.native !== null;
  }

  /** One synchronous run; outputs into `fetches` tensors when given (pre-allocated, no copy). */
  runSync(feeds: Feeds, fetches?: Fetches): Record<string, ort.Tensor> {
    if (!this.native) throw new Error('onnxruntime-node/dist/binding could not be loaded: no synchronous runs');
    const f: Fetches = fetches ?? Object.fromEntries(this.outputNames.map((n) => [n, null]));
    return this.native.run(feeds, f, {});
  }

  /** The public API: `await session.run(feeds)`. */
  run(feeds: Feeds): Promise<ort.InferenceSession.ReturnType> {
    return this.session.run(feeds);
  }

  async release(): Promise<void> {
    this.native?.dispose();
    await this.session.release();
  }
}

export const ORT_VERSION = ort.env.versions?.node ?? ort.env.versions?.common ?? 'unknown';
export { ort };
