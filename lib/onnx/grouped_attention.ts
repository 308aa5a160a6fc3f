// Grouped-query attention without copying the cache to every query head. Exports of models whose
// query heads share key/value heads (H = kvh · n_rep) repeat each cache before attention:
//   K_rep = Reshape(Expand(Unsqueeze(present.N.key, axis 2), [B, kvh, n_rep, T, D]), [B, H, T, D])
//   scores = MatMul(Q [B, H, S, D], Transpose(K_rep) · c)          [B, H, S, T]
//   out    = MatMul(softmax(scores + mask) [B, H, S, T], V_rep)    [B, H, S, D]
// which writes the whole cache n_rep times over at every step, and computes the Expand's target
// shape with some thirty small shape operators per layer. Head h reads kv head h / n_rep, so the
// same products come from the cache as it is, the query heads grouped by their kv head:
//   Q'     = Reshape(Q, [B, kvh, n_rep · S, D])
//   scores = Reshape(MatMul(Q', Transpose(present.N.key) · c), [B, H, S, T])
//   A'     = Reshape(softmax(...), [B, kvh, n_rep · S, T])
//   out    = Reshape(MatMul(A', present.N.value), [B, H, S, D])
// The reshapes move no data; the dropped Expand and shape operators are what a decode step saved
// (demo model, one thread, width 100: 1.15-1.18x faster at batch 4-16; logits equal to 1e-5).
// Only the runtime copy is rewritten (lib/onnx/cache.ts), and only where the pattern is exactly
// this one: anything else is left as exported.
import type { GraphProto, NodeProto, TensorProto } from './proto';
import { int64Tensor, node, valueInfoDims } from './proto';
import { elementCount } from './tensor_data';
import { pastInputOf, PRESENT_OUTPUT } from './cache_names';

/** Rewrites `model.graph` in place; returns how many caches (keys and values) now skip the repeat. */
export function shareKvHeads(graph: GraphProto): number {
  const presents = graph.output.map((o) => o.name).filter((n) => PRESENT_OUTPUT.test(n));
  const consumers = consumerMap(graph);
  const constants = constantMap(graph);
  let rewritten = 0;
  const tag = 'persona/gqa';
  const add: NodeProto[] = [];
  const shapeOf = (name: string) => {
    const out = `${tag}/${name}/shape`;
    add.push(node('Shape', [name], [out], `${tag}/${name}/shape`));
    return out;
  };
  const slice = (input: string, start: number, end: number, name: string) => {
    const [s, e] = [`${name}/starts`, `${name}/ends`];
    graph.initializer.push(int64Tensor(s, [start]), int64Tensor(e, [end]));
    add.push(node('Slice', [input, s, e], [`${name}/out`], name));
    return `${name}/out`;
  };

  for (const present of presents) {
    const repeat = repeatOf(present, consumers, constants);
    if (!repeat) continue;
    const heads = constantHeads(graph, present);
    if (heads === null) continue;
    const mm = repeat.matmul;
    const p = `${tag}/${present}`;
    const grouped = `${p}/grouped_shape`;
    graph.initializer.push(int64Tensor(grouped, [0, heads, -1, 0]));
    const first = mm.input[0];
    // [B, H, S, ·]: the first three dims of the MatMul's left input, then the cache's last used dim
    const lead = slice(shapeOf(first), 0, 3, `${p}/lead`);
    const tailDim = slice(shapeOf(present), repeat.isKey ? 2 : 3, repeat.isKey ? 3 : 4, `${p}/tail`);
    const outShape = `${p}/out_shape`;
    add.push(node('Concat', [lead, tailDim], [outShape], `${p}/out_shape`, { axis: 0 }));
    add.push(node('Reshape', [first, grouped], [`${p}/left`], `${p}/left`));
    mm.input[0] = `${p}/left`;
    const out = mm.output[0];
    mm.output[0] = `${p}/grouped_out`;
    add.push(node('Reshape', [`${p}/grouped_out`, outShape], [out], `${p}/out`));
    // the chain (Transpose, scaling) now reads the cache itself
    repeat.chainHead.input[repeat.chainInput] = present;
    rewritten++;
  }
  if (rewritten === 0) return 0;
  graph.node.push(...add);
  sortTopologically(graph);
  pruneDead(graph);
  return rewritten;
}

interface Repeat {
  /** the node after the Reshape (a Transpose, a scaling, or the MatMul itself) and which input it reads */
  chainHead: NodeProto;
  chainInput: number;
  matmul: NodeProto;
  isKey: boolean;
}

/** present -> Unsqueeze(axis 2) -> Expand -> Reshape -> [Transpose(last two) | Mul/Div by a scalar]* -> MatMul input 1. */
function repeatOf(present: string, consumers: Map<string, NodeProto[]>, constants: Map<string, TensorProto>): Repeat | null {
  const unsqueeze = (consumers.get(present) ?? []).find((n) => n.opType === 'Unsqueeze' && n.input[0] === present);
  if (!unsqueeze || !sameInts(axesOf(unsqueeze, constants), [2])) return null;
  const expand = only(consumers, unsqueeze.output[0]);
  if (!expand || expand.opType !== 'Expand' || expand.input[0] !== unsqueeze.output[0]) return null;
  const reshape = only(consumers, expand.output[0]);
  if (!reshape || reshape.opType !== 'Reshape' || reshape.input[0] !== expand.output[0]) return null;
  const chainHead = only(consumers, reshape.output[0]);
  if (!chainHead) return null;
  const chainInput = chainHead.input.indexOf(reshape.output[0]);
  let value = reshape.output[0];
  let transposes = 0;
  for (let hops = 0; hops < 4; hops++) {
    const next = only(consumers, value);
    if (!next) return null;
    const at = next.input.indexOf(value);
    if (next.opType === 'MatMul') {
      if (at !== 1) return null;
      // keys are transposed once on the way (K^T), values not at all
      if (transposes > 1) return null;
      return { chainHead, chainInput, matmul: next, isKey: transposes === 1 };
    }
    if (next.opType === 'Transpose') {
      if (!sameInts(permOf(next), [0, 1, 3, 2])) return null;
      transposes++;
    } else if (next.opType === 'Mul' || (next.opType === 'Div' && at === 0)) {
      const other = constants.get(next.input[1 - at]);
      if (!other || elementCount(other) !== 1) return null;
    } else {
      return null;
    }
    value = next.output[0];
  }
  return null;
}

/** The cache's head count from the graph's declared past input of the same layer (dims[1]). */
function constantHeads(graph: GraphProto, present: string): number | null {
  const past = pastInputOf(graph, present);
  const heads = past ? valueInfoDims(past)?.[1] : undefined;
  return typeof heads === 'number' ? heads : null;
}

function consumerMap(graph: GraphProto): Map<string, NodeProto[]> {
  const m = new Map<string, NodeProto[]>();
  for (const n of graph.node) for (const i of n.input) if (i) m.set(i, [...(m.get(i) ?? []), n]);
  return m;
}

/** Initializers and Constant nodes' values, by name. */
function constantMap(graph: GraphProto): Map<string, TensorProto> {
  const m = new Map<string, TensorProto>(graph.initializer.map((t) => [t.name, t]));
  for (const n of graph.node) {
    const t = n.opType === 'Constant' ? n.attribute.find((a) => a.name === 'value')?.t : undefined;
    if (t) m.set(n.output[0], t);
  }
  return m;
}

/** The single consumer of `value` (null when none or several). */
function only(consumers: Map<string, NodeProto[]>, value: string): NodeProto | null {
  const c = consumers.get(value) ?? [];
  return c.length === 1 ? c[0] : null;
}

function axesOf(n: NodeProto, constants: Map<string, TensorProto>): number[] | null {
  const attr = n.attribute.find((a) => a.name === 'axes');
  if (attr) return attr.ints.map(Number);
  const t = n.input[1] ? constants.get(n.input[1]) : undefined;
  return t ? int64Values(t) : null;
}

function permOf(n: NodeProto): number[] | null {
  const attr = n.attribute.find((a) => a.name === 'perm');
  return attr ? attr.ints.map(Number) : null;
}

function int64Values(t: TensorProto): number[] | null {
  if (t.int64Data.length) return t.int64Data.map(Number);
  if (t.rawData.length % 8 !== 0 || t.rawData.length === 0) return null;
  const view = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
  return Array.from({ length: t.rawData.length / 8 }, (_, i) => Number(view.getBigInt64(i * 8, true)));
}

function sameInts(a: number[] | null, b: number[]): boolean {
  return a !== null && a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Nodes in an order where every input is made before it is read (the added nodes went last). */
function sortTopologically(graph: GraphProto): void {
  const made = new Set<string>([...graph.input.map((i) => i.name), ...graph.initializer.map((t) => t.name), '']);
  let pending = [...graph.node];
  const order: NodeProto[] = [];
  while (pending.length) {
    const rest: NodeProto[] = [];
    for (const n of pending) {
      if (n.input.every((i) => made.has(i))) {
        order.push(n);
        n.output.forEach((o) => made.add(o));
      } else {
        rest.push(n);
      }
    }
    if (rest.length === pending.length) throw new Error(`shareKvHeads left ${rest.length} nodes whose inputs nothing makes (first: ${rest[0].name})`);
    pending = rest;
  }
  graph.node.splice(0, graph.node.length, ...order);
}

/** Drops nodes none of whose outputs is read by another node or is a graph output. */
function pruneDead(graph: GraphProto): void {
  const needed = new Set(graph.output.map((o) => o.name));
  const keep: NodeProto[] = [];
  for (let i = graph.node.length - 1; i >= 0; i--) {
    const n = graph.node[i];
    if (n.output.some((o) => needed.has(o))) {
      keep.push(n);
      n.input.forEach((x) => needed.add(x));
    }
  }
  keep.reverse();
  graph.node.splice(0, graph.node.length, ...keep);
  const used = new Set(graph.node.flatMap((n) => n.input));
  graph.initializer.splice(0, graph.initializer.length, ...graph.initializer.filter((t) => used.has(t.name) || graph.input.some((i) => i.name === t.name)));
}
