// A fixed persona mix compiled into the base weights: a plain ONNX model with no adapter inputs
// and no runtime cost (kernels.mergeExperts on every adapted weight).
import * as path from 'node:path';
import { loadPeftAdapter, buildLoraBank } from '../adapters';
import { MergePart, mergeTarget } from '../onnx/merge';
import { planInjection } from '../onnx/cache';
import { metadataEntry, readModel } from '../onnx/proto';
import { findLinearTargets } from '../onnx/targets';
import { Progress, writeModel } from '../onnx/write';
import { mixEntries, Mix } from '../decoder/mix';
import { resolveModelFile } from './persona_model';
import { expertModules } from '../decoder/site_banks';

export interface MergeOptions {
  model: string;
  adapters: Record<string, string>;
  mix: Mix;
  /** output .onnx file (its weights go to <out>.data) */
  out: string;
  onProgress?: Progress;
}

export function mergeModel(opts: MergeOptions): { file: string; merged: number } {
  const modelFile = resolveModelFile(opts.model);
  const experts = Object.keys(opts.adapters ?? {});
  const entries = mixEntries(opts.mix, experts);
  const adapters = experts.map((name) => loadPeftAdapter(opts.adapters[name], name));
  const model = readModel(modelFile);
  const targets = findLinearTargets(model);
  const plan = planInjection(targets, adapters);
  const sourceDir = path.dirname(modelFile);
  const ids = Int32Array.from(entries.map(([id]) => id));
  const weights = Float32Array.from(entries.map(([, w]) => w));
  const replace = new Map<string, Uint8Array>();
  let done = 0;
  for (const [t, subs] of plan) {
    const parts: MergePart[] = [];
    let offset = 0;
    for (const sub of subs) {
      const mods = expertModules(adapters, t.layer, sub.module);
      if (mods.some((m) => m)) {
        const bank = buildLoraBank(mods, t.din, sub.dout);
        parts.push({ bank, ids, weights, offset, dout: sub.dout });
      }
      offset += sub.dout;
    }
    replace.set(t.weight!.name, mergeTarget(t, parts, sourceDir));
    for (const p of parts) p.bank.dispose();
    opts.onProgress?.('merging', ++done, plan.size);
  }
  model.metadataProps.push(metadataEntry('personafuse.merged_mix', JSON.stringify(opts.mix)));
  writeModel(model, opts.out, { sourceDir, replace, onProgress: opts.onProgress });
  return { file: opts.out, merged: replace.size };
}
