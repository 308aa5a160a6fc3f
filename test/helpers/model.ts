// Shared pieces of the model-level tests: the tiny-llama fixture, a plain onnxruntime run of any
// decoder file (no personafuse code on the model side), and logits comparison.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';

export const FIXTURE = path.join(__dirname, '..', 'fixtures', 'tiny-llama');
export const VARIANTS = ['onnx-dynamo', 'onnx-legacy', 'onnx-legacy-nocache', 'onnx-legacy-no-position-ids'] as const;

export interface ReferenceCase {
  name: string;
  mix: Record<string, number>;
  last_logits: number[][];
}
export interface Reference {
  experts: string[];
  sequences: number[][];
  cases: ReferenceCase[];
}

export const reference: Reference = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'reference_logits.json'), 'utf8'));
const config = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'config.json'), 'utf8'));

export function adapterFolders(names: readonly string[] = reference.experts): Record<string, string> {
  return Object.fromEntries(names.map((n) => [n, path.join(FIXTURE, 'adapters', n)]));
}

export function tempDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `pf-${tag}-`));
}

/**
 * Last-position logits of each row, each row run alone through a plain onnxruntime session of
 * `file` (the fixture's config gives the cache shapes), so nothing of ours builds these feeds.
 */
export async function plainLastLogits(file: string, rows: number[][]): Promise<Float32Array[]> {
  const session = await ort.InferenceSession.create(file);
  const kvHeads: number = config.num_key_value_heads;
  const headDim: number = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  const out: Float32Array[] = [];
  for (const row of rows) {
    const n = row.length;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(row.map(BigInt)), [1, n]),
    };
    if (session.inputNames.includes('attention_mask')) feeds.attention_mask = new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]);
    if (session.inputNames.includes('position_ids')) {
      feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from(row.map((_, i) => BigInt(i))), [1, n]);
    }
    for (const name of session.inputNames.filter((i) => i.startsWith('past_key_values.'))) {
      feeds[name] = new ort.Tensor('float32', new Float32Array(0), [1, kvHeads, 0, headDim]);
    }
    const res = await session.run(feeds, ['logits']);
    const data = res.logits.data as Float32Array;
    const V = Number(res.logits.dims[2]);
    out.push(data.slice((n - 1) * V, n * V));
  }
  await session.release();
  return out;
}

/** max |got - want| / max |want|: the relative error of a logits row as a whole. */
export function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return Number.isNaN(diff) ? Infinity : diff / scale;
}

/** The largest relError over rows. */
export function worstRelError(got: ArrayLike<number>[], want: ArrayLike<number>[]): number {
  if (got.length !== want.length) return Infinity;
  return got.reduce((m, g, i) => Math.max(m, relError(g, want[i])), 0);
}
