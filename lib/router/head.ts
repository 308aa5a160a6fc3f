// The head of a hidden-state router: standardized features -> logits (over experts, or over
// situations that router.json maps to experts).
//
//   z_0 = [ (x - mean) / std ; s ]        x: the pooled hidden states [D], dense
//                                         s: n-gram features [S] (ngrams.ts), sparse; S = 0 without them
//   z_l = tanh(W_l z_{l-1} + b_l)         for the hidden layers (none for a linear head)
//   logits = W_L z_{L-1} + b_L            [E or C]
// Weights in head.safetensors: feature_mean [D], feature_std [D], layers.<l>.weight [out, in],
// layers.<l>.bias [out], and ngram_idf [S] when the router reads n-grams. All float32, except
// that the layers' weights may be float16 (router format version 4): they are most of the file
// (25 situations x 33,280 inputs = 3.3 MB in float32 at 16,384 buckets), and rounding them to
// float16 moves a logit by about 1e-3 of its size. Reading widens any F16 / BF16 tensor exactly.
import * as fs from 'node:fs';
import { encodeSafetensors, readSafetensors, tensorAsF32, tensorF32, TensorToWrite } from '../adapters';
import { rangeError, typeError } from '../errors';
import { toBits } from '../kernels/dtype';
import type { SparseVector } from './ngrams';

export interface HeadLayer {
  /** [out, in], row-major */
  w: Float32Array;
  b: Float32Array;
  in: number;
  out: number;
}

export interface Head {
  /** [D] over the dense features; the sparse ones (layers[0].in - D of them) are used as they come */
  mean: Float32Array;
  std: Float32Array;
  layers: HeadLayer[];
  /** [S] the n-gram idf, for a router that reads n-grams */
  idf?: Float32Array;
}

/** Layer sizes [D + S, hidden..., E] -> zero-initialised layers (the trainer fills them). */
export function emptyHead(sizes: readonly number[], denseSize = sizes[0]): Head {
  return {
    mean: new Float32Array(denseSize),
    std: new Float32Array(denseSize).fill(1),
    layers: sizes.slice(1).map((out, l) => ({ w: new Float32Array(out * sizes[l]), b: new Float32Array(out), in: sizes[l], out })),
  };
}

/** Standardized features: (x - mean) / std. */
export function standardize(head: Head, x: Float32Array): Float32Array {
  const z = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) z[i] = (x[i] - head.mean[i]) / head.std[i];
  return z;
}

/**
 * Every layer's output for one input: z the standardized dense features, `sparse` the n-gram ones
 * (indices counted from the end of z). activations[0] = z (the dense part), the last = logits.
 */
export function forwardLayers(head: Head, z: Float32Array, sparse?: SparseVector): Float32Array[] {
  const acts = [z];
  head.layers.forEach((layer, l) => {
    const x = acts[acts.length - 1];
    const y = new Float32Array(layer.out);
    for (let o = 0; o < layer.out; o++) {
      let s = layer.b[o];
      const row = o * layer.in;
      for (let i = 0; i < x.length; i++) s += layer.w[row + i] * x[i];
      if (l === 0 && sparse) for (let k = 0; k < sparse.idx.length; k++) s += layer.w[row + z.length + sparse.idx[k]] * sparse.val[k];
      y[o] = l < head.layers.length - 1 ? Math.tanh(s) : s;
    }
    acts.push(y);
  });
  return acts;
}

/** Logits of raw (pooled, not yet standardized) features and, if the router reads them, n-grams. */
export function headLogits(head: Head, features: Float32Array, sparse?: SparseVector): Float32Array {
  const acts = forwardLayers(head, standardize(head, features), sparse);
  return acts[acts.length - 1];
}

/** How head.safetensors stores the layers' weights (everything else is float32). */
export type HeadWeightsDtype = 'float32' | 'float16';

/** The largest finite float16. */
const F16_MAX = 65504;

export function writeHead(head: Head, file: string, weights: HeadWeightsDtype = 'float32'): void {
  const f32 = (data: Float32Array, shape: number[]): TensorToWrite => ({ dtype: 'F32', shape, data });
  const tensors: Record<string, TensorToWrite> = { feature_mean: f32(head.mean, [head.mean.length]), feature_std: f32(head.std, [head.std.length]) };
  head.layers.forEach((layer, l) => {
    const name = `layers.${l}.weight`;
    if (weights === 'float16') {
      // a weight past float16's range (or NaN) would be stored as Inf or NaN and route as NaN: refused, never written
      const bad = layer.w.find((v) => !(Math.abs(v) <= F16_MAX));
      if (bad !== undefined) throw rangeError('headDtype (--head-dtype)', `weights within float16's range (|w| <= ${F16_MAX}; use float32)`, `|w| = ${Math.abs(bad)} in ${name}`);
      tensors[name] = { dtype: 'F16', shape: [layer.out, layer.in], data: toBits(layer.w, 'f16') };
    } else tensors[name] = f32(layer.w, [layer.out, layer.in]);
    tensors[`layers.${l}.bias`] = f32(layer.b, [layer.out]);
  });
  if (head.idf) tensors.ngram_idf = f32(head.idf, [head.idf.length]);
  fs.writeFileSync(file, encodeSafetensors(tensors, { format: 'personafuse-router-head' }));
}

/**
 * The head in `file`, checked against what router.json declares: the layer sizes, the dense
 * features' count, for a router that reads n-grams the idf's length, and the dtypes: float32
 * throughout, except that `weights16` (router format version 4) lets the layers' weights be F16
 * or BF16.
 */
export function readHead(file: string, sizes: readonly number[], denseSize = sizes[0], idfSize = 0, weights16 = false): Head {
  const st = readSafetensors(file);
  const get = (name: string, shape: number[]): Float32Array => {
    const t = st.tensors.get(name);
    if (!t) throw new Error(`${file} has no tensor ${name}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      const from = name === 'ngram_idf' ? 'features.ngrams.buckets (two blocks)' : name.startsWith('feature_') ? 'features.hiddenSize (2 x)' : 'head.sizes';
      throw new Error(`${file}: ${name} has shape ${JSON.stringify(t.shape)}, router.json's ${from} says ${JSON.stringify(shape)}`);
    }
    if (t.dtype === 'F32') return tensorF32(t, `${file}: ${name}`).slice(); // a view of the file: copied
    if (!(weights16 && /^layers\.\d+\.weight$/.test(name))) {
      throw typeError(`${file}: ${name}`, weights16 ? 'a tensor of dtype F32 (only the layers\' weights may be F16 or BF16)' : 'a tensor of dtype F32 (router format version 4 for F16 weights)', `${t.dtype} tensor`);
    }
    return tensorAsF32(t, `${file}: ${name}`); // widened into a copy
  };
  return {
    mean: get('feature_mean', [denseSize]),
    std: get('feature_std', [denseSize]),
    layers: sizes.slice(1).map((out, l) => ({ w: get(`layers.${l}.weight`, [out, sizes[l]]), b: get(`layers.${l}.bias`, [out]), in: sizes[l], out })),
    ...(idfSize > 0 ? { idf: get('ngram_idf', [idfSize]) } : {}),
  };
}
