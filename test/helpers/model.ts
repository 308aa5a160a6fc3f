// Shared pieces of the model-level tests: the tiny-llama fixture, a plain onnxruntime run of any
// decoder file (no personafuse code on the model side), and logits comparison.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { PersonaModel } from '../../lib';

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

type LoadOptions = Parameters<typeof PersonaModel.load>[0];

/**
 * The fixture's models for one test file, with the five experts, in the default configuration: `load` makes
 * one per variant and options and hands the same one out after (tests leave a model as they found
 * it); `keep` adds other models to dispose. Everything is disposed, and the cache removed, after
 * the file.
 */
export function fixtureModels(tag: string): { cacheDir: string; load(variant: string, extra?: Partial<LoadOptions>): Promise<PersonaModel>; keep(m: PersonaModel): PersonaModel } {
  const cacheDir = tempDir(tag);
  const opened: PersonaModel[] = [];
  const loaded = new Map<string, Promise<PersonaModel>>();
  const keep = (m: PersonaModel) => {
    opened.push(m);
    return m;
  };
  afterAll(async () => {
    for (const m of opened) await m.dispose();
    fs.rmSync(cacheDir, { recursive: true, force: true });
  });
  return {
    cacheDir,
    keep,
    load(variant, extra = {}) {
      const key = `${variant} ${JSON.stringify(extra)}`;
      // the default runner (generation in the worker thread), as users get it; a test that is
      // about the in-thread runner asks for { worker: false }
      if (!loaded.has(key)) loaded.set(key, PersonaModel.load({ model: path.join(FIXTURE, variant), adapters: adapterFolders(), cacheDir, ...extra }).then(keep));
      return loaded.get(key)!;
    },
  };
}

/**
 * The decoder's ordinary inputs for right-padded rows, built by hand from the fixture's config
 * (nothing of lib builds them): input_ids (pad 0), attention_mask and position_ids where the
 * model has them, and an empty cache.
 */
export function plainFeeds(session: ort.InferenceSession, rows: number[][]): Record<string, ort.Tensor> {
  const B = rows.length;
  const L = Math.max(...rows.map((r) => r.length));
  const each = (f: (r: number[], t: number) => bigint) => BigInt64Array.from(rows.flatMap((r) => Array.from({ length: L }, (_, t) => f(r, t))));
  const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', each((r, t) => BigInt(r[t] ?? 0)), [B, L]) };
  if (session.inputNames.includes('attention_mask')) feeds.attention_mask = new ort.Tensor('int64', each((r, t) => (t < r.length ? 1n : 0n)), [B, L]);
  if (session.inputNames.includes('position_ids')) feeds.position_ids = new ort.Tensor('int64', each((r, t) => BigInt(Math.min(t, r.length - 1))), [B, L]);
  const kvHeads: number = config.num_key_value_heads;
  const headDim: number = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  for (const name of session.inputNames.filter((i) => i.startsWith('past_key_values.'))) {
    feeds[name] = new ort.Tensor('float32', new Float32Array(0), [B, kvHeads, 0, headDim]);
  }
  return feeds;
}

/**
 * Last-position logits of each row, each row run alone through a plain onnxruntime session of
 * `file` (plainFeeds), so nothing of ours builds these feeds.
 */
export async function plainLastLogits(file: string, rows: number[][]): Promise<Float32Array[]> {
  const session = await ort.InferenceSession.create(file);
  const out: Float32Array[] = [];
  for (const row of rows) {
    const n = row.length;
    const res = await session.run(plainFeeds(session, [row]), ['logits']);
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
