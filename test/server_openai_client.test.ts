// The server driven by the real `openai` npm client, as applications call it: models.list /
// retrieve, chat.completions.create with and without streaming, stream_options.include_usage,
// model names and aliases, and errors raised as the client's typed errors with OpenAI's params.
// The embedded demo model, loaded as the CLI loads it, on the calling thread; loopback only.
import * as fs from 'node:fs';
import OpenAI from 'openai';
import { PersonaModel } from '../lib';
import { loadModelFromFlags } from '../lib/cli/options';
import { RunningServer, startServer } from '../lib/server';
import { tempDir } from './helpers/model';

const cacheDir = tempDir('server-openai');
let model: PersonaModel;
let srv: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  model = await loadModelFromFlags({ cacheDir });
  srv = await startServer(model, { port: 0, servedModelNames: ['persona-demo', 'demo'] });
  // no retries: an error must reach the test as the server sent it
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'not-checked', maxRetries: 0 });
});
afterAll(async () => {
  await srv.close();
  await model.dispose();
  fs.rmSync(cacheDir, { recursive: true, force: true });
});

const messages = [{ role: 'user' as const, content: 'We just won the championship!' }];

/** The error a call rejects with. */
async function failure(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(OpenAI.APIError);
  return err as InstanceType<typeof OpenAI.APIError>;
}

describe('models', () => {
  test('models.list reports the first served name; models.retrieve finds it by id or alias, and 404s anything else', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['persona-demo']);
    expect((list.data[0] as unknown as { experts: string[] }).experts).toEqual(model.experts);
    expect((await client.models.retrieve('persona-demo')).id).toBe('persona-demo');
    expect((await client.models.retrieve('demo')).id).toBe('persona-demo');
    const err = await failure(client.models.retrieve('gpt-4o'));
    expect(err.status).toBe(404);
    expect(err.code).toBe('model_not_found');
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
  });
});

describe('chat.completions.create', () => {
  test('non-stream through an alias: the served id, generate()\'s text and usage, the persona, a fingerprint that does not change with the seed', async () => {
    const want = await model.generate({ messages, persona: { mix: { openness_high: 1 } }, maxNewTokens: 8, temperature: 0 });
    const ask = (seed: number) => client.chat.completions.create({
      model: 'demo', messages, max_tokens: 8, temperature: 0, seed, persona: { mix: { openness_high: 1 } },
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const [a, b] = await Promise.all([ask(1), ask(2)]);
    expect(a.model).toBe('persona-demo');
    expect(a.object).toBe('chat.completion');
    expect(a.choices[0].message.content).toBe(want.text);
    expect(a.choices[0].finish_reason).toBe(want.finishReason === 'length' ? 'length' : 'stop');
    expect(a.usage).toEqual({ prompt_tokens: want.usage.promptTokens, completion_tokens: want.usage.completionTokens, total_tokens: want.usage.promptTokens + want.usage.completionTokens });
    expect((a as unknown as { persona: unknown }).persona).toEqual({ mix: { openness_high: 1 } });
    expect(a.system_fingerprint).toMatch(/^fp_[0-9a-f]{12}$/);
    expect(b.system_fingerprint).toBe(a.system_fingerprint);
  });

  test('stream: the deltas add up to generate()\'s text; the persona rides on the first and the finish chunk; no usage unless asked for', async () => {
    const want = await model.generate({ messages, persona: { extraversion: 0.6 }, maxNewTokens: 10, temperature: 0 });
    const stream = await client.chat.completions.create({
      model: 'persona-demo', messages, max_tokens: 10, temperature: 0, stream: true, persona: { extraversion: 0.6 },
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.map((c) => c.choices[0].delta.content ?? '').join('')).toBe(want.text);
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    expect((chunks[0] as unknown as { persona: unknown }).persona).toEqual({ mix: want.mix });
    const last = chunks[chunks.length - 1];
    expect(last.choices[0].finish_reason).not.toBeNull();
    expect((last as unknown as { persona: unknown }).persona).toEqual({ mix: want.mix });
    expect(chunks.every((c) => !('usage' in c))).toBe(true);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks.every((c) => c.model === 'persona-demo' && /^fp_/.test(c.system_fingerprint ?? ''))).toBe(true);
  });

  test('stream_options.include_usage: usage null on every chunk, then a last chunk with no choices and the usage', async () => {
    const stream = await client.chat.completions.create({ model: 'persona-demo', messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    const last = chunks[chunks.length - 1];
    expect(last.choices).toEqual([]);
    expect(last.usage!.total_tokens).toBe(last.usage!.prompt_tokens + last.usage!.completion_tokens);
    expect(last.usage!.completion_tokens).toBeGreaterThan(0);
    expect(chunks.slice(0, -1).every((c) => c.usage === null && c.choices.length === 1)).toBe(true);
    expect(chunks[chunks.length - 2].choices[0].finish_reason).not.toBeNull();
  });

  test('an unknown model is 404 model_not_found', async () => {
    const err = await failure(client.chat.completions.create({ model: 'gpt-4o', messages, max_tokens: 2 }));
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect(err.code).toBe('model_not_found');
    expect(err.param).toBe('model');
  });
});

describe('errors name the API fields', () => {
  test.each([
    ['max_tokens 0', 'max_tokens', { max_tokens: 0 }],
    ['max_completion_tokens 0', 'max_completion_tokens', { max_completion_tokens: 0 }],
    ['top_p 2 (checked by the engine as topP)', 'top_p', { top_p: 2 }],
    ['top_k -1 (checked by the engine as topK)', 'top_k', { top_k: -1 }],
    ['repetition_penalty 0 (checked by the engine)', 'repetition_penalty', { repetition_penalty: 0 }],
    ['presence_penalty out of [-2, 2]', 'presence_penalty', { presence_penalty: 3 }],
    ['a logit_bias id past the vocabulary', 'logit_bias', { logit_bias: { 99999: 1 } }],
    ['a logit_bias value past 100', 'logit_bias.5', { logit_bias: { 5: 101 } }],
    ['top_logprobs without logprobs', 'top_logprobs', { top_logprobs: 3 }],
    ['tools', 'tools', { tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] }],
    ['response_format json_object', 'response_format', { response_format: { type: 'json_object' } }],
    ['a prompt over the context in tokens (checked by the engine as prompt)', 'messages', { messages: [{ role: 'user', content: 'word '.repeat(1000) }] }],
    ['a prompt over the context in characters (refused before tokenizing)', 'messages', { messages: [{ role: 'user', content: 'x'.repeat(512 * 16 + 1) }] }],
  ])('%s -> 400 with param %s', async (_, param, extra) => {
    const err = await failure(client.chat.completions.create({ model: 'persona-demo', messages, max_tokens: 2, ...extra } as OpenAI.ChatCompletionCreateParamsNonStreaming));
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.param).toBe(param);
    expect(err.message).toContain(param.split('.')[0]);
    expect(err.message).not.toMatch(/maxNewTokens|topP|topK|repetitionPenalty/);
  });

  test('a prompt over the context says context_length_exceeded, both before and after tokenizing', async () => {
    for (const content of ['word '.repeat(1000), 'x'.repeat(512 * 16 + 1)]) {
      const err = await failure(client.chat.completions.create({ model: 'persona-demo', messages: [{ role: 'user', content }], max_tokens: 2 }));
      expect(err.code).toBe('context_length_exceeded');
    }
  });

  test('logprobs / top_logprobs come back in OpenAI\'s shape; logit_bias steers greedy tokens; presence_penalty changes the reply; neutral values change nothing', async () => {
    const base = { model: 'persona-demo', messages, max_tokens: 6, temperature: 0, persona: { mix: {} } } as const;
    const plain = await client.chat.completions.create(base as never);
    const withLp = await client.chat.completions.create({ ...base, logprobs: true, top_logprobs: 3 } as never);
    expect(withLp.choices[0].message.content).toBe(plain.choices[0].message.content);
    const lp = withLp.choices[0].logprobs!.content!;
    expect(lp.length).toBeGreaterThan(0);
    for (const t of lp) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(3);
      // greedy: the chosen token is the most likely one
      expect(t.logprob).toBeCloseTo(t.top_logprobs[0].logprob, 5);
    }
    // +100 on a word's token forces it at every step: the reply changes
    const word = model.codec!.encode(' zebra', false)[0];
    const biased = await client.chat.completions.create({ ...base, logit_bias: { [word]: 100 } } as never);
    expect(biased.choices[0].message.content).not.toBe(plain.choices[0].message.content);
    // penalties apply from the second token on (to generated tokens): the log-probabilities move
    // (a little: the penalised tokens are unlikely next anyway; test/sampler.test.ts checks the maths)
    const lpOf = async (extra: object) => (await client.chat.completions.create({ ...base, logprobs: true, top_logprobs: 2, ...extra } as never)).choices[0].logprobs!.content!;
    const [penalised, unpenalised] = [await lpOf({ presence_penalty: 2, frequency_penalty: 2 }), await lpOf({})];
    expect(penalised[0].logprob).toBeCloseTo(unpenalised[0].logprob, 5);
    expect(penalised.slice(1).some((t, i) => Math.abs(t.logprob - unpenalised[i + 1].logprob) > 1e-7 || t.token !== unpenalised[i + 1].token)).toBe(true);
    const neutral = await client.chat.completions.create({ ...base, presence_penalty: 0, frequency_penalty: 0, logit_bias: {}, logprobs: false, tools: [], response_format: { type: 'text' } } as never);
    expect(neutral.choices[0].message.content).toBe(plain.choices[0].message.content);
    expect(neutral.choices[0].logprobs).toBeNull();
  });
});
