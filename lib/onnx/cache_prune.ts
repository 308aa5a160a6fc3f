// Old injected models leave the cache. Every new model file, adapter set or layout builds a new
// entry (cache.ts names it by a hash), and nothing else ever removes the old ones: a user who
// retrains adapters weekly would collect a full copy of the model each week. So whenever an entry
// is built, the entries of the same folder that no load has used for `unusedDays` are removed.
//
// An entry is the files that share one name stem:
//   <model>.persona-<hash12>.onnx          the injected model
//   <model>.persona-<hash12>.onnx.data     its weights, when written beside it
//   <model>.persona-<hash12>.onnx.used     an empty marker, its mtime set on every reuse
//   <model>.persona-<hash12>.last<N>.onnx  the runtime copy (cache.ts runtimeModel)
// (and the same with `persona-bank-`). The model files themselves are never written to on a reuse
// (an access time is not reliable, and a changed mtime would look like a rebuild); the marker is.
// An entry's last use is the newest mtime among its files. Age, not count,
// decides, so an entry another process is loading right now (touched at its load) is never removed,
// and files that are not ours (other names) are never touched.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Default age after which an unused entry goes: long enough for a model used monthly to stay. */
export const CACHE_UNUSED_DAYS = 30;

const ENTRY_FILE = /^(.+\.persona(?:-bank)?-[0-9a-f]{12})(?:\.last\d+)?\.onnx(?:\.data|\.used)?$/;
const DAY_MS = 24 * 3600 * 1000;

/** The entry stem a cache file belongs to, or null for a file that is not a cache entry's. */
export function cacheEntryStem(fileName: string): string | null {
  return ENTRY_FILE.exec(fileName)?.[1] ?? null;
}

/** Marks the entry of injected model `file` as used now (its marker); a read-only cache is left as it is. */
export function touchCacheEntry(file: string): void {
  const marker = `${file}.used`;
  const now = new Date();
  try {
    fs.closeSync(fs.openSync(marker, 'a'));
    fs.utimesSync(marker, now, now);
  } catch {
    // a cache on a read-only filesystem is never pruned by us either
  }
}

/**
 * Removes from `dir` the cache entries last used more than `unusedDays` ago, except the entry of
 * `keep` (a file of the entry just built). Returns the files removed. A file that vanishes or cannot
 * be removed meanwhile (another process pruning too, permissions) is skipped, never an error: pruning
 * is housekeeping and must not fail a load.
 */
export function pruneCache(dir: string, keep: string, unusedDays = CACHE_UNUSED_DAYS, now = Date.now()): string[] {
  if (!(unusedDays > 0) || !Number.isFinite(unusedDays)) return [];
  const keepStem = cacheEntryStem(path.basename(keep));
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  // stem -> its files and their last use
  const entries = new Map<string, { files: string[]; lastUse: number }>();
  for (const name of names) {
    const stem = cacheEntryStem(name);
    if (stem === null || stem === keepStem) continue;
    let used: number;
    try {
      used = fs.statSync(path.join(dir, name)).mtimeMs;
    } catch {
      continue;
    }
    const e = entries.get(stem) ?? { files: [], lastUse: 0 };
    e.files.push(name);
    e.lastUse = Math.max(e.lastUse, used);
    entries.set(stem, e);
  }
  const removed: string[] = [];
  for (const e of entries.values()) {
    if (now - e.lastUse <= unusedDays * DAY_MS) continue;
    for (const name of e.files) {
      try {
        fs.unlinkSync(path.join(dir, name));
        removed.push(name);
      } catch {
        // gone already, or not ours to remove
      }
    }
  }
  return removed.sort();
}
