// Logits at one position per row. Exports compute the LM head at every position of the input,
//   logits [batch, seq, vocab] = MatMul(hidden [batch, seq, H], W_head [H, vocab])
// though generation reads one position per row: a prompt of 512 tokens with a 150k vocabulary
// spends ~40% of a small model's prefill on LM-head rows nobody reads, and returns 300 MB of
// them. The runtime graph picks each row's position first:
//   hidden_last = GatherND(hidden, persona_last_index [batch, 1], batch_dims = 1)   [batch, H]
//   logits      = MatMul(Reshape(hidden_last, [0, 1, -1]), W_head)                [batch, 1, vocab]
// When an adapter adapts the head itself (inject.ts: logits = Add(MatMul(hidden, W_head), delta(hidden))),
// the base MatMul and the adapter path both read hidden_last.
// persona_last_index is the row's last real position (length - 1; 0 for a decode step).
// The hidden states the LM head reads, at every position, become one more output:
//   persona_hidden = hidden [batch, seq, H]
// which a hidden-state router pools into its features (lib/decoder/hidden.ts). The graph computes
// them anyway; a run that does not fetch them pays nothing.
// Only this runtime copy is rewritten; the model `personafuse inject` writes stays complete.
import { GraphProto, int64Tensor, ModelProto, node, NodeProto, ONNX_INT64, producerMap, tensorValueInfo, valueInfoDims, valueInfoElemType } from './proto';

export const LAST_INDEX_INPUT = 'persona_last_index';
export const HIDDEN_OUTPUT = 'persona_hidden';

/**
 * The LM head's MatMul and the nodes that read its input: the MatMul that gives `logits`, or, when an
 * adapter adapts the head, the base MatMul under the injection's Add and that injection's own readers
 * of the hidden states. Null when the logits come from anything else.
 */
function lmHead(graph: GraphProto): { head: NodeProto; readers: NodeProto[] } | null {
  const producers = producerMap(graph);
  const last = producers.get('logits');
  if (!last) return null;
  if (last.opType === 'MatMul') return { head: last, readers: [last] };
  const injected = /^(persona\/.+)\/add$/.exec(last.name);
  if (last.opType !== 'Add' || !injected) return null;
  const head = producers.get(last.input[0]);
  if (!head || head.opType !== 'MatMul') return null;
  const hidden = head.input[0];
  return { head, readers: graph.node.filter((n) => n === head || (n.name.startsWith(`${injected[1]}/`) && n.input.includes(hidden))) };
}

/** Rewrites `model` in place; false (untouched) when the logits do not come from a 3-D MatMul (adapted or not) or the opset predates GatherND's batch_dims. */
export function keepLastLogits(model: ModelProto): boolean {
  const graph = model.graph;
  if (!graph) return false;
  const opset = model.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  if (!opset || Number(opset.version) < 12) return false;
  const logits = graph.output.find((o) => o.name === 'logits');
  const found = lmHead(graph);
  const ids = graph.input.find((i) => i.name === 'input_ids');
  if (!logits || !found || !ids) return false;
  const dims = valueInfoDims(logits);
  if (!dims || dims.length !== 3) return false;
  const { head, readers } = found;
  const hidden = head.input[0];
  const tag = 'persona/last_logits';
  graph.initializer.push(int64Tensor(`${tag}/shape`, [0, 1, -1]));
  const at = Math.min(...readers.map((n) => graph.node.indexOf(n)));
  graph.node.splice(at, 0,
    node('GatherND', [hidden, LAST_INDEX_INPUT], [`${tag}/hidden`], `${tag}/gather`, { batch_dims: 1 }),
    node('Reshape', [`${tag}/hidden`, `${tag}/shape`], [`${tag}/hidden3`], `${tag}/reshape`));
  for (const n of readers) n.input = n.input.map((i) => (i === hidden ? `${tag}/hidden3` : i));
  graph.input.push(tensorValueInfo(LAST_INDEX_INPUT, ONNX_INT64, [valueInfoDims(ids)?.[0] ?? 'batch_size', 1]));
  graph.output[graph.output.indexOf(logits)] = tensorValueInfo('logits', valueInfoElemType(logits), [dims[0] ?? 'batch_size', 1, dims[2] ?? 'vocab_size']);
  const headWeight = graph.initializer.find((t) => t.name === head.input[1]);
  const H = headWeight && headWeight.dims.length === 2 ? Number(headWeight.dims[0]) : 'hidden_size';
  graph.output.push(tensorValueInfo(HIDDEN_OUTPUT, valueInfoElemType(logits), [dims[0] ?? 'batch_size', dims[1] ?? 'sequence_length', H]));
  if (hidden !== HIDDEN_OUTPUT) graph.node.push(node('Identity', [hidden], [HIDDEN_OUTPUT], `${tag}/hidden_out`));
  return true;
}
