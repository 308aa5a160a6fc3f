#!/usr/bin/env node
// How often a second, blind labelling agrees with the dataset (data/situations/relabel/README.md):
//   node scripts/data/relabel-agreement.js [data/situations] [--labels relabel/labels-round4.jsonl]
// Reads relabel/labels.jsonl, or the file --labels names (relative to the data folder),
// ({ text, situation, second, sure } by the second labeller), finds each
// text in the splits, and prints: the share with the same situation, the same expert pair, the
// dataset's situation among the labeller's two choices, and the disagreements.
const fs = require('node:fs');
const path = require('node:path');

const args = process.argv.slice(2);
const at = args.indexOf('--labels');
const labelsFile = at >= 0 ? args.splice(at, 2)[1] : path.join('relabel', 'labels.jsonl');
const dir = args[0] ?? path.join(__dirname, '..', '..', 'data', 'situations');
const table = JSON.parse(fs.readFileSync(path.join(dir, 'table.json'), 'utf8'));
const pairOf = Object.fromEntries(table.situations.map((s) => [s.name, [...s.experts].sort().join(' + ')]));
const gold = new Map();
for (const split of ['train', 'validation', 'test', 'everyday']) {
  for (const line of fs.readFileSync(path.join(dir, `${split}.jsonl`), 'utf8').split('\n').filter(Boolean)) {
    const m = JSON.parse(line);
    gold.set(m.text, { situation: m.situation, split });
  }
}
const labels = fs.readFileSync(path.join(dir, labelsFile), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
let same = 0, samePair = 0, inTwo = 0, unsure = 0;
const splits = {};
const disagreements = [];
for (const l of labels) {
  const g = gold.get(l.text);
  if (!g) throw new Error(`${labelsFile}: a text that is in no split: ${JSON.stringify(l.text)}`);
  splits[g.split] = (splits[g.split] ?? 0) + 1;
  if (l.situation === g.situation) same++;
  else disagreements.push(`${g.situation} -> ${l.situation}: ${l.text}`);
  if (pairOf[l.situation] === pairOf[g.situation]) samePair++;
  if (l.situation === g.situation || l.second === g.situation) inTwo++;
  if (!l.sure) unsure++;
}
const pct = (n) => `${((100 * n) / labels.length).toFixed(1)}%`;
console.log(`${labels.length} messages (${Object.entries(splits).map(([s, n]) => `${n} ${s}`).join(', ')}): same situation ${same} (${pct(same)}), same expert pair ${samePair} (${pct(samePair)}), the dataset's situation among the labeller's two ${inTwo} (${pct(inTwo)}); marked unsure ${unsure}`);
for (const d of disagreements) console.log(`  ${d}`);
