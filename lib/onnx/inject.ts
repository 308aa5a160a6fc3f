// LoRA injection: a stock decoder gains, for every adapted linear layer, one of two forms
// (docs/design.md §3: onnxruntime-node cannot run our kernels inside the graph, and inputs with
// default initializers are invisible to it).
//
//   per-row:  y = base(x) + MatMul(MatMul(x, A_in), B_in)       A_in [batch, din, R], B_in [batch, R, dout]
//             A_in / B_in are required graph inputs, each row's mix folded into its slot by the
//             caller; each site has its own rank symbol, so R = 0 feeds reproduce the base layer.
//   bank:     y = base(x) + MatMul(MatMul(x, A_bank) * G, B_bank)
//             A_bank [din, C], B_bank [C, dout]: every expert's adapter side by side (C columns,
//             column c belongs to expert e_c, PEFT scale folded into B_bank) as initializers;
//             G [batch, 1, C] = persona_gates [batch, E] gathered at e_c: the only thing fed.
//             One read of the bank per step whatever the batch, at E/k times the adapter FLOPs.
// A fused base (qkv_proj, gate_up_proj) gets one adapter per PEFT module, and their deltas are
// concatenated into the right output slices. Everything else in the model is left as it was.
import { FUSED_MODULES, LinearTarget } from './targets';
import { Dim, floatTensor, int64Tensor, ModelProto, node, NodeProto, ONNX_FLOAT, TensorProto, tensorValueInfo, valueInfoDims } from './proto';

/** One adapted PEFT module: the pair of inputs that feeds it (per-row), or its bank initializers (bank). */
export interface InjectionSite {
  layer: number | null;
  /** PEFT module leaf name (q_proj even when the base is a fused qkv_proj) */
  module: string;
  din: number;
  dout: number;
  /** per-row: the A_in / B_in graph inputs; bank: the A_bank / B_bank initializers */
  aInput: string;
  bInput: string;
  /** per-row: the rank symbol of A_in / B_in ('' in the bank form) */
  rankDim: string;
  /** the base linear's module path */
  basePath: string;
}

/** What to adapt: for a target, the PEFT modules it carries and their output widths, in column order. */
export type SitePlanner = (target: LinearTarget) => { module: string; dout: number }[] | null;

export interface Injection {
  sites: InjectionSite[];
  batchDim: Dim;
  /** the bank form's one input, persona_gates [batch, experts] (absent in the per-row form) */
  gates?: { input: string; experts: number };
}

/** The bank form's data for one site: every expert side by side, PEFT scale folded into b. */
export interface SiteBankColumns {
  /** [din, C] row-major */
  a: Float32Array<ArrayBuffer>;
  /** [C, dout] row-major */
  b: Float32Array<ArrayBuffer>;
  /** [C] the expert each column belongs to */
  expertOf: Int32Array;
}

/** The bank form: E experts, and a site's columns (null: no expert adapts that module). */
export interface BankSource {
  experts: number;
  columns(site: { layer: number | null; module: string; din: number; dout: number }): SiteBankColumns | null;
}

const PREFIX = 'persona';
export const GATES_INPUT = `${PREFIX}_gates`;

/** Rewrites `model` in place; returns the sites in graph-input order. With `bank`, the bank form. */
export function injectLora(model: ModelProto, targets: LinearTarget[], plan: SitePlanner, bank?: BankSource): Injection {
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
  const bankForm = bank ? { bank, gates: new GateColumns(graph.initializer), initializers: graph.initializer } : undefined;
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
      // half-precision layer: the adapter path runs in float32 (feeds and bank are float32)
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
        aInput: `${stag}/${bank ? 'bank_A' : 'lora_A'}`, bInput: `${stag}/${bank ? 'bank_B' : 'lora_B'}`, rankDim: '', basePath: t.path,
      };
      here.push(site);
      deltas.push(moduleDelta(x3, site, stag, newNodes, bankForm));
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
      sites.push(site);
      if (bank) continue;
      site.rankDim = `${PREFIX}_r${sites.length - 1}`;
      graph.input.push(tensorValueInfo(site.aInput, ONNX_FLOAT, [batchDim, site.din, site.rankDim]));
      graph.input.push(tensorValueInfo(site.bInput, ONNX_FLOAT, [batchDim, site.rankDim, site.dout]));
    }
  }
  if (!bankForm) return { sites, batchDim };
  graph.input.push(tensorValueInfo(GATES_INPUT, ONNX_FLOAT, [batchDim, bankForm.bank.experts]));
  graph.node.unshift(...bankForm.gates.nodes);
  return { sites, batchDim, gates: { input: GATES_INPUT, experts: bankForm.bank.experts } };
}

/**
 * One PEFT module's delta from x3 [batch, seq, din], appended to `nodes`; returns its name.
 *   per-row: MatMul(MatMul(x3, A_in), B_in)
 *   bank:    MatMul(MatMul(x3, A_bank) * G, B_bank), the bank's columns added as initializers
 *            (a module no expert adapts gets one zero column)
 */
function moduleDelta(
  x3: string, site: InjectionSite, stag: string, nodes: NodeProto[],
  bankForm?: { bank: BankSource; gates: GateColumns; initializers: TensorProto[] },
): string {
  let xa = `${stag}/xa`;
  nodes.push(node('MatMul', [x3, site.aInput], [xa], xa));
  if (bankForm) {
    const cols = bankForm.bank.columns(site) ?? { a: new Float32Array(site.din), b: new Float32Array(site.dout), expertOf: Int32Array.of(0) };
    const C = cols.expertOf.length;
    bankForm.initializers.push(floatTensor(site.aInput, [site.din, C], cols.a), floatTensor(site.bInput, [C, site.dout], cols.b));
    nodes.push(node('Mul', [xa, bankForm.gates.of(cols.expertOf)], [`${stag}/xag`], `${stag}/xag`));
    xa = `${stag}/xag`;
  }
  nodes.push(node('MatMul', [xa, site.bInput], [`${stag}/delta`], `${stag}/delta`));
  return `${stag}/delta`;
}

/**
 * The bank form's gates, one per distinct column layout (sites whose experts have the same ranks
 * share it):  G [batch, 1, C] = Reshape(Gather(persona_gates, expertOf, axis 1), [0, 1, -1]).
 */
class GateColumns {
  readonly nodes: NodeProto[] = [];
  readonly #byLayout = new Map<string, string>();
  readonly #initializers: TensorProto[];

  constructor(initializers: TensorProto[]) {
    this.#initializers = initializers;
  }

  of(expertOf: Int32Array): string {
    const key = expertOf.join(',');
    const known = this.#byLayout.get(key);
    if (known) return known;
    const tag = `${PREFIX}/gates${this.#byLayout.size}`;
    if (this.#byLayout.size === 0) this.#initializers.push(int64Tensor(`${PREFIX}/gate_shape`, [0, 1, -1]));
    this.#initializers.push(int64Tensor(`${tag}/experts`, Array.from(expertOf)));
    this.nodes.push(
      node('Gather', [GATES_INPUT, `${tag}/experts`], [`${tag}/columns`], `${tag}/columns`, { axis: 1 }),
      node('Reshape', [`${tag}/columns`, `${PREFIX}/gate_shape`], [tag], tag),
    );
    this.#byLayout.set(key, tag);
    return tag;
  }
}

/** The PEFT modules a target stands for: itself, or the parts of a fused module. */
export function peftModulesOf(target: LinearTarget): string[] {
  return FUSED_MODULES[target.module] ?? [target.module];
}
