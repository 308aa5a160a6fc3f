// Random PEFT LoRA adapters for a Llama-style model folder's config.json: real adapter folders
// (adapter_config.json + adapter_model.safetensors) that go through the same loader as any user
// adapter. Values are random (lora_B too, unlike PEFT's zero init) so every path does real work.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIG_FIVE } from '../lib';
import { writeSafetensors, TensorToWrite } from '../lib/adapters';
import { rng } from './harness';

/** The ten Big Five pole experts: openness_high, openness_low, conscientiousness_high, ... */
export const POLES: string[] = BIG_FIVE.flatMap((t) => [`${t}_high`, `${t}_low`]);

/** The k = 2 mix of batch row b: two different experts, 0.7 / 0.3. */
export function rowMix(experts: readonly string[], b: number): Record<string, number> {
  const n = experts.length;
  return { [experts[b % n]]: 0.7, [experts[(b + 3) % n]]: 0.3 };
}

export const LLAMA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

interface LlamaConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
}

/** [din, dout] of each target module of one decoder layer. */
export function llamaModuleShapes(cfg: LlamaConfig): Record<string, [number, number]> {
  const h = cfg.hidden_size;
  const hd = cfg.head_dim ?? h / cfg.num_attention_heads;
  const q = cfg.num_attention_heads * hd;
  const kv = (cfg.num_key_value_heads ?? cfg.num_attention_heads) * hd;
  const inter = cfg.intermediate_size;
  return {
    q_proj: [h, q], k_proj: [h, kv], v_proj: [h, kv], o_proj: [q, h],
    gate_proj: [h, inter], up_proj: [h, inter], down_proj: [inter, h],
  };
}

/** Writes `names.length` adapters of rank r into root/<name>/; returns { name: folder }. */
export function writeRandomAdapters(
  root: string, names: string[], configFile: string, opts: { rank: number; alpha?: number; seed?: number },
): Record<string, string> {
  const cfg = JSON.parse(fs.readFileSync(configFile, 'utf8')) as LlamaConfig;
  const shapes = llamaModuleShapes(cfg);
  const r = opts.rank;
  const out: Record<string, string> = {};
  names.forEach((name, e) => {
    const next = rng((opts.seed ?? 1) * 1000 + e);
    const dir = path.join(root, name);
    fs.mkdirSync(dir, { recursive: true });
    const tensors: Record<string, TensorToWrite> = {};
    for (let layer = 0; layer < cfg.num_hidden_layers; layer++) {
      for (const mod of LLAMA_TARGETS) {
        const [din, dout] = shapes[mod];
        const block = ['gate_proj', 'up_proj', 'down_proj'].includes(mod) ? 'mlp' : 'self_attn';
        const key = `base_model.model.model.layers.${layer}.${block}.${mod}`;
        const a = Float32Array.from({ length: r * din }, () => (next() * 2 - 1) / Math.sqrt(din));
        const b = Float32Array.from({ length: dout * r }, () => (next() * 2 - 1) * 0.02);
        tensors[`${key}.lora_A.weight`] = { dtype: 'F32', shape: [r, din], data: a };
        tensors[`${key}.lora_B.weight`] = { dtype: 'F32', shape: [dout, r], data: b };
      }
    }
    writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: opts.alpha ?? 2 * r, lora_dropout: 0,
      target_modules: [...LLAMA_TARGETS], bias: 'none', use_rslora: false, fan_in_fan_out: false,
    }, null, 2));
    out[name] = dir;
  });
  return out;
}
