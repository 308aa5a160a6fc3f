// personafuse generate --prompt TEXT: one answer, streamed to the terminal as it is generated
// (with --json: one object { text, tokens, mix, usage, finishReason, seed } at the end).
// The prompt goes through the model's chat template as a user message when the model has one
// (--raw sends it as plain text).
import { Command } from 'commander';
import { GenerateOptions } from '../../engine/options';
import { addModelFlags, addMallocFlags, addPersonaFlags, loraLayoutOption, describeMix, ModelFlags, numberFlag, parsePersona, loadModelFromFlags } from '../options';

export interface SamplingFlags {
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  repetitionPenalty?: number;
  stop?: string[];
}

export function addSamplingFlags(cmd: Command): Command {
  return cmd
    .option('--max-new-tokens <n>', 'most tokens to generate', numberFlag('--max-new-tokens'))
    .option('--temperature <t>', '0 = greedy (default: the model generation_config)', numberFlag('--temperature'))
    .option('--top-p <p>', 'nucleus sampling mass', numberFlag('--top-p'))
    .option('--top-k <k>', 'sample among the k most likely tokens', numberFlag('--top-k'))
    .option('--seed <s>', 'same seed + same input -> same output', numberFlag('--seed'))
    .option('--repetition-penalty <p>', '> 1 discourages repeats', numberFlag('--repetition-penalty'))
    .option('--stop <text>', 'stop before this text (repeatable)', (v: string, acc: string[] = []) => [...acc, v]);
}

export function samplingOptions(f: SamplingFlags): Partial<GenerateOptions> {
  const o: Partial<GenerateOptions> = {};
  if (f.maxNewTokens !== undefined) o.maxNewTokens = f.maxNewTokens;
  if (f.temperature !== undefined) o.temperature = f.temperature;
  if (f.topP !== undefined) o.topP = f.topP;
  if (f.topK !== undefined) o.topK = f.topK;
  if (f.seed !== undefined) o.seed = f.seed;
  if (f.repetitionPenalty !== undefined) o.repetitionPenalty = f.repetitionPenalty;
  if (f.stop !== undefined) o.stop = f.stop;
  return o;
}

export function generateCommand(): Command {
  return addSamplingFlags(addPersonaFlags(addMallocFlags(addModelFlags(new Command('generate').description('generate one answer, streamed to the terminal'))))
    .addOption(loraLayoutOption()))
    .requiredOption('--prompt <text>', 'what to answer')
    .option('--raw', 'send the prompt as plain text, without the chat template')
    .action(async (flags: ModelFlags & SamplingFlags & { prompt: string; raw?: boolean }) => {
      const model = await loadModelFromFlags(flags, { worker: false });
      try {
        const input: Partial<GenerateOptions> = flags.raw || !model.codec?.hasChatTemplate
          ? { prompt: flags.prompt }
          : { messages: [{ role: 'user', content: flags.prompt }] };
        const persona = parsePersona(flags.persona);
        const opts = { ...input, ...samplingOptions(flags), ...(persona !== undefined ? { persona } : {}) } as GenerateOptions;
        const ac = new AbortController();
        const onSigint = () => ac.abort();
        process.once('SIGINT', onSigint);
        let result;
        let first = true;
        for await (const ev of model.stream({ ...opts, signal: ac.signal })) {
          if (first && !flags.json) process.stderr.write(`[persona: ${describeMix(ev.done ? ev.result.mix : ev.mix)}]\n`);
          first = false;
          if (!flags.json) process.stdout.write(ev.text);
          if (ev.done) result = ev.result;
        }
        process.off('SIGINT', onSigint);
        if (!result) return;
        if (flags.json) {
          const { text, tokens, mix, usage, finishReason, seed } = result;
          process.stdout.write(`${JSON.stringify({ text, tokens, mix, usage, finishReason, seed })}\n`);
        } else {
          process.stdout.write('\n');
          process.stderr.write(`[${result.finishReason}; ${result.usage.promptTokens} prompt + ${result.usage.completionTokens} generated tokens; seed ${result.seed}]\n`);
        }
      } finally {
        await model.dispose();
      }
    });
}
