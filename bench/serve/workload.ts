// The requests of `personafuse bench serve`, drawn from a seeded PRNG: a message from the pool,
// max_tokens from a range, and a persona of one of the kinds the served model supports:
//   auto   'auto' (the router picks; only when /v1/models says the model has a router)
//   big5   a Big Five profile of 1-3 traits, values in [-1, 1] (only when the experts are the ten poles)
//   mix1   { mix: { e: w } }, one of the model's experts at w in [0.3, 1]
//   mix2   { mix: { e1: w, e2: 1 - w } }, two different experts
//   base   { mix: {} }: the base model, no expert
// Request i's draw depends only on (seed, level, i), so the same flags replay the same traffic.
import { rng } from '../harness';
import type { PersonaKind, RequestSpec } from './client';
import { PROMPTS, wordCount } from './prompts';

/** The Big Five traits of the `persona` wire format (lib/router/persona.ts; not imported, so the
 *  load generator does not load the library it measures). */
const BIG_FIVE = ['openness', 'conscientiousness', 'extraversion', 'agreeableness', 'neuroticism'] as const;

export const PERSONA_KINDS: readonly PersonaKind[] = ['auto', 'big5', 'mix1', 'mix2', 'base'];

export interface WorkloadOptions {
  seed: number;
  maxTokens: [number, number];
  promptWords: [number, number];
  kinds: PersonaKind[];
  experts: string[];
  temperature?: number;
}

/** The kinds the served model can take, of those asked for, and why the others were dropped. */
export function supportedKinds(asked: PersonaKind[], experts: string[], router: boolean): { kinds: PersonaKind[]; dropped: Record<string, string> } {
  const dropped: Record<string, string> = {};
  const poles = BIG_FIVE.every((t) => experts.includes(`${t}_high`) && experts.includes(`${t}_low`));
  const kinds = asked.filter((k) => {
    if (k === 'auto' && !router) dropped[k] = 'the model has no router';
    else if (k === 'big5' && !poles) dropped[k] = 'the experts are not the ten Big Five poles';
    else if (k === 'mix1' && experts.length < 1) dropped[k] = 'the model has no experts';
    else if (k === 'mix2' && experts.length < 2) dropped[k] = 'the model has fewer than two experts';
    else return true;
    return false;
  });
  return { kinds, dropped };
}

export function promptPool(words: [number, number]): string[] {
  const pool = PROMPTS.filter((p) => wordCount(p) >= words[0] && wordCount(p) <= words[1]);
  if (pool.length === 0) throw new Error(`--prompt-words ${words[0]}..${words[1]}: no message of the pool has that many words (3 to 60)`);
  return pool;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** The spec of request `index` of level `level`. */
export function requestSpec(o: WorkloadOptions, pool: string[], level: number, index: number): RequestSpec {
  const next = rng((o.seed * 1_000_003 + level * 7919 + index) >>> 0);
  next(); // mulberry32's first draw of nearby seeds is correlated
  const pick = <T>(a: readonly T[]): T => a[Math.floor(next() * a.length)];
  const content = pick(pool);
  const [lo, hi] = o.maxTokens;
  const max_tokens = lo + Math.floor(next() * (hi - lo + 1));
  const kind = pick(o.kinds);
  let persona: unknown;
  if (kind === 'auto') persona = 'auto';
  else if (kind === 'base') persona = { mix: {} };
  else if (kind === 'big5') {
    const traits = [...BIG_FIVE];
    for (let i = traits.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [traits[i], traits[j]] = [traits[j], traits[i]];
    }
    traits.length = 1 + Math.floor(next() * 3);
    persona = Object.fromEntries(traits.map((t) => [t, round2(next() * 2 - 1) || 0.5]));
  } else if (kind === 'mix1') {
    persona = { mix: { [pick(o.experts)]: round2(0.3 + 0.7 * next()) } };
  } else {
    const a = pick(o.experts);
    let b = pick(o.experts);
    while (b === a) b = pick(o.experts);
    const w = round2(0.2 + 0.6 * next());
    persona = { mix: { [a]: w, [b]: round2(1 - w) } };
  }
  return {
    messages: [{ role: 'user', content }], max_tokens, persona, persona_kind: kind, seed: Math.floor(next() * 2 ** 31),
    ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
  };
}
