// How well a router picks each situation's experts, on a labelled split:
//   top2        the router's top two experts are exactly the situation's pair (either order)
//   top1InPair  its first expert is one of the pair
// per situation, with what it picked instead (a confusion table over expert pairs).
import type { Mix } from '../decoder/mix';
import type { EpochStats } from './train';
import type { LabelledMessage, SituationTable } from './situations';

export interface SituationScore {
  situation: string;
  pair: string[];
  n: number;
  top2: number;
  top1InPair: number;
  /** the top-two pairs it picked ('a + b', sorted names) and how often, most frequent first */
  picked: { pair: string; count: number }[];
}

export interface RouterReport {
  split: string;
  n: number;
  top2: number;
  top1InPair: number;
  perSituation: SituationScore[];
  /** the training curve, when the report comes from training */
  curve?: EpochStats[];
  /** milliseconds to route one message, alone (median of the timed ones) */
  routeMs?: number;
}

const pairKey = (names: string[]) => [...names].sort().join(' + ');

/** The ranked experts of a route (its distribution, best first). */
export function ranked(distribution: Mix): string[] {
  return Object.entries(distribution).sort((a, b) => b[1] - a[1]).map(([k]) => k);
}

export function scoreRoutes(split: string, table: SituationTable, messages: readonly LabelledMessage[], routes: readonly string[][]): RouterReport {
  const per = new Map<string, SituationScore & { counts: Map<string, number> }>();
  for (const s of table.situations) per.set(s.name, { situation: s.name, pair: s.experts, n: 0, top2: 0, top1InPair: 0, picked: [], counts: new Map() });
  let top2 = 0;
  let top1 = 0;
  messages.forEach((m, i) => {
    const row = per.get(m.situation)!;
    const best = routes[i].slice(0, 2);
    const hit2 = pairKey(best) === pairKey(row.pair.slice(0, 2));
    const hit1 = row.pair.includes(best[0]);
    row.n++;
    if (hit2) row.top2++, top2++;
    if (hit1) row.top1InPair++, top1++;
    const key = pairKey(best);
    row.counts.set(key, (row.counts.get(key) ?? 0) + 1);
  });
  const perSituation = [...per.values()].filter((r) => r.n > 0).map(({ counts, ...r }) => ({
    ...r,
    top2: r.top2 / r.n,
    top1InPair: r.top1InPair / r.n,
    picked: [...counts.entries()].map(([pair, count]) => ({ pair, count })).sort((a, b) => b.count - a.count),
  }));
  const n = messages.length;
  return { split, n, top2: n ? top2 / n : 0, top1InPair: n ? top1 / n : 0, perSituation };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The report as text tables (what `personafuse router eval` prints). */
export function formatReport(r: RouterReport): string {
  const lines = [
    `${r.split}: ${r.n} messages; top-2 = the situation's pair ${pct(r.top2)}; top-1 in the pair ${pct(r.top1InPair)}` +
      (r.routeMs !== undefined ? `; ${r.routeMs.toFixed(1)} ms to route one message` : ''),
    '',
    '| situation | pair | n | top-2 | top-1 in pair | picked instead (top two) |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const s of r.perSituation) {
    const wrong = s.picked.filter((p) => p.pair !== pairKey(s.pair.slice(0, 2))).slice(0, 3).map((p) => `${p.pair} (${p.count})`).join('; ');
    lines.push(`| ${s.situation} | ${s.pair.join(', ')} | ${s.n} | ${pct(s.top2)} | ${pct(s.top1InPair)} | ${wrong || '-'} |`);
  }
  if (r.curve?.length) {
    const last = r.curve[r.curve.length - 1];
    const best = r.curve.reduce((a, b) => (b.validationLoss < a.validationLoss ? b : a));
    lines.push('', `training: ${r.curve.length} epochs; best validation loss ${best.validationLoss.toFixed(4)} at epoch ${best.epoch} (validation top-2 ${pct(best.validationTop2)}); last train loss ${last.trainLoss.toFixed(4)}`);
  }
  return lines.join('\n');
}
