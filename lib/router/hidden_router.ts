// A router that reads the situation the way the model does: the base model's pooled hidden states
// of the last user turn (lib/decoder/hidden.ts) through a small head (head.ts) to expert logits,
// then top-k (route_result.ts). It holds no model of its own: whoever routes (the model facade)
// computes the features with the model it serves and hands them in.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Head, headLogits, readHead } from './head';
import { HiddenRouterConfig } from './router_config';
import { RouteMessage, RouteResult, routeFromLogits, situationText } from './route_result';

export const HEAD_FILE = 'head.safetensors';

export class HiddenStateRouter {
  readonly kind = 'hidden-state' as const;
  readonly dir: string;
  readonly config: HiddenRouterConfig;
  readonly head: Head;

  constructor(dir: string, config: HiddenRouterConfig, head: Head) {
    this.dir = dir;
    this.config = config;
    this.head = head;
  }

  static load(dir: string, config: HiddenRouterConfig): HiddenStateRouter {
    const file = path.join(dir, HEAD_FILE);
    if (!fs.existsSync(file)) throw new Error(`The router folder ${dir} has no ${HEAD_FILE}`);
    return new HiddenStateRouter(dir, config, readHead(file, config.head.sizes));
  }

  situation(messages: readonly RouteMessage[]): string {
    return situationText(this.config, messages);
  }

  /** The route for features of `text` (pooled hidden states, 2 * hiddenSize floats). */
  routeFeatures(features: Float32Array, text: string): RouteResult {
    const F = this.config.head.sizes[0];
    if (features.length !== F) {
      throw new Error(`The router in ${this.dir} was trained on a model with hidden size ${this.config.features.hiddenSize}; this model's features have ${features.length / 2} (route with the model it was trained for)`);
    }
    return routeFromLogits(headLogits(this.head, features), this.config, text);
  }

  async dispose(): Promise<void> {
    /* nothing held outside the JS heap */
  }
}
