// Old injected models leave the cache (lib/onnx/cache_prune.ts): an entry unused for the set
// number of days goes when another entry is built; entries in use, and files that are not ours, stay.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PersonaModel } from '../lib';
import { loadPeftAdapter } from '../lib/adapters';
import { injectedModel } from '../lib/onnx/cache';
import { cacheEntryStem, cacheMarker, pruneCache } from '../lib/onnx/cache_prune';
import { adapterFolders, FIXTURE, tempDir, VARIANTS } from './helpers/model';

const DAY_S = 24 * 3600;
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function freshDir(): string {
  const d = tempDir('cache-prune');
  dirs.push(d);
  return d;
}

/** Writes the named files into dir, each `daysAgo` old. */
function plant(dir: string, daysAgo: number, ...names: string[]): void {
  const t = Date.now() / 1000 - daysAgo * DAY_S;
  for (const n of names) {
    fs.writeFileSync(path.join(dir, n), 'x');
    fs.utimesSync(path.join(dir, n), t, t);
  }
}

describe('cacheEntryStem', () => {
  test('groups an entry\'s model, weights, marker and runtime copies under one stem, per-row and bank forms', () => {
    for (const f of ['model.persona-0123456789ab.onnx', 'model.persona-0123456789ab.onnx.data', 'model.persona-0123456789ab.onnx.used',
      'model.persona-0123456789ab.last4.onnx', 'model.persona-0123456789ab.last2.onnx']) {
      expect(cacheEntryStem(f)).toBe('model.persona-0123456789ab');
    }
    expect(cacheEntryStem('decoder.persona-bank-fedcba987654.last4.onnx')).toBe('decoder.persona-bank-fedcba987654');
  });

  test('is null for every file that is not a cache entry\'s', () => {
    for (const f of ['model.onnx', 'model.onnx.data', 'model.onnx_data', 'tokenizer.json', 'model.persona-xyz.onnx',
      'model.persona-0123456789a.onnx', 'model.persona-0123456789ab.onnx.bak', 'notes.persona-0123456789ab.txt']) {
      expect(cacheEntryStem(f)).toBeNull();
    }
  });
});

describe('pruneCache', () => {
  test('removes every file of the entries unused for longer than the limit, and nothing else', () => {
    const dir = freshDir();
    const old = ['m.persona-aaaaaaaaaaaa.onnx', 'm.persona-aaaaaaaaaaaa.onnx.data', 'm.persona-aaaaaaaaaaaa.last4.onnx'];
    plant(dir, 40, ...old);
    plant(dir, 40, 'm.persona-bbbbbbbbbbbb.onnx', 'm.persona-bbbbbbbbbbbb.last4.onnx');
    plant(dir, 2, 'm.persona-bbbbbbbbbbbb.onnx.used'); // built long ago, reused two days ago
    plant(dir, 29, 'm.persona-cccccccccccc.onnx'); // inside the limit
    plant(dir, 90, 'm.persona-dddddddddddd.onnx'); // the entry being built: kept whatever its age
    plant(dir, 400, 'model.onnx', 'model.onnx.data', 'tokenizer.json'); // not ours
    const removed = pruneCache(dir, [path.join(dir, 'm.persona-dddddddddddd.onnx')], 30);
    expect(removed).toEqual([...old].sort());
    expect(fs.readdirSync(dir).sort()).toEqual([
      'm.persona-bbbbbbbbbbbb.last4.onnx', 'm.persona-bbbbbbbbbbbb.onnx', 'm.persona-bbbbbbbbbbbb.onnx.used',
      'm.persona-cccccccccccc.onnx', 'm.persona-dddddddddddd.onnx', 'model.onnx', 'model.onnx.data', 'tokenizer.json',
    ]);
  });

  test('an infinite, zero or NaN limit keeps everything, and a missing folder is no error', () => {
    const dir = freshDir();
    plant(dir, 4000, 'm.persona-aaaaaaaaaaaa.onnx');
    for (const days of [Infinity, 0, NaN, -1]) expect(pruneCache(dir, [path.join(dir, 'x.onnx')], days)).toEqual([]);
    expect(fs.readdirSync(dir)).toEqual(['m.persona-aaaaaaaaaaaa.onnx']);
    expect(pruneCache(path.join(dir, 'missing'), ['x.onnx'], 1)).toEqual([]);
  });

  test('every file named to keep keeps its entry (the entry built, and the model it was built from)', () => {
    const dir = freshDir();
    plant(dir, 90, 'm.persona-aaaaaaaaaaaa.onnx', 'm.persona-aaaaaaaaaaaa.onnx.data', 'm.persona-bbbbbbbbbbbb.last4.onnx');
    expect(pruneCache(dir, [path.join(dir, 'm.persona-aaaaaaaaaaaa.onnx'), path.join(dir, 'm.persona-bbbbbbbbbbbb.onnx')], 30)).toEqual([]);
  });

  test('an interrupted write\'s temporary files go once a day old and their process gone; a live process\'s stay', () => {
    const dir = freshDir();
    const dead = 2 ** 22 + 12345; // above Linux's pid_max default: no such process
    const mine = process.pid;
    plant(dir, 2, `m.persona-aaaaaaaaaaaa.onnx.tmp-${dead}`, `m.persona-aaaaaaaaaaaa.onnx.data.tmp-${dead}`, `m.persona-bbbbbbbbbbbb.onnx.tmp-${mine}`);
    plant(dir, 0.5, `m.persona-cccccccccccc.onnx.data.tmp-${dead}`);
    expect(pruneCache(dir, [], 30)).toEqual([`m.persona-aaaaaaaaaaaa.onnx.data.tmp-${dead}`, `m.persona-aaaaaaaaaaaa.onnx.tmp-${dead}`]);
    expect(fs.readdirSync(dir).sort()).toEqual([`m.persona-bbbbbbbbbbbb.onnx.tmp-${mine}`, `m.persona-cccccccccccc.onnx.data.tmp-${dead}`]);
  });
});

describe('injectedModel and the cache\'s age limit', () => {
  const adapters = Object.entries(adapterFolders()).map(([name, dir]) => loadPeftAdapter(dir, name));
  const source = path.join(FIXTURE, 'onnx-legacy', 'model.onnx');

  test('a build removes a stale entry of the same folder; a reuse marks its entry used without rewriting it', () => {
    const dir = freshDir();
    plant(dir, 45, 'model.persona-0123456789ab.onnx', 'model.persona-0123456789ab.onnx.data');
    const built = injectedModel(source, adapters, { cacheDir: dir });
    expect(built.reused).toBe(false);
    expect(fs.existsSync(path.join(dir, 'model.persona-0123456789ab.onnx'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'model.persona-0123456789ab.onnx.data'))).toBe(false);

    // age every file of the new entry past the limit, then reuse it: the marker is new, the model file untouched
    const t = Date.now() / 1000 - 60 * DAY_S;
    const stem = path.basename(built.file, '.onnx');
    const own = fs.readdirSync(dir).filter((f) => f.startsWith(stem));
    expect(own).toContain(path.basename(built.file));
    for (const f of own) fs.utimesSync(path.join(dir, f), t, t);
    const mtime = fs.statSync(built.file).mtimeMs;
    const again = injectedModel(source, adapters, { cacheDir: dir });
    expect(again).toMatchObject({ file: built.file, reused: true });
    expect(fs.statSync(built.file).mtimeMs).toBe(mtime);
    expect(Date.now() - fs.statSync(`${built.file}.used`).mtimeMs).toBeLessThan(60_000);

    // so another entry's build (another model) leaves it in place
    const variant = VARIANTS.find((v) => v !== 'onnx-legacy')!;
    const other = injectedModel(path.join(FIXTURE, variant, 'model.onnx'), adapters, { cacheDir: dir });
    expect(other.file).not.toBe(built.file);
    expect(fs.existsSync(built.file)).toBe(true);
  });

  test('an entry missing its weights file (half-pruned, half-copied) is built again, not reused', () => {
    const dir = freshDir();
    const built = injectedModel(source, adapters, { cacheDir: dir });
    const data = `${built.file}.data`;
    expect(fs.existsSync(data)).toBe(true);
    fs.rmSync(data);
    const again = injectedModel(source, adapters, { cacheDir: dir });
    expect(again).toMatchObject({ file: built.file, reused: false });
    expect(fs.existsSync(data)).toBe(true);
    fs.writeFileSync(built.file, 'not a model');
    expect(injectedModel(source, adapters, { cacheDir: dir }).reused).toBe(false);
    expect(injectedModel(source, adapters, { cacheDir: dir }).reused).toBe(true);
  });

  test('pruneUnusedDays: Infinity keeps a stale entry', () => {
    const dir = freshDir();
    plant(dir, 4000, 'model.persona-0123456789ab.onnx');
    injectedModel(source, adapters, { cacheDir: dir, pruneUnusedDays: Infinity });
    expect(fs.existsSync(path.join(dir, 'model.persona-0123456789ab.onnx'))).toBe(true);
  });
});

describe('PersonaModel and the cache\'s age limit', () => {
  test('opening a session marks the entry used, so an entry loaded long ago is not pruned from under a session opened later', async () => {
    const dir = freshDir();
    const model = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir: dir });
    try {
      const t = Date.now() / 1000 - 60 * DAY_S;
      fs.utimesSync(cacheMarker(model.injectedFile), t, t);
      await model.openSession();
      expect(Date.now() - fs.statSync(cacheMarker(model.injectedFile)).mtimeMs).toBeLessThan(60_000);
    } finally {
      await model.dispose();
    }
  });

  test('pruneUnusedDays must be a number of days >= 0, refused by name', async () => {
    for (const bad of [-1, NaN, '30']) {
      await expect(PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), pruneUnusedDays: bad as number }))
        .rejects.toThrow(/pruneUnusedDays/);
    }
  });
});
