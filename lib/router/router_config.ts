// router.json of a router folder. Two kinds, told apart by "kind":
//
// encoder (version 1; "kind" absent): a model of its own reads the text
//   { "experts": [names in logit order], "topK": 2, "renormalize": true,
//     "input": "last_user" | "conversation", "maxLength": 128 }
//   beside it model.onnx (input_ids, attention_mask [batch, seq] -> logits [batch, E]) and tokenizer.json
//
// hidden-state (version 2): the base model's own hidden states are the features
//   { "format": "personafuse-router", "version": 2, "kind": "hidden-state",
//     "experts": [...], "topK": 2, "renormalize": true, "input": "last_user", "maxLength": 64,
//     "features": { "pooling": ["mean", "last"], "hiddenSize": H },   features = 2H floats
//     "head": { "sizes": [2H, hidden..., E], "activation": "tanh" } }
//   beside it head.safetensors (lib/router/head.ts); routing one message costs one prefill of it
//   on the base model (no persona), through the model's own tokenizer.
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ROUTER_FORMAT = 'personafuse-router';
export const HIDDEN_ROUTER_VERSION = 2;

interface CommonConfig {
  experts: string[];
  topK: number;
  renormalize: boolean;
  input: 'last_user' | 'conversation';
  maxLength: number;
}

export interface EncoderRouterConfig extends CommonConfig {
  kind: 'encoder';
}

export interface HiddenRouterConfig extends CommonConfig {
  kind: 'hidden-state';
  version: number;
  features: { pooling: ['mean', 'last']; hiddenSize: number };
  head: { sizes: number[]; activation: 'tanh' };
  /** what it was trained on, for the report (free-form) */
  trainedOn?: Record<string, unknown>;
}

export type RouterConfig = EncoderRouterConfig | HiddenRouterConfig;

export function readRouterConfig(dir: string): RouterConfig {
  const file = path.join(dir, 'router.json');
  if (!fs.existsSync(file)) throw new Error(`The router folder ${dir} has no router.json`);
  const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  return parseRouterConfig(raw, file);
}

export function parseRouterConfig(raw: Record<string, unknown>, file = 'router.json'): RouterConfig {
  const bad = (field: string, what: string) => new Error(`${file}: expected ${what} for ${field} but received ${JSON.stringify(raw[field])}`);
  const experts = raw.experts;
  if (!Array.isArray(experts) || experts.length === 0 || !experts.every((e) => typeof e === 'string')) throw bad('experts', 'a non-empty list of expert names');
  const topK = raw.topK ?? 2;
  if (typeof topK !== 'number' || !Number.isInteger(topK) || topK < 1 || topK > experts.length) throw bad('topK', `an integer between 1 and ${experts.length}`);
  const renormalize = raw.renormalize ?? true;
  if (typeof renormalize !== 'boolean') throw bad('renormalize', 'true or false');
  const input = raw.input ?? 'last_user';
  if (input !== 'last_user' && input !== 'conversation') throw bad('input', "'last_user' or 'conversation'");
  const kind = raw.kind ?? 'encoder';
  const maxLength = raw.maxLength ?? (kind === "encoder" ? 128 : 96);
  if (typeof maxLength !== 'number' || !Number.isInteger(maxLength) || maxLength < 1) throw bad('maxLength', 'a positive integer');
  const common = { experts: experts as string[], topK, renormalize, input: input as CommonConfig['input'], maxLength };
  if (kind === 'encoder') return { kind, ...common };
  if (kind !== 'hidden-state') throw bad('kind', "'encoder' or 'hidden-state'");
  const version = raw.version;
  if (typeof version !== 'number' || version > HIDDEN_ROUTER_VERSION) throw bad('version', `a router format version up to ${HIDDEN_ROUTER_VERSION} (a newer personafuse wrote this router?)`);
  const features = raw.features as HiddenRouterConfig['features'] | undefined;
  const H = features?.hiddenSize;
  if (typeof H !== 'number' || !Number.isInteger(H) || H < 1 || JSON.stringify(features?.pooling) !== '["mean","last"]') {
    throw bad('features', '{ "pooling": ["mean", "last"], "hiddenSize": <the base model\'s hidden size> }');
  }
  const head = raw.head as HiddenRouterConfig['head'] | undefined;
  const sizes = head?.sizes;
  const sizesOk = Array.isArray(sizes) && sizes.length >= 2 && sizes.every((n) => Number.isInteger(n) && n > 0) && sizes[0] === 2 * H && sizes[sizes.length - 1] === experts.length;
  if (!sizesOk || head?.activation !== 'tanh') throw bad('head', `{ "sizes": [${2 * H}, ..., ${experts.length}], "activation": "tanh" }`);
  const trainedOn = typeof raw.trainedOn === 'object' && raw.trainedOn !== null ? (raw.trainedOn as Record<string, unknown>) : undefined;
  return { kind, version, ...common, features: { pooling: ['mean', 'last'], hiddenSize: H }, head: { sizes: sizes as number[], activation: 'tanh' }, trainedOn };
}
