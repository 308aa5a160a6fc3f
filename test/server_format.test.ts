// The server's wire formats without a server: a chat request turned into GenerateOptions (the
// OpenAI sampling fields included, as they will flow once the engine carries them), engine errors
// renamed to API fields, log-probabilities in OpenAI's shape, and the request log lines.
import { rangeError, typeError } from '../lib/errors';
import { apiError, parseChatRequest } from '../lib/server/openai';
import { apiLogprob, apiLogprobs } from '../lib/server/logprobs';
import { eventLogger, requestLogger } from '../lib/server/logging';
import { ApiError } from '../lib/server/api_error';

const messages = [{ role: 'user', content: 'hi' }];

describe('parseChatRequest', () => {
  test('the OpenAI sampling fields become the GenerateOptions the sampler reads', () => {
    const r = parseChatRequest({
      messages, presence_penalty: 0.5, frequency_penalty: -1, logit_bias: { 5: 10, 7: -100, 9: 0 }, logprobs: true, top_logprobs: 3,
    }, { vocab: 2048 });
    expect(r.options).toMatchObject({ presencePenalty: 0.5, frequencyPenalty: -1, logitBias: { 5: 10, 7: -100 }, topLogprobs: 3 });
    expect(r.logprobs).toBe(true);
    // neutral values set nothing: the engine is asked for nothing it would then have to skip
    const neutral = parseChatRequest({ messages, presence_penalty: 0, frequency_penalty: 0, logit_bias: {}, logprobs: false });
    for (const k of ['presencePenalty', 'frequencyPenalty', 'logitBias', 'topLogprobs']) expect(neutral.options).not.toHaveProperty(k);
    expect(parseChatRequest({ messages, logprobs: true }).options.topLogprobs).toBe(0);
  });

  test('model, stream_options and max_completion_tokens are read as the API defines them', () => {
    const r = parseChatRequest({ model: 'm', messages, stream: true, stream_options: { include_usage: true }, max_completion_tokens: 5 });
    expect(r).toMatchObject({ model: 'm', stream: true, includeUsage: true, maxTokensField: 'max_completion_tokens', options: { maxNewTokens: 5 } });
    expect(parseChatRequest({ messages }).includeUsage).toBe(false);
    expect(() => parseChatRequest({ messages, stream_options: { include_usage: 'yes' } })).toThrow(/stream_options\.include_usage/);
    expect(() => parseChatRequest({ messages, model: 7 })).toThrow(/for model but/);
  });
});

describe('apiError', () => {
  test('engine argument errors become 400 with the API field, in the param and in the message', () => {
    const e = apiError(rangeError('maxNewTokens', 'an integer between 1 and 1000000000', '0'), 'max_completion_tokens');
    expect(e).toMatchObject({ status: 400, type: 'invalid_request_error', param: 'max_completion_tokens' });
    expect(e.message).toBe('Expected an integer between 1 and 1000000000 for max_completion_tokens but received 0');
    expect(apiError(typeError('topP', 'a number between 0 and 1', 'x')).param).toBe('top_p');
    const context = apiError(rangeError('prompt', "fewer than 512 tokens (the model's context)", '600 tokens'));
    expect(context).toMatchObject({ param: 'messages', code: 'context_length_exceeded' });
    // our own extension keeps its name, with its path
    expect(apiError(rangeError('persona.mix.wit_high', 'x', 'y')).param).toBe('persona.mix.wit_high');
  });

  test('anything else is the server\'s: 500 server_error; ApiErrors pass as they are', () => {
    expect(apiError(new Error('session failed'))).toMatchObject({ status: 500, type: 'server_error' });
    const mine = new ApiError(429, 'full', 'requests');
    expect(apiError(mine)).toBe(mine);
  });
});

describe('log-probabilities in OpenAI\'s shape', () => {
  test('token text and UTF-8 bytes for the chosen token and each alternative; -Infinity as -9999', () => {
    const text = (id: number) => ['a', 'é', '<|im_end|>'][id];
    const e = apiLogprob(1, { logprob: -0.25, top: [{ token: 1, logprob: -0.25 }, { token: 2, logprob: -Infinity }] }, text);
    expect(e).toEqual({
      token: 'é', logprob: -0.25, bytes: [0xc3, 0xa9],
      top_logprobs: [{ token: 'é', logprob: -0.25, bytes: [0xc3, 0xa9] }, { token: '<|im_end|>', logprob: -9999, bytes: [...Buffer.from('<|im_end|>')] }],
    });
    expect(apiLogprobs([e])).toEqual({ content: [e], refusal: null });
  });
});

describe('request log lines', () => {
  const entry = {
    id: 'chatcmpl-1', method: 'POST', path: '/v1/chat/completions', status: 200, mix: { openness_high: 0.6, agreeableness_high: 0.4 },
    promptTokens: 12, completionTokens: 30, ttftMs: 12.345, durationMs: 45.678,
  };

  test('json: one object per line with the fixed field names; absent fields left out', () => {
    const lines: string[] = [];
    requestLogger('json', (l) => lines.push(l))(entry);
    requestLogger('json', (l) => lines.push(l))({ id: 'req-1', method: 'GET', path: '/health', status: 200, durationMs: 0.3 });
    const [chat, health] = lines.map((l) => JSON.parse(l));
    expect(chat).toEqual({
      time: expect.any(String), id: 'chatcmpl-1', method: 'POST', path: '/v1/chat/completions', status: 200,
      persona_mix: entry.mix, prompt_tokens: 12, completion_tokens: 30, ttft_ms: 12.3, duration_ms: 45.7,
    });
    expect(Object.keys(health)).toEqual(['time', 'id', 'method', 'path', 'status', 'duration_ms']);
  });

  test('text: method, path and status first, then key=value; none writes nothing', () => {
    const lines: string[] = [];
    requestLogger('text', (l) => lines.push(l))(entry);
    expect(lines[0]).toMatch(/^\S+ POST \/v1\/chat\/completions 200 id=chatcmpl-1 persona_mix=openness_high:0\.6,agreeableness_high:0\.4 prompt_tokens=12 completion_tokens=30 ttft_ms=12\.3 duration_ms=45\.7$/);
    requestLogger('none', (l) => lines.push(l))(entry);
    eventLogger('none', (l) => lines.push(l))('drain_start', {});
    expect(lines).toHaveLength(1);
    eventLogger('json', (l) => lines.push(l))('drain_start', { signal: 'SIGTERM', in_flight: 2 });
    expect(JSON.parse(lines[1])).toMatchObject({ event: 'drain_start', signal: 'SIGTERM', in_flight: 2 });
  });
});
