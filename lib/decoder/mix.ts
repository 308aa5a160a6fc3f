// A request's persona mix, { expertName: weight }, as the kernels want it: expert ids and
// weights padded with -1 to a common k for the batch. Weights are used as given (a mix is not
// renormalised); a weight of 0 drops the expert.
import { rangeError, typeError } from '../errors';

export type Mix = Record<string, number>;

/** (expert id, weight) pairs of one row, ids into the loaded experts. */
export type MixEntries = readonly (readonly [number, number])[];

export const BIG_FIVE = ['openness', 'conscientiousness', 'extraversion', 'agreeableness', 'neuroticism'] as const;
export type BigFiveTrait = (typeof BIG_FIVE)[number];
export type BigFiveProfile = Partial<Record<BigFiveTrait, number>>;
/** What a request asks for (lib/router/persona.ts turns it into a mix). */
export type Persona = 'auto' | BigFiveProfile | { mix: Mix };

export interface BatchMix {
  /** [rows, k] expert ids, -1 = none */
  ids: Int32Array;
  /** [rows, k] */
  weights: Float32Array;
  /** slots per row: the largest number of experts any row uses (0 = base model for all) */
  k: number;
}

/** Checks one mix against the known experts; returns its (id, weight) pairs. */
export function mixEntries(mix: unknown, experts: readonly string[], arg = 'mix'): [number, number][] {
  if (typeof mix !== 'object' || mix === null || Array.isArray(mix)) {
    throw typeError(arg, 'an object { expertName: weight }', mix);
  }
  const out: [number, number][] = [];
  for (const [name, w] of Object.entries(mix as Record<string, unknown>)) {
    const id = experts.indexOf(name);
    if (id < 0) {
      throw rangeError(arg, `expert names among ${experts.length ? experts.join(', ') : '(no experts loaded)'}`, `'${name}'`);
    }
    if (typeof w !== 'number') throw typeError(`${arg}.${name}`, 'a finite number', w);
    if (!Number.isFinite(w)) throw rangeError(`${arg}.${name}`, 'a finite number', String(w));
    if (w !== 0) out.push([id, w]);
  }
  return out;
}

export function batchMix(mixes: unknown[], experts: readonly string[]): BatchMix {
  const rows = mixes.map((m, i) => mixEntries(m, experts, `mix[${i}]`));
  const k = rows.reduce((m, r) => Math.max(m, r.length), 0);
  const ids = new Int32Array(rows.length * k).fill(-1);
  const weights = new Float32Array(rows.length * k);
  rows.forEach((r, i) =>
    r.forEach(([id, w], j) => {
      ids[i * k + j] = id;
      weights[i * k + j] = w;
    }),
  );
  return { ids, weights, k };
}
