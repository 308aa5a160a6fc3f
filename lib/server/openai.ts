// The OpenAI chat-completions wire format: a request body checked and turned into
// GenerateOptions, and the response / stream-chunk objects built from our results.
//   request:  { model?, messages, stream?, stream_options?: { include_usage }, max_tokens? |
//               max_completion_tokens?, temperature?, top_p?, top_k?, seed?, stop?: string | string[],
//               repetition_penalty?, presence_penalty?, frequency_penalty?, logit_bias?, logprobs?,
//               top_logprobs?, n? (1 only), persona?: "auto" | { openness: 0.8, ... } | { mix: { expert: weight } } }
//   response: chat.completion / chat.completion.chunk, plus `persona: { mix }` with the mix used
//             (on the first and the last content chunk of a stream); usage in a stream only when
//             stream_options.include_usage, as its own last chunk with `choices: []`
// Errors name the API's fields (max_tokens, top_p), never the engine's (maxNewTokens, topP):
// checks made here use the API names, and engine errors are renamed by apiError().
import { randomUUID } from 'node:crypto';
import { rangeError, typeError } from '../errors';
import type { GenerateOptions } from '../engine/options';
import type { GenerateResult } from '../engine/engine';
import type { Persona } from '../router/persona';
import { ApiError, invalidJson, unsupportedField } from './api_error';
import type { ApiLogprobs } from './logprobs';

export type ChatOptions = GenerateOptions;

export interface ChatRequest {
  /** the `model` asked for (absent: the served one) */
  model: string | undefined;
  options: ChatOptions;
  stream: boolean;
  /** stream_options.include_usage */
  includeUsage: boolean;
  /** logprobs: true (options.topLogprobs is then set, 0 when top_logprobs is absent) */
  logprobs: boolean;
  /** which of max_tokens / max_completion_tokens the request used (errors name that one) */
  maxTokensField: 'max_tokens' | 'max_completion_tokens';
}

export interface ParseOptions {
  /** vocabulary size, for logit_bias token ids (null: unknown) */
  vocab?: number | null;
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalidJson(err instanceof Error ? err.message : String(err));
  }
}

function optionalNumber(body: Record<string, unknown>, key: string, lo = -Infinity, hi = Infinity, integer = false): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  const what = lo === -Infinity && hi === Infinity ? (integer ? 'an integer' : 'a number') : `${integer ? 'an integer' : 'a number'} between ${lo} and ${hi}`;
  if (typeof v !== 'number') throw typeError(key, what, v);
  if (!(v >= lo && v <= hi) || (integer && !Number.isInteger(v))) throw rangeError(key, what, String(v));
  return v;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function parseChatRequest(body: unknown, po: ParseOptions = {}): ChatRequest {
  if (!isObject(body)) throw typeError('body', 'a JSON object', body);
  const b = body;
  refuseUnsupported(b);
  if (b.model !== undefined && typeof b.model !== 'string') throw typeError('model', 'a string', b.model);
  const messages = b.messages;
  if (!Array.isArray(messages) || messages.length === 0) throw typeError('messages', 'a non-empty array of { role, content }', messages);
  const msgs = messages.map((m, i) => {
    if (!isObject(m)) throw typeError(`messages[${i}]`, 'an object { role, content }', m);
    if (typeof m.role !== 'string') throw typeError(`messages[${i}].role`, 'a string', m.role);
    return { role: m.role, content: contentText(m.content, `messages[${i}].content`) };
  });
  const n = optionalNumber(b, 'n');
  if (n !== undefined && n !== 1) throw rangeError('n', '1 (one choice per request)', String(n));
  let stop: string[] | undefined;
  if (typeof b.stop === 'string') stop = [b.stop];
  else if (Array.isArray(b.stop) && b.stop.every((s) => typeof s === 'string')) stop = b.stop as string[];
  else if (b.stop !== undefined && b.stop !== null) throw typeError('stop', 'a string or an array of strings', b.stop);
  const maxTokensField = b.max_completion_tokens !== undefined && b.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens = optionalNumber(b, maxTokensField, 1, 1e9, true);
  const stream = b.stream ?? false;
  if (typeof stream !== 'boolean') throw typeError('stream', 'true or false', stream);
  const options: ChatOptions = { messages: msgs };
  if (maxTokens !== undefined) options.maxNewTokens = maxTokens;
  for (const [key, field] of NUMBER_FIELDS) {
    const v = optionalNumber(b, key);
    if (v !== undefined) options[field] = v;
  }
  if (stop) options.stop = stop;
  if (b.persona !== undefined && b.persona !== null) options.persona = b.persona as Persona;
  const logprobs = sampling(b, options, po);
  return { model: b.model as string | undefined, stream, includeUsage: streamUsage(b.stream_options), logprobs, options, maxTokensField };
}

/** Numeric request fields the engine checks, and the GenerateOptions they set. */
const NUMBER_FIELDS = [
  ['temperature', 'temperature'], ['top_p', 'topP'], ['top_k', 'topK'], ['seed', 'seed'], ['repetition_penalty', 'repetitionPenalty'],
] as const;

/** presence / frequency penalties, logit bias and log-probabilities (OpenAI's ranges); returns `logprobs`. */
function sampling(b: Record<string, unknown>, options: ChatOptions, po: ParseOptions): boolean {
  const presence = optionalNumber(b, 'presence_penalty', -2, 2);
  const frequency = optionalNumber(b, 'frequency_penalty', -2, 2);
  if (presence) options.presencePenalty = presence;
  if (frequency) options.frequencyPenalty = frequency;
  const bias = logitBias(b.logit_bias, po.vocab ?? null);
  if (bias) options.logitBias = bias;
  const logprobs = b.logprobs ?? false;
  if (typeof logprobs !== 'boolean') throw typeError('logprobs', 'true or false', logprobs);
  const top = optionalNumber(b, 'top_logprobs', 0, 20, true);
  if (top !== undefined && !logprobs) throw rangeError('top_logprobs', 'no value unless logprobs is true', String(top));
  if (logprobs) options.topLogprobs = top ?? 0;
  return logprobs;
}

/** logit_bias { "token id": bias in [-100, 100] } as { id: bias }; undefined when absent or empty. */
function logitBias(v: unknown, vocab: number | null): Record<number, number> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw typeError('logit_bias', 'an object { "token id": bias }', v);
  const out: Record<number, number> = {};
  for (const [key, bias] of Object.entries(v)) {
    const id = Number(key);
    const ids = vocab !== null ? `token ids from 0 to ${vocab - 1}` : 'token ids (integers from 0)';
    if (!/^\d+$/.test(key) || (vocab !== null && id >= vocab)) throw rangeError('logit_bias', ids, `'${key}'`);
    if (typeof bias !== 'number') throw typeError(`logit_bias.${key}`, 'a number between -100 and 100', bias);
    if (!(bias >= -100 && bias <= 100)) throw rangeError(`logit_bias.${key}`, 'a number between -100 and 100', String(bias));
    if (bias !== 0) out[id] = bias;
  }
  return Object.keys(out).length ? out : undefined;
}

function streamUsage(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  if (!isObject(v)) throw typeError('stream_options', 'an object { include_usage }', v);
  const u = v.include_usage ?? false;
  if (typeof u !== 'boolean') throw typeError('stream_options.include_usage', 'true or false', u);
  return u;
}

/** Tool calling and structured output are API features this server does not have: say so. */
function refuseUnsupported(b: Record<string, unknown>): void {
  for (const field of ['tools', 'functions']) {
    const v = b[field];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0)) throw unsupportedField(field, 'tool and function calling are not implemented');
  }
  const rf = b.response_format;
  if (rf !== undefined && rf !== null && !(isObject(rf) && rf.type === 'text')) {
    throw unsupportedField('response_format', "only { type: 'text' } is implemented (no JSON mode or JSON schema)");
  }
}

/** content as a string, or the text parts of an array of content parts. */
function contentText(content: unknown, arg: string): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((p, i) => {
      if (isObject(p) && p.type === 'text' && typeof p.text === 'string') return p.text;
      throw typeError(`${arg}[${i}]`, "a text part { type: 'text', text }", p);
    }).join('');
  }
  throw typeError(arg, 'a string or an array of text parts', content);
}

/** GenerateOptions names in engine errors -> the request fields they came from. */
const API_NAMES: Record<string, string> = {
  topP: 'top_p', topK: 'top_k', repetitionPenalty: 'repetition_penalty', presencePenalty: 'presence_penalty',
  frequencyPenalty: 'frequency_penalty', logitBias: 'logit_bias', topLogprobs: 'top_logprobs', prompt: 'messages', inputIds: 'messages',
};

/**
 * A thrown error as the ApiError to answer: ours as they are; our TypeError / RangeError
 * ("Expected ... for <arg> but received ...") are the client's fault, 400 with the argument
 * renamed to its API field (maxNewTokens -> max_tokens, a prompt over the context -> messages).
 * Anything else is ours: 500.
 */
export function apiError(err: unknown, maxTokensField = 'max_tokens'): ApiError {
  if (err instanceof ApiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (!(err instanceof TypeError || err instanceof RangeError)) return new ApiError(500, message, 'server_error');
  const m = /for ([\w.[\]]+) but/.exec(message);
  if (!m) return new ApiError(400, message);
  const arg = m[1];
  const head = /^[A-Za-z_]+/.exec(arg)![0];
  const renamed = head === 'maxNewTokens' ? maxTokensField : API_NAMES[head];
  const param = renamed === undefined ? arg : renamed + arg.slice(head.length);
  const code = head === 'prompt' || head === 'inputIds' ? 'context_length_exceeded' : null;
  return new ApiError(400, message.replace(`for ${arg} but`, `for ${param} but`), 'invalid_request_error', param, code);
}

export function completionId(): string {
  return `chatcmpl-${randomUUID().replace(/-/g, '').slice(0, 24)}`;
}

export function finishReason(r: GenerateResult['finishReason']): string {
  return r === 'length' ? 'length' : 'stop';
}

export function usageOf(r: GenerateResult): Record<string, number> {
  return { prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: r.usage.promptTokens + r.usage.completionTokens };
}

/** What every object of one completion shares. */
export interface CompletionHeader {
  id: string;
  model: string;
  created: number;
  fingerprint: string;
}

export function completion(h: CompletionHeader, r: GenerateResult, logprobs: ApiLogprobs | null): unknown {
  return {
    id: h.id, object: 'chat.completion', created: h.created, model: h.model,
    choices: [{ index: 0, message: { role: 'assistant', content: r.text, refusal: null }, finish_reason: finishReason(r.finishReason), logprobs }],
    usage: usageOf(r),
    persona: { mix: r.mix },
    system_fingerprint: h.fingerprint,
  };
}

export function chunk(h: CompletionHeader, delta: Record<string, unknown>, finish: string | null, logprobs: ApiLogprobs | null, extra: Record<string, unknown> = {}): unknown {
  return {
    id: h.id, object: 'chat.completion.chunk', created: h.created, model: h.model, system_fingerprint: h.fingerprint,
    choices: [{ index: 0, delta, finish_reason: finish, logprobs }], ...extra,
  };
}

/** stream_options.include_usage's last chunk: no choices, the usage. */
export function usageChunk(h: CompletionHeader, r: GenerateResult): unknown {
  return { id: h.id, object: 'chat.completion.chunk', created: h.created, model: h.model, system_fingerprint: h.fingerprint, choices: [], usage: usageOf(r) };
}
