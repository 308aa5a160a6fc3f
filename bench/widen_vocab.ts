// A realistic vocabulary for the committed bench model: the same layers with an n-token
// embedding and LM head (random weights), written to a temporary folder. Real decoders have
// 32k-150k tokens; the LM head they compute every step dilutes the adapters' share, and the
// prompt positions' LM-head rows are what the runtime graph (lib/onnx/last_logits.ts) skips.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelProto, readModel, TensorProto, valueInfoDims } from '../lib/onnx/proto';
import { writeModel } from '../lib/onnx/write';
import { rng } from './harness';
import { resolveModelFile } from '../lib/model/persona_model';

/** A copy of the model with a `vocab`-token embedding and LM head (random weights), written to `file`. */
export function widenVocab(modelFile: string, vocab: number, file: string): string {
  const model: ModelProto = readModel(modelFile);
  const graph = model.graph!;
  const init = new Map(graph.initializer.map((t) => [t.name, t]));
  const head = graph.node.find((n) => n.output.includes('logits'));
  const embed = graph.node.find((n) => n.opType === 'Gather' && n.input[1] === 'input_ids' && init.has(n.input[0]));
  const headW = head?.opType === 'MatMul' ? init.get(head.input[1]) : undefined;
  const embedW = embed ? init.get(embed.input[0]) : undefined;
  if (!headW || !embedW) throw new Error(`--vocab: ${modelFile} has no Gather embedding and MatMul LM head to widen`);
  const next = rng(11);
  const refill = (t: TensorProto, dims: number[]) => {
    const data = Float32Array.from({ length: dims[0] * dims[1] }, () => (next() - 0.5) * 0.04);
    t.dims = dims.map(BigInt);
    t.rawData = new Uint8Array(data.buffer);
  };
  refill(embedW, [vocab, Number(embedW.dims[1])]);
  refill(headW, [Number(headW.dims[0]), vocab]);
  const logits = graph.output.find((o) => o.name === 'logits');
  const dim = logits?.type?.value.case === 'tensorType' ? logits.type.value.value.shape?.dim[2] : undefined;
  if (dim && typeof valueInfoDims(logits!)?.[2] === 'number') dim.value = { case: 'dimValue', value: BigInt(vocab) };
  writeModel(model, file, { sourceDir: path.dirname(modelFile) });
  return file;
}

/** A model folder (config.json with the new vocab_size, onnx/model.onnx) for the widened copy, in
 *  `dir`; the source folder has model.onnx or onnx/model.onnx, and config.json. */
export function widenedModelDir(modelDir: string, vocab: number, dir: string): string {
  const out = path.join(dir, `${path.basename(modelDir)}-vocab${vocab}`);
  fs.mkdirSync(path.join(out, 'onnx'), { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify({ ...cfg, vocab_size: vocab }, null, 2));
  widenVocab(resolveModelFile(modelDir), vocab, path.join(out, 'onnx', 'model.onnx'));
  return out;
}
