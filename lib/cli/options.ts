// Flags shared by the commands: where the model and the persona experts are.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';

export interface ModelFlags {
  model?: string;
  adapters?: string;
  adapter?: string[];
  json?: boolean;
}

export function addModelFlags(cmd: Command): Command {
  return cmd
    .option('--model <path>', 'a model folder (with model.onnx) or an .onnx file')
    .option('--adapters <dir>', 'a folder whose every subfolder is a PEFT adapter, named by its folder')
    .option('--adapter <name=path>', 'one PEFT adapter (repeatable)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--json', 'print one JSON object');
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
