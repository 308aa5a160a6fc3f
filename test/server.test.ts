// The OpenAI-compatible server over real HTTP on loopback (port 0): models, non-stream and SSE
// completions against generate(), 16 concurrent requests, malformed requests, disconnects.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { PersonaModel } from '../lib';
import { RunningServer, startServer } from '../lib/server';
import { adapterFolders, FIXTURE, tempDir } from './helpers/model';

const cacheDir = tempDir('server');
const ROUTER = path.join(__dirname, 'fixtures', 'router-tiny');
let model: PersonaModel;
let srv: RunningServer;

beforeAll(async () => {
  model = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir, router: ROUTER });
  srv = await startServer(model, { port: 0, modelId: 'tiny-llama' });
});
afterAll(async () => {
  await srv.close();
  await model.dispose();
  fs.rmSync(cacheDir, { recursive: true, force: true });
});

// response bodies are OpenAI-shaped JSON the assertions walk freely
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = (r: Response): Promise<any> => r.json();
const post = (body: unknown) => fetch(`${srv.url}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body),
});

/** The data: payloads of an SSE response, in order. */
async function sse(res: Response): Promise<string[]> {
  const text = await res.text();
  return text.split('\n\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
}

const messages = [{ role: 'user', content: 'Hello world' }];

describe('GET /v1/models', () => {
  test('lists the served model with its experts', async () => {
    const res = await fetch(`${srv.url}/v1/models`);
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.object).toBe('list');
    expect(body.data[0].id).toBe('tiny-llama');
    expect(body.data[0].experts).toEqual(model.experts);
  });
});

describe('POST /v1/chat/completions', () => {
  test('non-stream: the text, finish reason, usage and persona of generate() with the same settings', async () => {
    const mix = { openness_high: 0.7, agreeableness_high: 0.3 };
    const want = await model.generate({ messages, persona: { mix }, maxNewTokens: 12, temperature: 0 });
    const res = await post({ model: 'tiny-llama', messages, persona: { mix }, max_tokens: 12, temperature: 0 });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.object).toBe('chat.completion');
    expect(body.choices[0].message).toEqual({ role: 'assistant', content: want.text, refusal: null });
    expect(body.choices[0].finish_reason).toBe(want.finishReason === 'length' ? 'length' : 'stop');
    expect(body.usage).toEqual({ prompt_tokens: want.usage.promptTokens, completion_tokens: want.usage.completionTokens, total_tokens: want.usage.promptTokens + want.usage.completionTokens });
    expect(body.persona).toEqual({ mix });
  });

  test('stream: SSE chunks add up to the same text and end with data: [DONE]', async () => {
    const want = await model.generate({ messages, persona: { openness: 0.5 }, maxNewTokens: 12, temperature: 0 });
    const res = await post({ messages, persona: { openness: 0.5 }, max_tokens: 12, temperature: 0, stream: true });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const data = await sse(res);
    expect(data[data.length - 1]).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    expect(chunks[0].persona).toEqual({ mix: { openness_high: 0.5 } });
    expect(chunks.map((c) => c.choices[0].delta.content ?? '').join('')).toBe(want.text);
    const last = chunks[chunks.length - 1];
    expect(last.choices[0].finish_reason).not.toBeNull();
    expect(last.persona).toEqual({ mix: want.mix });
  });

  test('persona "auto" (and no persona, with a router loaded) reports the router mix', async () => {
    const routed = (await model.route(messages)).mix;
    for (const persona of ['auto', undefined]) {
      const body = await json(await post({ messages, persona, max_tokens: 3 }));
      expect(body.persona.mix).toEqual(routed);
    }
  });

  test('stop, seed and top_p are honoured: a seeded request repeats, a stop string cuts', async () => {
    const o = { messages, max_tokens: 16, temperature: 1, top_p: 0.9, seed: 11 };
    const [a, b] = await Promise.all([post(o).then(json), post(o).then(json)]);
    expect(a.choices[0].message.content).toBe(b.choices[0].message.content);
    const greedy = (await json(await post({ messages, max_tokens: 16, temperature: 0 }))).choices[0].message.content as string;
    const stop = greedy.slice(2, 4);
    const cut = await json(await post({ messages, max_tokens: 16, temperature: 0, stop }));
    expect(cut.choices[0].message.content).toBe(greedy.slice(0, greedy.indexOf(stop)));
    expect(cut.choices[0].finish_reason).toBe('stop');
  });

  test('16 concurrent requests (stream and not, 4 personas) each get what they get alone', async () => {
    const personas = [{ mix: {} }, { mix: { openness_high: 1 } }, { extraversion: -0.6 }, { mix: { neuroticism_low: 0.4, conscientiousness_high: 0.6 } }];
    const reqs = Array.from({ length: 16 }, (_, i) => ({
      messages: [{ role: 'user', content: `request number ${i}` }], persona: personas[i % 4], max_tokens: 6 + (i % 5), temperature: 0, stream: i % 2 === 0,
    }));
    const alone: string[] = [];
    for (const r of reqs) alone.push((await model.generate({ messages: r.messages, persona: r.persona, maxNewTokens: r.max_tokens, temperature: 0 })).text);
    const got = await Promise.all(reqs.map(async (r) => {
      const res = await post(r);
      if (!r.stream) return (await json(res)).choices[0].message.content as string;
      return (await sse(res)).slice(0, -1).map((d) => JSON.parse(d).choices[0].delta.content ?? '').join('');
    }));
    expect(got).toEqual(alone);
  });
});

describe('POST /v1/chat/completions: bad requests', () => {
  test.each([
    ['not JSON', '{"messages": [', /not valid JSON/],
    ['no messages', { max_tokens: 3 }, /messages/],
    ['a message without content', { messages: [{ role: 'user' }] }, /content/],
    ['an unknown expert', { messages, persona: { mix: { wit_high: 1 } } }, /wit_high/],
    ['a weight out of range', { messages, persona: { mix: { openness_high: 2 } } }, /between 0 and 1/],
    ['a Big Five value out of range', { messages, persona: { openness: -3 } }, /openness/],
    ['a string temperature', { messages, temperature: 'hot' }, /temperature/],
    ['n = 2', { messages, n: 2 }, /\bn\b/],
    ['a prompt over the context', { messages: [{ role: 'user', content: 'word '.repeat(400) }] }, /context/],
  ])('%s -> 400 with an OpenAI-style error', async (_, body, message) => {
    const res = await post(body);
    expect(res.status).toBe(400);
    const err = (await json(res)).error;
    expect(err.type).toBe('invalid_request_error');
    expect(err.message).toMatch(message);
  });

  test('unknown routes are 404 and wrong methods 405; the server keeps serving', async () => {
    expect((await fetch(`${srv.url}/v1/nothing`)).status).toBe(404);
    expect((await fetch(`${srv.url}/v1/chat/completions`)).status).toBe(405);
    expect((await post({ messages, max_tokens: 2 })).status).toBe(200);
  });
});

describe('disconnects', () => {
  test('a client leaving mid-stream frees its slot at once, while a twin request still runs', async () => {
    const o = { messages, max_tokens: 200, temperature: 0 };
    // precondition: this request runs long (no early EOS), so "freed at once" can be told apart
    expect((await model.generate({ messages, maxNewTokens: 200, temperature: 0 })).tokens.length).toBe(200);
    let twinDone = false;
    const twin = post(o).then(async (r) => {
      await r.json();
      twinDone = true;
    });
    await new Promise<void>((resolve, reject) => {
      // cleared once data came: a pending 10 s timer kept the jest worker alive after the file
      const timer = setTimeout(() => reject(new Error('no data')), 10000);
      const req = http.request(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.once('data', () => {
          clearTimeout(timer);
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      req.end(JSON.stringify({ ...o, stream: true }));
    });
    while (model.engine.openRequests > 1) await new Promise((r) => setImmediate(r));
    expect(twinDone).toBe(false);
    await twin;
    expect(model.engine.openRequests).toBe(0);
    expect((await post({ messages, max_tokens: 2 })).status).toBe(200);
  });
});
