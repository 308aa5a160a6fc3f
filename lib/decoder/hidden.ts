// A row's features for a hidden-state router: the decoder's last hidden states (what the LM head
// reads, graph output persona_hidden) over the row's tokens, pooled two ways and concatenated:
//   hidden [B, S, H] (rows right-padded; row b's tokens at [0, len_b))
//   features_b = [ mean_{t < len_b} hidden[b, t, :]  ;  hidden[b, len_b - 1, :] ]      [2H]
// The mean reads the whole turn, the last position what the causal model concluded from it.
import type * as ort from 'onnxruntime-node';

export function poolHidden(hidden: ort.Tensor, lens: readonly number[]): Float32Array[] {
  const [B, S, H] = hidden.dims.map(Number);
  if (hidden.type !== 'float32') throw new Error(`The model's hidden states are ${hidden.type}; a hidden-state router needs float32`);
  if (B !== lens.length) throw new Error(`The model returned hidden states for ${B} rows, not ${lens.length}`);
  const data = hidden.data as Float32Array;
  return lens.map((len, b) => {
    const out = new Float32Array(2 * H);
    for (let t = 0; t < len; t++) {
      const row = data.subarray((b * S + t) * H, (b * S + t + 1) * H);
      for (let i = 0; i < H; i++) out[i] += row[i];
    }
    for (let i = 0; i < H; i++) out[i] /= len;
    out.set(data.subarray((b * S + len - 1) * H, (b * S + len) * H), H);
    return out;
  });
}
