// The OpenAI chat-completions wire format: a request body checked and turned into
// GenerateOptions, and the response / stream-chunk objects built from our results.
//   request:  { messages, stream?, max_tokens? | max_completion_tokens?, temperature?, top_p?,
//               top_k?, seed?, stop?: string | string[], repetition_penalty?, n? (1 only),
//               persona?: "auto" | { openness: 0.8, ... } | { mix: { expert: weight } } }
//   response: chat.completion / chat.completion.chunk, plus `persona: { mix }` with the mix used
//             (on the first and the last chunk of a stream; the last one also carries usage)
import { randomUUID } from 'node:crypto';
import { rangeError, typeError } from '../errors';
import type { GenerateOptions } from '../engine/options';
import type { GenerateResult } from '../engine/engine';
import type { Persona } from '../router/persona';

export interface ChatRequest {
  options: GenerateOptions;
  stream: boolean;
}

/** An error the client caused: sent as 400 with an OpenAI-style body. */
export class BadRequest extends Error {
  constructor(message: string, readonly status = 400) {
    super(message);
    this.name = 'BadRequest';
  }
}

export function errorBody(message: string, type: string, param: string | null = null, code: string | null = null): unknown {
  return { error: { message, type, param, code } };
}

function optionalNumber(body: Record<string, unknown>, key: string): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number') throw typeError(key, 'a number', v);
  return v;
}

export function parseChatRequest(body: unknown): ChatRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw typeError('body', 'a JSON object', body);
  const b = body as Record<string, unknown>;
  const messages = b.messages;
  if (!Array.isArray(messages) || messages.length === 0) throw typeError('messages', 'a non-empty array of { role, content }', messages);
  const msgs = messages.map((m, i) => {
    if (typeof m !== 'object' || m === null) throw typeError(`messages[${i}]`, 'an object { role, content }', m);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== 'string') throw typeError(`messages[${i}].role`, 'a string', role);
    return { role, content: contentText(content, `messages[${i}].content`) };
  });
  const n = optionalNumber(b, 'n');
  if (n !== undefined && n !== 1) throw rangeError('n', '1 (one choice per request)', String(n));
  let stop: string[] | undefined;
  if (typeof b.stop === 'string') stop = [b.stop];
  else if (Array.isArray(b.stop)) stop = b.stop as string[];
  else if (b.stop !== undefined && b.stop !== null) throw typeError('stop', 'a string or an array of strings', b.stop);
  const maxTokens = optionalNumber(b, 'max_completion_tokens') ?? optionalNumber(b, 'max_tokens');
  const stream = b.stream ?? false;
  if (typeof stream !== 'boolean') throw typeError('stream', 'true or false', stream);
  const options: GenerateOptions = { messages: msgs };
  if (maxTokens !== undefined) options.maxNewTokens = maxTokens;
  for (const [key, field] of NUMBER_FIELDS) {
    const v = optionalNumber(b, key);
    if (v !== undefined) options[field] = v;
  }
  if (stop) options.stop = stop;
  if (b.persona !== undefined && b.persona !== null) options.persona = b.persona as Persona;
  return { stream, options };
}

/** Numeric request fields and the GenerateOptions they set. */
const NUMBER_FIELDS = [
  ['temperature', 'temperature'], ['top_p', 'topP'], ['top_k', 'topK'], ['seed', 'seed'], ['repetition_penalty', 'repetitionPenalty'],
] as const;

/** content as a string, or the text parts of an array of content parts. */
function contentText(content: unknown, arg: string): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((p, i) => {
      if (typeof p === 'object' && p !== null && (p as Record<string, unknown>).type === 'text' && typeof (p as Record<string, unknown>).text === 'string') {
        return (p as Record<string, string>).text;
      }
      throw typeError(`${arg}[${i}]`, "a text part { type: 'text', text }", p);
    }).join('');
  }
  throw typeError(arg, 'a string or an array of text parts', content);
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

export function completion(id: string, model: string, created: number, r: GenerateResult): unknown {
  return {
    id, object: 'chat.completion', created, model,
    choices: [{ index: 0, message: { role: 'assistant', content: r.text }, finish_reason: finishReason(r.finishReason), logprobs: null }],
    usage: usageOf(r),
    persona: { mix: r.mix },
    system_fingerprint: `personafuse-seed-${r.seed}`,
  };
}

export function chunk(id: string, model: string, created: number, delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}): unknown {
  return { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }], ...extra };
}
