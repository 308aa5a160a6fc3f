// The head of a hidden-state router: standardized features -> expert logits.
//
//   z_0 = (x - mean) / std                                   x: the pooled hidden states [F]
//   z_l = tanh(W_l z_{l-1} + b_l)        for the hidden layers (none for a linear head)
//   logits = W_L z_{L-1} + b_L                               [E]
// Weights in head.safetensors: feature_mean [F], feature_std [F], layers.<l>.weight [out, in],
// layers.<l>.bias [out] (float32).
import * as fs from 'node:fs';
import { encodeSafetensors, readSafetensors, tensorF32, TensorToWrite } from '../adapters';

export interface HeadLayer {
  /** [out, in], row-major */
  w: Float32Array;
  b: Float32Array;
  in: number;
  out: number;
}

export interface Head {
  mean: Float32Array;
  std: Float32Array;
  layers: HeadLayer[];
}

/** Layer sizes [F, hidden..., E] -> zero-initialised layers (the trainer fills them). */
export function emptyHead(sizes: readonly number[]): Head {
  const F = sizes[0];
  return {
    mean: new Float32Array(F),
    std: new Float32Array(F).fill(1),
    layers: sizes.slice(1).map((out, l) => ({ w: new Float32Array(out * sizes[l]), b: new Float32Array(out), in: sizes[l], out })),
  };
}

/** Standardized features: (x - mean) / std. */
export function standardize(head: Head, x: Float32Array): Float32Array {
  const z = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) z[i] = (x[i] - head.mean[i]) / head.std[i];
  return z;
}

/** Every layer's output for one standardized input (activations[0] = z, the last = logits). */
export function forwardLayers(head: Head, z: Float32Array): Float32Array[] {
  const acts = [z];
  head.layers.forEach((layer, l) => {
    const x = acts[acts.length - 1];
    const y = new Float32Array(layer.out);
    for (let o = 0; o < layer.out; o++) {
      let s = layer.b[o];
      const row = o * layer.in;
      for (let i = 0; i < layer.in; i++) s += layer.w[row + i] * x[i];
      y[o] = l < head.layers.length - 1 ? Math.tanh(s) : s;
    }
    acts.push(y);
  });
  return acts;
}

/** Expert logits of raw (pooled, not yet standardized) features. */
export function headLogits(head: Head, features: Float32Array): Float32Array {
  const acts = forwardLayers(head, standardize(head, features));
  return acts[acts.length - 1];
}

export function writeHead(head: Head, file: string): void {
  const f32 = (data: Float32Array, shape: number[]): TensorToWrite => ({ dtype: 'F32', shape, data });
  const tensors: Record<string, TensorToWrite> = { feature_mean: f32(head.mean, [head.mean.length]), feature_std: f32(head.std, [head.std.length]) };
  head.layers.forEach((layer, l) => {
    tensors[`layers.${l}.weight`] = f32(layer.w, [layer.out, layer.in]);
    tensors[`layers.${l}.bias`] = f32(layer.b, [layer.out]);
  });
  fs.writeFileSync(file, encodeSafetensors(tensors, { format: 'personafuse-router-head' }));
}

/** The head in `file`, checked against the layer sizes router.json declares. */
export function readHead(file: string, sizes: readonly number[]): Head {
  const st = readSafetensors(file);
  const get = (name: string, shape: number[]): Float32Array => {
    const t = st.tensors.get(name);
    if (!t) throw new Error(`${file} has no tensor ${name}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${file}: ${name} has shape ${JSON.stringify(t.shape)}, router.json's layer sizes say ${JSON.stringify(shape)}`);
    }
    return tensorF32(t, name).slice();
  };
  const F = sizes[0];
  return {
    mean: get('feature_mean', [F]),
    std: get('feature_std', [F]),
    layers: sizes.slice(1).map((out, l) => ({ w: get(`layers.${l}.weight`, [out, sizes[l]]), b: get(`layers.${l}.bias`, [out]), in: sizes[l], out })),
  };
}
