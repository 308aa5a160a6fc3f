// loadPeftAdapter: one PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) as typed
// per-module tensors with their scales. Facts relied on: docs/design.md §11.
//
//   tensors   base_model.model.<module path>.lora_A.weight  A [r, din]
//             base_model.model.<module path>.lora_B.weight  B [dout, r]
//   per module   delta_y = scale · B (A x)
//                scale = alpha / r   (alpha / sqrt(r) with use_rslora)
//                r     = the module's rank (its tensors; rank_pattern must agree)
//                alpha = the first alpha_pattern key K with /^(.*\.)?(K)$/ matching the module path, else lora_alpha
//
// The set of adapted modules and their ranks come from the file's keys; every key must be a module
// that target_modules selects (PEFT's rule, lib/adapters/target_modules.ts), or the file is refused.
// Config fields that change the maths and are not implemented are refused, never ignored.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BankDtype } from '../kernels/dtype';
import { describe, rangeError, typeError } from '../errors';
import { readSafetensors, SafetensorsTensor, tensorAsF32, tensorBits16, tensorF32 } from './safetensors';
import { describeTargets, ModuleRef, selectsModule } from './target_modules';
import { readJsonFile } from './json_file';

/** The LoRA targets of Llama-style decoders (other architectures use other names: any string is accepted). */
export type LlamaTargetModule = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';

export interface PeftLoraConfig {
  peftType: 'LORA';
  /** Default rank (modules may differ through rankPattern). */
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  /** The base layer stores its weight [din, dout] (GPT-2 Conv1D). lora_A/lora_B keep their shapes regardless. */
  fanInFanOut: boolean;
  targetModules: string[] | string | null;
  layersToTransform: number[] | number | null;
  layersPattern: string[] | string | null;
  baseModelNameOrPath: string | null;
  taskType: string | null;
  /** adapter_config.json as parsed. */
  raw: Record<string, unknown>;
}

export interface PeftModule {
  /** Module path in the base model, e.g. 'model.layers.0.self_attn.q_proj'. */
  path: string;
  /** The block index (the first numeric path component; after layers_pattern when the config sets it), or null. */
  layer: number | null;
  /** The last path component, e.g. 'q_proj'. */
  module: LlamaTargetModule | (string & {});
  /** lora_A [rank, din]: Float32Array for f32, Uint16Array bits for f16/bf16 (a view into the file's data). */
  a: Float32Array | Uint16Array;
  /** lora_B [dout, rank]. */
  b: Float32Array | Uint16Array;
  dtype: BankDtype;
  rank: number;
  din: number;
  dout: number;
  alpha: number;
  scale: number;
}

export interface PeftAdapter {
  name: string;
  dir: string;
  config: PeftLoraConfig;
  /** The modules' common dtype ('f32' when they differ). */
  dtype: BankDtype;
  /** By module path, in model order. */
  modules: Map<string, PeftModule>;
  /** target_modules as a rule: which module paths the config selects */
  targets: { given: boolean; description: string; selects(m: ModuleRef): boolean };
}

export interface LoadPeftOptions {
  /** Defaults to the folder's name. */
  name?: string;
}

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
const PICKLE_WEIGHTS = 'adapter_model.bin';
const PREFIX = 'base_model.model.';

/** Loads the adapter in `dir`; its name is the second argument (or options.name), else the folder's name. */
export function loadPeftAdapter(dir: string, nameOrOptions: string | LoadPeftOptions = {}): PeftAdapter {
  if (typeof dir !== 'string') throw typeError('dir', 'a folder path string', dir);
  const options = typeof nameOrOptions === 'string' ? { name: nameOrOptions } : nameOrOptions ?? {};
  const name = options.name ?? path.basename(path.resolve(dir));
  if (typeof name !== 'string' || name === '') throw typeError('options.name', 'a non-empty string', options.name);
  const configPath = path.join(dir, ADAPTER_CONFIG);
  const weightsPath = path.join(dir, ADAPTER_WEIGHTS);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw rangeError('dir', 'a PEFT adapter folder', `'${dir}', which is not a folder`);
  }
  if (!fs.existsSync(configPath)) {
    throw rangeError('dir', `a PEFT adapter folder holding ${ADAPTER_CONFIG}`, `'${dir}' (${listing(dir)})`);
  }
  if (!fs.existsSync(weightsPath)) {
    if (fs.existsSync(path.join(dir, PICKLE_WEIGHTS))) {
      throw rangeError(`the weights in '${dir}'`, `${ADAPTER_WEIGHTS}`,
        `only ${PICKLE_WEIGHTS}, a Python pickle, which personafuse never opens (unpickling runs code). Convert it ` +
        'to safetensors once, in Python: PeftModel.from_pretrained(base, dir).save_pretrained(dir, ' +
        'safe_serialization=True), or safetensors.torch.save_file(torch.load(".../adapter_model.bin", ' +
        'weights_only=True), ".../adapter_model.safetensors")');
    }
    throw rangeError(`the weights in '${dir}'`, ADAPTER_WEIGHTS, `none (${listing(dir)})`);
  }
  const config = parsePeftConfig(readJsonFile(configPath), configPath);
  const file = readSafetensors(weightsPath);
  const modules = collectModules(file.tensors, config, weightsPath);
  const dtypes = new Set([...modules.values()].map((m) => m.dtype));
  const targets = { given: config.targetModules !== null, description: describeTargets(config), selects: (m: ModuleRef) => selectsModule(config, m) };
  return { name, dir, config, dtype: dtypes.size === 1 ? [...dtypes][0] : 'f32', modules, targets };
}

/** Validates adapter_config.json's contents (`where` names the file in errors). */
export function parsePeftConfig(json: unknown, where = ADAPTER_CONFIG): PeftLoraConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw typeError(where, 'a JSON object', json);
  const raw = json as Record<string, unknown>;
  const field = (key: string) => `${key} in ${where}`;

  const peftType = raw.peft_type;
  if (peftType !== 'LORA') {
    const expected = "'LORA' (personafuse runs LoRA adapters only)";
    if (typeof peftType === 'string') throw rangeError(field('peft_type'), expected, describe(peftType));
    throw typeError(field('peft_type'), expected, peftType);
  }
  const r = raw.r;
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1) {
    throw typeError(field('r'), 'a positive integer (the LoRA rank)', r);
  }
  const loraAlpha = raw.lora_alpha;
  if (typeof loraAlpha !== 'number' || !Number.isFinite(loraAlpha)) {
    throw typeError(field('lora_alpha'), 'a finite number (the LoRA alpha)', loraAlpha);
  }
  const useRslora = optionalBoolean(raw, 'use_rslora', where);
  const fanInFanOut = optionalBoolean(raw, 'fan_in_fan_out', where);

  // Fields whose non-default value changes the maths in ways not implemented here.
  const refuse = (key: string, expected: string) => {
    throw rangeError(field(key), expected, describe(raw[key]));
  };
  if (optionalBoolean(raw, 'use_dora', where)) {
    refuse('use_dora', "false (DoRA's weight-decomposed update is not implemented: merge the adapter into the " +
      'base model with PEFT, or use a LoRA adapter)');
  }
  if (optionalBoolean(raw, 'lora_bias', where)) refuse('lora_bias', 'false (a bias on lora_B is not implemented)');
  if (nonEmpty(raw.modules_to_save)) {
    throw rangeError(field('modules_to_save'),
      'none (modules_to_save replaces whole layers, which a LoRA bank cannot express: merge the adapter with ' +
      'PEFT and export that model instead)', JSON.stringify(raw.modules_to_save));
  }
  if (raw.bias !== undefined && raw.bias !== null && raw.bias !== 'none') {
    refuse('bias', "'none' (trained base-layer biases are not loaded)");
  }
  if (nonEmpty(raw.trainable_token_indices)) refuse('trainable_token_indices', 'none (trainable tokens are not implemented)');
  if (nonEmpty(raw.target_parameters)) refuse('target_parameters', 'none (LoRA on bare parameters is not implemented)');
  if (nonEmpty(raw.layer_replication)) refuse('layer_replication', 'none (it changes the base model)');
  if (nonEmpty(raw.alora_invocation_tokens)) refuse('alora_invocation_tokens', 'none (activated LoRA is not implemented)');
  if (optionalBoolean(raw, 'use_qalora', where)) refuse('use_qalora', 'false (QA-LoRA is not implemented)');
  const init = raw.init_lora_weights;
  if (typeof init === 'string' && /^(pissa|olora|corda|loftq|lora_ga)/i.test(init)) {
    refuse('init_lora_weights', `an initialisation that leaves the base model as it is ('${init}' changes the base ` +
      'weights: save the adapter with path_initial_model_for_weight_conversion to get a plain LoRA adapter)');
  }

  const rankPattern = patternMap(raw, 'rank_pattern', where, true);
  const alphaPattern = patternMap(raw, 'alpha_pattern', where, false);
  const strings = (key: string): string[] | string | null => {
    const v = raw[key];
    if (v === undefined || v === null) return null;
    if (typeof v === 'string') return v;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.slice() as string[];
    throw typeError(field(key), 'a string, a list of strings or null', v);
  };
  const layers = raw.layers_to_transform;
  let layersToTransform: number[] | number | null = null;
  if (typeof layers === 'number' && Number.isInteger(layers)) layersToTransform = layers;
  else if (Array.isArray(layers) && layers.every((x) => Number.isInteger(x))) layersToTransform = layers.slice() as number[];
  else if (layers !== undefined && layers !== null) throw typeError(field('layers_to_transform'), 'an integer, a list of integers or null', layers);
  const optString = (key: string) => (typeof raw[key] === 'string' ? (raw[key] as string) : null);

  return {
    peftType: 'LORA',
    r,
    loraAlpha,
    useRslora,
    rankPattern,
    alphaPattern,
    fanInFanOut,
    targetModules: strings('target_modules'),
    layersToTransform,
    layersPattern: strings('layers_pattern'),
    baseModelNameOrPath: optString('base_model_name_or_path'),
    taskType: optString('task_type'),
    raw,
  };
}

/** PEFT's pattern rule: the value of the first key K (a regular expression) for which the module path matches
 *  /^(.*\.)?(K)$/, else `fallback`. */
export function patternValue(patterns: Record<string, number>, modulePath: string, fallback: number): number {
  const key = patternKey(patterns, modulePath);
  return key === undefined ? fallback : patterns[key];
}

/** The first key of `patterns` that matches the module path (PEFT's get_pattern_key), or undefined. */
export function patternKey(patterns: Record<string, number>, modulePath: string): string | undefined {
  return Object.keys(patterns).find((key) => compilePattern(key).test(modulePath));
}

/** scale = alpha / r, or alpha / sqrt(r) with rsLoRA. */
export function loraScale(alpha: number, rank: number, useRslora: boolean): number {
  return useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
}

// ---------------------------------------------------------------------------------------------------------

const patternCache = new Map<string, RegExp>();

function compilePattern(key: string): RegExp {
  let re = patternCache.get(key);
  if (!re) {
    try {
      re = new RegExp(`^(.*\\.)?(${key})$`);
    } catch (err) {
      throw rangeError(`the pattern key '${key}'`, 'a regular expression', (err as Error).message);
    }
    patternCache.set(key, re);
  }
  return re;
}

function collectModules(tensors: Map<string, SafetensorsTensor>, config: PeftLoraConfig, file: string): Map<string, PeftModule> {
  const pairs = new Map<string, { a?: [string, SafetensorsTensor]; b?: [string, SafetensorsTensor] }>();
  for (const [key, t] of tensors) {
    const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(key);
    if (!m) throw unexpectedKey(key, file);
    const entry = pairs.get(m[1]) ?? {};
    entry[m[2] === 'A' ? 'a' : 'b'] = [key, t];
    pairs.set(m[1], entry);
  }
  if (pairs.size === 0) {
    throw rangeError(file, 'at least one lora_A/lora_B pair', 'a file without LoRA tensors');
  }
  const modules: PeftModule[] = [];
  for (const [modulePath, pair] of pairs) {
    if (!pair.a || !pair.b) {
      const [have, missing] = pair.a ? [pair.a[0], 'lora_B'] : [pair.b![0], 'lora_A'];
      throw rangeError(`module '${modulePath}' in ${file}`, `both lora_A.weight and lora_B.weight`,
        `only '${have}' (its ${missing} is missing)`);
    }
    const [aKey, a] = pair.a;
    const [bKey, b] = pair.b;
    if (a.shape.length !== 2) throw rangeError(`tensor '${aKey}' in ${file}`, 'a 2-D lora_A [r, in_features] (LoRA on linear layers only)', JSON.stringify(a.shape));
    if (b.shape.length !== 2) throw rangeError(`tensor '${bKey}' in ${file}`, 'a 2-D lora_B [out_features, r] (LoRA on linear layers only)', JSON.stringify(b.shape));
    const [rank, din] = a.shape;
    const [dout, rb] = b.shape;
    if (rb !== rank) {
      throw rangeError(`tensor '${bKey}' in ${file}`, `shape [out_features, ${rank}] (lora_A's rank is ${rank})`, JSON.stringify(b.shape));
    }
    if (rank < 1 || din < 1 || dout < 1) {
      throw rangeError(`module '${modulePath}' in ${file}`, 'a rank, in_features and out_features of at least 1',
        `lora_A ${JSON.stringify(a.shape)}, lora_B ${JSON.stringify(b.shape)}`);
    }
    const rankKey = patternKey(config.rankPattern, modulePath);
    const expectedRank = rankKey === undefined ? config.r : config.rankPattern[rankKey];
    if (expectedRank !== rank) {
      const source = rankKey === undefined ? 'r' : `rank_pattern['${rankKey}']`;
      throw rangeError(`module '${modulePath}' in ${file}`, `rank ${expectedRank} (${source} in ${ADAPTER_CONFIG})`,
        `tensors of rank ${rank}`);
    }
    const alpha = patternValue(config.alphaPattern, modulePath, config.loraAlpha);
    let dtype: BankDtype;
    let av: Float32Array | Uint16Array;
    let bv: Float32Array | Uint16Array;
    if (a.dtype === b.dtype) {
      dtype = bankDtype(a, aKey, file);
      av = values(a, aKey);
      bv = values(b, bKey);
    } else {
      bankDtype(a, aKey, file);
      bankDtype(b, bKey, file);
      dtype = 'f32';
      av = tensorAsF32(a, aKey);
      bv = tensorAsF32(b, bKey);
    }
    const segments = modulePath.split('.');
    const layer = layerOf(segments, config.layersPattern);
    if (!selectsModule(config, { path: modulePath, layer })) {
      throw rangeError(`tensor '${aKey}' in ${file}`, `a module that target_modules selects (${describeTargets(config)} in ${ADAPTER_CONFIG})`,
        `'${modulePath}', which it does not select (PEFT would never load it)`);
    }
    modules.push({
      path: modulePath,
      layer,
      module: segments[segments.length - 1],
      a: av,
      b: bv,
      dtype,
      rank,
      din,
      dout,
      alpha,
      scale: loraScale(alpha, rank, config.useRslora),
    });
  }
  modules.sort((x, y) => x.path.localeCompare(y.path, 'en', { numeric: true }));
  return new Map(modules.map((m) => [m.path, m]));
}

function unexpectedKey(key: string, file: string): Error {
  const where = `tensor '${key}' in ${file}`;
  if (/\.lora_magnitude_vector\b/.test(key)) return rangeError(where, 'a LoRA tensor', 'a DoRA magnitude vector (DoRA is not implemented)');
  if (/\.lora_B\.bias$/.test(key)) return rangeError(where, 'a LoRA tensor', 'a lora_B bias (lora_bias is not implemented)');
  if (/\.lora_embedding_[AB]\b/.test(key)) return rangeError(where, 'a LoRA tensor of a linear layer', 'LoRA on an embedding (not implemented)');
  if (/\.base_layer\.weight$/.test(key)) {
    return rangeError(where, 'LoRA tensors only', "a layer's full base weights (peft's save_embedding_layers, on when lm_head or embed_tokens is a target: save with save_embedding_layers=False, or remove the tensor if the vocabulary was not resized)");
  }
  if (/\.lora_[AB]\.[^.]+\.weight$/.test(key)) {
    return rangeError(where, `a key without the adapter name (${PREFIX}<module>.lora_A.weight, as save_pretrained writes)`, 'a raw state-dict key');
  }
  return rangeError(where, `a LoRA key ${PREFIX}<module>.lora_A.weight or .lora_B.weight`, 'another tensor (modules_to_save or an unsupported PEFT method?)');
}

function bankDtype(t: SafetensorsTensor, key: string, file: string): BankDtype {
  switch (t.dtype) {
    case 'F32': return 'f32';
    case 'F16': return 'f16';
    case 'BF16': return 'bf16';
    default: throw rangeError(`the dtype of tensor '${key}' in ${file}`, 'F32, F16 or BF16', t.dtype);
  }
}

function values(t: SafetensorsTensor, key: string): Float32Array | Uint16Array {
  return t.dtype === 'F32' ? tensorF32(t, key) : tensorBits16(t, key);
}

function layerOf(segments: string[], layersPattern: string[] | string | null): number | null {
  const names = layersPattern === null ? null : Array.isArray(layersPattern) ? layersPattern : [layersPattern];
  for (let i = 1; i < segments.length; i++) {
    if (/^\d+$/.test(segments[i]) && (names === null || names.includes(segments[i - 1]))) return Number(segments[i]);
  }
  return null;
}

function optionalBoolean(raw: Record<string, unknown>, key: string, where: string): boolean {
  const v = raw[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw typeError(`${key} in ${where}`, 'a boolean', v);
  return v;
}

function nonEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === false) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v as object).length > 0;
  return true;
}

function patternMap(raw: Record<string, unknown>, key: string, where: string, integer: boolean): Record<string, number> {
  const v = raw[key];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw typeError(`${key} in ${where}`, 'an object of module patterns to numbers', v);
  const out: Record<string, number> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const ok = typeof x === 'number' && Number.isFinite(x) && (!integer || (Number.isInteger(x) && x >= 1));
    if (!ok) throw typeError(`${key}['${k}'] in ${where}`, integer ? 'a positive integer' : 'a finite number', x);
    compilePattern(k);
    out[k] = x as number;
  }
  return out;
}

function listing(dir: string): string {
  const names = fs.readdirSync(dir);
  return names.length ? `it holds ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', ...' : ''}` : 'it is empty';
}
