// The persona router on a tiny ONNX router fixture (scripts/fixtures/make_tiny_router.py), the
// Big Five mapping, and persona 'auto' through generate().
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PersonaModel } from '../lib';
import { bigFiveMix, PersonaRouter, readRouterConfig, staticMix } from '../lib/router';
import { adapterFolders, FIXTURE, tempDir } from './helpers/model';

const ROUTER = path.join(__dirname, 'fixtures', 'router-tiny');
const ref = JSON.parse(fs.readFileSync(path.join(ROUTER, 'reference.json'), 'utf8')) as {
  experts: string[]; cases: { text: string; input_ids: number[]; logits: number[] }[];
};
const tmp = tempDir('router');
let router: PersonaRouter;

beforeAll(async () => {
  router = await PersonaRouter.load(ROUTER);
});
afterAll(async () => {
  await router.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function softmax(x: number[]): number[] {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

describe('PersonaRouter.route', () => {
  test.each(ref.cases.map((c) => [c.text, c] as const))('%s: the top-2 of the PyTorch logits, renormalised', async (_, c) => {
    const r = await router.route(c.text);
    const p = softmax(c.logits);
    const order = p.map((v, i) => i).sort((a, b) => p[b] - p[a]).slice(0, 2);
    const sum = order.reduce((s, i) => s + p[i], 0);
    expect(Object.keys(r.mix)).toEqual(order.map((i) => ref.experts[i]));
    order.forEach((i) => expect(r.mix[ref.experts[i]]).toBeCloseTo(p[i] / sum, 5));
    ref.experts.forEach((e, i) => expect(r.distribution[e]).toBeCloseTo(p[i], 5));
  });

  test('texts of different situations get different mixes (the router is not constant)', async () => {
    const mixes = await Promise.all(ref.cases.map((c) => router.route(c.text)));
    expect(new Set(mixes.map((m) => JSON.stringify(m.mix))).size).toBeGreaterThan(1);
  });

  test('input last_user reads the last user message of a conversation', async () => {
    const c = ref.cases[2];
    const messages = [{ role: 'user', content: ref.cases[0].text }, { role: 'assistant', content: 'ok' }, { role: 'user', content: c.text }];
    const r = await router.route(messages);
    expect(r.text).toBe(c.text);
    expect(r.mix).toEqual((await router.route(c.text)).mix);
  });

  test('input conversation reads every message as "role: content" lines', async () => {
    const dir = path.join(tmp, 'conv');
    fs.mkdirSync(dir, { recursive: true });
    for (const f of ['model.onnx', 'tokenizer.json']) fs.copyFileSync(path.join(ROUTER, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, 'router.json'), JSON.stringify({ ...readRouterConfig(ROUTER), input: 'conversation' }));
    const conv = await PersonaRouter.load(dir);
    const r = await conv.route([{ role: 'system', content: 'be nice' }, { role: 'user', content: 'hi' }]);
    expect(r.text).toBe('system: be nice\nuser: hi');
    await conv.dispose();
  });

  test('a router folder without router.json, or with a bad field, is refused naming the problem', async () => {
    await expect(PersonaRouter.load(path.join(tmp, 'nowhere'))).rejects.toThrow(/does not exist/);
    const dir = path.join(tmp, 'bad');
    fs.mkdirSync(dir, { recursive: true });
    await expect(PersonaRouter.load(dir)).rejects.toThrow(/no router.json/);
    fs.writeFileSync(path.join(dir, 'router.json'), JSON.stringify({ experts: ['a', 'b'], topK: 3 }));
    await expect(PersonaRouter.load(dir)).rejects.toThrow(/topK/);
  });
});

describe('Big Five profile -> mix', () => {
  test('positive values pick <trait>_high, negative <trait>_low, at |value|', () => {
    expect(bigFiveMix({ openness: 0.3, neuroticism: -0.2 })).toEqual({ openness_high: 0.3, neuroticism_low: 0.2 });
  });

  test('weights summing over 1 are divided by their sum; zeros are dropped', () => {
    const m = bigFiveMix({ openness: 0.8, neuroticism: -0.5, agreeableness: 0 });
    expect(Object.keys(m)).toEqual(['openness_high', 'neuroticism_low']);
    expect(m.openness_high).toBeCloseTo(0.8 / 1.3, 12);
    expect(m.neuroticism_low).toBeCloseTo(0.5 / 1.3, 12);
  });

  test('unknown traits, values outside [-1, 1] and experts the model lacks are refused', () => {
    expect(() => bigFiveMix({ humour: 1 })).toThrow(RangeError);
    expect(() => bigFiveMix({ openness: 1.5 })).toThrow(RangeError);
    expect(() => bigFiveMix({ openness: '1' as unknown as number })).toThrow(TypeError);
    expect(() => staticMix({ openness: -1 }, ['openness_high'])).toThrow(/openness_low/);
    expect(staticMix({ mix: { openness_high: 0.5 } }, ['openness_high'])).toEqual({ openness_high: 0.5 });
  });
});

describe("generate with persona 'auto'", () => {
  test('a router that routes to experts the model did not load is refused at load, naming them', async () => {
    const two = Object.fromEntries(Object.entries(adapterFolders()).slice(0, 2));
    await expect(PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: two, cacheDir: tmp, router: ROUTER }))
      .rejects.toThrow(/not loaded as adapters: agreeableness_high, neuroticism_low, conscientiousness_high/);
  });

  test('the router picks the mix (the default when a router is loaded) and generation uses it', async () => {
    const m = await PersonaModel.load({
      model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir: tmp, router: ROUTER,
    });
    try {
      const c = ref.cases[0];
      const routed = (await router.route(c.text)).mix;
      const auto = await m.generate({ prompt: c.text, persona: 'auto', maxNewTokens: 8, temperature: 0 });
      expect(auto.mix).toEqual(routed);
      const byDefault = await m.generate({ prompt: c.text, maxNewTokens: 8, temperature: 0 });
      expect(byDefault.mix).toEqual(routed);
      const explicit = await m.generate({ prompt: c.text, persona: { mix: routed }, maxNewTokens: 8, temperature: 0 });
      expect(auto.tokens).toEqual(explicit.tokens);
      const chat = await m.generate({ messages: [{ role: 'user', content: ref.cases[2].text }], maxNewTokens: 4, temperature: 0 });
      expect(chat.mix).toEqual((await router.route(ref.cases[2].text)).mix);
    } finally {
      await m.dispose();
    }
  });
});
