// What a request asks for as its persona, turned into a mix { expertName: weight }.
//
//   { mix: { openness_high: 0.7, agreeableness_high: 0.3 } }   explicit; every weight in [0, 1]
//   { openness: 0.8, neuroticism: -0.5, ... }                  a Big Five profile, values in [-1, 1]
//   'auto'                                                     the router picks (needs a router)
//
// Big Five profile -> the ten pole experts: a trait at v > 0 gives `<trait>_high` weight v, at
// v < 0 gives `<trait>_low` weight |v|, at 0 nothing. When the weights add up to more than 1
// they are divided by their sum, so a profile never pushes the model further than one full
// expert does; a profile of small values stays a light touch (e.g. { openness: 0.3 } is
// openness_high at 0.3). Traits left out count as 0.
import { rangeError, typeError } from '../errors';
import { BIG_FIVE, mixEntries, Mix } from '../decoder/mix';

export { BIG_FIVE };
export type { BigFiveProfile, BigFiveTrait, Persona } from '../decoder/mix';

export function isAuto(p: unknown): p is 'auto' {
  return p === 'auto';
}

/** The mix of an explicit or Big Five persona, checked against the loaded experts. */
export function staticMix(persona: unknown, experts: readonly string[], arg = 'persona'): Mix {
  return staticPersona(persona, experts, arg).mix;
}

/** The mix of an explicit or Big Five persona and its (expert id, weight) pairs, checked once. */
export function staticPersona(persona: unknown, experts: readonly string[], arg = 'persona'): { mix: Mix; entries: [number, number][] } {
  if (typeof persona !== 'object' || persona === null || Array.isArray(persona)) {
    throw typeError(arg, "'auto', a Big Five profile { openness: 0.8, ... } or { mix: { expert: weight } }", persona);
  }
  const mix = 'mix' in persona ? explicitMix((persona as { mix: unknown }).mix, `${arg}.mix`) : bigFiveMix(persona as Record<string, unknown>, arg);
  // unknown expert names and non-finite weights are refused here
  return { mix, entries: mixEntries(mix, experts, 'mix' in persona ? `${arg}.mix` : arg) };
}

function explicitMix(mix: unknown, arg: string): Mix {
  if (typeof mix !== 'object' || mix === null || Array.isArray(mix)) throw typeError(arg, 'an object { expertName: weight }', mix);
  const out: Mix = {};
  for (const [name, w] of Object.entries(mix as Record<string, unknown>)) {
    if (typeof w !== 'number') throw typeError(`${arg}.${name}`, 'a number between 0 and 1', w);
    if (!(w >= 0 && w <= 1)) throw rangeError(`${arg}.${name}`, 'a number between 0 and 1', String(w));
    if (w !== 0) out[name] = w;
  }
  return out;
}

export function bigFiveMix(profile: Record<string, unknown>, arg = 'persona'): Mix {
  const raw: Mix = {};
  for (const [trait, v] of Object.entries(profile)) {
    if (!(BIG_FIVE as readonly string[]).includes(trait)) throw rangeError(arg, `Big Five traits among ${BIG_FIVE.join(', ')} (or { mix })`, `'${trait}'`);
    if (typeof v !== 'number') throw typeError(`${arg}.${trait}`, 'a number between -1 and 1', v);
    if (!(v >= -1 && v <= 1)) throw rangeError(`${arg}.${trait}`, 'a number between -1 and 1', String(v));
    if (v > 0) raw[`${trait}_high`] = v;
    else if (v < 0) raw[`${trait}_low`] = -v;
  }
  const total = Object.values(raw).reduce((s, w) => s + w, 0);
  if (total <= 1) return raw;
  return Object.fromEntries(Object.entries(raw).map(([k, w]) => [k, w / total]));
}
