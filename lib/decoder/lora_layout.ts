// Which form of injection a model gets (lib/onnx/inject.ts) when the caller leaves it to us.
//
// Bytes each decode step reads beyond the base weights W, per adapted module:
//   per-row   B rows · k·r·(din + dout) floats, plus a fold of k·r·(din + dout) when a request joins
//   bank      E·r·(din + dout) floats once, whatever the batch B (and no fold)
// So the bank reads less from B > E/k rows on, and at batch 1 it costs its whole share of W. We
// take it when that share is at most BANK_SHARE_LIMIT: then batch 1 stays near 90% of base and every
// larger batch gains. That is the wide models people serve (10 rank-16 experts on all 7 modules of
// llama-1b-slice, d = 2048: 11.5%); narrow ones keep per-row (llama-h512, d = 512: 85%, where the
// bank made batch-1 generation 0.67x of base against per-row's 0.73x, docs/design.md §4; the demo
// model: 38%).
import type { PeftAdapter } from '../adapters';
import type { ModelProto } from '../onnx/proto';
import { byteLength } from '../onnx/tensor_data';

export const LORA_LAYOUTS = ['per-row', 'bank'] as const;
export type LoraLayout = (typeof LORA_LAYOUTS)[number];

export const BANK_SHARE_LIMIT = 0.125;

/** The bank's float32 bytes in the graph: every expert's every module, r·(din + dout) floats each. */
export function bankBytes(adapters: readonly PeftAdapter[]): number {
  let floats = 0;
  for (const a of adapters) for (const m of a.modules.values()) floats += m.rank * (m.din + m.dout);
  return 4 * floats;
}

/** Bytes of the model's initializers (its weights, wherever they are stored). */
export function weightBytes(model: ModelProto): number {
  return (model.graph?.initializer ?? []).reduce((n, t) => n + byteLength(t), 0);
}

/** 'bank' when the whole bank adds at most BANK_SHARE_LIMIT of the weights' bytes, else 'per-row'. */
export function autoLoraLayout(bank: number, weights: number): LoraLayout {
  return weights > 0 && bank <= BANK_SHARE_LIMIT * weights ? 'bank' : 'per-row';
}

/** What 'auto' picks for these adapters on this model, with the numbers it picks by. */
export function autoLayoutFor(adapters: readonly PeftAdapter[], model: ModelProto): { layout: LoraLayout; bankBytes: number; weightBytes: number } {
  const bank = bankBytes(adapters);
  const weights = weightBytes(model);
  return { layout: autoLoraLayout(bank, weights), bankBytes: bank, weightBytes: weights };
}
