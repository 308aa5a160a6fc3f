// The batch's KV cache (lib/decoder/kv_cache.ts): rows join, decode and leave in buffers the engine
// owns, each row's tokens in order in its columns [0, lens), only what changed copied, and the
// width the model is fed within 2 * slack of the longest live row however long the batch runs
// (issue 15: it used to grow by a column per step until the batch emptied, and every join and
// every step copied the whole cache).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { PersonaModel } from '../lib';
import { Batcher, BatchStats, KV_SLACK, sharesCache } from '../lib/engine/batcher';
import { CacheSpec, KvArray, KvCache, NewColumns, newColumns, STORE_SHRINK } from '../lib/decoder/kv_cache';
import { adapterFolders, FIXTURE, reference } from './helpers/model';
import { seedNote, testRng } from './helpers/rng';

const SPECS: CacheSpec[] = [
  { name: 'past_key_values.0.key', present: 'present.0.key', fetch: 'persona_new.0.key', heads: 2, headDim: 3, type: 'float32' },
  { name: 'past_key_values.0.value', present: 'present.0.value', fetch: 'present.0.value', heads: 3, headDim: 2, type: 'float16' },
];

/** A token's code in head h, element d: what the cache must hold for it (exact in float16 too). */
const code = (token: number, h: number, d: number) => (token % 500) * 16 + h * 4 + d;

/** A run's output for rows of `tokens` (their new tokens), as [B, heads, columns, D] with the new ones from `from`. */
function runOutput(spec: CacheSpec, rows: number[][], columns: number, from: number): NewColumns {
  const D = spec.headDim;
  const data: KvArray = spec.type === 'float16' ? new Uint16Array(rows.length * spec.heads * columns * D) : new Float32Array(rows.length * spec.heads * columns * D);
  rows.forEach((toks, b) => toks.forEach((tok, c) => {
    for (let h = 0; h < spec.heads; h++) for (let d = 0; d < D; d++) data[((b * spec.heads + h) * columns + from + c) * D + d] = code(tok, h, d);
  }));
  return { data, columns, from };
}

/** Row b of the cache must hold `tokens` in columns [0, tokens.length), in order. */
function expectRows(kv: KvCache, rows: number[][]): void {
  if (kv.B !== rows.length) throw new Error(`${kv.B} rows, want ${rows.length} (${seedNote()})`);
  rows.forEach((toks, b) => {
    if (kv.lens[b] !== toks.length) throw new Error(`row ${b} has ${kv.lens[b]} tokens, want ${toks.length} (${seedNote()})`);
    SPECS.forEach((s, i) => {
      for (let h = 0; h < s.heads; h++) toks.forEach((tok, c) => {
        for (let d = 0; d < s.headDim; d++) {
          const got = kv.data[i][((b * s.heads + h) * kv.width + c) * s.headDim + d];
          if (got !== code(tok, h, d)) throw new Error(`row ${b} column ${c} head ${h}: ${got}, want ${code(tok, h, d)} (${seedNote()})`);
        }
      });
    });
  });
}

describe('KvCache: joins, steps and leaves', () => {
  test('random joins, steps and leaves: every row keeps its tokens in order, the width stays within 2 * slack of the longest row, the feeds mask the rest', () => {
    const rng = testRng();
    let token = 1;
    for (let trial = 0; trial < 10; trial++) {
      const slack = rng.int(1, 9);
      const kv = new KvCache(SPECS, slack);
      const rows: number[][] = [];
      for (let op = 0; op < 200; op++) {
        const r = rng.float();
        if (r < 0.15 || rows.length === 0) {
          // a prefill of 1-3 joiners, right-padded to the longest prompt, with another row before them in the run
          const lens = Array.from({ length: rng.int(1, 4) }, () => rng.int(1, 30));
          const prompts = lens.map((n) => Array.from({ length: n }, () => token++));
          const S = Math.max(...lens);
          const run = [[...Array(S)].map(() => token++), ...prompts];
          kv.join(SPECS.map((s) => runOutput(s, run, S, 0)), lens, 1);
          rows.push(...prompts);
          // a free column past the longest row: the next step writes without widening
          if (kv.width <= kv.longest) throw new Error(`a join left width ${kv.width} for a longest row of ${kv.longest} (${seedNote()})`);
        } else if (r < 0.3) {
          const b = rng.int(0, rows.length);
          kv.removeRow(b);
          rows[b] = rows[rows.length - 1];
          rows.pop();
        } else {
          // a decode step: one new column per row; the second past input reads it out of present (from = width)
          const width = kv.width;
          const fresh = rows.map(() => [token++]);
          kv.append(SPECS.map((s, i) => (i === 0 ? runOutput(s, fresh, 1, 0) : runOutput(s, fresh, width + 1, width))));
          rows.forEach((row, b) => row.push(fresh[b][0]));
        }
        expectRows(kv, rows);
        const longest = Math.max(0, ...rows.map((x) => x.length));
        if (kv.width < longest || kv.width > longest + 2 * slack) throw new Error(`width ${kv.width} for a longest row of ${longest}, slack ${slack} (${seedNote()})`);
        if (rows.length === 0) continue;
        const feeds = kv.stepFeeds(['input_ids', 'attention_mask', 'position_ids', ...SPECS.map((s) => s.name)]);
        const dims = feeds['past_key_values.0.key'].dims.join(',');
        if (dims !== `${rows.length},2,${kv.width},3`) throw new Error(`past dims ${dims} (${seedNote()})`);
        const mask = feeds.attention_mask.data as BigInt64Array;
        const positions = feeds.position_ids.data as BigInt64Array;
        rows.forEach((row, b) => {
          if (positions[b] !== BigInt(row.length)) throw new Error(`row ${b} position ${positions[b]}, want ${row.length} (${seedNote()})`);
          for (let t = 0; t <= kv.width; t++) {
            const want = t < row.length || t === kv.width ? 1n : 0n;
            if (mask[b * (kv.width + 1) + t] !== want) throw new Error(`row ${b} mask column ${t}: ${mask[b * (kv.width + 1) + t]}, want ${want} (${seedNote()})`);
          }
        });
      }
    }
  });

  test('a join within the capacity writes the joiner\'s columns only: the rows already there and the buffers stay as they were', () => {
    const kv = new KvCache(SPECS, 8);
    kv.join(SPECS.map((s) => runOutput(s, [[1, 2, 3], [4, 5, 6]], 3, 0)), [3, 3]);
    kv.removeRow(1);
    const before = kv.data.map((d) => d);
    const copies = kv.data.map((d) => d.slice());
    kv.join(SPECS.map((s) => runOutput(s, [[7, 8]], 2, 0)), [2]);
    kv.data.forEach((d, i) => {
      expect(d).toBe(before[i]);
      const rowSize = SPECS[i].heads * kv.width * SPECS[i].headDim;
      expect(d.subarray(0, rowSize)).toEqual(copies[i].subarray(0, rowSize));
    });
    expectRows(kv, [[1, 2, 3], [7, 8]]);
  });

  test('steps copy the whole cache at most once per slack columns', () => {
    const slack = 8;
    const kv = new KvCache(SPECS, slack);
    kv.join(SPECS.map((s) => runOutput(s, [[1], [2], [3]], 1, 0)), [1, 1, 1]);
    let buffers = kv.data[0];
    let copies = 0;
    for (let step = 0; step < 100; step++) {
      kv.append(SPECS.map((s) => runOutput(s, [[10], [11], [12]], 1, 0)));
      if (kv.data[0] !== buffers) copies++;
      buffers = kv.data[0];
    }
    expect(copies).toBeLessThanOrEqual(Math.ceil(100 / slack));
    expect(kv.width - kv.longest).toBeLessThanOrEqual(slack);
  });

  test('the row capacity doubles for joiners but never past maxRows', () => {
    const kv = new KvCache(SPECS, 4, 5);
    const join = (n: number) => kv.join(SPECS.map((s) => runOutput(s, Array.from({ length: n }, (_, r) => [r + 1]), 1, 0)), Array(n).fill(1));
    join(3);
    const rowsOf = () => kv.data[0].length / (SPECS[0].heads * kv.width * SPECS[0].headDim);
    expect(rowsOf()).toBe(3);
    join(1);
    expect(rowsOf()).toBe(5);
    join(1);
    expect(rowsOf()).toBe(5);
    expectRows(kv, [[1], [2], [3], [1], [1]]);
  });

  test('slack 0 keeps the width at the longest row exactly (models that count positions from the column)', () => {
    const kv = new KvCache(SPECS, 0);
    kv.join(SPECS.map((s) => runOutput(s, [[9, 9], [1, 2, 3]], 3, 0)), [3], 1);
    expect(kv.width).toBe(3);
    for (let step = 0; step < 5; step++) {
      kv.append(SPECS.map((s) => runOutput(s, [[4 + step]], 1, 0)));
      expect(kv.width).toBe(4 + step);
    }
    expectRows(kv, [[1, 2, 3, 4, 5, 6, 7, 8]]);
    kv.removeRow(0);
    expect(kv.width).toBe(0);
  });
});

describe('KvCache stores: a resize reuses memory instead of allocating', () => {
  // Each resize used to allocate fresh buffers; under steady traffic that was ~40 MB/s per worker
  // and three full garbage collections a second per worker. Now a resize copies into a spare store.
  const steady = (kv: KvCache, rng: ReturnType<typeof testRng>, ops: number, rows: number[][], maxLen: number, next: { token: number }) => {
    for (let op = 0; op < ops; op++) {
      const r = rng.float();
      if (rows.length < 8 && (r < 0.2 || rows.length === 0)) {
        const n = rng.int(maxLen / 2, maxLen);
        const prompt = Array.from({ length: n }, () => next.token++);
        kv.join(SPECS.map((s) => runOutput(s, [prompt], n, 0)), [n]);
        rows.push(prompt);
      } else if (r < 0.35 || rows.some((x) => x.length >= 1.5 * maxLen)) {
        // a row leaves (the longest once it reached its budget, as a request does)
        const longest = rows.reduce((m, x, b) => (x.length > rows[m].length ? b : m), 0);
        const b = rows[longest].length >= 1.5 * maxLen ? longest : rng.int(0, rows.length);
        kv.removeRow(b);
        rows[b] = rows[rows.length - 1];
        rows.pop();
      } else {
        const fresh = rows.map(() => [next.token++]);
        kv.append(SPECS.map((s) => runOutput(s, fresh, 1, 0)));
        rows.forEach((row, b) => row.push(fresh[b][0]));
      }
    }
  };

  test('steady traffic (random joins, steps, leaves) allocates at most one new store after warm-up, and every row keeps its tokens', () => {
    const rng = testRng();
    const kv = new KvCache(SPECS, 8, 8);
    const rows: number[][] = [];
    const next = { token: 1 };
    steady(kv, rng, 1000, rows, 40, next); // warm-up: the stores grow towards the sizes this traffic needs
    const stores = SPECS.map(() => new Set<ArrayBufferLike>());
    let resizes = 0;
    let last = kv.data[0];
    for (let op = 0; op < 2000; op++) {
      steady(kv, rng, 1, rows, 40, next);
      if (kv.data[0] !== last) resizes++;
      last = kv.data[0];
      kv.data.forEach((d, i) => stores[i].add(d.buffer));
      expectRows(kv, rows);
    }
    // the cache changed size many times (its width between 20 + 1 and 1.5 * 40 + 2 * slack columns,
    // less than STORE_SHRINK apart), and the sizes lay in two or three stores where each resize used to allocate
    expect(resizes).toBeGreaterThan(50);
    // (a size past both stores' capacities can still appear first after the warm-up: one more store)
    stores.forEach((set, i) => { if (set.size > 3) throw new Error(`input ${i}: ${set.size} stores over ${resizes} resizes (${seedNote()})`); });
  });

  test('a store far larger than the batch needs is released at the next resize: memory goes back once a wide batch narrows', () => {
    const long = Array.from({ length: 400 }, (_, i) => i + 1);
    const joinRows = (kv: KvCache, rows: number[][]) => {
      const S = Math.max(...rows.map((r) => r.length));
      kv.join(SPECS.map((s) => runOutput(s, rows, S, 0)), rows.map((r) => r.length));
    };

    // (a) the batch empties: its wide store becomes the spare, and the next join replaces it
    const a = new KvCache(SPECS, 8, 8);
    joinRows(a, [long, long, long, long]);
    const wide = a.heldBytes;
    for (let b = 3; b >= 0; b--) a.removeRow(b);
    joinRows(a, [[1, 2, 3]]);
    expect(a.heldBytes * STORE_SHRINK).toBeLessThan(wide);
    expectRows(a, [[1, 2, 3]]);

    // (b) the batch narrows without emptying: the narrowing resize moves into a small store, and the
    // one after it (the short row growing past the edge) drops the wide one it left as the spare
    const b = new KvCache(SPECS, 8, 8);
    joinRows(b, [long, [7, 8, 9]]);
    const wideB = b.heldBytes;
    b.removeRow(0);
    expect(b.heldBytes).toBeGreaterThan(wideB / 2); // the wide store is still the spare
    const rows = [[7, 8, 9]];
    const narrowed = b.width;
    while (b.width === narrowed) {
      b.append(SPECS.map((s) => runOutput(s, [[rows[0].length]], 1, 0)));
      rows[0].push(rows[0].length);
    }
    expect(b.heldBytes * STORE_SHRINK).toBeLessThan(wideB);
    expectRows(b, rows);
  });
});

describe('sharesCache: which models decode their rows in one cache', () => {
  // a shared cache feeds columns past a row's length (other rows', or an earlier size's): only
  // attention_mask gives them weight 0, and only position_ids keeps positions off the column index
  const past = ['past_key_values.0.key', 'past_key_values.0.value'];
  test.each([
    [['input_ids', 'attention_mask', 'position_ids', ...past], true],
    [['input_ids', 'position_ids', ...past], false],
    [['input_ids', 'attention_mask', ...past], false],
  ])('inputs %j -> %s', (inputs, shared) => {
    expect(sharesCache(inputs)).toBe(shared);
  });
});

describe('newColumns: where a run put the columns it added', () => {
  const out = (name: string, dims: number[], data: ArrayBufferView) => ({ [name]: { dims, data } }) as unknown as Parameters<typeof newColumns>[1];

  test('persona_new.* from column 0, present.* from the past\'s width; float16 stays bits whatever view onnxruntime gives', () => {
    const [key, value] = SPECS;
    // a 2-byte view that is not a Uint16Array (a Float16Array where the runtime has one): its bits must come through
    const bits = new Int16Array([-1, 2, -3, 4, 5, 6, 7, 8, 9, 10, 11, 12].concat(Array(2 * 3 * 4 * 2 - 12).fill(0)));
    const [k] = newColumns([key], out('persona_new.0.key', [2, 2, 1, 3], new Float32Array(12)), 7, 1);
    expect({ columns: k.columns, from: k.from }).toEqual({ columns: 1, from: 0 });
    const [v] = newColumns([value], out('present.0.value', [2, 3, 4, 2], bits), 3, 1);
    expect({ columns: v.columns, from: v.from }).toEqual({ columns: 4, from: 3 });
    expect(v.data).toBeInstanceOf(Uint16Array);
    expect(Array.from(v.data.subarray(0, 4))).toEqual([65535, 2, 65533, 4]);
  });

  test('an output of the wrong width is refused by name (it would be read out of bounds)', () => {
    expect(() => newColumns([SPECS[1]], out('present.0.value', [1, 3, 2, 2], new Uint16Array(12)), 3, 1)).toThrow(/present\.0\.value has dims \[1, 3, 2, 2\]; expected 4 columns/);
    expect(() => newColumns([SPECS[0]], out('persona_new.0.key', [1, 2, 5, 3], new Float32Array(30)), 3, 1)).toThrow(/persona_new\.0\.key .* expected 1 columns/);
  });
});

describe('KV width under steady traffic'
, () => {
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-kv-'));
  afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

  test('a batch that never empties for 150 requests feeds at most the longest live row + 2 * KV_SLACK columns, and its tokens equal each request alone', async () => {
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
      // the batch fetches the new columns alone, never the whole cache
      const fetched = new Set<string>();
      const spied = { ...parts, session: withOutputNames(session, session.outputNames, (fetches) => fetches.forEach((f) => fetched.add(f))) };
      const batcher = new Batcher(spied, { maxBatch: 4, onStep: (s) => steps.push(s) });
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
      // stats' longest counts the token just sampled, which the cache gets at the next step
      const worst = Math.max(...busy.map((s) => s.kvWidth - (s.longest - 1)));
      if (worst > 2 * KV_SLACK) throw new Error(`the cache was ${worst} columns wider than the longest row (${seedNote()})`);
      // the run was long: without compaction the width would have grown past this many columns
      expect(busy.length).toBeGreaterThan(300);
      expect([...fetched].sort()).toEqual(['logits', ...session.outputNames.filter((n) => n.startsWith('persona_new.'))].sort());
      expect(fetched.size).toBeGreaterThan(1);
      // alone, the new columns are read out of present.* (a model without persona_new outputs)
      const withoutNewKv = { ...parts, session: withOutputNames(session, session.outputNames.filter((n) => !n.startsWith('persona_new.'))) };
      for (const [i, r] of reqs.entries()) {
        const alone = new Batcher(withoutNewKv, { maxBatch: 1 });
        expect({ i, tokens: got[i] }).toEqual({ i, tokens: await run(alone, r) });
        await alone.close();
      }
      await batcher.close();
    } finally {
      await model.dispose();
    }
  });
});

/** The session with the given outputs listed (a model without persona_new.* when they are left out), each run's fetches reported. */
function withOutputNames(session: ort.InferenceSession, outputNames: readonly string[], onRun?: (fetches: string[]) => void): ort.InferenceSession {
  return new Proxy(session, {
    get: (target, key) => {
      if (key === 'outputNames') return outputNames;
      if (key === 'run') {
        return (feeds: ort.InferenceSession.FeedsType, fetches: string[]) => {
          onRun?.(fetches);
          return target.run(feeds, fetches);
        };
      }
      const value = Reflect.get(target, key) as unknown;
      return value instanceof Function ? value.bind(target) : value;
    },
  });
}
