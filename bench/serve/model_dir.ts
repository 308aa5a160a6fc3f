// A servable folder for a benchmark model that is not one: bench/models/llama-1b-slice is a bare
// graph (config.json, onnx/model.onnx whose 981 MB of weights bench/synthetic_weights.ts writes
// on first use) with no tokenizer, no adapters and no router, while the server takes chat
// messages and serves persona experts. Built under the work folder, once, and reused:
//   config.json             a link to the model's
//   onnx/model.onnx and onnx/<external data>   hard links to the model's own files
//   tokenizer.json          the demo model's byte-level BPE cut to the model's vocabulary (ids
//                           below vocab_size: the 3 specials, the 256 bytes, the first merges),
//                           so every id the server feeds is a row of the embedding
//   tokenizer_config.json   the demo's chat template, model_max_length = max_position_embeddings
//   generation_config.json  the demo's sampling defaults (eos 2 as in the model's config)
//   adapters/               the ten Big Five pole experts, random rank 16 (as bench/generate.ts)
// A folder that has a tokenizer.json (beside its model or one level up) is served as it is.
import * as fs from 'node:fs';
import * as path from 'node:path';

const MODEL_FILES = ['model.onnx', path.join('onnx', 'model.onnx')];

export function modelFileOf(dir: string): string {
  const file = MODEL_FILES.map((f) => path.join(dir, f)).find((f) => fs.existsSync(f));
  if (!file) throw new Error(`${dir} has neither ${MODEL_FILES.join(' nor ')}`);
  return file;
}

export interface Servable {
  /** the folder to pass to serve --model */
  dir: string;
  /** what was added, for the results file ([] when the folder is served as it is) */
  added: string[];
}

interface BpeTokenizer {
  added_tokens: { id: number }[];
  model: { type: string; vocab: Record<string, number>; merges: (string | [string, string])[] };
}

/** The demo tokenizer cut to ids < vocab. */
function cutTokenizer(demoTokenizer: string, vocab: number): BpeTokenizer {
  const t = JSON.parse(fs.readFileSync(demoTokenizer, 'utf8')) as BpeTokenizer;
  if (t.model.type !== 'BPE') throw new Error(`${demoTokenizer}: expected a BPE tokenizer`);
  const kept = Object.fromEntries(Object.entries(t.model.vocab).filter(([, id]) => id < vocab));
  if (Object.keys(kept).length < 259) throw new Error(`a vocabulary of ${vocab} cannot hold the byte-level base (259 tokens)`);
  const merges = t.model.merges.filter((m) => {
    const [a, b] = Array.isArray(m) ? m : m.split(' ');
    return kept[a + b] !== undefined && kept[a] !== undefined && kept[b] !== undefined;
  });
  return { ...t, added_tokens: t.added_tokens.filter((a) => a.id < vocab), model: { ...t.model, vocab: kept, merges } };
}

export async function servableModel(dir: string, work: string, demoDir: string, log: (s: string) => void): Promise<Servable> {
  const modelFile = modelFileOf(dir);
  const own = [path.dirname(modelFile), path.dirname(path.dirname(modelFile))];
  if (own.some((d) => fs.existsSync(path.join(d, 'tokenizer.json')))) return { dir, added: [] };

  // loaded here only: the synthetic weights' writer reads the graph with the library's protobuf code
  const { ensureSyntheticWeights } = await import('../synthetic_weights');
  ensureSyntheticWeights(modelFile, log);
  const cfgFile = path.join(dir, 'config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as { vocab_size: number; max_position_embeddings: number };
  const out = path.join(work, `${path.basename(path.resolve(dir))}-servable`);
  const stamp = path.join(out, 'READY');
  const rel = path.relative(dir, modelFile);
  const added = ['tokenizer.json (demo BPE cut to the vocabulary)', 'tokenizer_config.json', 'generation_config.json', 'adapters/ (10 random rank-16 pole experts)'];
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === statKey(modelFile)) return { dir: out, added };

  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(path.join(out, rel)), { recursive: true });
  fs.symlinkSync(path.resolve(cfgFile), path.join(out, 'config.json'));
  // the graph and every file beside it (its external data) as hard links, so nothing of the
  // weights is copied: onnxruntime resolves a symbolic link and refuses external data that
  // resolves outside the model's folder. A copy when the work folder is on another file system.
  for (const f of fs.readdirSync(path.dirname(modelFile))) {
    const from = path.resolve(path.dirname(modelFile), f);
    const to = path.join(out, path.dirname(rel), f);
    if (!fs.statSync(from).isFile()) continue;
    try {
      fs.linkSync(from, to);
    } catch {
      fs.copyFileSync(from, to);
    }
  }
  fs.writeFileSync(path.join(out, 'tokenizer.json'), JSON.stringify(cutTokenizer(path.join(demoDir, 'tokenizer.json'), cfg.vocab_size)));
  const tc = JSON.parse(fs.readFileSync(path.join(demoDir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(path.join(out, 'tokenizer_config.json'), JSON.stringify({ ...tc, model_max_length: cfg.max_position_embeddings }, null, 2));
  fs.copyFileSync(path.join(demoDir, 'generation_config.json'), path.join(out, 'generation_config.json'));
  const { POLES, writeRandomAdapters } = await import('../random_adapters');
  writeRandomAdapters(path.join(out, 'adapters'), POLES, cfgFile, { rank: 16 });
  fs.writeFileSync(stamp, statKey(modelFile));
  log(`servable copy of ${dir}: ${out} (${added.join(', ')})`);
  return { dir: out, added };
}

function statKey(file: string): string {
  const s = fs.statSync(file);
  return `${path.resolve(file)} ${s.size} ${s.mtimeMs}`;
}
