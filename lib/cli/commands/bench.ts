// personafuse bench [kernels|forward|generate|serve] [flags]: the benchmarks of bench/, same flags.
//   kernels   (default) each kernel against onnxruntime peers, the TS reference and the limits
//   forward   base vs injected vs merged forward passes (bench/models/llama-h512)
//   generate  generation tokens/s, mixed batch vs serial, transformers.js peer (the embedded
//             demo model by default; --model DIR for another)
//   serve     load generator for the OpenAI-compatible server: streaming chat completions over
//             HTTP at --levels 1,8,32 (closed loop) or --rate R (open loop); tok/s, TTFT, TPOT,
//             latency percentiles, server RSS (starts `personafuse serve` itself, or --url)
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Command } from 'commander';
import { packageRoot } from '../../kernels/binding';

const SCRIPTS: Record<string, string> = { kernels: 'run.js', forward: 'model_forward.js', generate: 'generate.js', serve: 'serve.js' };

export function benchCommand(): Command {
  return new Command('bench')
    .description('benchmarks: kernels (default), forward, generate (end to end) or serve (the HTTP server under load); flags go to the benchmark')
    .argument('[args...]', 'kernels | forward | generate | serve, then the benchmark\'s flags')
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .helpOption(false)
    .action((_args: string[], _opts: unknown, cmd: Command) => {
      const args = [...cmd.args];
      const which = args[0] !== undefined && Object.hasOwn(SCRIPTS, args[0]) ? args.shift()! : 'kernels';
      const script = path.join(packageRoot(), 'dist', 'bench', SCRIPTS[which]);
      const r = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit' });
      process.exitCode = r.status ?? 1;
    });
}
