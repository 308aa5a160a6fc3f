// The decoder's ordinary inputs for one batch of token rows of different lengths.
//
// Rows are right-padded: with causal attention a real token never attends to the padding after
// it, so every row's logits equal those of the row run alone — also for exports that compute
// positions themselves (no position_ids input), where left padding would shift them.
//   input_ids      [B, L] int64, pad = padId
//   attention_mask [B, L] int64, 1 on real tokens
//   position_ids   [B, L] int64, 0..len-1 then repeated len-1 on the padding
//   past_key_values.N.key/value  [B, heads, 0, head_dim]   (empty cache)
//   persona_last_index [B, 1] int64, len-1: the position whose logits are wanted (runtime graphs)
import * as ort from 'onnxruntime-node';
import { rangeError, typeError } from '../errors';
import { LAST_INDEX_INPUT } from '../onnx/last_logits';

export interface DecoderIO {
  inputNames: readonly string[];
  /** dims of the past inputs from the model: [heads, headDim] and element type */
  past: { name: string; heads: number; headDim: number; type: 'float32' | 'float16' }[];
}

export function checkRows(inputIds: unknown, arg = 'inputIds', vocab: number | null = null): number[][] {
  if (!Array.isArray(inputIds) || inputIds.length === 0) throw typeError(arg, 'a non-empty array of token id arrays', inputIds);
  return inputIds.map((row, i) => {
    if (!Array.isArray(row) && !ArrayBuffer.isView(row)) throw typeError(`${arg}[${i}]`, 'an array of token ids', row);
    const r = Array.from(row as ArrayLike<number>);
    if (r.length === 0) throw rangeError(`${arg}[${i}]`, 'at least one token', 'an empty row');
    r.forEach((t, j) => {
      if (!Number.isInteger(t) || t < 0) throw rangeError(`${arg}[${i}][${j}]`, 'a non-negative integer token id', String(t));
      if (vocab !== null && t >= vocab) throw rangeError(`${arg}[${i}][${j}]`, `a token id below the vocabulary size ${vocab}`, String(t));
    });
    return r;
  });
}

export function decoderFeeds(io: DecoderIO, rows: number[][], padId: number): Record<string, ort.Tensor> {
  const B = rows.length;
  const L = rows.reduce((m, r) => Math.max(m, r.length), 0);
  const ids = new BigInt64Array(B * L).fill(BigInt(padId));
  const mask = new BigInt64Array(B * L);
  const pos = new BigInt64Array(B * L);
  rows.forEach((r, b) => {
    for (let t = 0; t < L; t++) {
      if (t < r.length) {
        ids[b * L + t] = BigInt(r[t]);
        mask[b * L + t] = 1n;
      }
      pos[b * L + t] = BigInt(Math.min(t, r.length - 1));
    }
  });
  const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', ids, [B, L]) };
  if (io.inputNames.includes('attention_mask')) feeds.attention_mask = new ort.Tensor('int64', mask, [B, L]);
  if (io.inputNames.includes('position_ids')) feeds.position_ids = new ort.Tensor('int64', pos, [B, L]);
  if (io.inputNames.includes(LAST_INDEX_INPUT)) {
    feeds[LAST_INDEX_INPUT] = new ort.Tensor('int64', BigInt64Array.from(rows, (r) => BigInt(r.length - 1)), [B, 1]);
  }
  for (const p of io.past) {
    const data = p.type === 'float16' ? new Uint16Array(0) : new Float32Array(0);
    feeds[p.name] = new ort.Tensor(p.type, data, [B, p.heads, 0, p.headDim]);
  }
  return feeds;
}
