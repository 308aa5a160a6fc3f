// Isolation: a request's greedy tokens equal its tokens alone on a freshly loaded model, whatever
// ran in its slot before and whatever runs beside it (issue 13). Randomized traffic (test/helpers/
// isolation.ts): mixes {} / one / two / five experts / a Big Five profile / 'auto', random prompts,
// budgets, join times and aborts, batch capacities 1, 3 and 16. The default configuration is the
// one users get: generation in the worker thread, loraLayout 'auto'. The seed is in every failure
// message; rerun one with PF_TEST_SEED.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PersonaModel } from '../lib';
import { alone, drive, makePlan, mismatches, PlanSpace } from './helpers/isolation';
import { adapterFolders, FIXTURE, reference } from './helpers/model';
import { seedNote, testRng } from './helpers/rng';

const DEMO = path.join(__dirname, '..', 'models', 'persona-demo');
const DEMO_EXPERTS = JSON.parse(fs.readFileSync(path.join(DEMO, 'router', 'router.json'), 'utf8')).experts as string[];
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-isolation-'));
afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

// written for this test, not taken from the demo's training templates
const MESSAGES = [
  'so... they called. I start Monday!',
  'my cat has not eaten since yesterday and I am freaking out a bit',
  'can you look at my essay intro and tell me honestly if it is boring',
  'ugh the wifi keeps dropping every ten minutes',
  'We are moving flats in three weeks and nothing is packed.',
  'nobody from the old team answers my messages anymore',
  'should I take the bus or just walk, it is drizzling',
  'I told my brother his band was bad. In front of his girlfriend.',
  'thinking of putting all my savings in one coin my cousin recommends',
  'hi! lovely morning here, just got back from a run',
  'Need names for a bakery that sells only croissants',
  'the funeral is on thursday and I have to give a speech',
  'big test friday, cannot focus at all',
  'My roommate keeps eating my food and we had a shouting match',
  'A', // the shortest prompt
];

function demoSpace(vocabIds: number[]): PlanSpace {
  return {
    experts: DEMO_EXPERTS,
    profiles: [{ openness: 0.8, neuroticism: -0.5 }, { extraversion: -0.9 }, { agreeableness: 0.4, conscientiousness: 0.6, openness: -0.3 }, { neuroticism: 1 }],
    messages: MESSAGES, vocabIds, auto: true, maxPrompt: 40, maxNew: 24,
  };
}

function fixtureSpace(): PlanSpace {
  return {
    experts: reference.experts,
    // the fixture has one pole per trait: profiles use only those signs
    profiles: [{ openness: 0.7, neuroticism: -0.6 }, { extraversion: -1 }, { agreeableness: 0.5, conscientiousness: 0.5 }],
    messages: MESSAGES, vocabIds: reference.sequences.flat(), auto: true, maxPrompt: 24, maxNew: 16,
  };
}

const SETUPS = {
  demo: { model: DEMO, adapters: Object.fromEntries(DEMO_EXPERTS.map((e) => [e, path.join(DEMO, 'adapters', e)])), router: path.join(DEMO, 'router') },
  fixture: { model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), router: path.join(__dirname, 'fixtures', 'router-tiny') },
} as const;

async function check(setup: keyof typeof SETUPS, n: number, extra: { maxBatch: number; worker?: boolean; loraLayout?: 'per-row' | 'bank'; replicas?: number }): Promise<void> {
  const rng = testRng();
  const s = SETUPS[setup];
  const fresh = await PersonaModel.load({ ...s, cacheDir, worker: false, loraLayout: extra.loraLayout });
  const space = setup === 'demo' ? demoSpace(fresh.codec!.encode(MESSAGES.join(' '))) : fixtureSpace();
  const plan = makePlan(rng, space, n);
  const model = await PersonaModel.load({ ...s, cacheDir, ...extra });
  try {
    const { outcomes: got, peak } = await drive(model, plan);
    const want = await alone(fresh, plan);
    const bad = mismatches(plan, got, want);
    const shown = bad.slice(0, 3).map((b) => `#${b.index} ${JSON.stringify(b.persona)} (${b.finishReason}): got ${b.got.join(',')} want ${b.want.join(',')}`);
    if (bad.length) throw new Error(`${bad.length} of ${n} requests differ from their tokens alone (${model.loraLayout}, maxBatch ${extra.maxBatch}, replicas ${extra.replicas ?? 1}):\n${shown.join('\n')}\n${seedNote()}`);
    // the mix each request reports is the one it was run with
    got.forEach((g, i) => expect({ i, mix: g.mix }).toEqual({ i, mix: want[i].mix }));
    // requests really overlapped (joined while others were mid-generation)
    expect(peak).toBeGreaterThanOrEqual(4);
    // the traffic really mixed personas and lengths in one batch: not every answer is the same
    expect(new Set(want.map((w) => w.tokens.join(','))).size).toBeGreaterThan(n / 4);
  } finally {
    await model.dispose();
    await fresh.dispose();
  }
}

describe('isolation: every request gets its tokens alone, in the default configuration (worker thread, layout auto)', () => {
  test.each([1, 3, 16])('demo model, maxBatch %d, 200 random requests', (maxBatch) => check('demo', 200, { maxBatch }));
  test.each([1, 3, 16])('tiny-llama fixture, maxBatch %d, 200 random requests', (maxBatch) => check('fixture', 200, { maxBatch }));
});

describe('isolation: every layout and runner', () => {
  test.each([
    ['per-row', true], ['bank', true], ['per-row', false], ['bank', false],
  ] as const)('demo model, %s layout, worker %s, maxBatch 3, 80 random requests', (loraLayout, worker) => check('demo', 80, { maxBatch: 3, worker, loraLayout }));
  test.each([
    ['per-row', true], ['bank', true], ['per-row', false], ['bank', false],
  ] as const)('tiny-llama fixture, %s layout, worker %s, maxBatch 3, 80 random requests', (loraLayout, worker) => check('fixture', 80, { maxBatch: 3, worker, loraLayout }));
});

describe('isolation: replicas (what `serve` runs a small model on)', () => {
  test.each([['per-row'], ['bank']] as const)('demo model, %s layout, 2 replicas, maxBatch 3, 80 random requests', (loraLayout) => check('demo', 80, { maxBatch: 3, loraLayout, replicas: 2 }));
});
