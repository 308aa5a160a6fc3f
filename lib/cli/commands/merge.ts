// personafuse merge: a fixed mix merged into the base weights, as a plain ONNX model.
import { Command } from 'commander';
import { mergeModel } from '../../model/merge_model';
import { addModelFlags, adapterFolders, ModelFlags, output, requireModel } from '../options';
import { withProgressBar } from '../progress';

export function mergeCommand(): Command {
  return addModelFlags(new Command('merge').description('merge a fixed persona mix into the base weights'))
    .requiredOption('--mix <json>', 'the mix, e.g. \'{"openness_high": 0.7, "extraversion_low": 0.3}\'')
    .requiredOption('--out <file>', 'the merged .onnx file to write')
    .action((flags: ModelFlags & { mix: string; out: string }) => {
      let mix: Record<string, number>;
      try {
        mix = JSON.parse(flags.mix) as Record<string, number>;
      } catch {
        throw new Error(`--mix is not valid JSON: ${flags.mix}`);
      }
      const res = withProgressBar(flags, (onProgress) => mergeModel({ model: requireModel(flags), adapters: adapterFolders(flags), mix, out: flags.out, onProgress }));
      output(flags, { ...res, mix }, `wrote ${res.file}: ${res.merged} weights merged`);
    });
}
