// Per-row persona mixes as the injected graph's A_in / B_in feeds, kept across decode steps.
//
// Every site has one buffer pair laid out by slot:  a [capacity, din, R],  b [capacity, R, dout],
// R = k * site rank, k = the most experts any active row uses. A row joining the batch is folded
// into its own slot only (kernels.foldExperts with `slots`), on whichever thread feeds the model
// (the worker holds banks of its own), and the other slots are not rewritten. A run over
// slots [start, start + count) feeds views of the buffers (onnxruntime-node wraps CPU inputs
// without copying). When a joining row needs a larger k, or more slots than the buffers hold,
// the buffers are re-laid out: each slot's blocks are copied to the wider layout (zero columns
// past a row's own k*rank add nothing), never refolded.
import * as ort from 'onnxruntime-node';
import { foldExperts, LoraBank } from '../kernels';

import type { MixEntries } from './mix';

export type { MixEntries };

/** What a slot buffer needs to know of a site; bank is absent in the worker thread. */
export interface SiteShape {
  din: number;
  dout: number;
  /** the bank's rank (0: no expert adapts this site, its feeds are always rank 0) */
  rank: number;
  aInput: string;
  bInput: string;
  bank?: LoraBank | null;
}

/** Per-row persona inputs kept across decode steps: folded adapters (MixSlots) or gates (GateSlots). */
export interface RowMixes {
  /** row `slot`'s mix, from its (expert id, weight) pairs */
  set(slot: number, entries: MixEntries): void;
  release(slot: number): void;
  move(from: number, to: number): void;
  /** the graph inputs for the rows in slots [start, start + count) */
  feeds(start: number, count: number): Record<string, ort.Tensor>;
}

export class MixSlots implements RowMixes {
  readonly #sites: readonly SiteShape[];
  #k = 0;
  #capacity = 0;
  #a: Float32Array[] = [];
  #b: Float32Array[] = [];
  /** experts per row (its k), for re-layouts */
  #rowK: number[] = [];

  constructor(sites: readonly SiteShape[]) {
    this.#sites = sites;
  }

  /** Folds row `slot`'s mix into its slot (needs the banks: the in-thread path). */
  set(slot: number, entries: MixEntries): void {
    this.#ensure(slot, entries.length);
    this.#rowK[slot] = entries.length;
    const k = this.#k;
    if (k === 0) return;
    const ids = new Int32Array(k).fill(-1);
    const weights = new Float32Array(k);
    entries.forEach(([id, w], j) => {
      ids[j] = id;
      weights[j] = w;
    });
    const where = Int32Array.of(slot);
    this.#sites.forEach((s, i) => {
      if (!s.bank) return;
      foldExperts(s.bank, ids, weights, k, { a: this.#a[i], b: this.#b[i], rankCapacity: k * s.rank, slots: where });
    });
  }

  /** Forgets row `slot` (it left the batch). */
  release(slot: number): void {
    delete this.#rowK[slot];
    this.#clear(slot);
  }

  /** Moves row `from` into slot `to` (a row left; the batch stays contiguous); `from` is freed. */
  move(from: number, to: number): void {
    if (from === to) return;
    this.#rowK[to] = this.#rowK[from];
    delete this.#rowK[from];
    this.#sites.forEach((s, i) => {
      const R = this.#k * s.rank;
      const sa = s.din * R;
      const sb = R * s.dout;
      this.#a[i].copyWithin(to * sa, from * sa, (from + 1) * sa);
      this.#b[i].copyWithin(to * sb, from * sb, (from + 1) * sb);
    });
    this.#clear(from);
  }

  /** Zeroes every site's blocks of `slot` (a freed slot holds nothing the next row could read). */
  #clear(slot: number): void {
    if (slot >= this.#capacity) return;
    this.#sites.forEach((s, i) => {
      const R = this.#k * s.rank;
      this.#a[i].fill(0, slot * s.din * R, (slot + 1) * s.din * R);
      this.#b[i].fill(0, slot * R * s.dout, (slot + 1) * R * s.dout);
    });
  }

  /** A_in / B_in of every site for the rows in slots [start, start + count). */
  feeds(start: number, count: number): Record<string, ort.Tensor> {
    const out: Record<string, ort.Tensor> = {};
    this.#sites.forEach((s, i) => {
      const R = this.#k * s.rank;
      const { din, dout } = s;
      const a = R > 0 ? this.#a[i].subarray(start * din * R, (start + count) * din * R) : new Float32Array(0);
      const b = R > 0 ? this.#b[i].subarray(start * R * dout, (start + count) * R * dout) : new Float32Array(0);
      out[s.aInput] = new ort.Tensor('float32', a, [count, din, R]);
      out[s.bInput] = new ort.Tensor('float32', b, [count, R, dout]);
    });
    return out;
  }

  /** Room for `slot` at k experts: grows the buffers (re-laying out every slot) if needed. */
  #ensure(slot: number, k: number): void {
    if (k <= this.#k && slot < this.#capacity) return;
    const newK = Math.max(this.#k, k);
    const capacity = slot < this.#capacity ? this.#capacity : Math.max(slot + 1, this.#capacity * 2, 4);
    const a = this.#sites.map((s) => new Float32Array(capacity * s.din * newK * s.rank));
    const b = this.#sites.map((s) => new Float32Array(capacity * newK * s.rank * s.dout));
    if (this.#k > 0) {
      this.#rowK.forEach((_, r) => {
        this.#sites.forEach((s, i) => {
          const oldR = this.#k * s.rank;
          if (oldR === 0) return;
          copyBlock(this.#a[i].subarray(r * s.din * oldR, (r + 1) * s.din * oldR), oldR, a[i], r, newK * s.rank, s.din, s.dout, 'a');
          copyBlock(this.#b[i].subarray(r * oldR * s.dout, (r + 1) * oldR * s.dout), oldR, b[i], r, newK * s.rank, s.din, s.dout, 'b');
        });
      });
    }
    this.#k = newK;
    this.#capacity = capacity;
    this.#a = a;
    this.#b = b;
  }
}

/**
 * One slot's block at rank `srcR` into slot `slot` of a buffer at rank R >= srcR:
 *   a: src [din, srcR] -> dst[slot] [din, R] (row by row; columns past srcR stay zero)
 *   b: src [srcR, dout] -> dst[slot] [R, dout] (the first srcR rows)
 */
function copyBlock(src: Float32Array, srcR: number, dst: Float32Array, slot: number, R: number, din: number, dout: number, which: 'a' | 'b'): void {
  // only the columns (a) or rows (b) past srcR are zeroed: the rest is overwritten
  if (which === 'b') {
    const base = slot * R * dout;
    dst.set(src.subarray(0, srcR * dout), base);
    dst.fill(0, base + srcR * dout, base + R * dout);
    return;
  }
  const base = slot * din * R;
  if (srcR === R) {
    dst.set(src.subarray(0, din * R), base);
    return;
  }
  for (let row = 0; row < din; row++) {
    dst.set(src.subarray(row * srcR, (row + 1) * srcR), base + row * R);
    dst.fill(0, base + row * R + srcR, base + (row + 1) * R);
  }
}

/** The slot view of PersonaModel's sites. */
export function siteShapes(sites: readonly { site: { din: number; dout: number; aInput: string; bInput: string }; bank: LoraBank | null }[]): SiteShape[] {
  return sites.map((s) => ({ din: s.site.din, dout: s.site.dout, rank: s.bank ? s.bank.rank : 0, aInput: s.site.aInput, bInput: s.site.bInput, bank: s.bank }));
}
