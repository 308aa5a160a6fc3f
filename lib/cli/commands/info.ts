// personafuse info: backends, CPU features, and a summary of a model when --model is given.
import * as os from 'node:os';
import { Command } from 'commander';
import { info as kernelInfo } from '../../kernels';
import { readModel } from '../../onnx/proto';
import { findLinearTargets, summarizeTargets } from '../../onnx/targets';
import { resolveModelFile } from '../../model/persona_model';
import { addModelFlags, adapterFolders, ModelFlags, output } from '../options';

export function infoCommand(): Command {
  return addModelFlags(new Command('info').description('backends, CPU features and a model summary')).action((flags: ModelFlags) => {
    const k = kernelInfo();
    const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
    const result: Record<string, unknown> = { kernels: k, cpu, cores: os.cpus().length, node: process.version };
    const lines = [`kernels: backends ${k.backends.join(', ')}, simd ${k.simd}, ${k.threads} threads`, `cpu: ${cpu} (${os.cpus().length} cores)`];
    if (flags.model) {
      const file = resolveModelFile(flags.model);
      const model = readModel(file);
      const targets = findLinearTargets(model);
      const g = model.graph!;
      const summary = {
        file, inputs: g.input.map((i) => i.name), outputs: g.output.map((o) => o.name),
        opset: model.opsetImport.map((o) => `${o.domain || 'ai.onnx'}:${o.version}`),
        linearLayers: targets.length, modules: summarizeTargets(targets),
      };
      result.model = summary;
      lines.push(`model: ${file}`, `  opset ${summary.opset.join(', ')}; ${g.input.length} inputs, ${g.output.length} outputs`,
        `  ${targets.length} linear layers: ${summary.modules}`);
    }
    const adapters = adapterFolders(flags);
    if (Object.keys(adapters).length) {
      result.adapters = adapters;
      lines.push(`adapters: ${Object.keys(adapters).join(', ')}`);
    }
    output(flags, result, lines.join('\n'));
  });
}
