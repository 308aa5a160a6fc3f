// Training a hidden-state router's head (head.ts) in TypeScript, deterministic for a seed.
//
//   loss(x, t) = - Σ_e t_e log softmax(logits(x))_e     t: the situation's expert distribution
//   d loss / d logits = softmax(logits) - t             (softmax by kernels.topkSoftmax, k = E)
//   AdamW (β1 0.9, β2 0.999, ε 1e-8; weight decay decoupled, on weights only), mini-batches in a
//   seeded order, early stopping: the parameters of the epoch with the lowest validation loss are
//   kept, and training stops after `patience` epochs without a new best.
// Dense features are standardized with the training set's mean and standard deviation (kept in
// the head), times 1 / denseScale when sparse n-gram features sit beside them (their balance).
// A head's targets are either expert distributions or one-hot situations; `expertsOf` maps a
// distribution over its outputs to one over experts for the top-2 the curve reports.
import { expectInteger, rangeError, typeError } from '../errors';
import { mulberry32 } from '../rng';
import { emptyHead, forwardLayers, Head, standardize } from './head';
import type { SparseVector } from './ngrams';
import { softmaxRows } from './softmax_rows';

export interface TrainOptions {
  /** widths of hidden layers ([] = a linear head) */
  hidden?: number[];
  epochs?: number;
  batchSize?: number;
  lr?: number;
  weightDecay?: number;
  patience?: number;
  seed?: number;
}

export interface Example {
  /** dense features (pooled hidden states) */
  x: Float32Array;
  /** n-gram features, when the head reads them */
  sparse?: SparseVector;
  target: Float32Array;
}

/** What the head reads and answers beyond its dense features. */
export interface HeadShape {
  /** sparse features after the dense ones (0: none) */
  sparseSize: number;
  /** the standardized dense features' scale: their std is divided by this (1: as they are) */
  denseScale: number;
  /** a distribution over the head's outputs -> one over experts (identity when it answers experts) */
  expertsOf?: (p: Float32Array) => Float32Array;
}

export interface EpochStats {
  epoch: number;
  trainLoss: number;
  validationLoss: number;
  /** share of validation examples whose top-2 experts are exactly their target's two */
  validationTop2: number;
}

export const TRAIN_DEFAULTS: Required<TrainOptions> = { hidden: [], epochs: 300, batchSize: 64, lr: 3e-3, weightDecay: 1e-3, patience: 30, seed: 0 };

/** Mean cross-entropy and top-2 accuracy (over experts) of the head on standardized examples. */
export function evaluateHead(head: Head, zs: readonly Float32Array[], targets: readonly Float32Array[], sparse: readonly (SparseVector | undefined)[] = [],
  expertsOf: (p: Float32Array) => Float32Array = (p) => p): { loss: number; top2: number } {
  if (zs.length === 0) return { loss: 0, top2: 0 };
  const E = head.layers[head.layers.length - 1].out;
  const logits = new Float32Array(zs.length * E);
  zs.forEach((z, i) => {
    const acts = forwardLayers(head, z, sparse[i]);
    logits.set(acts[acts.length - 1], i * E);
  });
  const p = softmaxRows(logits, E);
  let loss = 0;
  let hits = 0;
  targets.forEach((t, i) => {
    for (let e = 0; e < E; e++) if (t[e] > 0) loss -= t[e] * Math.log(Math.max(p[i * E + e], 1e-12));
    if (sameSet(topTwo(expertsOf(p.slice(i * E, (i + 1) * E))), topTwo(expertsOf(t)))) hits++;
  });
  return { loss: loss / zs.length, top2: hits / zs.length };
}

function topTwo(v: ArrayLike<number>): number[] {
  const idx = Array.from({ length: v.length }, (_, i) => i).sort((a, b) => v[b] - v[a] || a - b);
  return idx.slice(0, 2);
}

function sameSet(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/**
 * The mean loss of a batch and its gradients, written into `grads` (zeroed first; one array per
 * parameter, in the order [w_0, b_0, w_1, b_1, ...]).
 */
export function accumulateGradients(head: Head, zs: readonly Float32Array[], targets: readonly Float32Array[], grads: Float32Array[],
  sparse: readonly (SparseVector | undefined)[] = []): number {
  const E = head.layers[head.layers.length - 1].out;
  grads.forEach((g) => g.fill(0));
  const acts = zs.map((z, r) => forwardLayers(head, z, sparse[r]));
  const logits = new Float32Array(zs.length * E);
  acts.forEach((a, r) => logits.set(a[a.length - 1], r * E));
  const p = softmaxRows(logits, E);
  let loss = 0;
  targets.forEach((t, r) => {
    let delta = new Float32Array(E);
    for (let e = 0; e < E; e++) {
      delta[e] = (p[r * E + e] - t[e]) / zs.length;
      if (t[e] > 0) loss -= t[e] * Math.log(Math.max(p[r * E + e], 1e-12));
    }
    // back through the layers: delta is d loss / d (pre-activation) of layer l
    for (let l = head.layers.length - 1; l >= 0; l--) {
      const layer = head.layers[l];
      const x = acts[r][l];
      const gw = grads[2 * l];
      const gb = grads[2 * l + 1];
      const sp = l === 0 ? sparse[r] : undefined;
      for (let out = 0; out < layer.out; out++) {
        const d = delta[out];
        gb[out] += d;
        const row = out * layer.in;
        for (let k = 0; k < x.length; k++) gw[row + k] += d * x[k];
        if (sp) for (let k = 0; k < sp.idx.length; k++) gw[row + x.length + sp.idx[k]] += d * sp.val[k];
      }
      if (l === 0) break;
      const prev = new Float32Array(layer.in);
      for (let out = 0; out < layer.out; out++) {
        const d = delta[out];
        const row = out * layer.in;
        for (let k = 0; k < layer.in; k++) prev[k] += layer.w[row + k] * d;
      }
      // tanh' = 1 - tanh² at the previous layer's output
      for (let k = 0; k < layer.in; k++) prev[k] *= 1 - x[k] * x[k];
      delta = prev;
    }
  });
  return loss / zs.length;
}

/** The CLI flag of each option, so an error names both (router train's flags are these). */
const FLAG: Record<keyof TrainOptions, string> = {
  hidden: '--hidden', epochs: '--epochs', batchSize: '--batch-size', lr: '--lr', weightDecay: '--weight-decay', patience: '--patience', seed: '--seed',
};
const named = (key: keyof TrainOptions) => `${key} (${FLAG[key]})`;

/** Every training option in range, each refused by name (a batch of 0 would loop forever). */
export function checkTrainOptions(o: TrainOptions): void {
  for (const key of ['epochs', 'batchSize', 'patience'] as const) if (o[key] !== undefined) expectInteger(o[key], named(key), 1, 1_000_000);
  if (o.seed !== undefined) expectInteger(o.seed, named('seed'), 0, 2 ** 32 - 1);
  const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  if (o.lr !== undefined && !(finite(o.lr) && o.lr > 0)) throw rangeError(named('lr'), 'a positive number', String(o.lr));
  if (o.weightDecay !== undefined && !(finite(o.weightDecay) && o.weightDecay >= 0)) throw rangeError(named('weightDecay'), 'a number >= 0', String(o.weightDecay));
  if (o.hidden !== undefined && (!Array.isArray(o.hidden) || !o.hidden.every((w) => Number.isInteger(w) && w >= 1))) {
    throw typeError(named('hidden'), 'a list of layer widths, each an integer >= 1 ([] for a linear head)', o.hidden);
  }
}

/** Trains a head on `train`, stopping early on `validation`; returns it and its curve. */
export function trainHead(train: readonly Example[], validation: readonly Example[], options: TrainOptions = {}, onEpoch?: (s: EpochStats) => void,
  shape: HeadShape = { sparseSize: 0, denseScale: 1 }): { head: Head; curve: EpochStats[] } {
  // an option given as undefined keeps its default
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const o: Required<TrainOptions> = { ...TRAIN_DEFAULTS, ...given };
  checkTrainOptions(o);
  if (train.length === 0) throw new Error('No training examples');
  const F = train[0].x.length;
  const E = train[0].target.length;
  if (shape.sparseSize > 0 && o.hidden.length > 0) throw new Error('A head that reads n-grams is linear: no hidden layers');
  const rand = mulberry32(o.seed >>> 0);
  const head = emptyHead([F + shape.sparseSize, ...o.hidden, E], F);
  // standardization from the training set
  for (const ex of train) for (let i = 0; i < F; i++) head.mean[i] += ex.x[i] / train.length;
  const variance = new Float64Array(F);
  for (const ex of train) for (let i = 0; i < F; i++) variance[i] += (ex.x[i] - head.mean[i]) ** 2 / train.length;
  for (let i = 0; i < F; i++) head.std[i] = (Math.sqrt(variance[i]) + 1e-6) / shape.denseScale;
  // Glorot-uniform weights (seeded), zero biases; n-gram weights start at zero, so a bucket no
  // training message hit adds nothing
  for (const layer of head.layers) {
    const a = Math.sqrt(6 / (layer.in + layer.out));
    for (let i = 0; i < layer.w.length; i++) layer.w[i] = (2 * rand() - 1) * a;
  }
  const first = head.layers[0];
  for (let o2 = 0; o2 < first.out; o2++) first.w.fill(0, o2 * first.in + F, (o2 + 1) * first.in);
  const zTrain = train.map((ex) => standardize(head, ex.x));
  const zVal = validation.map((ex) => standardize(head, ex.x));
  const tTrain = train.map((ex) => ex.target);
  const tVal = validation.map((ex) => ex.target);
  const sTrain = train.map((ex) => ex.sparse);
  const sVal = validation.map((ex) => ex.sparse);

  const params = head.layers.flatMap((l) => [{ v: l.w, decay: true }, { v: l.b, decay: false }]);
  const m = params.map((p) => new Float32Array(p.v.length));
  const s = params.map((p) => new Float32Array(p.v.length));
  const grads = params.map((p) => new Float32Array(p.v.length));
  let step = 0;
  let best = { loss: Infinity, epoch: 0, snapshot: params.map((p) => p.v.slice()) };
  const curve: EpochStats[] = [];
  const order = Array.from({ length: train.length }, (_, i) => i);

  for (let epoch = 1; epoch <= o.epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    let trainLoss = 0;
    for (let start = 0; start < order.length; start += o.batchSize) {
      const batch = order.slice(start, start + o.batchSize);
      trainLoss += accumulateGradients(head, batch.map((i) => zTrain[i]), batch.map((i) => tTrain[i]), grads, batch.map((i) => sTrain[i])) * batch.length;
      step++;
      const b1 = 0.9, b2 = 0.999, eps = 1e-8;
      const c1 = 1 - b1 ** step, c2 = 1 - b2 ** step;
      params.forEach((prm, pi) => {
        const g = grads[pi], mm = m[pi], ss = s[pi], v = prm.v;
        for (let i = 0; i < v.length; i++) {
          mm[i] = b1 * mm[i] + (1 - b1) * g[i];
          ss[i] = b2 * ss[i] + (1 - b2) * g[i] * g[i];
          if (prm.decay) v[i] -= o.lr * o.weightDecay * v[i];
          v[i] -= (o.lr * (mm[i] / c1)) / (Math.sqrt(ss[i] / c2) + eps);
        }
      });
    }
    const val = evaluateHead(head, zVal, tVal, sVal, shape.expertsOf);
    const stats = { epoch, trainLoss: trainLoss / train.length, validationLoss: val.loss, validationTop2: val.top2 };
    curve.push(stats);
    onEpoch?.(stats);
    if (val.loss < best.loss - 1e-6) best = { loss: val.loss, epoch, snapshot: params.map((p) => p.v.slice()) };
    else if (epoch - best.epoch >= o.patience) break;
  }
  params.forEach((p, i) => p.v.set(best.snapshot[i]));
  return { head, curve };
}
