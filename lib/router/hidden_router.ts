// A router that reads the situation the way the model does: the base model's pooled hidden states
// of the last user turn (lib/decoder/hidden.ts), and for a version 3 or 4 router the turn's hashed
// n-grams (ngrams.ts), through a small head (head.ts) to expert logits (or to situation logits
// mapped to experts, situation_outputs.ts), then top-k (route_result.ts). It holds no model of
// its own: whoever routes (the model facade) computes the hidden states with the model it serves
// and hands them in.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Head, headLogits, readHead } from './head';
import { ngramFeatures } from './ngrams';
import { HiddenRouterConfig } from './router_config';
import { RouteMessage, RouteResult, routeFromLogits, situationText } from './route_result';
import { expertLogitsOfSituations, situationTable } from './situation_outputs';

export const HEAD_FILE = 'head.safetensors';

export class HiddenStateRouter {
  readonly kind = 'hidden-state' as const;
  readonly dir: string;
  readonly config: HiddenRouterConfig;
  readonly head: Head;
  /** [C, E] for a head that answers situations */
  readonly #situations?: Float32Array;

  constructor(dir: string, config: HiddenRouterConfig, head: Head) {
    this.dir = dir;
    this.config = config;
    this.head = head;
    if (config.features.ngrams && !head.idf) throw new Error(`The router in ${dir} reads n-grams but its head has no ngram_idf`);
    if (config.situations) this.#situations = situationTable(config.situations, config.experts);
  }

  static load(dir: string, config: HiddenRouterConfig): HiddenStateRouter {
    const file = path.join(dir, HEAD_FILE);
    if (!fs.existsSync(file)) throw new Error(`The router folder ${dir} has no ${HEAD_FILE}`);
    const ngrams = config.features.ngrams;
    return new HiddenStateRouter(dir, config, readHead(file, config.head.sizes, 2 * config.features.hiddenSize, ngrams ? 2 * ngrams.buckets : 0, config.version >= 4));
  }

  situation(messages: readonly RouteMessage[]): string {
    return situationText(this.config, messages);
  }

  /** The route for features of `text` (pooled hidden states, 2 * hiddenSize floats). */
  routeFeatures(features: Float32Array, text: string): RouteResult {
    const { hiddenSize, ngrams } = this.config.features;
    if (features.length !== 2 * hiddenSize) {
      throw new Error(`The router in ${this.dir} was trained on a model with hidden size ${hiddenSize}; this model's features have ${features.length / 2} (route with the model it was trained for)`);
    }
    const logits = headLogits(this.head, features, ngrams ? ngramFeatures(text, ngrams, this.head.idf!) : undefined);
    const situations = this.config.situations;
    return routeFromLogits(situations ? expertLogitsOfSituations(logits, this.#situations!, situations.sharpen) : logits, this.config, text);
  }

  async dispose(): Promise<void> {
    /* nothing held outside the JS heap */
  }
}
