// Weights for a committed benchmark graph whose weights are too large to commit
// (bench/models/llama-1b-slice: 981 MB of f32). scripts/fixtures/make_tiny_models.py exports the
// real model, moves every large float initializer into an external data file that it does not
// keep, and records in the model's metadata how to refill it:
//   personafuse.synthetic_weights = {"file": "model.onnx_data", "distribution": "uniform", "std": 0.02, "seed": 0}
// Speed does not depend on the values, so seeded uniform values with the std of HF's init stand in
// for torch's normal ones. The file is written once, beside the graph, and fsynced so that the
// writeback of a gigabyte is over before anything is timed. A file of the wrong size is an error,
// never overwritten.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mulberry32 } from '../lib/rng';
import { ONNX_FLOAT, readModel, TensorProto } from '../lib/onnx/proto';
import { elementCount, externalField, isExternal } from '../lib/onnx/tensor_data';

export const SYNTHETIC_KEY = 'personafuse.synthetic_weights';

interface Spec { file: string; distribution: 'uniform'; std: number; seed: number }
interface Extent { name: string; offset: number; length: number }

function parseSpec(modelFile: string, text: string): Spec {
  let s: Partial<Spec>;
  try {
    s = JSON.parse(text);
  } catch {
    throw new Error(`${modelFile}: metadata ${SYNTHETIC_KEY} is not JSON`);
  }
  const ok = typeof s.file === 'string' && path.basename(s.file) === s.file && s.distribution === 'uniform'
    && typeof s.std === 'number' && s.std > 0 && Number.isInteger(s.seed);
  if (!ok) throw new Error(`${modelFile}: metadata ${SYNTHETIC_KEY} must be {file (a plain file name), distribution: "uniform", std > 0, seed (an integer)}`);
  return s as Spec;
}

/** Where each external initializer of `spec.file` lives; checked: float32, sizes, no overlaps. */
function extents(modelFile: string, inits: TensorProto[], spec: Spec): Extent[] {
  const out: Extent[] = [];
  for (const t of inits) {
    if (!isExternal(t) || externalField(t, 'location') !== spec.file) continue;
    if (t.dataType !== ONNX_FLOAT) throw new Error(`${modelFile}: synthetic initializer ${t.name} must be float32`);
    const offset = Number(externalField(t, 'offset') ?? 0);
    const length = Number(externalField(t, 'length'));
    if (!Number.isSafeInteger(offset) || offset < 0 || length !== 4 * elementCount(t)) {
      throw new Error(`${modelFile}: initializer ${t.name} has offset ${offset} / length ${length}, expected length ${4 * elementCount(t)}`);
    }
    out.push({ name: t.name, offset, length });
  }
  out.sort((a, b) => a.offset - b.offset);
  out.forEach((e, i) => {
    if (i > 0 && e.offset < out[i - 1].offset + out[i - 1].length) throw new Error(`${modelFile}: initializers ${out[i - 1].name} and ${e.name} overlap in ${spec.file}`);
  });
  if (out.length === 0) throw new Error(`${modelFile}: no initializer lives in ${spec.file}`);
  return out;
}

/** Fills one tensor's bytes in chunks (a 64 MB f32 weight would otherwise be one 64 MB array). */
function writeTensor(fd: number, e: Extent, next: () => number, half: number): void {
  const CHUNK = 1 << 20;
  const buf = new Float32Array(CHUNK);
  const bytes = new Uint8Array(buf.buffer);
  for (let done = 0; done < e.length; done += 4 * CHUNK) {
    const n = Math.min(CHUNK, (e.length - done) / 4);
    for (let i = 0; i < n; i++) buf[i] = (2 * next() - 1) * half;
    let w = 0;
    while (w < 4 * n) w += fs.writeSync(fd, bytes, w, 4 * n - w, e.offset + done + w);
  }
}

/**
 * Writes the synthetic weights `modelFile` asks for, unless they are already there. Returns the data
 * file written, or null when there was nothing to do (no metadata entry, or the file is complete).
 */
export function ensureSyntheticWeights(modelFile: string, log: (line: string) => void = () => {}): string | null {
  const model = readModel(modelFile);
  const entry = model.metadataProps.find((p) => p.key === SYNTHETIC_KEY);
  if (!entry) return null;
  const spec = parseSpec(modelFile, entry.value);
  const list = extents(modelFile, model.graph?.initializer ?? [], spec);
  const size = list[list.length - 1].offset + list[list.length - 1].length;
  const file = path.join(path.dirname(modelFile), spec.file);
  if (fs.existsSync(file)) {
    const have = fs.statSync(file).size;
    if (have === size) return null;
    throw new Error(`${file}: ${have} bytes, but the graph's synthetic weights need ${size}; delete it to have it rewritten`);
  }
  log(`writing ${(size / 1e6).toFixed(0)} MB of synthetic weights (${spec.distribution}, std ${spec.std}, seed ${spec.seed}) to ${file}`);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    const half = spec.std * Math.sqrt(3); // uniform on [-half, half] has this std
    list.forEach((e, i) => writeTensor(fd, e, mulberry32(spec.seed * 1_000_003 + i), half));
    fs.ftruncateSync(fd, size);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  return file;
}
