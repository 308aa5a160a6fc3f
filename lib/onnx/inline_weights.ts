// A model with its external weights pulled back into the protobuf, as bytes for
// InferenceSession.create(bytes). Why: on our 2-core VM, onnxruntime 1.30 runs a model whose
// weights come from an external data file 2-3x slower, and far less steadily, at decode batch 8
// than the same graph and weights inline (bench/models/llama-1b-slice; docs/design.md §6, and
// bench/results/journal-bench.md "Wide model"), whichever exporter or alignment wrote the file.
// Likely cause, not proven: onnxruntime uses external weights in place from an mmap, and the VM's
// DAMON pageout drops idle file pages (bench/results/journal-bench.md "The bank layout": ~4 100
// page faults per run). Costs a transient copy of the weights while the session is created; only
// for models under protobuf's 2 GB limit.
import * as path from 'node:path';
import { encodeModel, readModel } from './proto';
import { isExternal, tensorBytes } from './tensor_data';

const PROTOBUF_LIMIT = 2 ** 31 - 1;

export function inlineModelBytes(file: string): Uint8Array {
  const model = readModel(file);
  let total = 0;
  for (const t of model.graph?.initializer ?? []) {
    if (!isExternal(t)) continue;
    t.rawData = tensorBytes(t, path.dirname(file)) as Uint8Array<ArrayBuffer>; // a fresh read, never shared memory
    total += t.rawData.length;
    if (total >= PROTOBUF_LIMIT) throw new Error(`${file}: over 2 GB of weights cannot be inline in one protobuf; load it without inlineWeights`);
    t.externalData = [];
    t.dataLocation = 0; // DEFAULT
  }
  return encodeModel(model);
}
