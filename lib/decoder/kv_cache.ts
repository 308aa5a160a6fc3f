// The KV cache of a decoding batch, in buffers the engine owns.
//
//   data[i]  [rowCapacity, heads, width, headDim]   one buffer per past input (past_key_values.N.*)
//   lens     [B]   tokens row b has seen: their keys and values lie in columns [0, lens[b]), in
//                  order, and lens[b] is the position of the row's next token (position_ids)
//
// A step feeds the first B rows as they lie (past [B, heads, width, headDim]: a view, no copy),
// masking each row's columns from lens[b] on. A run's new columns come back on their own
// (persona_new.N.*, lib/onnx/new_kv.ts; else they are read out of present.N.*) and are written in
// place, so only what changed is copied:
//   a step   row b's new column            → column lens[b]                  B · heads · headDim values
//   a join   a joiner's prompt columns     → a new row's [0, len)            the joiner's columns only
//   a leave  the last row's [0, lens)      → the leaver's row                one row
// The whole cache is copied only when its buffers change size: the width grows `slack` columns past
// the longest row when that row reaches the edge and shrinks back once the longest live row is
// 2 · slack shorter, and the row capacity doubles (up to maxRows) when joiners do not fit. The
// width fed thus stays within 2 · slack of the longest live row however long the batch runs (rows
// that leave give their columns back), and decoding copies the whole cache at most once per
// `slack` steps.
// A change of size copies into a second store kept for the purpose (one per past input) and the two
// swap, so steady traffic allocates nothing. A new buffer per resize had each worker allocating
// ~40 MB/s of ArrayBuffers under 8 clients (~30 resizes a second, 8 buffers each), and V8 answered
// that external memory with a full garbage collection every third of a second per worker (bench
// serve, demo, --trace-gc: 60 in 20 s; 28 with the stores). A store is only replaced when it is too
// small (it then gets STORE_HEADROOM more than asked, so a longest row growing 8 columns at a time
// does not allocate at each resize) or more than STORE_SHRINK times larger than needed. So a cache
// holds at most 2 · STORE_HEADROOM times the largest size its batch needed since it last emptied
// (the old code held one buffer, and two for a moment at each resize); memory goes back at the
// next resize once the batch narrows more than STORE_SHRINK-fold, and all of it when the batch
// empties (the batcher then starts a new cache). A smaller STORE_SHRINK would free sooner but
// reallocate under ordinary traffic, whose width moves ~5-fold with the stores' headroom.
// Columns past a row's length hold whatever was there before (a removed row's, or an earlier
// size's): they are masked, so attention gives them weight exactly 0, as it already did to the
// columns a removed row left behind.
// slack 0 keeps the width at the longest row exactly, so every step copies the (one-row) cache:
// models that count positions from the column index (no position_ids) decode each row alone with
// such a cache (Batcher), as they did before.
import * as ort from 'onnxruntime-node';
import { LAST_INDEX_INPUT } from '../onnx/last_logits';
import { newKvOutput } from '../onnx/new_kv';

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

/** A past input and the run output its new columns are read from. */
export interface CacheSpec extends PastSpec {
  /** persona_new.N.key when the session gives it, else present.N.key */
  fetch: string;
}

/** The new columns of one past input in a run's output: columns [from, from + added) of data [B, heads, columns, headDim]. */
export interface NewColumns {
  data: KvArray;
  columns: number;
  from: number;
}

/** Each past input's run output: its own new columns when the session has them (see new_kv.ts). */
export function cacheSpecs(past: readonly PastSpec[], outputNames: readonly string[]): CacheSpec[] {
  return past.map((p) => ({ ...p, fetch: outputNames.includes(newKvOutput(p.present)) ? newKvOutput(p.present) : p.present }));
}

/**
 * Where a run put the `added` columns it appended to a past `pastWidth` wide. Float16 values stay
 * bits (a Float16Array, which onnxruntime gives where the runtime has one, is read as its
 * Uint16Array: copying it into one by value would convert every element).
 */
export function newColumns(specs: readonly CacheSpec[], out: ort.InferenceSession.OnnxValueMapType, pastWidth: number, added: number): NewColumns[] {
  return specs.map((s) => {
    const t = out[s.fetch];
    const sliced = s.fetch === s.present;
    const columns = Number(t.dims[2]);
    const want = sliced ? pastWidth + added : added;
    if (t.dims.length !== 4 || columns !== want) {
      throw new Error(`The model's ${s.fetch} has dims [${t.dims.join(', ')}]; expected ${want} columns in dimension 2 (a past of ${pastWidth} and ${added} new)`);
    }
    const d = t.data as ArrayBufferView;
    const data = s.type === 'float16' && !(d instanceof Uint16Array) ? new Uint16Array(d.buffer, d.byteOffset, d.byteLength / 2) : (d as KvArray);
    return { data, columns, from: sliced ? pastWidth : 0 };
  });
}

/** A new store holds this much more than asked for. */
export const STORE_HEADROOM = 1.25;
/** A spare store more than this many times larger than needed is replaced by a smaller one. */
export const STORE_SHRINK = 8;

export class KvCache {
  lens: number[] = [];
  #width = 0;
  #rowCapacity = 0;
  /** per past input: the view fed and written, [rowCapacity, heads, width, headDim], over #stores[i] */
  #data: KvArray[];
  #stores: KvArray[];
  /** per past input: the store the next resize copies into */
  #spares: KvArray[];

  /** slack: see above; maxRows: the most rows the batch holds (the row capacity never doubles past it) */
  constructor(readonly specs: readonly CacheSpec[], readonly slack: number, readonly maxRows = Infinity) {
    this.#data = specs.map((s) => alloc(s.type, 0));
    this.#stores = [...this.#data];
    this.#spares = [...this.#data];
  }

  /** Rows in the cache. */
  get B(): number {
    return this.lens.length;
  }

  /** Columns fed to the model. */
  get width(): number {
    return this.#width;
  }

  /** The buffers, [rowCapacity, heads, width, headDim] each (tests read them). */
  get data(): readonly KvArray[] {
    return this.#data;
  }

  /** Bytes the cache holds: both stores of every past input (at most 2 · STORE_HEADROOM times what its size needs, or STORE_SHRINK times until the next resize). */
  get heldBytes(): number {
    return [...this.#stores, ...this.#spares].reduce((sum, a, i, all) => (all.indexOf(a) === i ? sum + a.byteLength : sum), 0);
  }

  /** The longest row's length (the narrowest width that holds every row). */
  get longest(): number {
    return this.lens.reduce((m, n) => Math.max(m, n), 0);
  }

  /** Rows `first` … `first + lens.length - 1` of a run (a prefill on an empty past) join as the last rows, row j holding lens[j] tokens. */
  join(cols: readonly NewColumns[], lens: readonly number[], first = 0): void {
    const longest = Math.max(this.longest, ...lens);
    // with slack, at least one free column past the longest row, so the next step need not widen
    const widen = longest + (this.slack > 0 ? 1 : 0) > this.#width;
    const rows = this.B + lens.length;
    if (rows > this.#rowCapacity || widen) {
      const capacity = rows > this.#rowCapacity ? Math.max(rows, Math.min(2 * this.#rowCapacity, this.maxRows)) : this.#rowCapacity;
      this.#resize(capacity, widen ? longest + this.slack : this.#width);
    }
    lens.forEach((n, j) => {
      const at = this.lens.length;
      this.lens.push(n);
      this.specs.forEach((s, i) => {
        const { data, columns, from } = cols[i];
        const D = s.headDim;
        for (let h = 0; h < s.heads; h++) {
          const src = (((first + j) * s.heads + h) * columns + from) * D;
          this.#data[i].set(data.subarray(src, src + n * D), (at * s.heads + h) * this.#width * D);
        }
      });
    });
  }

  /** After a step: every row's one new column goes to column lens[b]. */
  append(cols: readonly NewColumns[]): void {
    // the longest row after this step, `slack` free columns past it
    const longest = this.longest + 1;
    if (longest > this.#width) this.#resize(this.#rowCapacity, longest + this.slack);
    const W = this.#width;
    this.specs.forEach((s, i) => {
      const { data, columns, from } = cols[i];
      const D = s.headDim;
      for (let b = 0; b < this.B; b++) {
        for (let h = 0; h < s.heads; h++) {
          const src = ((b * s.heads + h) * columns + from) * D;
          this.#data[i].set(data.subarray(src, src + D), ((b * s.heads + h) * W + this.lens[b]) * D);
        }
      }
    });
    for (let b = 0; b < this.B; b++) this.lens[b]++;
  }

  /** Drops row b: the last row moves into its place (as MixSlots.move does with the slots). */
  removeRow(b: number): void {
    const last = this.B - 1;
    if (b !== last) {
      const W = this.#width;
      const n = this.lens[last];
      this.specs.forEach((s, i) => {
        const D = s.headDim;
        for (let h = 0; h < s.heads; h++) {
          const src = (last * s.heads + h) * W * D;
          this.#data[i].copyWithin((b * s.heads + h) * W * D, src, src + n * D);
        }
      });
      this.lens[b] = n;
    }
    this.lens.pop();
    const longest = this.longest;
    if (this.#width > longest + 2 * this.slack) this.#resize(this.#rowCapacity, this.B ? longest + this.slack : 0);
  }

  /** past_* feeds, and attention_mask / position_ids for one new token per row. */
  stepFeeds(inputNames: readonly string[]): Record<string, ort.Tensor> {
    const { B } = this;
    const W = this.#width;
    const feeds: Record<string, ort.Tensor> = {};
    this.specs.forEach((s, i) => {
      feeds[s.name] = new ort.Tensor(s.type, this.#data[i].subarray(0, B * s.heads * W * s.headDim), [B, s.heads, W, s.headDim]);
    });
    if (inputNames.includes('attention_mask')) {
      // [B, W + 1]: the row's columns, then the new token
      const mask = new BigInt64Array(B * (W + 1));
      for (let b = 0; b < B; b++) {
        mask.fill(1n, b * (W + 1), b * (W + 1) + this.lens[b]);
        mask[b * (W + 1) + W] = 1n;
      }
      feeds.attention_mask = new ort.Tensor('int64', mask, [B, W + 1]);
    }
    if (inputNames.includes('position_ids')) {
      feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from(this.lens.map(BigInt)), [B, 1]);
    }
    // one new token per row: its logits are at position 0
    if (inputNames.includes(LAST_INDEX_INPUT)) feeds[LAST_INDEX_INPUT] = new ort.Tensor('int64', new BigInt64Array(B), [B, 1]);
    return feeds;
  }

  /** Buffers of rowCapacity rows and `width` columns, in the spare stores, each row's [0, lens) copied over; the stores swap. */
  #resize(rowCapacity: number, width: number): void {
    const W = this.#width;
    this.#data = this.specs.map((s, i) => {
      const D = s.headDim;
      const old = this.#data[i];
      const n = rowCapacity * s.heads * width * D;
      let store = this.#spares[i];
      if (store.length < n || (n > 0 && store.length > STORE_SHRINK * n)) store = alloc(s.type, Math.ceil(n * STORE_HEADROOM));
      this.#spares[i] = this.#stores[i];
      this.#stores[i] = store;
      const data = store.subarray(0, n);
      for (let b = 0; b < this.B; b++) {
        for (let h = 0; h < s.heads; h++) {
          const src = (b * s.heads + h) * W * D;
          data.set(old.subarray(src, src + this.lens[b] * D), (b * s.heads + h) * width * D);
        }
      }
      return data;
    });
    this.#rowCapacity = rowCapacity;
    this.#width = width;
  }
}

function alloc(type: PastSpec['type'], n: number): KvArray {
  return type === 'float16' ? new Uint16Array(n) : new Float32Array(n);
}
