// A labelled situation dataset (data/situations/ in this repository, or a user's own):
//   DIR/table.json        { "weights": [0.6, 0.4], "situations": [{ "name", "experts": [first, second], ... }] }
//   DIR/<split>.jsonl     one { "text", "situation" } per line (train, validation, test, or any name)
// A situation's target is a distribution over the router's experts: weights[i] on experts[i].
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIG_FIVE } from '../decoder/mix';

export interface Situation {
  name: string;
  experts: string[];
}

export interface SituationTable {
  weights: number[];
  situations: Situation[];
}

export interface LabelledMessage {
  text: string;
  situation: string;
}

/** The ten Big Five poles in their usual order: a new router's experts. */
export const BIG_FIVE_POLES: readonly string[] = BIG_FIVE.flatMap((t) => [`${t}_high`, `${t}_low`]);

export function readSituationTable(dir: string): SituationTable {
  const file = path.join(dir, 'table.json');
  if (!fs.existsSync(file)) throw new Error(`The data folder ${dir} has no table.json (situation -> experts)`);
  const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as { weights?: unknown; situations?: unknown };
  const situations = raw.situations;
  if (!Array.isArray(situations) || situations.length === 0) throw new Error(`${file}: expected a non-empty list for situations`);
  const parsed = situations.map((s: { name?: unknown; experts?: unknown }, i) => {
    if (typeof s.name !== 'string' || !Array.isArray(s.experts) || s.experts.length === 0 || !s.experts.every((e) => typeof e === 'string')) {
      throw new Error(`${file}: situations[${i}] must be { "name": string, "experts": [names] }`);
    }
    return { name: s.name, experts: s.experts as string[] };
  });
  const seen = new Set<string>();
  for (const sit of parsed) {
    if (seen.has(sit.name)) throw new Error(`${file}: the situation '${sit.name}' is listed twice`);
    seen.add(sit.name);
  }
  const k = parsed[0].experts.length;
  const weights = raw.weights ?? Array(k).fill(1 / k);
  if (!Array.isArray(weights) || weights.length !== k || !weights.every((w) => typeof w === 'number' && w > 0)) {
    throw new Error(`${file}: expected weights to be ${k} positive numbers (one per expert of a situation)`);
  }
  if (parsed.some((s) => s.experts.length !== k)) throw new Error(`${file}: every situation must name ${k} experts`);
  return { weights: weights as number[], situations: parsed };
}

/** The messages of one split: DIR/<split>.jsonl, each situation checked against the table. */
export function readSplit(dir: string, split: string, table: SituationTable): LabelledMessage[] {
  const file = path.join(dir, `${split}.jsonl`);
  if (!fs.existsSync(file)) throw new Error(`The data folder ${dir} has no ${split}.jsonl`);
  const names = new Set(table.situations.map((s) => s.name));
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim().length > 0).map((line, i) => {
    const m = JSON.parse(line) as { text?: unknown; situation?: unknown };
    if (typeof m.text !== 'string' || typeof m.situation !== 'string') throw new Error(`${file}:${i + 1}: expected { "text": string, "situation": string }`);
    if (!names.has(m.situation)) throw new Error(`${file}:${i + 1}: situation '${m.situation}' is not in table.json`);
    return { text: m.text, situation: m.situation };
  });
}

/** A situation's expert distribution over `experts` (the table's weights, renormalised to sum 1). */
export function targetDistribution(table: SituationTable, situation: string, experts: readonly string[]): Float32Array {
  const s = table.situations.find((x) => x.name === situation);
  if (!s) throw new Error(`Unknown situation '${situation}'`);
  const t = new Float32Array(experts.length);
  const total = table.weights.reduce((a, w) => a + w, 0);
  s.experts.forEach((e, i) => {
    const at = experts.indexOf(e);
    if (at < 0) throw new Error(`Situation '${situation}' routes to '${e}', which is not among the router's experts (${experts.join(', ')})`);
    t[at] += table.weights[i] / total;
  });
  return t;
}
