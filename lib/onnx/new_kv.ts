// The cache columns a run adds, as outputs of their own. Exports append a step's keys and values
// to the cache inside the graph and return the whole result:
//   present.N.key = Concat(past_key_values.N.key [B, heads, T, D], k_new [B, heads, S, D], axis -2)
// and onnxruntime-node copies every output into a new JavaScript buffer after each run, so a
// decode step used to copy the whole cache out (demo model, 7.3 rows of width 69: 0.4 of a
// 2.6-3.1 ms step). The runtime graph also returns the appended part alone:
//   persona_new.N.key = Identity(k_new)                                     [B, heads, S, D]
// and the engine keeps the cache in buffers of its own (lib/decoder/kv_cache.ts), writing each
// step's column in place. present.N.* stay outputs, for callers that read them.
// Only a Concat on axis 2 of a rank-4 cache whose first input is the same layer's past of the same
// kind (directly, or through an Identity or a one-input Concat, as torch's exporter writes it) is
// recognised; a cache made any other way gets no persona_new output and the engine reads the new
// columns out of present.N.* instead.
import type { GraphProto, NodeProto } from './proto';
import { node, producerMap, tensorValueInfo, valueInfoDims, valueInfoElemType } from './proto';
import { pastInputOf, PRESENT_OUTPUT } from './cache_names';

/** persona_new.N.key for present.N.key. */
export function newKvOutput(present: string): string {
  return present.replace(/^present\./, 'persona_new.');
}

/** Adds persona_new.N.* outputs to `graph` in place; returns how many it added. */
export function exposeNewKv(graph: GraphProto): number {
  const producer = producerMap(graph);
  const outputs = new Set(graph.output.map((o) => o.name));
  let added = 0;
  for (const out of [...graph.output]) {
    const name = newKvOutput(out.name);
    if (!PRESENT_OUTPUT.test(out.name) || outputs.has(name)) continue;
    const concat = producer.get(out.name);
    if (!concat || concat.opType !== 'Concat' || concat.input.length !== 2) continue;
    const axis = concat.attribute.find((a) => a.name === 'axis');
    if (!axis || ![2, -2].includes(Number(axis.i))) continue;
    const past = pastInputOf(graph, out.name);
    if (!past || throughCopies(concat.input[0], producer) !== past.name) continue;
    const dims = valueInfoDims(out);
    if (dims?.length !== 4 || valueInfoDims(past)?.length !== 4) continue;
    graph.node.push(node('Identity', [concat.input[1]], [name], `persona/new_kv/${out.name}`));
    graph.output.push(tensorValueInfo(name, valueInfoElemType(out), [
      dims[0] ?? 'batch_size', dims[1] ?? `${out.name}.heads`, 'sequence_length', dims[3] ?? `${out.name}.head_dim`,
    ]));
    added++;
  }
  return added;
}

/** The value `name` copies unchanged (through Identity and one-input Concat nodes). */
function throughCopies(name: string, producer: Map<string, NodeProto>): string {
  for (let n = producer.get(name); n && (n.opType === 'Identity' || (n.opType === 'Concat' && n.input.length === 1)); n = producer.get(name)) {
    name = n.input[0];
  }
  return name;
}
