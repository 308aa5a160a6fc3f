// What a router answers, from its expert logits, whatever its kind.
//   distribution = softmax(logits) over every expert (one kernels.topkSoftmax call, k = E, sorted)
//   mix          = its first topK, divided by their sum when renormalize (= softmax of the top-k
//                  logits), else as they are
import { topkSoftmax } from '../kernels';
import type { Mix } from '../decoder/mix';
import type { RouterConfig } from './router_config';

export interface RouteMessage {
  role: string;
  content: string;
}

export interface RouteResult {
  /** the top-k experts and their weights */
  mix: Mix;
  /** softmax over every expert, in router.json order */
  distribution: Mix;
  /** the text the router read */
  text: string;
}

export function routeFromLogits(logits: Float32Array, config: RouterConfig, text: string): RouteResult {
  const E = config.experts.length;
  if (logits.length !== E) throw new Error(`The router gave ${logits.length} logits for ${E} experts (router.json experts)`);
  const all = topkSoftmax(logits, E, E);
  const distribution: Mix = {};
  all.ids.forEach((id, j) => (distribution[config.experts[id]] = all.weights[j]));
  const k = config.topK;
  const kept = all.weights.subarray(0, k).reduce((s, w) => s + w, 0);
  const mix: Mix = {};
  for (let j = 0; j < k; j++) mix[config.experts[all.ids[j]]] = config.renormalize ? all.weights[j] / kept : all.weights[j];
  return { mix, distribution, text };
}

/** The text a router reads from a conversation (router.json `input`). */
export function situationText(config: RouterConfig, messages: readonly RouteMessage[]): string {
  if (config.input === 'conversation') return messages.map((m) => `${m.role}: ${m.content}`).join('\n');
  const user = [...messages].reverse().find((m) => m.role === 'user');
  return (user ?? messages[messages.length - 1])?.content ?? '';
}
