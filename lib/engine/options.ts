// GenerateOptions: what a caller may ask of one generation, checked once with fixed wording.
// Sampling defaults come from the model's generation_config.json (do_sample false or absent ->
// greedy), then from the call.
import { rangeError, typeError } from '../errors';
import type { Persona } from '../decoder/mix';
import { checkRows } from '../decoder/feeds';
import { GREEDY, SamplingParams } from './sampler';
import type { ChatMessage } from '../decoder/text_codec';
import type { Json } from '../decoder/model_files';

export interface GenerateOptions {
  inputIds?: number[];
  /** raw text, no chat template */
  prompt?: string;
  /** chat template applied, generation prompt added */
  messages?: ChatMessage[];
  /**
   * 'auto' (the router picks; needs a router), a Big Five profile { openness: 0.8, neuroticism: -0.5 }
   * (values in [-1, 1]; v > 0 -> `<trait>_high` at v, v < 0 -> `<trait>_low` at |v|, divided by
   * their sum when that is over 1), or { mix: { expertName: weight in [0, 1] } }.
   * Default: 'auto' when the model has a router, else the base model.
   */
  persona?: Persona;
  /** default: generation_config.json max_new_tokens, else 256; capped by the model's context */
  maxNewTokens?: number;
  /** 0 = greedy */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** 1 = none; > 1 discourages tokens already in the sequence */
  repetitionPenalty?: number;
  /** in [-2, 2], subtracted once from the logit of every token generated so far (OpenAI presence_penalty) */
  presencePenalty?: number;
  /** in [-2, 2], subtracted once per time a token was generated (OpenAI frequency_penalty) */
  frequencyPenalty?: number;
  /** token id -> bias in [-100, 100] added to its logit (OpenAI logit_bias) */
  logitBias?: Record<number, number>;
  /** report each token's log-probability and this many most likely alternatives (0..20) */
  topLogprobs?: number;
  seed?: number;
  stop?: string[];
  /** keep generating past EOS until maxNewTokens (benchmarks: every variant then makes the same number of tokens) */
  ignoreEos?: boolean;
  signal?: AbortSignal;
}

export const DEFAULT_MAX_NEW_TOKENS = 256;

function num(v: unknown, arg: string, lo: number, hi: number, integer = false): number {
  const what = integer ? `an integer between ${lo} and ${hi}` : `a number between ${lo} and ${hi}`;
  if (typeof v !== 'number') throw typeError(arg, what, v);
  if (!(v >= lo && v <= hi) || (integer && !Number.isInteger(v))) throw rangeError(arg, what, String(v));
  return v;
}

/** The sampling settings of a call over the model's defaults. */
export function samplingParams(opts: GenerateOptions, defaults: Json): SamplingParams {
  const sampleByDefault = defaults.do_sample === true;
  const dflt = (key: string, fallback: number) => (typeof defaults[key] === 'number' ? (defaults[key] as number) : fallback);
  const temperature = opts.temperature ?? (sampleByDefault ? dflt('temperature', 1) : GREEDY.temperature);
  return {
    temperature: num(temperature, 'temperature', 0, 100),
    topK: num(opts.topK ?? (sampleByDefault ? dflt('top_k', 0) : 0), 'topK', 0, Number.MAX_SAFE_INTEGER, true),
    topP: num(opts.topP ?? (sampleByDefault ? dflt('top_p', 1) : 1), 'topP', 0, 1),
    repetitionPenalty: num(opts.repetitionPenalty ?? dflt('repetition_penalty', 1), 'repetitionPenalty', 0.01, 100),
    ...(opts.presencePenalty ? { presencePenalty: num(opts.presencePenalty, 'presencePenalty', -2, 2) } : {}),
    ...(opts.frequencyPenalty ? { frequencyPenalty: num(opts.frequencyPenalty, 'frequencyPenalty', -2, 2) } : {}),
    ...(opts.logitBias && Object.keys(opts.logitBias).length ? { logitBias: opts.logitBias } : {}),
    ...(opts.topLogprobs !== undefined ? { topLogprobs: num(opts.topLogprobs, 'topLogprobs', 0, 20, true) } : {}),
  };
}

export function checkGenerateOptions(opts: unknown, vocab: number | null = null): GenerateOptions {
  if (typeof opts !== 'object' || opts === null) throw typeError('options', 'an options object { prompt | messages | inputIds, ... }', opts);
  const o = opts as GenerateOptions;
  const given = [o.inputIds !== undefined, o.prompt !== undefined, o.messages !== undefined].filter(Boolean).length;
  if (given !== 1) throw typeError('options', 'exactly one of inputIds, prompt, messages', opts);
  if (o.inputIds !== undefined) {
    if (!Array.isArray(o.inputIds) || o.inputIds.length === 0) throw typeError('inputIds', 'a non-empty array of token ids', o.inputIds);
    checkRows([o.inputIds], 'inputIds', vocab);
  }
  if (o.prompt !== undefined && typeof o.prompt !== 'string') throw typeError('prompt', 'a string', o.prompt);
  if (o.messages !== undefined) {
    if (!Array.isArray(o.messages) || o.messages.length === 0) throw typeError('messages', 'a non-empty array of { role, content }', o.messages);
    o.messages.forEach((m, i) => {
      if (typeof m !== 'object' || m === null || typeof m.role !== 'string' || typeof m.content !== 'string') {
        throw typeError(`messages[${i}]`, 'an object { role: string, content: string }', m);
      }
    });
  }
  if (o.maxNewTokens !== undefined) num(o.maxNewTokens, 'maxNewTokens', 1, 1e9, true);
  if (o.seed !== undefined) num(o.seed, 'seed', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, true);
  if (o.stop !== undefined) {
    if (!Array.isArray(o.stop) || !o.stop.every((s) => typeof s === 'string' && s.length > 0)) throw typeError('stop', 'an array of non-empty strings', o.stop);
  }
  if (o.presencePenalty !== undefined) num(o.presencePenalty, 'presencePenalty', -2, 2);
  if (o.frequencyPenalty !== undefined) num(o.frequencyPenalty, 'frequencyPenalty', -2, 2);
  if (o.topLogprobs !== undefined) num(o.topLogprobs, 'topLogprobs', 0, 20, true);
  if (o.logitBias !== undefined) {
    if (typeof o.logitBias !== 'object' || o.logitBias === null || Array.isArray(o.logitBias)) throw typeError('logitBias', 'an object { tokenId: bias }', o.logitBias);
    for (const [id, bias] of Object.entries(o.logitBias)) {
      const t = Number(id);
      if (!Number.isInteger(t) || t < 0 || (vocab !== null && t >= vocab)) throw rangeError('logitBias', `token ids below the vocabulary size${vocab !== null ? ` ${vocab}` : ''}`, `'${id}'`);
      num(bias, `logitBias.${id}`, -100, 100);
    }
  }
  if (o.ignoreEos !== undefined && typeof o.ignoreEos !== 'boolean') throw typeError('ignoreEos', 'a boolean', o.ignoreEos);
  if (o.signal !== undefined && !(typeof o.signal === 'object' && o.signal !== null && 'aborted' in o.signal)) throw typeError('signal', 'an AbortSignal', o.signal);
  return o;
}
