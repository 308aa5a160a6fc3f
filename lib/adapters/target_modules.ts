// Which modules an adapter's config selects, as PEFT 0.21 decides it (check_target_module_exists):
//
//   target_modules a list       path === t, or path ends with '.' + t          (for any t)
//   target_modules a string     the whole path matches it as a regular expression (fullmatch)
//                  'all-linear' every linear layer but the output head
//   exclude_modules             the same two forms; a match deselects the module
//   layers_to_transform         (list form) the module's layer index must be among them
//   target_modules null         PEFT picks its default for the model type: not checkable here, so
//                               every module is taken as selected
//
// PEFT refuses an adapter whose target_modules selects none of the model's modules ("Target
// modules {...} not found in the base model"), and it never creates (nor loads) LoRA weights for a
// module it does not select: we refuse both the same way.
import type { PeftLoraConfig } from './peft';

/** A module path such as 'model.layers.3.self_attn.q_proj', with its layer index. */
export interface ModuleRef {
  path: string;
  layer: number | null;
}

const OUTPUT_HEADS = ['lm_head', 'embed_out', 'output', 'score'];

function listMatch(list: readonly string[], path: string): boolean {
  return list.some((t) => path === t || path.endsWith(`.${t}`));
}

function fullMatch(pattern: string, path: string): boolean {
  try {
    return new RegExp(`^(?:${pattern})$`).test(path);
  } catch {
    return false;
  }
}

function strings(v: unknown): string[] | string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  return null;
}

/** Whether the config's target_modules (with exclude_modules and layers_to_transform) selects the module. */
export function selectsModule(config: PeftLoraConfig, m: ModuleRef): boolean {
  const exclude = strings(config.raw.exclude_modules);
  if (exclude !== null && (typeof exclude === 'string' ? fullMatch(exclude, m.path) : listMatch(exclude, m.path))) return false;
  const targets = config.targetModules;
  if (targets === null) return true;
  if (typeof targets === 'string') {
    if (targets.toLowerCase() === 'all-linear') return !OUTPUT_HEADS.includes(m.path.split('.').pop()!);
    return fullMatch(targets, m.path);
  }
  if (!listMatch(targets, m.path)) return false;
  const layers = config.layersToTransform;
  if (layers === null) return true;
  const wanted = typeof layers === 'number' ? [layers] : layers;
  return m.layer !== null && wanted.includes(m.layer);
}

/** target_modules as a user reads it, for error messages. */
export function describeTargets(config: PeftLoraConfig): string {
  const t = config.targetModules;
  if (t === null) return '(none given)';
  return typeof t === 'string' ? `the pattern '${t}'` : `[${t.join(', ')}]`;
}
