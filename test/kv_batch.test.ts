// The batch's KV cache: packing rows (their holes dropped, their tokens in order) and the width the
// model is fed under steady traffic, which must stay within a few columns of the longest live row
// however long the batch has run (issue 15: it used to grow by a column per step until the batch
// emptied).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PersonaModel } from '../lib';
import { Batcher, BatchStats } from '../lib/engine/batcher';
import { KvBatch, PastSpec } from '../lib/decoder/kv_batch';
import { adapterFolders, FIXTURE, reference } from './helpers/model';
import { seedNote, testRng } from './helpers/rng';

const SPECS: PastSpec[] = [
  { name: 'past_key_values.0.key', present: 'present.0.key', heads: 2, headDim: 3, type: 'float32' },
  { name: 'past_key_values.0.value', present: 'present.0.value', heads: 2, headDim: 3, type: 'float16' },
];

/** A batch with random holes: each row's valid columns hold (row, token index) codes. */
function holeyBatch(rng: ReturnType<typeof testRng>, B: number, T: number, base: number): { kv: KvBatch; tokens: number[][] } {
  const mask = new Uint8Array(B * T);
  const tokens: number[][] = [];
  for (let b = 0; b < B; b++) {
    const row: number[] = [];
    for (let t = 0; t < T; t++) if (rng.float() < 0.6) mask[b * T + t] = 1;
    for (let t = 0; t < T; t++) if (mask[b * T + t]) row.push(t);
    tokens.push(row);
  }
  const data = SPECS.map((s) => {
    const a = s.type === 'float16' ? new Uint16Array(B * s.heads * T * s.headDim) : new Float32Array(B * s.heads * T * s.headDim);
    for (let b = 0; b < B; b++) for (let h = 0; h < s.heads; h++) for (let t = 0; t < T; t++) for (let d = 0; d < s.headDim; d++) {
      a[((b * s.heads + h) * T + t) * s.headDim + d] = mask[b * T + t] ? (base + b) * 1000 + t * 10 + h + d / 10 : 0;
    }
    return a;
  });
  return { kv: new KvBatch(SPECS, B, T, data, mask, tokens.map((r) => r.length)), tokens };
}

describe('KvBatch.pack: rows joined, holes dropped', () => {
  test('every row keeps its own columns, in order, moved to [0, lens); width = the longest row', () => {
    const rng = testRng();
    for (let trial = 0; trial < 20; trial++) {
      const a = holeyBatch(rng, rng.int(0, 4), rng.int(1, 12), 0);
      const b = holeyBatch(rng, rng.int(1, 4), rng.int(1, 12), 10);
      const packed = KvBatch.pack([a.kv, b.kv]);
      const rows = [...a.tokens.map((t, r) => ({ t, code: r })), ...b.tokens.map((t, r) => ({ t, code: 10 + r }))];
      expect(packed.B).toBe(rows.length);
      expect(packed.T).toBe(Math.max(0, ...rows.map((r) => r.t.length)));
      rows.forEach(({ t: cols, code }, r) => {
        expect(packed.lens[r]).toBe(cols.length);
        for (let c = 0; c < packed.T; c++) expect([r, c, packed.mask[r * packed.T + c]]).toEqual([r, c, c < cols.length ? 1 : 0]);
        SPECS.forEach((s, i) => {
          for (let h = 0; h < s.heads; h++) cols.forEach((t, c) => {
            const want = code * 1000 + t * 10 + h;
            const got = packed.data[i][((r * s.heads + h) * packed.T + c) * s.headDim];
            if (Math.floor(got) !== want) throw new Error(`row ${r} column ${c} head ${h}: ${got}, want ${want} (${seedNote()})`);
          });
        });
      });
    }
  });
});

describe('KV width under steady traffic', () => {
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-kv-'));
  afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

  test('a batch that never empties for 150 requests feeds at most the longest live row + 8 columns, and its tokens equal each request alone', async () => {
    const rng = testRng();
    const model = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir });
    try {
      const session = await model.openSession();
      const parts = { session, layout: model.slotLayout, io: model.io, padId: model.padId };
      const ids = reference.sequences.flat();
      const sampling = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };
      const reqs = Array.from({ length: 150 }, () => {
        const at = rng.int(0, ids.length - 20);
        const mix = rng.float() < 0.3 ? [] : [[rng.int(0, 5), rng.uniform(0.2, 1)] as const];
        return { inputIds: ids.slice(at, at + rng.int(1, 20)), mix, maxNewTokens: rng.int(4, 30), seed: 0, sampling, eosIds: [] };
      });
      const run = (b: Batcher, r: (typeof reqs)[number]) => new Promise<number[]>((resolve, reject) => {
        const out: number[] = [];
        b.submit(r, { token: (t) => out.push(t), done: (_reason, err) => (err ? reject(new Error(err)) : resolve(out)) });
      });
      const steps: BatchStats[] = [];
      const batcher = new Batcher(parts, { maxBatch: 4, onStep: (s) => steps.push(s) });
      // closed loop: four clients, each sends its next request when the last one ends
      const got: number[][] = new Array(reqs.length);
      let next = 0;
      await Promise.all([0, 1, 2, 3].map(async () => {
        while (next < reqs.length) {
          const i = next++;
          got[i] = await run(batcher, reqs[i]);
        }
      }));
      const busy = steps.filter((s) => s.running > 0);
      const worst = Math.max(...busy.map((s) => s.kvWidth - s.longest));
      if (worst > 8) throw new Error(`the cache was ${worst} columns wider than the longest row (${seedNote()})`);
      // the run was long: without compaction the width would have grown past this many columns
      expect(busy.length).toBeGreaterThan(300);
      for (const [i, r] of reqs.entries()) {
        const alone = new Batcher(parts, { maxBatch: 1 });
        expect({ i, tokens: got[i] }).toEqual({ i, tokens: await run(alone, r) });
        await alone.close();
      }
      await batcher.close();
    } finally {
      await model.dispose();
    }
  });
});
