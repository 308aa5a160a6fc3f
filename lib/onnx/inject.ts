// LoRA injection: a stock decoder gains, for every adapted linear layer,
//
//   y = base(x) + MatMul(MatMul(x, A_in), B_in)      A_in [batch, din, R], B_in [batch, R, dout]
//
// with A_in / B_in as required graph inputs (ARCHITECTURE.md §3: onnxruntime-node cannot run our
// kernels inside the graph, and inputs with default initializers are invisible to it). Each site
// has its own rank symbol, so R = 0 feeds for one site reproduce the base layer there. A fused
// base (qkv_proj, gate_up_proj) gets one input pair per PEFT module, and their deltas are
// concatenated into the right output slices. Everything else in the model is left as it was.
import { FUSED_MODULES, LinearTarget } from './targets';
import { Dim, int64Tensor, ModelProto, node, NodeProto, ONNX_FLOAT, tensorValueInfo, valueInfoDims } from './proto';

/** One adapted PEFT module: the pair of inputs that feeds it. */
export interface InjectionSite {
  layer: number | null;
  /** PEFT module leaf name (q_proj even when the base is a fused qkv_proj) */
  module: string;
  din: number;
  dout: number;
  aInput: string;
  bInput: string;
  rankDim: string;
  /** the base linear's module path */
  basePath: string;
}

/** What to adapt: for a target, the PEFT modules it carries and their output widths, in column order. */
export type SitePlanner = (target: LinearTarget) => { module: string; dout: number }[] | null;

export interface Injection {
  sites: InjectionSite[];
  batchDim: Dim;
}

const PREFIX = 'persona';

/** Rewrites `model` in place; returns the sites in graph-input order. */
export function injectLora(model: ModelProto, targets: LinearTarget[], plan: SitePlanner): Injection {
  const graph = model.graph!;
  const idsInput = graph.input.find((i) => i.name === 'input_ids');
  const batchDim: Dim = (idsInput && valueInfoDims(idsInput)?.[0]) ?? 'batch_size';
  const sites: InjectionSite[] = [];
  const planned = targets
    .map((t) => ({ t, subs: plan(t) }))
    .filter((p): p is { t: LinearTarget; subs: { module: string; dout: number }[] } => !!p.subs && p.subs.length > 0);
  // insert from the back so earlier indices stay valid
  planned.sort((a, b) => b.t.index - a.t.index);
  let needBatchShape = false;
  const siteOrder: InjectionSite[][] = [];
  for (const { t, subs } of planned) {
    const total = subs.reduce((s, x) => s + x.dout, 0);
    if (total !== t.dout) {
      throw new Error(
        `The adapters' output widths for ${t.path} (${subs.map((s) => `${s.module} ${s.dout}`).join(' + ')}) ` +
          `do not add up to the layer's ${t.dout} outputs`,
      );
    }
    const tag = `${PREFIX}/${t.path}`;
    const newNodes: NodeProto[] = [];
    const x = t.node.input[0];
    let x3 = x;
    if (t.kind === 'Gemm') {
      // Gemm flattens tokens to [batch*seq, din]; give them back their batch axis for the per-row inputs
      needBatchShape = true;
      newNodes.push(node('Concat', [`${PREFIX}/batch`, `${PREFIX}/minus1`, `${tag}/din`], [`${tag}/x_shape`], `${tag}/x_shape`, { axis: 0 }));
      graph.initializer.push(int64Tensor(`${tag}/din`, [t.din]));
      newNodes.push(node('Reshape', [x, `${tag}/x_shape`], [`${tag}/x3`], `${tag}/x3`));
      x3 = `${tag}/x3`;
    }
    if (t.activation !== ONNX_FLOAT) {
      // half-precision layer: the adapter path runs in float32 (the A_in/B_in feeds are float32)
      // and its sum is rounded once, where it joins the base output
      newNodes.push(node('Cast', [x3], [`${tag}/x32`], `${tag}/x32`, { to: ONNX_FLOAT }));
      x3 = `${tag}/x32`;
    }
    const here: InjectionSite[] = [];
    const deltas: string[] = [];
    for (const sub of subs) {
      const stag = subs.length > 1 ? `${tag}/${sub.module}` : tag;
      const site: InjectionSite = {
        layer: t.layer, module: sub.module, din: t.din, dout: sub.dout,
        aInput: `${stag}/lora_A`, bInput: `${stag}/lora_B`, rankDim: '', basePath: t.path,
      };
      here.push(site);
      newNodes.push(node('MatMul', [x3, site.aInput], [`${stag}/xa`], `${stag}/xa`));
      newNodes.push(node('MatMul', [`${stag}/xa`, site.bInput], [`${stag}/delta`], `${stag}/delta`));
      deltas.push(`${stag}/delta`);
    }
    let delta = deltas[0];
    if (deltas.length > 1) {
      newNodes.push(node('Concat', deltas, [`${tag}/delta`], `${tag}/delta`, { axis: -1 }));
      delta = `${tag}/delta`;
    }
    if (t.activation !== ONNX_FLOAT) {
      newNodes.push(node('Cast', [delta], [`${tag}/delta_cast`], `${tag}/delta_cast`, { to: t.activation }));
      delta = `${tag}/delta_cast`;
    }
    if (t.kind === 'Gemm') {
      graph.initializer.push(int64Tensor(`${tag}/flat_shape`, [-1, t.dout]));
      newNodes.push(node('Reshape', [delta, `${tag}/flat_shape`], [`${tag}/delta2d`], `${tag}/delta2d`));
      delta = `${tag}/delta2d`;
    }
    const out = t.node.output[0];
    t.node.output[0] = `${tag}/base`;
    newNodes.push(node('Add', [`${tag}/base`, delta], [out], `${tag}/add`));
    graph.node.splice(t.index + 1, 0, ...newNodes);
    siteOrder.push(here);
  }
  if (needBatchShape) {
    // batch = Gather(Shape(input_ids), [0]): a [1] tensor, valid in every opset
    graph.initializer.push(int64Tensor(`${PREFIX}/minus1`, [-1]), int64Tensor(`${PREFIX}/zero`, [0]));
    graph.node.unshift(
      node('Shape', ['input_ids'], [`${PREFIX}/ids_shape`], `${PREFIX}/ids_shape`),
      node('Gather', [`${PREFIX}/ids_shape`, `${PREFIX}/zero`], [`${PREFIX}/batch`], `${PREFIX}/batch`, { axis: 0 }),
    );
  }
  // graph inputs in model order (front to back)
  siteOrder.reverse();
  for (const group of siteOrder) {
    for (const site of group) {
      site.rankDim = `${PREFIX}_r${sites.length}`;
      graph.input.push(tensorValueInfo(site.aInput, ONNX_FLOAT, [batchDim, site.din, site.rankDim]));
      graph.input.push(tensorValueInfo(site.bInput, ONNX_FLOAT, [batchDim, site.rankDim, site.dout]));
      sites.push(site);
    }
  }
  return { sites, batchDim };
}

/** The PEFT modules a target stands for: itself, or the parts of a fused module. */
export function peftModulesOf(target: LinearTarget): string[] {
  return FUSED_MODULES[target.module] ?? [target.module];
}
