// The files beside a decoder that say how to talk to it: tokenizer.json, tokenizer_config.json,
// chat_template.jinja, config.json, generation_config.json. Exports often sit in a subfolder
// (onnx/model.onnx) while these stay at the top, so each is looked for in the model's folder and
// then in its parent.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { typeError } from '../errors';
import { readJsonFile } from '../adapters/json_file';

export type Json = Record<string, unknown>;

const MODEL_FILES = ['model.onnx', path.join('onnx', 'model.onnx')];

/** The .onnx file of a model path: the file itself, or the model file in a folder. */
export function resolveModelFile(model: string): string {
  if (typeof model !== 'string' || model.length === 0) throw typeError('model', 'a path to an .onnx file or a model folder', model);
  if (!fs.existsSync(model)) throw new Error(`The model path ${model} does not exist`);
  if (fs.statSync(model).isDirectory()) {
    // model.onnx, or onnx/model.onnx as Optimum and transformers.js lay out a Hub repository
    const file = MODEL_FILES.map((f) => path.join(model, f)).find((f) => fs.existsSync(f));
    if (!file) throw new Error(`The model folder ${model} has neither ${MODEL_FILES.join(' nor ')}`);
    return file;
  }
  return model;
}

/**
 * Bytes of a model on disk: the .onnx file and its external weights beside it, the files named after
 * it as torch.onnx and Optimum write them (model.onnx_data, model.onnx.data, and shards such as
 * model.onnx_data_1). A cheap stand-in for the weights' size before the graph is read; weights kept
 * under other names (one file per tensor, a custom location) are not counted.
 */
export function modelBytesOnDisk(modelFile: string): number {
  const dir = path.dirname(modelFile);
  const base = path.basename(modelFile);
  return fs.readdirSync(dir)
    .filter((f) => f === base || f.startsWith(`${base}_data`) || f.startsWith(`${base}.data`))
    .reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
}

/** pad_token_id from generation_config.json / config.json, else 0 (padding is masked anyway). */
export function readPadId(dirs: string[]): number {
  for (const f of ['generation_config.json', 'config.json']) {
    try {
      const [pad] = idList(readJson(findFile(dirs, f)).pad_token_id);
      if (pad !== undefined) return pad;
    } catch {
      /* absent or unreadable: next */
    }
  }
  return 0;
}

/** The first of `dirs` holding `name`, or undefined. */
export function findFile(dirs: readonly string[], name: string): string | undefined {
  for (const d of dirs) {
    const f = path.join(d, name);
    if (fs.existsSync(f)) return f;
  }
  return undefined;
}

/** The folders searched for a model's side files: its own, then its parent. */
export function sideFileDirs(modelFile: string, explicit?: string): string[] {
  const own = path.dirname(path.resolve(modelFile));
  return [...(explicit ? [path.resolve(explicit)] : []), own, path.dirname(own)];
}

/** A side file's JSON object ({} when the file is absent). */
export function readJson(file: string | undefined): Json {
  if (!file) return {};
  const v = readJsonFile(file);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${file} does not hold a JSON object`);
  return v as Json;
}

/** Integer ids of a `*_token_id` field: a number or a list of them. */
export function idList(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x));
  return [];
}

/** A special token as tokenizer_config.json writes it: a string or an AddedToken object. */
export function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}
