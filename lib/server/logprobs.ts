// Log-probabilities in OpenAI's shape, from the sampler's (lib/engine/sampler.ts SampledLogprobs):
//   choices[0].logprobs = { content: [{ token, logprob, bytes, top_logprobs: [{ token, logprob, bytes }] }], refusal: null }
// A token's text is its own decode with special tokens kept; bytes are that text's UTF-8 (a byte-
// level BPE token that is part of a character decodes to U+FFFD, and its bytes are then those of
// U+FFFD, not the raw byte). A log-probability of -Infinity (a logit of -Infinity) is sent as
// -9999, as OpenAI does, since JSON has no -Infinity.
import type { SampledLogprobs } from '../engine/sampler';

export interface ApiTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface ApiLogprobContent extends ApiTokenLogprob {
  top_logprobs: ApiTokenLogprob[];
}

export interface ApiLogprobs {
  content: ApiLogprobContent[];
  refusal: null;
}

const FLOOR = -9999;

export type TokenText = (id: number) => string;

function entry(id: number, logprob: number, text: TokenText): ApiTokenLogprob {
  const token = text(id);
  return { token, logprob: Number.isFinite(logprob) ? logprob : FLOOR, bytes: [...Buffer.from(token, 'utf8')] };
}

/** One generated token's entry of `content`. */
export function apiLogprob(token: number, lp: SampledLogprobs, text: TokenText): ApiLogprobContent {
  return { ...entry(token, lp.logprob, text), top_logprobs: lp.top.map((t) => entry(t.token, t.logprob, text)) };
}

export function apiLogprobs(content: ApiLogprobContent[]): ApiLogprobs {
  return { content, refusal: null };
}
