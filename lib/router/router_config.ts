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
// hidden-state, version 3 adds two optional fields (a version 2 folder reads as before):
//     "features": { ..., "ngrams": { "word": [1, 2], "char": [2, 5], "buckets": B } }
//        hashed n-grams of the message beside the hidden states (lib/router/ngrams.ts): the head
//        reads 2H + 2B features and is linear; head.safetensors holds their idf
//     "situations": { "names": [C names], "experts": [[first, second], ...], "weights": [0.6, 0.4], "sharpen": 4 }
//        the head answers C situations, mapped to experts through this table (situation_outputs.ts)
// hidden-state, version 4: as version 3, but head.safetensors's layer weights may be F16 (they are
//     most of the file; lib/router/head.ts). Written only for such a head, so that a release that
//     reads up to version 3 refuses it by its version rather than by a tensor's dtype.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { NgramConfig } from './ngrams';

export const ROUTER_FORMAT = 'personafuse-router';
/** the newest hidden-state router version this release reads */
export const HIDDEN_ROUTER_VERSION = 4;

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

/** A head that answers situations, and the table that maps them to experts. */
export interface SituationOutputs {
  names: string[];
  /** each situation's experts, strongest first */
  experts: string[][];
  /** the weight of each situation's first, second, ... expert */
  weights: number[];
  /** situation probabilities are raised to this power (then renormalised) before the mapping */
  sharpen: number;
}

export interface HiddenRouterConfig extends CommonConfig {
  kind: 'hidden-state';
  version: number;
  features: { pooling: ['mean', 'last']; hiddenSize: number; ngrams?: NgramConfig };
  head: { sizes: number[]; activation: 'tanh' };
  situations?: SituationOutputs;
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
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 2 || version > HIDDEN_ROUTER_VERSION) {
    throw bad('version', `a router format version from 2 to ${HIDDEN_ROUTER_VERSION} (a newer personafuse wrote this router?)`);
  }
  const features = raw.features as HiddenRouterConfig['features'] | undefined;
  const H = features?.hiddenSize;
  if (typeof H !== 'number' || !Number.isInteger(H) || H < 1 || JSON.stringify(features?.pooling) !== '["mean","last"]') {
    throw bad('features', '{ "pooling": ["mean", "last"], "hiddenSize": <the base model\'s hidden size> }');
  }
  if (version < 3 && (features?.ngrams !== undefined || raw.situations !== undefined)) throw bad('version', '3 or later for a router with features.ngrams or situations');
  const ngrams = features?.ngrams === undefined ? undefined : parseNgrams(features.ngrams, () => bad('features', '"ngrams": { "word": [min, max], "char": [min, max], "buckets": <positive integer> }'));
  const situations = raw.situations === undefined ? undefined : parseSituations(raw.situations, experts as string[], () => bad('situations',
    '{ "names": [...], "experts": [[names from experts], ...] (one list per name, all as long as weights), "weights": [positive numbers], "sharpen": <positive number> }'));
  const inputs = 2 * H + (ngrams ? 2 * ngrams.buckets : 0);
  const outputs = situations ? situations.names.length : experts.length;
  const head = raw.head as HiddenRouterConfig['head'] | undefined;
  const sizes = head?.sizes;
  const sizesOk = Array.isArray(sizes) && sizes.length >= 2 && sizes.every((n) => Number.isInteger(n) && n > 0) && sizes[0] === inputs && sizes[sizes.length - 1] === outputs && (!ngrams || sizes.length === 2);
  if (!sizesOk || head?.activation !== 'tanh') throw bad('head', `{ "sizes": [${inputs}, ${ngrams ? '' : '..., '}${outputs}], "activation": "tanh" }`);
  const trainedOn = typeof raw.trainedOn === 'object' && raw.trainedOn !== null ? (raw.trainedOn as Record<string, unknown>) : undefined;
  return {
    kind, version, ...common, features: { pooling: ['mean', 'last'], hiddenSize: H, ...(ngrams ? { ngrams } : {}) },
    head: { sizes: sizes as number[], activation: 'tanh' }, ...(situations ? { situations } : {}), trainedOn,
  };
}

function parseNgrams(raw: unknown, bad: () => Error): NgramConfig {
  const r = raw as Partial<NgramConfig> | null;
  const range = (v: unknown) => Array.isArray(v) && v.length === 2 && v.every((n) => Number.isInteger(n) && n >= 1) && v[0] <= v[1];
  if (typeof r !== 'object' || r === null || !range(r.word) || !range(r.char) || !Number.isInteger(r.buckets) || (r.buckets as number) < 1) throw bad();
  return { word: [r.word![0], r.word![1]], char: [r.char![0], r.char![1]], buckets: r.buckets as number };
}

function parseSituations(raw: unknown, experts: string[], bad: () => Error): SituationOutputs {
  const r = raw as Partial<SituationOutputs> | null;
  if (typeof r !== 'object' || r === null) throw bad();
  const { names, experts: lists, weights, sharpen } = r;
  const ok = Array.isArray(names) && names.length > 0 && names.every((n) => typeof n === 'string') && new Set(names).size === names.length
    && Array.isArray(weights) && weights.length > 0 && weights.every((w) => typeof w === 'number' && Number.isFinite(w) && w > 0)
    && Array.isArray(lists) && lists.length === names.length
    && lists.every((l) => Array.isArray(l) && l.length === weights.length && l.every((e) => experts.includes(e)))
    && typeof sharpen === 'number' && Number.isFinite(sharpen) && sharpen > 0;
  if (!ok) throw bad();
  return { names: names!, experts: lists!, weights: weights!, sharpen: sharpen! };
}
