// personafuse chat: an interactive terminal chat. Each turn shows the traits the persona
// (router or --persona) chose, then streams the answer. /reset clears the conversation,
// /exit (or Ctrl-D) ends. With --json every turn prints one object { user, text, mix, usage,
// finishReason } instead.
import * as readline from 'node:readline';
import { Command } from 'commander';
import { ChatMessage } from '../../decoder/text_codec';
import { GenerateOptions } from '../../engine/options';
import { addModelFlags, addMallocFlags, addPersonaFlags, loraLayoutOption, describeMix, ModelFlags, parsePersona, loadModelFromFlags } from '../options';
import { addSamplingFlags, SamplingFlags, samplingOptions } from './generate';

export function chatCommand(): Command {
  return addSamplingFlags(addPersonaFlags(addMallocFlags(addModelFlags(new Command('chat').description('interactive chat, showing the chosen traits per turn'))))
    .addOption(loraLayoutOption()))
    .option('--system <text>', 'a system message to start the conversation with')
    .action(async (flags: ModelFlags & SamplingFlags & { system?: string }) => {
      const model = await loadModelFromFlags(flags, { worker: false });
      const persona = parsePersona(flags.persona);
      const start: ChatMessage[] = flags.system ? [{ role: 'system', content: flags.system }] : [];
      let history = [...start];
      const tty = process.stdin.isTTY === true && !flags.json;
      const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: tty });
      if (tty) process.stdout.write(`personafuse chat: ${model.experts.length} experts${model.router ? ', router on' : ''}. /reset, /exit\n`);
      const prompt = () => tty && rl.prompt();
      rl.setPrompt('you> ');
      prompt();
      try {
        for await (const line of rl) {
          const text = line.trim();
          if (text === '/exit') break;
          if (text === '/reset') {
            history = [...start];
            prompt();
            continue;
          }
          if (!text) {
            prompt();
            continue;
          }
          history.push({ role: 'user', content: text });
          const opts = { messages: history, ...samplingOptions(flags), ...(persona !== undefined ? { persona } : {}) } as GenerateOptions;
          let result;
          let first = true;
          for await (const ev of model.stream(opts)) {
            if (first && !flags.json) process.stdout.write(`[traits: ${describeMix(ev.done ? ev.result.mix : ev.mix)}]\nbot> `);
            first = false;
            if (!flags.json) process.stdout.write(ev.text);
            if (ev.done) result = ev.result;
          }
          if (!result) break;
          history.push({ role: 'assistant', content: result.text });
          if (flags.json) {
            process.stdout.write(`${JSON.stringify({ user: text, text: result.text, mix: result.mix, usage: result.usage, finishReason: result.finishReason })}\n`);
          } else process.stdout.write('\n');
          prompt();
        }
      } finally {
        rl.close();
        await model.dispose();
      }
    });
}
