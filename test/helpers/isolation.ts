// The isolation property (a request's greedy tokens never depend on what ran before it in its
// batch slot or beside it), as a randomized traffic plan and its oracle.
//
//   plan   n requests drawn from an Rng: a persona ({}, one, two or five experts, a Big Five
//          profile, 'auto'), a prompt, maxNewTokens, the number of tokens the whole run must have
//          produced before it starts (so requests join while others are mid-generation, several at
//          once, or into an empty batch), and maybe an abort after some of its own tokens
//   drive  runs the plan through model.stream() in the model's own configuration
//   alone  the oracle: each request's mix resolved on its own (the router for 'auto') and decoded
//          greedily by a new Batcher over a stateless session, one request, nothing before it:
//          exactly what a freshly loaded model does with that request alone
import type { PersonaModel } from '../../lib';
import { Batcher, FinishReason } from '../../lib/engine/batcher';
import { mixEntries, Mix } from '../../lib/decoder/mix';
import { staticMix, Persona } from '../../lib/router/persona';
import { samplingParams } from '../../lib/engine/options';
import type { Rng } from './rng';

export interface PlannedRequest {
  index: number;
  persona: Persona;
  /** a chat message (encoded with the chat template) or token ids */
  prompt: { messages: { role: 'user'; content: string }[] } | { inputIds: number[] };
  maxNewTokens: number;
  /** tokens the whole run has produced before this request starts */
  startAfter: number;
  /** abort after this many of its own tokens (0: right after it is submitted) */
  abortAfter?: number;
}

export interface Outcome {
  tokens: number[];
  finishReason: FinishReason;
  mix: Mix;
}

export interface PlanSpace {
  experts: readonly string[];
  /** Big Five profiles whose poles are all loaded */
  profiles: Record<string, number>[];
  /** user messages for chat prompts and 'auto' */
  messages: readonly string[];
  /** token ids to cut raw prompts from */
  vocabIds: readonly number[];
  /** whether 'auto' can be drawn (a router is loaded) */
  auto: boolean;
  maxPrompt: number;
  maxNew: number;
}

function someExperts(rng: Rng, experts: readonly string[], n: number): Mix {
  const picked = rng.distinct(experts.length, Math.min(n, experts.length));
  const raw = picked.map(() => rng.uniform(0.05, 1));
  const total = raw.reduce((s, w) => s + w, 0);
  return Object.fromEntries(picked.map((e, j) => [experts[e], n === 1 ? Math.min(1, raw[j]) : raw[j] / total]));
}

export function drawPersona(rng: Rng, space: PlanSpace): Persona {
  const kinds = ['empty', 'one', 'two', 'five', 'profile', ...(space.auto ? ['auto'] : [])];
  const kind = kinds[rng.int(0, kinds.length)];
  switch (kind) {
    case 'empty': return { mix: {} };
    case 'one': return { mix: someExperts(rng, space.experts, 1) };
    case 'two': return { mix: someExperts(rng, space.experts, 2) };
    case 'five': return { mix: someExperts(rng, space.experts, 5) };
    case 'profile': return space.profiles[rng.int(0, space.profiles.length)];
    default: return 'auto';
  }
}

export function makePlan(rng: Rng, space: PlanSpace, n: number): PlannedRequest[] {
  let clock = 0;
  return Array.from({ length: n }, (_, index) => {
    // a third start together with the one before, the rest a few tokens later
    if (rng.float() > 0.33) clock += rng.int(1, 12);
    let prompt: PlannedRequest['prompt'];
    if (rng.float() < 0.5) {
      prompt = { messages: [{ role: 'user', content: space.messages[rng.int(0, space.messages.length)] }] };
    } else {
      const len = rng.int(1, space.maxPrompt + 1);
      const at = rng.int(0, Math.max(1, space.vocabIds.length - len));
      prompt = { inputIds: space.vocabIds.slice(at, at + len) };
    }
    const r = rng.float();
    const abortAfter = r < 0.05 ? 0 : r < 0.15 ? rng.int(1, space.maxNew) : undefined;
    return { index, persona: drawPersona(rng, space), prompt, maxNewTokens: rng.int(1, space.maxNew + 1), startAfter: clock, abortAfter };
  });
}

/** Runs the plan through model.stream(); requests start as the run's token count passes their startAfter. */
export async function drive(model: PersonaModel, plan: readonly PlannedRequest[]): Promise<{ outcomes: Outcome[]; peak: number }> {
  const outcomes: Outcome[] = new Array(plan.length);
  let peak = 0;
  const waiting = [...plan];
  const active = new Map<number, Promise<void>>();
  let produced = 0;

  const run = async (p: PlannedRequest): Promise<void> => {
    const ac = new AbortController();
    const tokens: number[] = [];
    const stream = model.stream({ ...p.prompt, persona: p.persona, maxNewTokens: p.maxNewTokens, temperature: 0, signal: ac.signal });
    if (p.abortAfter === 0) ac.abort();
    for await (const ev of stream) {
      if (ev.done) {
        outcomes[p.index] = { tokens: ev.result.tokens, finishReason: ev.result.finishReason, mix: ev.result.mix };
        break;
      }
      tokens.push(ev.token);
      produced++;
      launch();
      if (p.abortAfter !== undefined && tokens.length >= p.abortAfter) ac.abort();
    }
  };
  const start = (p: PlannedRequest) => {
    active.set(p.index, run(p).finally(() => active.delete(p.index)));
    peak = Math.max(peak, active.size);
  };
  const launch = () => {
    while (waiting.length && waiting[0].startAfter <= produced) start(waiting.shift()!);
  };

  launch();
  while (active.size || waiting.length) {
    // everything before it finished early: the next request starts into an idle model
    if (active.size === 0) start(waiting.shift()!);
    await Promise.race(active.values());
    launch();
  }
  return { outcomes, peak };
}

/** The oracle: each request alone on a fresh Batcher over `fresh` (a model loaded with { worker: false }). */
export async function alone(fresh: PersonaModel, plan: readonly PlannedRequest[]): Promise<{ tokens: number[]; mix: Mix }[]> {
  const session = await fresh.openSession();
  const codec = fresh.codec!;
  const out: { tokens: number[]; mix: Mix }[] = [];
  for (const p of plan) {
    const inputIds = 'inputIds' in p.prompt ? p.prompt.inputIds : codec.encodeChat(p.prompt.messages);
    let mix: Mix;
    if (p.persona === 'auto') {
      const text = 'inputIds' in p.prompt ? codec.decode(p.prompt.inputIds) : p.prompt.messages[0].content;
      mix = Object.fromEntries(Object.entries((await fresh.route(text)).mix).filter(([, w]) => w !== 0));
    } else {
      mix = staticMix(p.persona, fresh.experts);
    }
    const batcher = new Batcher({ session, layout: fresh.slotLayout, io: fresh.io, padId: fresh.padId }, { maxBatch: 1 });
    const tokens: number[] = [];
    await new Promise<void>((resolve, reject) => {
      batcher.submit(
        { inputIds, mix: mixEntries(mix, fresh.experts), maxNewTokens: p.maxNewTokens, seed: 0, sampling: samplingParams({ temperature: 0 }, codec.generationConfig), eosIds: codec.eosIds },
        { token: (t) => tokens.push(t), done: (_reason, error) => (error ? reject(new Error(error)) : resolve()) },
      );
    });
    await batcher.close();
    out.push({ tokens, mix });
  }
  return out;
}

export interface Mismatch {
  index: number;
  persona: Persona;
  got: number[];
  want: number[];
  finishReason: FinishReason;
}

/** Requests whose tokens differ from the oracle's (an aborted one must be a prefix of it). */
export function mismatches(plan: readonly PlannedRequest[], got: readonly Outcome[], want: readonly { tokens: number[] }[]): Mismatch[] {
  const bad: Mismatch[] = [];
  plan.forEach((p, i) => {
    const g = got[i].tokens;
    const w = want[i].tokens;
    const ok = got[i].finishReason === 'abort' && p.abortAfter !== undefined
      ? g.length <= w.length && g.every((t, j) => t === w[j])
      : g.length === w.length && g.every((t, j) => t === w[j]);
    if (!ok) bad.push({ index: i, persona: p.persona, got: g, want: w, finishReason: got[i].finishReason });
  });
  return bad;
}
