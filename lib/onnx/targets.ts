// Finding the linear layers of a stock ONNX decoder by their module path.
//
// Exporters name things differently (docs/design.md §12):
//   torch.onnx (TorchScript) / Optimum   node '/model/layers.3/self_attn/q_proj/MatMul', weight 'onnx::MatMul_705' [din, dout]
//   onnxruntime-genai builder            node '/model/layers.3/attn/q_proj/MatMul' or MatMulNBits (int4), fused qkv_proj
//   torch.onnx dynamo (PyTorch >= 2.9)   node 'node_linear_3', module path in metadata_props 'pkg.torch.onnx.name_scopes'
//   older exports                        Gemm with transB = 1, weight [dout, din]
// A target is identified by (layer index, module leaf name): 'model.layers.3.self_attn.q_proj' and
// '/model/layers.3/attn/q_proj' are both (3, 'q_proj'), which is how PEFT keys are matched too.
import { intAttr, ModelProto, NodeProto, ONNX_FLOAT, producerMap, TensorProto } from './proto';

export type WeightLayout = 'in_out' | 'out_in';

export interface LinearTarget {
  /** index of the node in graph.node */
  index: number;
  node: NodeProto;
  /** module path as the exporter recorded it, dotted: 'model.layers.3.self_attn.q_proj' */
  path: string;
  layer: number | null;
  /** leaf module name: 'q_proj', 'qkv_proj', 'c_attn', ... */
  module: string;
  kind: 'MatMul' | 'Gemm' | 'MatMulNBits';
  /** initializer holding the base weight (for MatMulNBits: the packed int4 data) */
  weight: TensorProto | undefined;
  /** how the weight is stored: in_out = [din, dout] (y = x·W), out_in = [dout, din] */
  layout: WeightLayout;
  din: number;
  dout: number;
  /** ONNX element type of the layer's activations (float, or float16/bfloat16 in half-precision exports) */
  activation: number;
}

/** PEFT modules a fused base module stands for, in output-column order. */
export const FUSED_MODULES: Record<string, string[]> = {
  qkv_proj: ['q_proj', 'k_proj', 'v_proj'],
  gate_up_proj: ['gate_proj', 'up_proj'],
};

const NAME_SCOPE_KEYS = ['pkg.torch.onnx.name_scopes', 'namespace'];

/** Dotted module path of a node, from its name or its metadata; null when it has none. */
export function modulePath(n: NodeProto): string | null {
  for (const key of NAME_SCOPE_KEYS) {
    const entry = n.metadataProps.find((m) => m.key === key);
    if (!entry) continue;
    const scopes = parseScopes(entry.value);
    if (scopes.length > 0) return scopes[scopes.length - 1];
  }
  if (n.name.startsWith('/')) {
    const parts = n.name.split('/').filter((p) => p.length > 0);
    if (parts.length >= 2) return parts.slice(0, -1).join('.');
  }
  return null;
}

// name_scopes is a Python-style or JSON list of scopes, outermost first, ending with the op itself:
// "['', 'model', 'model.layers.0', 'model.layers.0.self_attn', 'model.layers.0.self_attn.q_proj', 'linear']";
// "namespace" is 'a: Class/b: Class/...' style, the same scopes with class names after ':'.
// Module scopes nest (each extends the one before it by '.name'); the op's own entry ('linear',
// 'matmul_3') does not, which is how it is told apart from a module.
function parseScopes(value: string): string[] {
  const quoted = [...value.matchAll(/'([^']*)'|"([^"]*)"/g)].map((m) => m[1] ?? m[2]);
  const items = (quoted.length > 0 ? quoted : value.split('/')).map((s) => s.split(':')[0].trim()).filter((s) => s.length > 0);
  const modules: string[] = [];
  for (const item of items) {
    if (modules.length === 0 || item.startsWith(modules[modules.length - 1] + '.')) modules.push(item);
  }
  return modules;
}

export function layerOf(path: string): number | null {
  const m = /(?:^|\.)(?:layers|h|blocks|layer|decoder\.layers)\.(\d+)(?:\.|$)/.exec(path);
  return m ? Number(m[1]) : null;
}

export function leafOf(path: string): string {
  const parts = path.split('.');
  return parts[parts.length - 1];
}

/** Every MatMul / Gemm / MatMulNBits whose weight is an initializer and whose module path is known. */
export function findLinearTargets(model: ModelProto): LinearTarget[] {
  const graph = model.graph;
  if (!graph) throw new Error('The ONNX model has no graph');
  const inits = new Map(graph.initializer.map((t) => [t.name, t]));
  // weights reached through Transpose(initializer) or Cast(initializer) count as that initializer
  const producers = producerMap(graph);

  const targets: LinearTarget[] = [];
  graph.node.forEach((n, index) => {
    if (n.domain !== '' && n.domain !== 'ai.onnx' && n.domain !== 'com.microsoft') return;
    if (n.opType !== 'MatMul' && n.opType !== 'Gemm' && n.opType !== 'MatMulNBits') return;
    const path = modulePath(n);
    if (!path) return;
    let weightName = n.input[1];
    let transposed = false;
    const prod = producers.get(weightName);
    if (prod && prod.opType === 'Transpose' && inits.has(prod.input[0])) {
      weightName = prod.input[0];
      transposed = true;
    }
    const weight = inits.get(weightName);
    if (n.opType === 'MatMulNBits') {
      targets.push({
        index, node: n, path, layer: layerOf(path), module: leafOf(path), kind: 'MatMulNBits',
        weight, layout: 'out_in', din: intAttr(n, 'K', 0), dout: intAttr(n, 'N', 0),
        // activations have the scales' type (MatMulNBits' T1)
        activation: inits.get(n.input[2])?.dataType ?? ONNX_FLOAT,
      });
      return;
    }
    if (!weight || weight.dims.length !== 2) return; // activation x activation (attention scores)
    const [d0, d1] = weight.dims.map(Number);
    let layout: WeightLayout = 'in_out';
    if (n.opType === 'Gemm') {
      if (intAttr(n, 'transA', 0) !== 0) return;
      layout = intAttr(n, 'transB', 0) === 1 ? 'out_in' : 'in_out';
    }
    if (transposed) layout = layout === 'in_out' ? 'out_in' : 'in_out';
    const din = layout === 'in_out' ? d0 : d1;
    const dout = layout === 'in_out' ? d1 : d0;
    targets.push({
      index, node: n, path, layer: layerOf(path), module: leafOf(path), kind: n.opType as 'MatMul' | 'Gemm',
      weight, layout, din, dout, activation: weight.dataType,
    });
  });
  return targets;
}

/** 'q_proj (layers 0-3), k_proj (layers 0-3), lm_head' — for error messages. */
export function summarizeTargets(targets: LinearTarget[]): string {
  const byModule = new Map<string, number[]>();
  for (const t of targets) {
    const list = byModule.get(t.module) ?? [];
    if (t.layer !== null) list.push(t.layer);
    byModule.set(t.module, list);
  }
  return [...byModule.entries()]
    .map(([m, layers]) => (layers.length ? `${m} (layers ${Math.min(...layers)}-${Math.max(...layers)})` : m))
    .join(', ');
}
