#!/usr/bin/env node
// Builds the situation dataset's splits from the hand-written message files:
//   data/situations/messages/<situation>.txt   one user message per line (the source we write)
//   data/situations/table.json                 situation -> two Big Five poles, weights, reason
// into
//   data/situations/{train,validation,test}.jsonl   {"text", "situation"} per line
//   data/situations/stats.json                      counts per situation and split, duplicates dropped
// and the independent set
//   data/situations/everyday/messages.tsv      <situation> TAB <message>, written by someone who never saw
//                                              messages/ (see everyday/README.md)
// into data/situations/everyday.jsonl, a split of its own for `router eval --split everyday`: never
// trained on, never used to choose settings. Its messages that near-duplicate one of the dataset's are
// listed in stats.json (everydayOverlap) and kept: the set is what its writer wrote.
//
// Near-duplicates are dropped before splitting: two messages whose normalised word sets (lower
// case, punctuation removed) have a Jaccard similarity of 0.8 or more, or whose normalised text is
// equal, keep only the first. The split is by message and stable: a message's split comes from a
// hash of its normalised text (70% train, 15% validation, 15% test), so adding messages never
// moves an old one to another split. The test split is for the final report only.
//
//   node scripts/data/build-situations.js [--check]   (--check: fail if the files on disk differ)
const fs = require('node:fs');
const path = require('node:path');

const DIR = path.join(__dirname, '..', '..', 'data', 'situations');
const SPLITS = [['train', 70], ['validation', 85], ['test', 100]];
const NEAR = 0.8;

function normalise(text) {
  return text.toLowerCase().replace(/[^a-z0-9' ]+/g, ' ').replace(/\s+/g, ' ').trim();
}

function fnv1a(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function jaccard(a, b) {
  let shared = 0;
  for (const w of a) if (b.has(w)) shared++;
  return shared / (a.size + b.size - shared);
}

function build() {
  const table = JSON.parse(fs.readFileSync(path.join(DIR, 'table.json'), 'utf8'));
  const kept = [];
  const stats = { situations: {}, droppedNearDuplicates: [] };
  for (const { name } of table.situations) {
    const file = path.join(DIR, 'messages', `${name}.txt`);
    if (!fs.existsSync(file)) throw new Error(`${file} is missing (every situation in table.json needs its messages)`);
    const lines = fs.readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
    const counts = { written: lines.length, kept: 0, train: 0, validation: 0, test: 0 };
    for (const text of lines) {
      const norm = normalise(text);
      const words = new Set(norm.split(' ').filter(Boolean));
      // across situations too: the same words under two labels would teach nothing but noise
      const twin = kept.find((k) => k.norm === norm || (words.size >= 3 && jaccard(words, k.words) >= NEAR));
      if (twin) {
        stats.droppedNearDuplicates.push({ situation: name, text, keptAs: twin.text });
        continue;
      }
      const bucket = fnv1a(norm) % 100;
      const split = SPLITS.find(([, upTo]) => bucket < upTo)[0];
      kept.push({ text, situation: name, norm, words, split });
      counts.kept++;
      counts[split]++;
    }
    stats.situations[name] = counts;
  }
  const files = {};
  for (const [split] of SPLITS) {
    files[`${split}.jsonl`] = kept.filter((k) => k.split === split).map((k) => JSON.stringify({ text: k.text, situation: k.situation })).join('\n') + '\n';
  }
  const everyday = readEveryday(table);
  stats.everyday = everyday.length;
  stats.everydayOverlap = everyday.filter((m) => {
    const norm = normalise(m.text);
    const words = new Set(norm.split(' ').filter(Boolean));
    return kept.some((k) => k.norm === norm || (words.size >= 3 && jaccard(words, k.words) >= NEAR));
  }).map((m) => m.text);
  files['everyday.jsonl'] = everyday.map((m) => JSON.stringify(m)).join('\n') + '\n';
  files['stats.json'] = `${JSON.stringify(stats, null, 2)}\n`;
  return files;
}

/** everyday/messages.tsv as { text, situation }, every label checked against the table. */
function readEveryday(table) {
  const file = path.join(DIR, 'everyday', 'messages.tsv');
  const names = new Set(table.situations.map((t) => t.name));
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim().length > 0).map((line, i) => {
    const tab = line.indexOf('\t');
    const situation = line.slice(0, tab);
    const text = line.slice(tab + 1).trim();
    if (tab < 0 || !names.has(situation) || !text) throw new Error(`${file}:${i + 1}: expected <situation in table.json> TAB <message>`);
    return { text, situation };
  });
}

const files = build();
if (process.argv.includes('--check')) {
  const stale = Object.entries(files).filter(([f, text]) => !fs.existsSync(path.join(DIR, f)) || fs.readFileSync(path.join(DIR, f), 'utf8') !== text);
  if (stale.length) {
    process.stderr.write(`stale: ${stale.map(([f]) => f).join(', ')} (run node scripts/data/build-situations.js)\n`);
    process.exit(1);
  }
} else {
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(DIR, f), text);
  const s = JSON.parse(files['stats.json']);
  const rows = Object.entries(s.situations).map(([n, c]) => `${n.padEnd(20)} ${String(c.kept).padStart(4)} kept of ${c.written}: ${c.train} / ${c.validation} / ${c.test}`);
  process.stdout.write(`${rows.join('\n')}\n${s.droppedNearDuplicates.length} near-duplicates dropped\n` +
    `everyday: ${s.everyday} messages, ${s.everydayOverlap.length} near-duplicating the dataset\n`);
}
