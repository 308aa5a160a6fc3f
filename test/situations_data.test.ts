// The situation dataset in data/situations (issue 16): its splits are what the build script makes
// of the message files, every situation has at least 150 distinct messages, the splits share no
// message, and the demo's 13 situations keep their expert pairs and order.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readSituationTable, readSplit } from '../lib/router/situations';
import { seedNote, testRng } from './helpers/rng';

const DATA = path.join(__dirname, '..', 'data', 'situations');
const table = readSituationTable(DATA);

describe('data/situations', () => {
  test('the split files are up to date with messages/ (build-situations.js --check)', () => {
    const r = spawnSync(process.execPath, [path.join(__dirname, '..', 'scripts', 'data', 'build-situations.js'), '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test('at least 24 situations, each with at least 150 distinct messages; no message in two splits', () => {
    expect(table.situations.length).toBeGreaterThanOrEqual(24);
    const splits = ['train', 'validation', 'test'].map((s) => readSplit(DATA, s, table));
    const all = splits.flat();
    const short = table.situations.filter((s) => new Set(all.filter((m) => m.situation === s.name).map((m) => m.text)).size < 150).map((s) => s.name);
    expect(short).toEqual([]);
    const seen = new Map<string, number>();
    splits.forEach((split, i) => split.forEach((m) => {
      const key = m.text.toLowerCase();
      if (seen.has(key) && seen.get(key) !== i) throw new Error(`'${m.text}' is in two splits`);
      seen.set(key, i);
    }));
  });

  test('the independent everyday set: 16 messages for every situation; the few the dataset also has are listed in stats.json', () => {
    const everyday = readSplit(DATA, 'everyday', table);
    for (const s of table.situations) expect({ situation: s.name, n: everyday.filter((m) => m.situation === s.name).length }).toEqual({ situation: s.name, n: 16 });
    // two writers can write the same short message ("best pho in town, hands down"): the set keeps what
    // its writer wrote, and stats.json names every message the dataset has too (exactly or nearly)
    const dataset = new Set(['train', 'validation', 'test'].flatMap((s) => readSplit(DATA, s, table)).map((m) => m.text.toLowerCase()));
    const shared = everyday.filter((m) => dataset.has(m.text.toLowerCase())).map((m) => m.text);
    const listed = JSON.parse(fs.readFileSync(path.join(DATA, 'stats.json'), 'utf8')).everydayOverlap as string[];
    for (const text of shared) expect(listed).toContain(text);
    expect(listed.length).toBeLessThanOrEqual(everyday.length * 0.02);
  });

  test("the demo's 13 situations keep their expert pairs and order", () => {
    const demo: [string, string[]][] = [
      ['support_request', ['conscientiousness_high', 'neuroticism_low']], ['grief', ['agreeableness_high', 'neuroticism_low']],
      ['celebration', ['extraversion_high', 'openness_high']], ['planning', ['conscientiousness_high', 'openness_low']],
      ['conflict', ['agreeableness_high', 'extraversion_low']], ['small_talk', ['extraversion_high', 'agreeableness_high']],
      ['feedback', ['agreeableness_low', 'conscientiousness_high']], ['exam_anxiety', ['neuroticism_low', 'conscientiousness_high']],
      ['brainstorm', ['openness_high', 'conscientiousness_low']], ['mistake', ['agreeableness_high', 'conscientiousness_high']],
      ['loneliness', ['extraversion_high', 'agreeableness_high']], ['decision', ['openness_low', 'neuroticism_low']],
      ['risky_plan', ['neuroticism_high', 'conscientiousness_high']],
    ];
    expect(table.situations.slice(0, 13).map((s) => [s.name, s.experts])).toEqual(demo);
    const raw = JSON.parse(fs.readFileSync(path.join(DATA, 'table.json'), 'utf8'));
    for (const s of raw.situations) expect(typeof s.reason === 'string' && s.reason.length > 20).toBe(true);
  });

  // labels.jsonl: 300 random test messages; labels-round4.jsonl: 300 of the fourth round's, none of the first file's
  test.each([['labels.jsonl', []], ['labels-round4.jsonl', ['labels.jsonl']]])('relabel/%s: 300 distinct test messages with valid situation names, and the agreement relabel/README.md states', (file, disjointFrom) => {
    const names = new Set(table.situations.map((s) => s.name));
    const test = new Map(readSplit(DATA, 'test', table).map((m) => [m.text, m.situation]));
    const read = (f: string) => fs.readFileSync(path.join(DATA, 'relabel', f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const earlier = new Set(disjointFrom.flatMap((f) => read(f).map((l) => l.text)));
    const labels = read(file);
    expect(labels).toHaveLength(300);
    expect(new Set(labels.map((l) => l.text)).size).toBe(300);
    for (const l of labels) {
      expect(test.has(l.text) && !earlier.has(l.text)).toBe(true);
      expect(names.has(l.situation) && (l.second === null || names.has(l.second)) && typeof l.sure === 'boolean').toBe(true);
    }
    const same = labels.filter((l) => l.situation === test.get(l.text)).length;
    const readme = fs.readFileSync(path.join(DATA, 'relabel', 'README.md'), 'utf8').replace(/\s+/g, ' ');
    expect(readme).toContain(`the same situation for ${same} of 300`);
    const script = path.join(__dirname, '..', 'scripts', 'data', 'relabel-agreement.js');
    const r = spawnSync(process.execPath, [script, '--labels', path.join('relabel', file)], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`same situation ${same} (`);
  });

  test('relabel-agreement.js reads relabel/labels.jsonl when no --labels is given', () => {
    const script = path.join(__dirname, '..', 'scripts', 'data', 'relabel-agreement.js');
    const plain = spawnSync(process.execPath, [script], { encoding: 'utf8' });
    const named = spawnSync(process.execPath, [script, '--labels', path.join('relabel', 'labels.jsonl')], { encoding: 'utf8' });
    expect(plain.status).toBe(0);
    expect(plain.stdout).toBe(named.stdout);
  });
});

describe('near-duplicates (scripts/data/build-situations.js)', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { NearDuplicates, jaccard, NEAR } = require('../scripts/data/build-situations.js');
  test('the prefix-filtered index finds, for every message, the first near-duplicate the plain scan over all kept messages finds (randomized)', () => {
    const rng = testRng();
    const vocab = Array.from({ length: 60 }, (_, i) => `w${i}`);
    // sentences of 1-16 words from a small vocabulary, a third of them edits of an earlier one (a word
    // swapped, dropped or added), so near-duplicates at and around the threshold are common
    const texts: string[] = [];
    for (let i = 0; i < 1500; i++) {
      if (texts.length > 0 && rng.float() < 0.35) {
        const words = texts[rng.int(0, texts.length)].split(' ');
        const op = rng.int(0, 3);
        if (op === 0) words[rng.int(0, words.length)] = vocab[rng.int(0, vocab.length)];
        else if (op === 1 && words.length > 1) words.splice(rng.int(0, words.length), 1);
        else words.push(vocab[rng.int(0, vocab.length)]);
        texts.push(words.join(' '));
      } else {
        texts.push(Array.from({ length: rng.int(1, 17) }, () => vocab[rng.int(0, vocab.length)]).join(' '));
      }
    }
    const df = new Map<string, number>();
    for (const t of texts) for (const w of new Set(t.split(' '))) df.set(w, (df.get(w) ?? 0) + 1);
    const index = new NearDuplicates(df);
    const kept: { norm: string; words: Set<string> }[] = [];
    let dropped = 0;
    for (const norm of texts) {
      const words = new Set(norm.split(' '));
      const scan = kept.find((k) => k.norm === norm || (words.size >= 3 && jaccard(words, k.words) >= NEAR));
      const found = index.find(norm, words);
      if (found !== scan) throw new Error(`'${norm}': the index found ${found?.norm}, the scan ${scan?.norm} (${seedNote()})`);
      if (scan) dropped++;
      else {
        const item = { norm, words };
        kept.push(item);
        index.add(item);
      }
    }
    // the case the index exists for was exercised
    expect(dropped).toBeGreaterThan(100);
  });
});
