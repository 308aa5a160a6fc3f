// The KV cache of a batch of rows between decode steps.
//
//   data[i]  [B, heads, T, headDim]   one array per past input (past_key_values.N.key / value)
//   mask     [B, T]                   1 where the column holds one of the row's tokens
//   lens     [B]                      tokens the row has seen = the position of its next token
//
// Rows of different lengths share T: a row's columns past its own tokens are holes, masked out of
// attention, and its next token's position is lens[b] (position_ids), not the column index.
// After a step the model's present.* outputs (T + 1 columns) become the next step's past as they
// are, without copying; rows are copied only when the batch changes (a row joins or leaves).
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

  /** Rows of `a` then rows of `b`, widened to the longer T (new columns are holes). */
  static concat(a: KvBatch, b: KvBatch): KvBatch {
    if (a.B === 0) return b;
    if (b.B === 0) return a;
    const T = Math.max(a.T, b.T);
    const B = a.B + b.B;
    const data = a.specs.map((s, i) => {
      const out = alloc(s.type, B * s.heads * T * s.headDim);
      copyRows(a, i, out, 0, T);
      copyRows(b, i, out, a.B, T);
      return out;
    });
    const mask = new Uint8Array(B * T);
    for (let r = 0; r < a.B; r++) mask.set(a.mask.subarray(r * a.T, (r + 1) * a.T), r * T);
    for (let r = 0; r < b.B; r++) mask.set(b.mask.subarray(r * b.T, (r + 1) * b.T), (a.B + r) * T);
    return new KvBatch(a.specs, B, T, data, mask, [...a.lens, ...b.lens]);
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

function alloc(type: PastSpec['type'], n: number): KvArray {
  return type === 'float16' ? new Uint16Array(n) : new Float32Array(n);
}

/** Copies every row of `src` (spec i) into `out` [*, heads, T, headDim] from row `at` on. */
function copyRows(src: KvBatch, i: number, out: KvArray, at: number, T: number): void {
  const s = src.specs[i];
  const rowLen = src.T * s.headDim;
  for (let b = 0; b < src.B; b++) {
    for (let h = 0; h < s.heads; h++) {
      const from = (b * s.heads + h) * rowLen;
      out.set(src.data[i].subarray(from, from + rowLen), ((at + b) * s.heads + h) * T * s.headDim);
    }
  }
}
