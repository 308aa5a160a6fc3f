// The KV cache of a batch of rows between decode steps.
//
//   data[i]  [B, heads, T, headDim]   one array per past input (past_key_values.N.key / value)
//   mask     [B, T]                   1 where the column holds one of the row's tokens
//   lens     [B]                      tokens the row has seen = the position of its next token
//
// Rows of different lengths share T: a row's columns past its own tokens are holes, masked out of
// attention, and its next token's position is lens[b] (position_ids), not the column index.
// After a step the model's present.* outputs (T + 1 columns) become the next step's past as they
// are, without copying. Rows are copied only when the batch changes: a join packs every row's
// tokens to the left (pack), and a leave compacts once the holes exceed a few columns, so under
// steady traffic T stays within a few columns of the longest live row instead of growing by one
// column per step for as long as the batch is never empty.
import * as ort from 'onnxruntime-node';
import { LAST_INDEX_INPUT } from '../onnx/last_logits';

export type KvArray = Float32Array | Uint16Array;

export interface PastSpec {
  /** past_key_values.N.key */
  name: string;
  /** present.N.key */
  present: string;
  heads: number;
  headDim: number;
  type: 'float32' | 'float16';
}

export class KvBatch {
  constructor(
    readonly specs: readonly PastSpec[],
    public B: number,
    public T: number,
    public data: KvArray[],
    public mask: Uint8Array,
    public lens: number[],
  ) {}

  static empty(specs: readonly PastSpec[]): KvBatch {
    return new KvBatch(specs, 0, 0, specs.map((s) => alloc(s.type, 0)), new Uint8Array(0), []);
  }

  /** The cache a run left in `out` (present.*), rows' tokens in columns [0, lens[b]). */
  static fromPresent(specs: readonly PastSpec[], out: ort.InferenceSession.OnnxValueMapType, lens: number[]): KvBatch {
    const first = out[specs[0].present];
    const B = Number(first.dims[0]);
    const T = Number(first.dims[2]);
    const mask = new Uint8Array(B * T);
    lens.forEach((n, b) => mask.fill(1, b * T, b * T + n));
    return new KvBatch(specs, B, T, specs.map((s) => out[s.present].data as KvArray), mask, [...lens]);
  }

  /**
   * Rows of `a` then rows of `b`, each row's tokens packed to the left (its holes dropped), so the
   * width is the longest row's length, not the columns the batch has accumulated.
   */
  static concat(a: KvBatch, b: KvBatch): KvBatch {
    return KvBatch.pack([a, b]);
  }

  /** The same rows with their holes dropped: T becomes the longest row's length. */
  compacted(): KvBatch {
    return KvBatch.pack([this]);
  }

  /** The longest row's length (the narrowest T that holds every row). */
  get longest(): number {
    return this.lens.reduce((m, n) => Math.max(m, n), 0);
  }

  /**
   * The rows of `parts`, in order, into one batch of width max(lens): row r's columns with mask 1
   * keep their order and move to [0, lens[r]). A row's positions live in position_ids and its
   * rotary phases are already in its cached keys, so moving columns changes nothing it computes.
   * Each row's valid columns form a few runs (the prompt, then one run per stretch of decoding),
   * copied run by run.
   */
  static pack(parts: readonly KvBatch[]): KvBatch {
    const live = parts.filter((p) => p.B > 0);
    if (live.length === 0) return parts[0];
    const specs = live[0].specs;
    const B = live.reduce((n, p) => n + p.B, 0);
    const T = live.reduce((m, p) => Math.max(m, p.longest), 0);
    const data = specs.map((s) => alloc(s.type, B * s.heads * T * s.headDim));
    const mask = new Uint8Array(B * T);
    const lens: number[] = [];
    let at = 0;
    for (const p of live) {
      for (let r = 0; r < p.B; r++, at++) {
        let dst = 0;
        for (const [t0, t1] of validRuns(p.mask.subarray(r * p.T, (r + 1) * p.T))) {
          specs.forEach((s, i) => {
            const D = s.headDim;
            for (let h = 0; h < s.heads; h++) {
              const src = ((r * s.heads + h) * p.T + t0) * D;
              data[i].set(p.data[i].subarray(src, src + (t1 - t0) * D), ((at * s.heads + h) * T + dst) * D);
            }
          });
          dst += t1 - t0;
        }
        mask.fill(1, at * T, at * T + dst);
        lens.push(p.lens[r]);
      }
    }
    return new KvBatch(specs, B, T, data, mask, lens);
  }

  /** Row b alone, its columns [0, lens[b]) (only valid for rows without holes). */
  row(b: number): KvBatch {
    const n = this.lens[b];
    const data = this.specs.map((s, i) => {
      const out = alloc(s.type, s.heads * n * s.headDim);
      for (let h = 0; h < s.heads; h++) {
        const src = ((b * s.heads + h) * this.T) * s.headDim;
        out.set(this.data[i].subarray(src, src + n * s.headDim), h * n * s.headDim);
      }
      return out;
    });
    return new KvBatch(this.specs, 1, n, data, new Uint8Array(n).fill(1), [n]);
  }

  /** Drops row b: the last row moves into its place (as MixSlots.move does with the slots). */
  removeRow(b: number): void {
    const last = this.B - 1;
    if (b !== last) {
      this.specs.forEach((s, i) => {
        const size = s.heads * this.T * s.headDim;
        this.data[i].copyWithin(b * size, last * size, (last + 1) * size);
      });
      this.mask.copyWithin(b * this.T, last * this.T, (last + 1) * this.T);
      this.lens[b] = this.lens[last];
    }
    this.lens.pop();
    this.B = last;
  }

  /** past_* feeds, and attention_mask / position_ids for one new token per row. */
  stepFeeds(inputNames: readonly string[]): Record<string, ort.Tensor> {
    const { B, T } = this;
    const feeds: Record<string, ort.Tensor> = {};
    this.specs.forEach((s, i) => {
      feeds[s.name] = new ort.Tensor(s.type, this.data[i].subarray(0, B * s.heads * T * s.headDim), [B, s.heads, T, s.headDim]);
    });
    if (inputNames.includes('attention_mask')) {
      // mostly ones: fill, then clear the holes (no BigInt made per element)
      const mask = new BigInt64Array(B * (T + 1)).fill(1n);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) if (this.mask[b * T + t] === 0) mask[b * (T + 1) + t] = 0n;
      }
      feeds.attention_mask = new ort.Tensor('int64', mask, [B, T + 1]);
    }
    if (inputNames.includes('position_ids')) {
      feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from(this.lens.map(BigInt)), [B, 1]);
    }
    // one new token per row: its logits are at position 0
    if (inputNames.includes(LAST_INDEX_INPUT)) feeds[LAST_INDEX_INPUT] = new ort.Tensor('int64', new BigInt64Array(B), [B, 1]);
    return feeds;
  }

  /** The cache after a step: present.* (T + 1 columns), the new column valid for every row. */
  advance(out: ort.InferenceSession.OnnxValueMapType): void {
    const T = this.T + 1;
    const mask = new Uint8Array(this.B * T);
    for (let b = 0; b < this.B; b++) {
      mask.set(this.mask.subarray(b * this.T, (b + 1) * this.T), b * T);
      mask[b * T + this.T] = 1;
    }
    this.data = this.specs.map((s) => out[s.present].data as KvArray);
    this.mask = mask;
    this.T = T;
    this.lens = this.lens.map((n) => n + 1);
  }
}

/** [start, end) of each run of 1s in a row's mask. */
function validRuns(mask: Uint8Array): [number, number][] {
  const runs: [number, number][] = [];
  for (let t = 0; t < mask.length; t++) {
    if (mask[t] === 0) continue;
    const start = t;
    while (t < mask.length && mask[t] === 1) t++;
    runs.push([start, t]);
  }
  return runs;
}

function alloc(type: PastSpec['type'], n: number): KvArray {
  return type === 'float16' ? new Uint16Array(n) : new Float32Array(n);
}
