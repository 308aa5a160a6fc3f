// Writing a rewritten model: the graph as a small protobuf, every large initializer in one
// external data file beside it (docs/design.md §3: models over 2 GB cannot be a single
// protobuf). Initializers already external keep pointing at their original file when the new
// model lives in the same folder; otherwise they are copied, so the output stands alone.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodeModel, ModelProto, TensorProto } from './proto';
import { elementCount, ExternalDataWriter, isExternal, tensorBytes } from './tensor_data';

export type Progress = (stage: string, done: number, total: number) => void;

const INLINE_LIMIT = 1024; // bytes; smaller initializers stay in the protobuf

export interface WriteOptions {
  /** folder the source model was read from (external data locations are relative to it) */
  sourceDir: string;
  /** replaced contents for some initializers (merged weights), by name */
  replace?: Map<string, Uint8Array>;
  onProgress?: Progress;
}

/** Writes `model` to `file` (+ `file`.data); the write is atomic (temp names, then rename). */
export function writeModel(model: ModelProto, file: string, opts: WriteOptions): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const dataName = `${path.basename(file)}.data`;
  const writer = new ExternalDataWriter(path.join(dir, `${dataName}.tmp-${process.pid}`));
  const inits: TensorProto[] = model.graph?.initializer ?? [];
  const sameDir = path.resolve(dir) === path.resolve(opts.sourceDir);
  let moved = 0;
  try {
    inits.forEach((t, i) => {
      const replaced = opts.replace?.get(t.name);
      if (replaced) {
        writer.put(t, replaced);
        moved++;
      } else if (isExternal(t)) {
        if (!sameDir) {
          writer.put(t, tensorBytes(t, opts.sourceDir));
          moved++;
        }
      } else if (t.rawData.length > INLINE_LIMIT || (t.rawData.length === 0 && elementCount(t) * 4 > INLINE_LIMIT && t.floatData.length > 0)) {
        writer.put(t, tensorBytes(t, opts.sourceDir));
        moved++;
      }
      opts.onProgress?.('writing weights', i + 1, inits.length);
    });
  } finally {
    writer.close();
  }
  // the data file's final name is what the TensorProtos reference
  for (const t of inits) {
    for (const e of t.externalData) if (e.key === 'location' && e.value === path.basename(writer.file)) e.value = dataName;
  }
  fs.writeFileSync(tmp, encodeModel(model));
  if (moved > 0) fs.renameSync(writer.file, path.join(dir, dataName));
  else fs.rmSync(writer.file, { force: true });
  fs.renameSync(tmp, file);
}
