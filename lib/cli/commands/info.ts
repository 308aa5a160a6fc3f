// personafuse info: backends (and why CUDA is or is not usable), CPU features, and a summary of
// the model the other commands would use (--model, else the embedded demo model).
import * as fs from 'node:fs';
import * as os from 'node:os';
import { Command } from 'commander';
import { usableCores } from '../../cores';
import { info as kernelInfo } from '../../kernels';
import { readModel } from '../../onnx/proto';
import { findLinearTargets, summarizeTargets } from '../../onnx/targets';
import { resolveModelFile } from '../../model/persona_model';
import { autoLayoutFor } from '../../decoder/lora_layout';
import { loadPeftAdapter } from '../../adapters';
import { addModelFlags, demoModelDir, ModelFlags, modelSetup, output } from '../options';

/** The SIMD-relevant CPU flags (Linux /proc/cpuinfo; empty elsewhere). */
function cpuFeatures(): string[] {
  try {
    const flags = /^flags\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
    return flags.split(/\s+/).filter((f) => /^(avx|fma|f16c|amx|sse4_2)/.test(f));
  } catch {
    return [];
  }
}

export function infoCommand(): Command {
  return addModelFlags(new Command('info').description('backends, CPU features and a model summary')).action((flags: ModelFlags) => {
    const k = kernelInfo();
    const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
    const features = cpuFeatures();
    const usable = usableCores();
    const result: Record<string, unknown> = { kernels: k, cpu, cores: os.cpus().length, usableCores: usable, cpuFeatures: features, node: process.version };
    const cuda = k.cuda?.available
      ? `cuda: ${k.cuda.devices?.map((d) => `${d.name} (sm ${d.computeCapability})`).join(', ')}`
      : `cuda: not used (${k.cuda?.reason ?? 'unknown'})`;
    const lines = [
      `kernels: backends ${k.backends.join(', ')}, simd ${k.simd}, ${k.threads} threads`, cuda,
      `cpu: ${cpu} (${os.cpus().length} cores, ${usable} usable here; ${features.join(' ') || 'no SIMD flags read'})`,
    ];
    if (flags.model || fs.existsSync(demoModelDir())) {
      const setup = modelSetup(flags);
      const file = resolveModelFile(setup.model);
      const model = readModel(file);
      const targets = findLinearTargets(model);
      const g = model.graph!;
      // what loraLayout 'auto' does with these adapters (lib/model/lora_layout.ts)
      const auto = autoLayoutFor(Object.entries(setup.adapters).map(([name, dir]) => loadPeftAdapter(dir, name)), model);
      const summary = {
        file, inputs: g.input.map((i) => i.name), outputs: g.output.map((o) => o.name),
        opset: model.opsetImport.map((o) => `${o.domain || 'ai.onnx'}:${o.version}`),
        kvCache: g.input.some((i) => i.name.startsWith('past_key_values.')),
        linearLayers: targets.length, modules: summarizeTargets(targets),
        adapters: Object.keys(setup.adapters), router: setup.router ?? null,
        weightBytes: auto.weightBytes, bankBytes: auto.bankBytes, loraLayout: auto.layout,
      };
      result.model = summary;
      lines.push(`model: ${file}${flags.model ? '' : ' (embedded demo)'}`,
        `  opset ${summary.opset.join(', ')}; ${g.input.length} inputs, ${g.output.length} outputs; KV cache ${summary.kvCache ? 'yes' : 'no'}`,
        `  ${targets.length} linear layers: ${summary.modules}`,
        `  adapters: ${summary.adapters.join(', ') || 'none'}` +
          (summary.adapters.length ? ` (as a bank ${(summary.bankBytes / 2 ** 20).toFixed(1)} MiB, ${(100 * summary.bankBytes / summary.weightBytes).toFixed(1)}% ` +
            `of the weights' ${(summary.weightBytes / 2 ** 20).toFixed(1)} MiB: loraLayout auto = ${summary.loraLayout})` : ''),
        `  router: ${summary.router ?? 'none'}`);
    }
    output(flags, result, lines.join('\n'));
  });
}
