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

/**
 * The kept messages, for finding a new one's first near-duplicate without comparing it with every
 * one (21,675 messages made that a three-minute check). Prefix filtering: sort every word set by
 * one global order; two sets with Jaccard >= t share a word among the first |s| - ceil(t |s|) + 1
 * of each. Only those words are indexed and probed, rarest first so the lists stay short, and
 * every candidate is checked with the exact Jaccard, so the result is the plain scan's: the
 * earliest kept message with the same normalised text or (for 3 words or more) Jaccard >= NEAR.
 */
class NearDuplicates {
  constructor(documentFrequency) {
    this.df = documentFrequency;
    this.items = [];
    this.byNorm = new Map();
    this.byWord = new Map();
  }

  prefix(words) {
    const sorted = [...words].sort((a, b) => (this.df.get(a) ?? 0) - (this.df.get(b) ?? 0) || (a < b ? -1 : a > b ? 1 : 0));
    // the 1e-9 keeps float rounding from shortening the prefix should NEAR change (0.7 * 10 = 7.000000000000001)
    return sorted.slice(0, sorted.length - Math.ceil(NEAR * sorted.length - 1e-9) + 1);
  }

  find(norm, words) {
    let first = this.byNorm.get(norm) ?? Infinity;
    if (words.size >= 3) {
      for (const w of this.prefix(words)) {
        for (const i of this.byWord.get(w) ?? []) if (i < first && jaccard(words, this.items[i].words) >= NEAR) first = i;
      }
    }
    return first === Infinity ? undefined : this.items[first];
  }

  add(item) {
    const i = this.items.push(item) - 1;
    if (!this.byNorm.has(item.norm)) this.byNorm.set(item.norm, i);
    for (const w of this.prefix(item.words)) {
      if (!this.byWord.has(w)) this.byWord.set(w, []);
      this.byWord.get(w).push(i);
    }
  }
}

const wordsOf = (norm) => new Set(norm.split(' ').filter(Boolean));

function build() {
  const table = JSON.parse(fs.readFileSync(path.join(DIR, 'table.json'), 'utf8'));
  const kept = [];
  const stats = { situations: {}, droppedNearDuplicates: [] };
  const written = table.situations.map(({ name }) => {
    const file = path.join(DIR, 'messages', `${name}.txt`);
    if (!fs.existsSync(file)) throw new Error(`${file} is missing (every situation in table.json needs its messages)`);
    return { name, lines: fs.readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l.length > 0) };
  });
  const df = new Map();
  for (const { lines } of written) for (const text of lines) for (const w of wordsOf(normalise(text))) df.set(w, (df.get(w) ?? 0) + 1);
  const near = new NearDuplicates(df);
  for (const { name, lines } of written) {
    const counts = { written: lines.length, kept: 0, train: 0, validation: 0, test: 0 };
    for (const text of lines) {
      const norm = normalise(text);
      const words = wordsOf(norm);
      // across situations too: the same words under two labels would teach nothing but noise
      const twin = near.find(norm, words);
      if (twin) {
        stats.droppedNearDuplicates.push({ situation: name, text, keptAs: twin.text });
        continue;
      }
      const bucket = fnv1a(norm) % 100;
      const split = SPLITS.find(([, upTo]) => bucket < upTo)[0];
      const item = { text, situation: name, norm, words, split };
      kept.push(item);
      near.add(item);
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
    return near.find(norm, wordsOf(norm)) !== undefined;
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

function main() {
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
}

// the test of NearDuplicates (test/situations_data.test.ts) loads this file as a module
module.exports = { NearDuplicates, jaccard, normalise, NEAR };
if (require.main === module) main();
