// Flags shared by the commands: where the model and the persona experts are.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { packageRoot } from '../kernels/binding';
import { tuneAllocator } from '../kernels/allocator';
import { LoraLayout, PersonaModel } from '../model/persona_model';
import { LORA_LAYOUTS } from '../decoder/lora_layout';
import { withProgressBar } from './progress';
import type { Persona } from '../router/persona';

export interface ModelFlags {
  model?: string;
  adapters?: string;
  adapter?: string[];
  json?: boolean;
  router?: string;
  persona?: string;
  cacheDir?: string;
  pruneUnusedDays?: number;
  loraLayout?: LoraLayout | 'auto';
  systemMalloc?: boolean;
  tuneMalloc?: boolean;
}

export function addModelFlags(cmd: Command): Command {
  return cmd
    .option('--model <path>', 'a model folder (with model.onnx) or an .onnx file')
    .option('--adapters <dir>', 'a folder whose every subfolder is a PEFT adapter, named by its folder')
    .option('--adapter <name=path>', 'one PEFT adapter (repeatable)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--json', 'print one JSON object');
}

/** The malloc flags of the commands that run a model (loadModelFromFlags applies them):
 *  --tune-malloc raises glibc malloc's thresholds; --system-malloc keeps glibc's own, the default since
 *  the tuning stopped paying (docs/design.md §4), and stays so that scripts passing it go on working. */
export function addMallocFlags(cmd: Command): Command {
  return cmd
    .addOption(new Option('--system-malloc', "keep glibc malloc's own thresholds (the default; see --tune-malloc)").conflicts('tuneMalloc'))
    .addOption(new Option('--tune-malloc', "raise glibc malloc's mmap and trim thresholds, so that large onnxruntime outputs reuse heap memory instead of page-faulting in fresh pages (holds on to the busiest moment's memory)"));
}

/** { name: folder } from --adapters and --adapter, in a stable order (folders sorted, then flags). */
export function adapterFolders(flags: ModelFlags): Record<string, string> {
  const out: Record<string, string> = {};
  if (flags.adapters) {
    if (!fs.existsSync(flags.adapters)) throw new Error(`--adapters: ${flags.adapters} does not exist`);
    for (const d of fs.readdirSync(flags.adapters).sort()) {
      const full = path.join(flags.adapters, d);
      if (fs.statSync(full).isDirectory() && fs.existsSync(path.join(full, 'adapter_config.json'))) out[d] = full;
    }
  }
  for (const spec of flags.adapter ?? []) {
    const eq = spec.indexOf('=');
    if (eq <= 0) throw new Error(`--adapter expects NAME=PATH but received '${spec}'`);
    out[spec.slice(0, eq)] = spec.slice(eq + 1);
  }
  return out;
}

export function requireModel(flags: ModelFlags): string {
  if (!flags.model) throw new Error('--model is required (a model folder or an .onnx file)');
  return flags.model;
}

/** JSON when --json, else the human text. */
export function output(flags: { json?: boolean }, value: unknown, text: string): void {
  process.stdout.write(flags.json ? `${JSON.stringify(value)}\n` : `${text}\n`);
}

/** --router and --persona, for the commands that generate or route. */
export function addPersonaFlags(cmd: Command): Command {
  return cmd
    .option('--router <dir>', 'a router folder (router.json, model.onnx, tokenizer.json); default <model folder>/router')
    .option('--persona <persona>', "auto | a Big Five profile JSON {\"openness\":0.8} | {\"mix\":{\"expert\":weight}}")
    .option('--cache-dir <dir>', 'where the injected model is cached (default: beside the model; ~/.cache/personafuse for models shipped in the package)')
    .option('--prune-unused-days <days>', 'when a new injected model is built, remove the cache folder\'s injected models no process has used for this many days (default 30; 0 keeps everything)', daysFlag('--prune-unused-days'));
}

/** --lora-layout: how the experts enter the graph (PersonaModelOptions.loraLayout). `inject` writes one
 *  form, so it has no 'auto'; `serve` defaults to the bank (see SERVE_LORA_LAYOUT). */
export function loraLayoutOption(use: 'run' | 'serve' | 'inject' = 'run'): Option {
  const defaults = {
    run: "; auto (default): bank when it adds at most 1/8 of the weights' bytes",
    serve: "; auto: bank when it adds at most 1/8 of the weights' bytes (serve's default is bank: a loaded server's batches are wide, where the bank is the faster form)",
    inject: ' (default per-row)',
  };
  const option = new Option('--lora-layout <layout>', 'per-row: each request\'s mix folded into its own adapter inputs (cheaper at small batches); ' +
    'bank: every expert in the graph, requests feed only their gates (cheaper from 5 rows on, no fold when a request joins)' + defaults[use])
    .choices(use === 'inject' ? [...LORA_LAYOUTS] : ['auto', ...LORA_LAYOUTS]);
  return use === 'serve' ? option.default(SERVE_LORA_LAYOUT) : option;
}

/**
 * The server's layout unless --lora-layout says otherwise. A server under load decodes wide batches, and
 * there the bank is faster on every model we measured (bench generate, median tok/s bank / per-row at batch
 * 8 and 32: demo 1.03-1.21x and 1.20x over two runs, llama-h512 1.16x and 1.43x, llama-1b-slice 1.07x and
 * 1.16x), while at batch 1 it costs 0-12% on the demo, nothing on the slice and 8-28% on llama-h512 (the
 * generate-*.json files in bench/results). `auto` optimises the one-request case, which is what generate
 * and chat run.
 */
export const SERVE_LORA_LAYOUT: LoraLayout = 'bank';

/** The embedded demo model: what the commands run when --model is not given. */
export function demoModelDir(): string {
  return path.join(packageRoot(), 'models', 'persona-demo');
}

export interface ModelSetup {
  model: string;
  adapters: Record<string, string>;
  router?: string;
  cacheDir?: string;
}

/**
 * The model, adapters and router a command uses: the flags, else the demo model folder; adapters
 * default to <model folder>/adapters and the router to <model folder>/router when they exist.
 */
export function modelSetup(flags: ModelFlags): ModelSetup {
  const model = flags.model ?? demoModelDir();
  if (!fs.existsSync(model)) {
    throw new Error(flags.model
      ? `--model: ${model} does not exist`
      : `No --model given and the embedded demo model ${model} is not there (it ships with the package once built); pass --model <folder or .onnx>`);
  }
  const dir = fs.statSync(model).isDirectory() ? model : path.dirname(model);
  let adapters = adapterFolders(flags);
  if (!flags.adapters && !(flags.adapter ?? []).length && fs.existsSync(path.join(dir, 'adapters'))) {
    adapters = adapterFolders({ adapters: path.join(dir, 'adapters') });
  }
  const router = flags.router ?? (fs.existsSync(path.join(dir, 'router', 'router.json')) ? path.join(dir, 'router') : undefined);
  // the embedded demo model lives inside the installed package, which may be read-only
  const shipped = path.resolve(model).startsWith(path.join(packageRoot(), 'models') + path.sep);
  const cacheDir = flags.cacheDir ?? (shipped ? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'personafuse') : undefined);
  if (cacheDir) fs.mkdirSync(cacheDir, { recursive: true });
  return { model, adapters, router, cacheDir };
}

/** --persona: 'auto' or JSON; undefined leaves the default ('auto' with a router, else the base model). */
export function parsePersona(text: string | undefined): Persona | undefined {
  if (text === undefined) return undefined;
  if (text === 'auto') return 'auto';
  try {
    return JSON.parse(text) as Persona;
  } catch {
    throw new Error(`--persona expects auto or JSON ({"openness":0.8} or {"mix":{"openness_high":1}}) but received '${text}'`);
  }
}

/** A numeric flag value, refused by name when it is not a number. */
export function numberFlag(name: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new Error(`${name} expects a number but received '${v}'`);
    return n;
  };
}

/** A number of days, 0 or more, refused by name otherwise. */
export function daysFlag(name: string): (v: string) => number {
  const parse = numberFlag(name);
  return (v: string) => {
    const n = parse(v);
    if (n < 0) throw new Error(`${name} expects 0 or more days but received '${v}'`);
    return n;
  };
}

/** "openness_high 0.62, agreeableness_high 0.38" (or "base model") for terminals. */
export function describeMix(mix: Record<string, number>): string {
  const parts = Object.entries(mix).sort((a, b) => b[1] - a[1]).map(([k, w]) => `${k} ${w.toFixed(2)}`);
  return parts.length ? parts.join(', ') : 'base model (no persona)';
}

/** Whether the environment already sets either threshold (then both are left as the operator chose). */
export function mallocTunedByEnvironment(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.MALLOC_MMAP_THRESHOLD_ !== undefined || env.MALLOC_TRIM_THRESHOLD_ !== undefined || /glibc\.malloc\.(mmap|trim)_threshold/.test(env.GLIBC_TUNABLES ?? '');
}

export type MallocState = 'tuned' | 'system' | 'environment' | 'unavailable';

/** What became of malloc's thresholds: glibc's own ('system', the default), raised by --tune-malloc
 *  ('tuned'), left as the environment set them ('environment'), or 'unavailable' (--tune-malloc
 *  where malloc has no such settings). */
export function applyMallocTuning(flags: ModelFlags): MallocState {
  if (mallocTunedByEnvironment()) return 'environment';
  if (!flags.tuneMalloc) return 'system';
  return tuneAllocator() ? 'tuned' : 'unavailable';
}

/** The model for generate / chat / serve, with a progress bar on stderr while the injected model
 *  is built (first run only; later runs reuse the cache). */
export async function loadModelFromFlags(flags: ModelFlags, extra: LoadExtra = {}, setup: ModelSetup = modelSetup(flags)): Promise<PersonaModel> {
  return (await loadModelAndTuning(flags, extra, setup)).model;
}

type LoadExtra = { worker?: boolean; maxBatch?: number; intraOpNumThreads?: number; replicas?: number };

/** loadModelFromFlags, also saying what became of malloc's thresholds (serve reports it). */
export async function loadModelAndTuning(flags: ModelFlags, extra: LoadExtra = {}, setup: ModelSetup = modelSetup(flags)): Promise<{ model: PersonaModel; malloc: MallocState }> {
  const malloc = applyMallocTuning(flags);
  const model = await withProgressBar(flags, (onProgress) =>
    PersonaModel.load({ model: setup.model, adapters: setup.adapters, router: setup.router, cacheDir: setup.cacheDir, pruneUnusedDays: flags.pruneUnusedDays, loraLayout: flags.loraLayout, onProgress, ...extra }));
  return { model, malloc };
}
