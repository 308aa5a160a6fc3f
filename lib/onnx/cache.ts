// The injected model, built once: its file name carries a hash of the source model (path, size,
// mtime) and of the injection plan, so a changed model or adapter set builds a new file and an
// unchanged one is reused as is. Beside it, the runtime copy the sessions run (runtimeModel).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CACHE_UNUSED_DAYS, pruneCache, touchCacheEntry } from './cache_prune';
import { BankSource, injectLora, Injection, peftModulesOf } from './inject';
import { shareKvHeads } from './grouped_attention';
import { keepLastLogits } from './last_logits';
import { exposeNewKv } from './new_kv';
import { cloneModel, metadataEntry, ModelProto, readModel } from './proto';
import { findLinearTargets, LinearTarget, summarizeTargets } from './targets';
import { Progress, writeModel } from './write';

/** What the injector needs to know of an adapter: the modules it adapts and their shapes. */
export interface AdaptedModule {
  layer: number | null;
  module: string;
  din: number;
  dout: number;
}
export interface AdapterShape {
  name: string;
  modules: Map<string, AdaptedModule>;
  /** the modules the adapter's config asks for (PEFT target_modules): one must be in the model */
  targets?: TargetSelection;
}

/** A module selection rule (PEFT target_modules) and how to name it in errors. */
export interface TargetSelection {
  /** false when the config names no targets (nothing to check) */
  given: boolean;
  description: string;
  selects(m: { path: string; layer: number | null }): boolean;
}

export interface InjectedModel {
  file: string;
  model: ModelProto;
  injection: Injection;
  reused: boolean;
}

const INJECT_VERSION = 2;
const RUNTIME_VERSION = 4;
const SITES_KEY = 'personafuse.injection';

function siteKey(layer: number | null, module: string): string {
  return `${layer ?? '-'}:${module}`;
}

/** For each target, the PEFT modules adapted on it with their widths; errors for adapters that match nothing. */
export function planInjection(targets: LinearTarget[], adapters: AdapterShape[]): Map<LinearTarget, { module: string; dout: number }[]> {
  const wanted = new Map<string, { m: AdaptedModule; from: string }>();
  for (const a of adapters) {
    for (const [p, m] of a.modules) {
      const key = siteKey(m.layer, m.module);
      const seen = wanted.get(key);
      if (seen && (seen.m.din !== m.din || seen.m.dout !== m.dout)) {
        throw new Error(
          `Adapters '${seen.from}' and '${a.name}' disagree on the shape of ${p}: ` +
            `[${seen.m.din} -> ${seen.m.dout}] vs [${m.din} -> ${m.dout}]`,
        );
      }
      if (!seen) wanted.set(key, { m, from: a.name });
    }
  }
  for (const a of adapters) checkTargetsFound(a, targets);
  const plan = new Map<LinearTarget, { module: string; dout: number }[]>();
  const matched = new Set<string>();
  for (const t of targets) {
    const parts = peftModulesOf(t);
    const present = parts.map((mod) => wanted.get(siteKey(t.layer, mod)));
    if (present.every((x) => !x)) continue;
    for (const [i, x] of present.entries()) {
      if (!x) continue;
      matched.add(siteKey(t.layer, parts[i]));
      if (x.m.din !== t.din) {
        throw new Error(
          `Adapter '${x.from}' module ${parts[i]} of layer ${t.layer} expects ${x.m.din} inputs but the model's ` +
            `${t.path} has ${t.din} (is the adapter for another model?)`,
        );
      }
    }
    plan.set(t, parts.map((mod, i) => ({ module: mod, dout: present[i]?.m.dout ?? fusedWidth(t, parts, i) })));
  }
  const unmatched = [...wanted.entries()].filter(([k]) => !matched.has(k));
  if (unmatched.length > 0) {
    const [, { m, from }] = unmatched[0];
    throw new Error(
      `Adapter '${from}' adapts ${m.module}${m.layer !== null ? ` of layer ${m.layer}` : ''} ` +
        `(and ${unmatched.length - 1} more modules) but the model has no such linear layer. ` +
        `The model's linear layers: ${summarizeTargets(targets) || '(none found)'}`,
    );
  }
  if (wanted.size === 0 && adapters.length > 0) {
    throw new Error(`The adapters adapt no module. The model's linear layers: ${summarizeTargets(targets)}`);
  }
  return plan;
}

/** PEFT refuses an adapter whose target_modules selects none of the model's modules; so do we. */
function checkTargetsFound(a: AdapterShape, targets: LinearTarget[]): void {
  const sel = a.targets;
  if (!sel || !sel.given) return;
  // the model's modules as PEFT names them: a fused layer stands for its parts (qkv_proj -> q_proj, ...)
  const modelModules = targets.flatMap((t) => peftModulesOf(t).map((part) => ({ path: t.path.replace(/[^.]+$/, part), layer: t.layer, part })));
  // exporters name the blocks differently (self_attn vs attn): a module of the adapter's own that
  // lands on one of the model's layers counts as found under the adapter's spelling of its path too
  const landed = [...a.modules.values()].some((m) => modelModules.some((mm) => mm.layer === m.layer && mm.part === m.module));
  if (landed || modelModules.some((mm) => sel.selects(mm))) return;
  throw new Error(
    `Adapter '${a.name}': target modules ${sel.description} not found in the base model ` +
      `(PEFT refuses such an adapter). The model's linear layers: ${summarizeTargets(targets) || '(none found)'}`,
  );
}

// Width of a fused part no adapter covers: gate_up_proj splits in halves; qkv_proj is
// q (hidden = din wide) then k and v of equal width. injectLora checks that the parts add up.
function fusedWidth(t: LinearTarget, parts: string[], i: number): number {
  if (parts.length === 1) return t.dout;
  if (parts.length === 3) return i === 0 ? t.din : (t.dout - t.din) / 2;
  return t.dout / parts.length;
}

function hashPlan(modelFile: string, plan: Map<LinearTarget, { module: string; dout: number }[]>, bankIdentity?: string): string {
  const st = fs.statSync(modelFile);
  const h = createHash('sha256');
  h.update(JSON.stringify({
    v: INJECT_VERSION, file: path.resolve(modelFile), size: st.size, mtime: st.mtimeMs,
    plan: [...plan.entries()].map(([t, subs]) => [t.path, t.node.name, subs]).sort(),
    // the bank form carries the adapters' weights: a different adapter set is a different file
    ...(bankIdentity !== undefined ? { bank: bankIdentity } : {}),
  }));
  return h.digest('hex').slice(0, 12);
}

export interface InjectOptions {
  cacheDir?: string;
  onProgress?: Progress;
  /** the bank form (inject.ts), and what identifies its weights in the cache (adapter files, sizes, times) */
  bank?: { source: BankSource; identity: string };
  /** the model already read from modelFile (it is rewritten in place) */
  model?: ModelProto;
  /** when this call builds an entry, the folder's entries unused for this many days are removed
   *  (cache_prune.ts; default 30; 0 or Infinity keeps everything) */
  pruneUnusedDays?: number;
}

/**
 * What the sessions run, beside the injected model and sharing its weights file: the injected model
 * with logits at one position per row (last_logits.ts), grouped-query attention reading the cache
 * without a copy per query head (grouped_attention.ts), and the cache columns each run adds as
 * outputs of their own (new_kv.ts). The injected model itself when its LM head has another form.
 * lastIndex: whether it takes the persona_last_index input (and gives persona_hidden).
 */
export function runtimeModel(built: InjectedModel): { file: string; lastIndex: boolean } {
  const file = built.file.replace(/\.onnx$/, `.last${RUNTIME_VERSION}.onnx`);
  if (fs.existsSync(file)) return { file, lastIndex: true };
  const model = cloneModel(built.model);
  if (!keepLastLogits(model)) return { file: built.file, lastIndex: false };
  // grouped-query attention reads the cache as it is rather than a copy per query head
  shareKvHeads(model.graph!);
  // each run's new cache columns as outputs of their own, so a step need not copy the whole cache out
  exposeNewKv(model.graph!);
  writeModel(model, file, { sourceDir: path.dirname(built.file) });
  return { file, lastIndex: true };
}

/** A cache entry's injected model and its injection, or null when it is absent or incomplete (a
 *  file unreadable, or an external weights file it names missing: half-pruned, or half-copied),
 *  which the caller then builds again. */
function readCachedEntry(file: string): { model: ModelProto; injection: Injection } | null {
  let model: ModelProto;
  try {
    model = readModel(file);
  } catch {
    return null; // absent, or not a model
  }
  const entry = model.metadataProps.find((m) => m.key === SITES_KEY);
  if (!entry) return null;
  const locations = new Set((model.graph?.initializer ?? []).flatMap((t) => t.externalData.filter((e) => e.key === 'location').map((e) => e.value)));
  for (const loc of locations) if (!fs.existsSync(path.join(path.dirname(file), loc))) return null;
  return { model, injection: JSON.parse(entry.value) as Injection };
}

/** The injected model for these adapters: reused from the cache when present, else built. */
export function injectedModel(modelFile: string, adapters: AdapterShape[], opts: InjectOptions = {}): InjectedModel {
  const model = opts.model ?? readModel(modelFile);
  const targets = findLinearTargets(model);
  const plan = planInjection(targets, adapters);
  const dir = opts.cacheDir ?? path.dirname(modelFile);
  const form = opts.bank ? 'persona-bank' : 'persona';
  const file = path.join(dir, `${path.basename(modelFile, '.onnx')}.${form}-${hashPlan(modelFile, plan, opts.bank?.identity)}.onnx`);
  // marked before it is read, so a process pruning meanwhile sees it in use
  touchCacheEntry(file);
  const cached = readCachedEntry(file);
  if (cached) return { file, ...cached, reused: true };
  opts.onProgress?.('injecting', 0, plan.size);
  const injection = injectLora(model, targets, (t) => plan.get(t) ?? null, opts.bank?.source);
  opts.onProgress?.('injecting', plan.size, plan.size);
  model.metadataProps.push(metadataEntry(SITES_KEY, JSON.stringify(injection)));
  writeModel(model, file, { sourceDir: path.dirname(modelFile), onProgress: opts.onProgress });
  pruneCache(dir, [file, modelFile], opts.pruneUnusedDays ?? CACHE_UNUSED_DAYS);
  return { file, model, injection, reused: false };
}
