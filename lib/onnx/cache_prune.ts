// Old injected models leave the cache. Every new model file, adapter set or layout builds a new
// entry (cache.ts names it by a hash), and nothing else ever removes the old ones: a user who
// retrains adapters weekly would collect a full copy of the model each week. So whenever an entry
// is built, the entries of the same folder that no process has used for `unusedDays` are removed.
//
// An entry is the files that share one name stem:
//   <model>.persona-<hash12>.onnx          the injected model
//   <model>.persona-<hash12>.onnx.data     its weights, when written beside it
//   <model>.persona-<hash12>.last<N>.onnx  the runtime copy (cache.ts runtimeModel)
//   <model>.persona-<hash12>.onnx.used     an empty marker: its mtime is the entry's last use
// (and the same with `persona-bank-`). The model files themselves are never written to on a use (an
// access time is not reliable, and a changed mtime would look like a rebuild); the marker is, by
// every load, every session opened on the files, and twice a day while a loaded model is alive
// (persona_model.ts). An entry's last use is the newest mtime among its files.
//
// Age decides, not a count, so an entry some live process uses is never removed. Files that are not
// ours (other names) are never touched; nor is the entry being built, nor the model it is built from.
// A write interrupted before its rename leaves `<file>.tmp-<pid>` (write.ts): removed once a day old
// and its process gone.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Default age after which an unused entry goes: long enough for a model used monthly to stay. */
export const CACHE_UNUSED_DAYS = 30;

const STEM = String.raw`(.+\.persona(?:-bank)?-[0-9a-f]{12})`;
const ENTRY_FILE = new RegExp(String.raw`^${STEM}(?:\.last\d+)?\.onnx(?:\.data|\.used)?$`);
const TEMP_FILE = new RegExp(String.raw`^${STEM}(?:\.last\d+)?\.onnx(?:\.data)?\.tmp-(\d+)$`);
const DAY_MS = 24 * 3600 * 1000;

/** The entry stem a cache file belongs to, or null for a file that is not a cache entry's. */
export function cacheEntryStem(fileName: string): string | null {
  return ENTRY_FILE.exec(fileName)?.[1] ?? null;
}

/** The marker file of the entry whose injected model is `file`. */
export function cacheMarker(file: string): string {
  return `${file}.used`;
}

/**
 * Marks the entry of injected model `file` as used now. Setting a file's times needs its owner on
 * Linux, so in a cache folder shared by several users a fresh marker is renamed over the old one
 * (which needs only the folder to be writable). A read-only cache is left as it is: nothing can
 * prune it either.
 */
export function touchCacheEntry(file: string): void {
  const marker = cacheMarker(file);
  const now = new Date();
  try {
    fs.utimesSync(marker, now, now);
    return;
  } catch {
    // missing, or another user's
  }
  const tmp = `${marker}.${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    fs.writeFileSync(tmp, '');
    fs.renameSync(tmp, marker);
  } catch {
    fs.rmSync(tmp, { force: true });
  }
}

/** Deletion order within an entry: the injected model first, so an entry half-removed (another
 *  process using a file, a crash) is one a later load sees as absent and rebuilds; the marker last. */
function deletionRank(name: string): number {
  if (name.endsWith('.used')) return 3;
  if (name.endsWith('.data')) return 2;
  return /\.last\d+\.onnx$/.test(name) ? 1 : 0;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

function lastUse(dir: string, names: string[]): number {
  let newest = -Infinity;
  for (const name of names) {
    try {
      newest = Math.max(newest, fs.statSync(path.join(dir, name)).mtimeMs);
    } catch {
      // removed meanwhile
    }
  }
  return newest;
}

/**
 * Removes from `dir` the cache entries last used more than `unusedDays` ago, except the entries the
 * `keep` files belong to (the entry just built, the model it was built from), and the temporary files
 * of interrupted writes once a day old and their process gone. Returns the files removed. A file
 * that vanishes or cannot be removed meanwhile (another process pruning too, permissions) is skipped,
 * never an error: pruning is housekeeping and must not fail a load.
 */
export function pruneCache(dir: string, keep: string[], unusedDays = CACHE_UNUSED_DAYS, now = Date.now()): string[] {
  if (!(unusedDays > 0) || !Number.isFinite(unusedDays)) return [];
  const kept = new Set(keep.map((f) => cacheEntryStem(path.basename(f))).filter((s) => s !== null));
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const entries = new Map<string, string[]>();
  const temps: { name: string; pid: number }[] = [];
  for (const name of names) {
    const temp = TEMP_FILE.exec(name);
    if (temp) {
      temps.push({ name, pid: Number(temp[2]) });
      continue;
    }
    const stem = cacheEntryStem(name);
    if (stem === null || kept.has(stem)) continue;
    entries.set(stem, [...(entries.get(stem) ?? []), name]);
  }
  const removed: string[] = [];
  const remove = (name: string): void => {
    try {
      fs.unlinkSync(path.join(dir, name));
      removed.push(name);
    } catch {
      // gone already, or not ours to remove
    }
  };
  for (const files of entries.values()) {
    // stat each entry just before deleting it (not in a pass before), so a load that marked it
    // meanwhile keeps it
    if (now - lastUse(dir, files) <= unusedDays * DAY_MS) continue;
    for (const name of [...files].sort((a, b) => deletionRank(a) - deletionRank(b))) remove(name);
  }
  for (const t of temps) {
    if (now - lastUse(dir, [t.name]) > DAY_MS && !processAlive(t.pid)) remove(t.name);
  }
  return removed.sort();
}
