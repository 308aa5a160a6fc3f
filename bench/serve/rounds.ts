// Paired ratios over rounds (`bench serve --rounds N`). The machine these benchmarks run on is
// shared: a slow spell of a minute moved the one-client figure 580-810 tok/s between runs, and a
// ratio of two levels measured minutes apart carried all of it. With rounds, every level runs once
// per round, in order, and each level's tok/s is divided by the reference level's of the same
// round, so a spell that lasts a round hits both sides of that round's ratio; the medians over
// rounds are the figures to compare with a target.
//   tokPerS[r][i]: tok/s of level i in round r;  vs[r][i] = tokPerS[r][i] / tokPerS[r][ref]
import { median } from '../harness';

export interface PairedLevel {
  level: string;
  tok_per_s: number[];
  /** this level's tok/s over the reference level's, round by round */
  vs_reference: number[];
  median_tok_per_s: number;
  median_vs_reference: number;
  min_vs_reference: number;
  max_vs_reference: number;
}

export interface Paired {
  rounds: number;
  reference_level: string;
  levels: PairedLevel[];
}

export function pairedRounds(tokPerS: readonly (readonly number[])[], refIndex: number, labels: readonly string[]): Paired {
  const levels = labels.map((level, i) => {
    const tok = tokPerS.map((round) => round[i]);
    const vs = tokPerS.map((round) => round[i] / round[refIndex]);
    return {
      level, tok_per_s: tok, vs_reference: vs, median_tok_per_s: median(tok),
      median_vs_reference: median(vs), min_vs_reference: Math.min(...vs), max_vs_reference: Math.max(...vs),
    };
  });
  return { rounds: tokPerS.length, reference_level: labels[refIndex], levels };
}
