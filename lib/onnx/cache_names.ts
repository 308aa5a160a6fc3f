// How exports name a layer's KV cache: inputs past_key_values.N.key / .value (older exports:
// past.N.key), outputs present.N.key / .value. The runtime-graph passes (grouped_attention.ts,
// new_kv.ts) and the engine (lib/engine/batcher.ts) pair them here.
import type { GraphProto, ValueInfoProto } from './proto';

/** present.N.key / present.N.value, with N and the kind as groups 1 and 2. */
export const PRESENT_OUTPUT = /^present\.(\d+)\.(key|value)$/;

/** present.N.key for the past input past_key_values.N.key (or past.N.key). */
export function presentOf(past: string): string {
  return past.replace(/^past_key_values\./, 'present.').replace(/^past\./, 'present.');
}

/** The graph input that present.N.key continues: past_key_values.N.key, or past.N.key. */
export function pastInputOf(graph: GraphProto, present: string): ValueInfoProto | undefined {
  const rest = present.replace(/^present\./, '');
  return graph.input.find((i) => i.name === `past_key_values.${rest}`) ?? graph.input.find((i) => i.name === `past.${rest}`);
}
