#!/usr/bin/env node
// personafuse command line: `npx personafuse <command> --help`.
import { Command } from 'commander';
import { benchCommand } from './commands/bench';
import { infoCommand } from './commands/info';
import { injectCommand } from './commands/inject';
import { mergeCommand } from './commands/merge';
import { routeCommand } from './commands/route';
import { routerCommand } from './commands/router';
import { generateCommand } from './commands/generate';
import { chatCommand } from './commands/chat';
import { serveCommand } from './commands/serve';

export function program(): Command {
  return new Command('personafuse')
    .description('persona-adaptive LLM serving: LoRA persona experts on a stock ONNX decoder')
    .addCommand(infoCommand())
    .addCommand(injectCommand())
    .addCommand(mergeCommand())
    .addCommand(routeCommand())
    .addCommand(routerCommand())
    .addCommand(generateCommand())
    .addCommand(chatCommand())
    .addCommand(serveCommand())
    .addCommand(benchCommand());
}

if (require.main === module) {
  program()
    .parseAsync(process.argv)
    .catch((err: unknown) => {
      const json = process.argv.includes('--json');
      const message = err instanceof Error ? err.message : String(err);
      if (json) process.stdout.write(`${JSON.stringify({ error: message })}\n`);
      else process.stderr.write(`personafuse: ${message}\n`);
      process.exitCode = 1;
    });
}
