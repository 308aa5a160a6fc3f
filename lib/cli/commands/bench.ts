// personafuse bench: the kernel benchmark (bench/run.ts), same flags.
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Command } from 'commander';
import { packageRoot } from '../../kernels/binding';

export function benchCommand(): Command {
  return new Command('bench')
    .description('benchmark the kernels against onnxruntime and the TypeScript reference')
    .allowUnknownOption(true)
    .helpOption(false)
    .action((_opts: unknown, cmd: Command) => {
      const script = path.join(packageRoot(), 'dist', 'bench', 'run.js');
      const r = spawnSync(process.execPath, [script, ...cmd.args], { stdio: 'inherit' });
      process.exitCode = r.status ?? 1;
    });
}
