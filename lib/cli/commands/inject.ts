// personafuse inject: build (or reuse) the model with A_in/B_in inputs for the adapters, or with
// --lora-layout bank, with the adapters inside it and one gates input.
import * as path from 'node:path';
import { Command } from 'commander';
import { loadPeftAdapter } from '../../adapters';
import { injectedModel } from '../../onnx/cache';
import { resolveModelFile } from '../../model/persona_model';
import { bankSource } from '../../decoder/site_banks';
import { addModelFlags, adapterFolders, loraLayoutOption, ModelFlags, output, requireModel } from '../options';
import { withProgressBar } from '../progress';

export function injectCommand(): Command {
  return addModelFlags(new Command('inject').description('add LoRA inputs for the adapters to an ONNX model (cached)'))
    .option('--out-dir <dir>', 'where to write the injected model (default: beside the model)')
    .addOption(loraLayoutOption('inject'))
    .action((flags: ModelFlags & { outDir?: string }) => {
      const file = resolveModelFile(requireModel(flags));
      const folders = adapterFolders(flags);
      if (Object.keys(folders).length === 0) throw new Error('inject needs adapters: --adapters DIR or --adapter NAME=PATH');
      const adapters = Object.entries(folders).map(([name, dir]) => loadPeftAdapter(dir, name));
      const bank = flags.loraLayout === 'bank' ? bankSource(adapters) : undefined;
      const built = withProgressBar(flags, (onProgress) => injectedModel(file, adapters, { cacheDir: flags.outDir, onProgress, bank, pruneUnusedDays: 0 /* an explicit build removes nothing */ }));
      const gates = built.injection.gates;
      const sites = built.injection.sites.map((s) => ({
        layer: s.layer, module: s.module, din: s.din, dout: s.dout, ...(gates ? { initializers: [s.aInput, s.bInput] } : { inputs: [s.aInput, s.bInput] }),
      }));
      output(flags, { file: built.file, reused: built.reused, layout: gates ? 'bank' : 'per-row', gates, sites },
        `${built.reused ? 'reused' : 'wrote'} ${path.relative(process.cwd(), built.file) || built.file}: ${sites.length} adapted modules` +
        (gates ? `, every expert inside, fed by ${gates.input} [batch, ${gates.experts}]` : ''));
    });
}
