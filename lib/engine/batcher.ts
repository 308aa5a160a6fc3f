// Continuous batching over one decoder session. Requests join and leave between decode steps;
// every row has its own persona mix (MixSlots or GateSlots), its own sampling settings and its own seeded
// rng, so what a request generates never depends on what else is in the batch.
//
// One iteration of the loop:
//   1. drop cancelled rows; admit queued requests up to maxBatch (each folded into its slot)
//   2. with a KV cache: prefill the joiners (their prompts right-padded, empty past), sample
//      their first token, and write their columns into the batch's cache; then one decode step for
//      every row (input_ids [B, 1], past [B, heads, width, headDim], each row's unused columns
//      masked, position_ids = row length), its new column written in place (KvCache)
//      without a cache: run every row's whole sequence (right-padded) and take its last logits
//   3. sample, report tokens, retire rows that hit EOS or their token budget
// Models without position_ids compute positions from the column index, so there an unused column
// would shift positions: each row then keeps its own cache, exactly as wide as the row, and
// decodes alone (batch of 1).
import * as ort from 'onnxruntime-node';
import { decoderFeeds, DecoderIO } from '../decoder/feeds';
import { poolHidden } from '../decoder/hidden';
import { lastLogits } from '../decoder/logits';
import { CacheSpec, cacheSpecs, KvCache, newColumns } from '../decoder/kv_cache';
import { MixEntries, RowMixes } from '../decoder/mix_slots';
import { presentOf } from '../onnx/cache_names';
import { newRowMixes, SlotLayout } from '../decoder/slot_layout';
import { Rng } from '../rng';
import { sample, SampledLogprobs, SamplingParams } from './sampler';

export type FinishReason = 'stop' | 'length' | 'abort';

export interface SequenceRequest {
  /** the request's id, the same from the engine to the worker's batch (one is given when absent) */
  id?: number;
  inputIds: number[];
  mix: MixEntries;
  maxNewTokens: number;
  sampling: SamplingParams;
  seed: number;
  eosIds: number[];
}

export interface SequenceSink {
  /** logprobs: when the request's sampling asks for them (topLogprobs) */
  token(token: number, logprobs?: SampledLogprobs): void;
  /** error set when the run failed; reason is then 'abort' */
  done(reason: FinishReason, error?: string): void;
}

/** What the batcher needs of a loaded model (PersonaModel provides it). */
export interface DecoderModel {
  session: ort.InferenceSession;
  /** how rows feed their persona: folded adapters (per-row) or gates (bank) */
  layout: SlotLayout;
  io: DecoderIO;
  padId: number;
  /** the graph output with the hidden states at every position (features for a hidden-state router) */
  hidden?: string;
}

interface Row {
  id: number;
  req: SequenceRequest;
  sink: SequenceSink;
  /** prompt + generated so far */
  tokens: number[];
  generated: number;
  rng: Rng;
  cancelled: boolean;
  /** per-row cache (models without position_ids) */
  kv?: KvCache;
}

export interface BatcherOptions {
  maxBatch?: number;
  /** called after every iteration of the loop with the batch's state (the worker reports it) */
  onStep?: (stats: BatchStats) => void;
}

/** What the batch holds now. */
export interface BatchStats {
  /** rows decoding */
  running: number;
  /** requests waiting for a slot */
  waiting: number;
  /** columns of the shared KV cache fed to the model (0 without one) */
  kvWidth: number;
  /** tokens of the longest running row (the narrowest the cache could be) */
  longest: number;
}

/** Rows a batch decodes together unless told otherwise (the library's, the worker's and serve's default). */
export const DEFAULT_MAX_BATCH = 16;

/** Columns the shared cache grows by past its longest row (KvCache: the width fed stays within twice this of the longest live row). */
export const KV_SLACK = 8;

/**
 * Whether rows share one cache (fed as it lies, wider than most rows) or each row decodes alone with
 * a cache exactly its own length. Sharing needs position_ids (a row's next position is its length,
 * not the column index) and attention_mask (the columns past a row's length hold other rows' or
 * earlier sizes' keys and values, and only the mask gives them weight 0).
 */
export function sharesCache(inputNames: readonly string[]): boolean {
  return inputNames.includes('position_ids') && inputNames.includes('attention_mask');
}

export class Batcher {
  readonly maxBatch: number;
  readonly #model: DecoderModel;
  readonly #onStep: ((stats: BatchStats) => void) | undefined;
  readonly #specs: CacheSpec[];
  /** what a cached run fetches: logits and every past input's new columns */
  readonly #fetches: string[];
  readonly #shared: boolean;
  readonly #slots: RowMixes;
  #rows: Row[] = [];
  #queue: Row[] = [];
  #kv: KvCache;
  #nextId = 1;
  #running: Promise<void> | undefined;
  /** features() runs in flight beside the loop */
  readonly #sideRuns = new Set<Promise<unknown>>();
  #closed = false;

  constructor(model: DecoderModel, opts: BatcherOptions = {}) {
    this.#model = model;
    this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
    this.#onStep = opts.onStep;
    const outputs = model.session.outputNames;
    const past = model.io.past.map((p) => {
      const present = presentOf(p.name);
      if (!outputs.includes(present)) throw new Error(`The model has the cache input ${p.name} but no output ${present}`);
      return { ...p, present };
    });
    this.#specs = cacheSpecs(past, outputs);
    this.#fetches = ['logits', ...this.#specs.map((s) => s.fetch)];
    this.#shared = sharesCache(model.io.inputNames);
    this.#slots = newRowMixes(model.layout);
    this.#kv = this.#emptyCache();
  }

  /** The session is open from the start. */
  ready(): Promise<void> {
    return this.#closed ? Promise.reject(new Error('The generation engine is closed')) : Promise.resolve();
  }

  stats(): BatchStats {
    const longest = this.#rows.reduce((m, r) => Math.max(m, r.tokens.length), 0);
    return { running: this.#rows.length, waiting: this.#queue.length, kvWidth: this.#kv.width, longest };
  }

  /**
   * Pooled hidden states of the base model (no persona) for each row (lib/decoder/hidden.ts): one
   * prefill of the rows, beside the batch (onnxruntime runs concurrent calls on one session).
   */
  async features(rows: number[][]): Promise<Float32Array[]> {
    if (this.#closed) throw new Error('The generation engine is closed');
    const hidden = this.#model.hidden;
    if (!hidden) throw new Error('This model gives no hidden states (its LM head is not a MatMul onnxruntime can be read from), so a hidden-state router cannot run on it');
    const base = newRowMixes(this.#model.layout);
    rows.forEach((_, r) => base.set(r, []));
    const feeds = { ...decoderFeeds(this.#model.io, rows, this.#model.padId), ...base.feeds(0, rows.length) };
    // close() waits for this run: the session must not be released under it
    const run = this.#model.session.run(feeds, [hidden]);
    this.#sideRuns.add(run);
    try {
      const out = await run;
      return poolHidden(out[hidden], rows.map((r) => r.length));
    } finally {
      this.#sideRuns.delete(run);
    }
  }

  /** true when the model has past_key_values inputs (KV-cache decoding) */
  get cached(): boolean {
    return this.#specs.length > 0;
  }

  submit(req: SequenceRequest, sink: SequenceSink): number {
    if (this.#closed) throw new Error('The generation engine is closed');
    const id = req.id ?? this.#nextId++;
    const row: Row = { id, req, sink, tokens: [...req.inputIds], generated: 0, rng: new Rng(req.seed), cancelled: false };
    this.#queue.push(row);
    this.#running ??= this.#loop().finally(() => {
      this.#running = undefined;
    });
    return row.id;
  }

  /** Ends a request at once ('abort'); its slot is free before the next step. */
  cancel(id: number): void {
    const row = this.#rows.find((r) => r.id === id) ?? this.#queue.find((r) => r.id === id);
    if (!row || row.cancelled) return;
    row.cancelled = true;
    row.sink.done('abort');
  }

  /** Ends every request and resolves once no run of the session is in flight (the loop's step,
   *  features calls), so the session can be released. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const r of [...this.#queue, ...this.#rows]) this.cancel(r.id);
    await this.#running;
    await Promise.allSettled([...this.#sideRuns]);
  }

  async #loop(): Promise<void> {
    while (this.#rows.length > 0 || this.#queue.length > 0) {
      this.#dropCancelled();
      const joiners = this.#admit();
      let ran = false;
      try {
        if (this.cached) {
          if (joiners.length) {
            await this.#prefill(joiners);
            ran = true;
          }
          this.#dropCancelled();
          if (this.#rows.length) {
            await this.#decode();
            ran = true;
          }
        } else if (this.#rows.length) {
          await this.#recompute();
          ran = true;
        }
      } catch (err) {
        this.#failAll(err instanceof Error ? err.message : String(err));
      }
      // New requests and cancellations get in between steps: onnxruntime-node's run() waits for
      // setImmediate before it computes, which is a turn of the event loop. Only an iteration
      // that ran nothing needs a turn of its own (one more per step costs ~5% at batch 1).
      if (!ran) await new Promise((resolve) => setImmediate(resolve));
      this.#onStep?.(this.stats());
    }
    this.#kv = this.#emptyCache();
    this.#onStep?.(this.stats());
  }

  #admit(): Row[] {
    this.#queue = this.#queue.filter((r) => !r.cancelled);
    const joiners: Row[] = [];
    while (this.#queue.length && this.#rows.length < this.maxBatch) {
      const row = this.#queue.shift()!;
      // the one admit path: the row's whole slot written from its mix (an empty mix zeroes it)
      this.#slots.set(this.#rows.length, row.req.mix);
      this.#rows.push(row);
      joiners.push(row);
    }
    return joiners;
  }

  /** Joiners sit in the last slots; their prompts run together, right-padded, on an empty cache. */
  async #prefill(joiners: Row[]): Promise<void> {
    const start = this.#rows.length - joiners.length;
    const prompts = joiners.map((r) => r.tokens);
    const feeds = { ...decoderFeeds(this.#model.io, prompts, this.#model.padId), ...this.#slots.feeds(start, joiners.length) };
    const out = await this.#model.session.run(feeds, this.#fetches);
    const lens = prompts.map((p) => p.length);
    const fresh = newColumns(this.#specs, out, 0, Math.max(...lens));
    if (this.#shared) this.#kv.join(fresh, lens);
    else {
      joiners.forEach((r, j) => {
        r.kv = new KvCache(this.#specs, 0);
        r.kv.join(fresh, [lens[j]], j);
      });
    }
    this.#emit(joiners, lastLogits(out.logits, lens));
  }

  async #decode(): Promise<void> {
    if (this.#shared) {
      const rows = [...this.#rows];
      const out = await this.#step(this.#kv, rows, 0);
      this.#emit(rows, lastLogits(out.logits, rows.map(() => 1)));
      return;
    }
    for (const row of [...this.#rows]) {
      // a row that finished earlier in this loop moved the last row into its slot: look it up now
      const slot = this.#rows.indexOf(row);
      if (slot < 0 || row.cancelled) continue;
      const out = await this.#step(row.kv!, [row], slot);
      this.#emit([row], lastLogits(out.logits, [1]));
    }
  }

  /** One decode step of `rows` over `kv` (their slots from `start`); their new columns go into kv. */
  async #step(kv: KvCache, rows: Row[], start: number): Promise<ort.InferenceSession.OnnxValueMapType> {
    const ids = BigInt64Array.from(rows.map((r) => BigInt(r.tokens[r.tokens.length - 1])));
    const width = kv.width;
    const feeds = { input_ids: new ort.Tensor('int64', ids, [rows.length, 1]), ...kv.stepFeeds(this.#model.io.inputNames), ...this.#slots.feeds(start, rows.length) };
    const out = await this.#model.session.run(feeds, this.#fetches);
    kv.append(newColumns(this.#specs, out, width, 1));
    return out;
  }

  async #recompute(): Promise<void> {
    const rows = [...this.#rows];
    const seqs = rows.map((r) => r.tokens);
    const feeds = { ...decoderFeeds(this.#model.io, seqs, this.#model.padId), ...this.#slots.feeds(0, rows.length) };
    const out = await this.#model.session.run(feeds, ['logits']);
    this.#emit(rows, lastLogits(out.logits, seqs.map((s) => s.length)));
  }

  /** Samples each row's next token from its logits, reports it, retires finished rows. */
  #emit(rows: Row[], logits: Float32Array[]): void {
    rows.forEach((row, i) => {
      if (row.cancelled) return;
      // presence / frequency penalties count the generated tokens only (they start at the prompt's length)
      const s = sample(logits[i], row.req.sampling, row.tokens, row.rng, row.req.inputIds.length);
      const t = s.token;
      row.tokens.push(t);
      row.generated++;
      row.sink.token(t, s.logprobs);
      if (row.cancelled) return; // the sink stopped it (a stop string)
      if (row.req.eosIds.includes(t)) this.#finish(row, 'stop');
      else if (row.generated >= row.req.maxNewTokens) this.#finish(row, 'length');
    });
  }

  #finish(row: Row, reason: FinishReason): void {
    row.cancelled = true;
    row.sink.done(reason);
    this.#remove(row);
  }

  #dropCancelled(): void {
    for (const r of this.#rows.filter((x) => x.cancelled)) this.#remove(r);
  }

  /** The last row moves into the leaver's slot, in the mix buffers and the cache alike (the cache narrows once its longest row is gone). */
  #remove(row: Row): void {
    const i = this.#rows.indexOf(row);
    if (i < 0) return;
    const last = this.#rows.length - 1;
    this.#rows[i] = this.#rows[last];
    this.#rows.pop();
    if (i !== last) this.#slots.move(last, i);
    else this.#slots.release(last);
    if (this.#shared && this.cached && i < this.#kv.B) this.#kv.removeRow(i);
  }

  #failAll(message: string): void {
    for (const r of [...this.#rows]) {
      if (!r.cancelled) r.sink.done('abort', message);
      r.cancelled = true;
    }
    this.#rows.forEach((_, slot) => this.#slots.release(slot));
    this.#rows = [];
    this.#kv = this.#emptyCache();
  }

  #emptyCache(): KvCache {
    return new KvCache(this.#specs, KV_SLACK, this.maxBatch);
  }
}
