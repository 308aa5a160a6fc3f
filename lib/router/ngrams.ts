// Lexical features of a message for a router: hashed word and character n-grams, tf-idf weighted.
// A router trained on a small model's hidden states alone misses what the words themselves say
// (a 4 M-parameter demo base learned language from our corpus only); these features carry the
// words, typos and punctuation ("!!!", "...") at the cost of a hash and a few hundred lookups.
//
//   text      lower-cased
//   words     runs of letters, digits and apostrophes (Unicode)        word n-grams, n in [w0, w1], joined by ' '
//   pieces    whitespace-separated pieces, each padded to ' piece '    character n-grams, n in [c0, c1]
//   bucket    FNV-1a 32-bit of the n-gram's UTF-16 code units mod B;   word block [0, B), character block [B, 2B)
//   value     (1 + ln count) * idf[bucket], then each block divided by its L2 norm
//   idf       ln((1 + n) / (1 + df)) + 1 over n training messages (fitIdf; df = messages with the bucket)
// Output: a sparse vector, indices ascending, over 2B features. Only the first MAX_NGRAM_CHARS
// characters are read (in training and routing alike), so a huge message costs no more than that.

import { fnv1a } from '../rng';

export interface NgramConfig {
  /** word n-gram lengths [min, max] */
  word: [number, number];
  /** character n-gram lengths [min, max] */
  char: [number, number];
  /** buckets per block (words, characters): 2 * buckets features in all */
  buckets: number;
}

export interface SparseVector {
  idx: Int32Array;
  val: Float32Array;
}

export const NGRAM_DEFAULTS: NgramConfig = { word: [1, 2], char: [2, 5], buckets: 8192 };

/** Characters of a message the n-grams read (the longest message in data/situations has 339). */
export const MAX_NGRAM_CHARS = 4096;

const WORD = /[\p{L}\p{N}']+/gu;

/** Raw counts per bucket of `text` (word block then character block). */
export function ngramCounts(text: string, cfg: NgramConfig): Map<number, number> {
  const counts = new Map<number, number>();
  const add = (gram: string, offset: number) => {
    const b = offset + (fnv1a(gram) % cfg.buckets);
    counts.set(b, (counts.get(b) ?? 0) + 1);
  };
  const lower = text.slice(0, MAX_NGRAM_CHARS).toLowerCase();
  const words = lower.match(WORD) ?? [];
  for (let n = cfg.word[0]; n <= cfg.word[1]; n++) {
    for (let i = 0; i + n <= words.length; i++) add(words.slice(i, i + n).join(' '), 0);
  }
  for (const piece of lower.split(/\s+/).filter((p) => p.length > 0)) {
    const padded = ` ${piece} `;
    for (let n = cfg.char[0]; n <= cfg.char[1]; n++) {
      for (let i = 0; i + n <= padded.length; i++) add(padded.slice(i, i + n), cfg.buckets);
    }
  }
  return counts;
}

/** Smoothed inverse document frequency of every bucket over the training messages. */
export function fitIdf(texts: readonly string[], cfg: NgramConfig): Float32Array {
  const df = new Float64Array(2 * cfg.buckets);
  for (const t of texts) for (const b of ngramCounts(t, cfg).keys()) df[b]++;
  return Float32Array.from(df, (d) => Math.log((1 + texts.length) / (1 + d)) + 1);
}

/** The message's tf-idf vector, each block L2-normalised. */
export function ngramFeatures(text: string, cfg: NgramConfig, idf: Float32Array): SparseVector {
  if (idf.length !== 2 * cfg.buckets) throw new Error(`The n-gram idf has ${idf.length} entries; ${cfg.buckets} buckets per block need ${2 * cfg.buckets}`);
  const entries = [...ngramCounts(text, cfg)].sort((a, b) => a[0] - b[0]);
  const idx = Int32Array.from(entries, ([b]) => b);
  const val = Float32Array.from(entries, ([b, c]) => (1 + Math.log(c)) * idf[b]);
  for (const inBlock of [(b: number) => b < cfg.buckets, (b: number) => b >= cfg.buckets]) {
    let norm = 0;
    idx.forEach((b, i) => { if (inBlock(b)) norm += val[i] * val[i]; });
    if (norm > 0) idx.forEach((b, i) => { if (inBlock(b)) val[i] /= Math.sqrt(norm); });
  }
  return { idx, val };
}
