// personafuse router train | eval: routers that read the situation the way the model does.
//   train  --model M --data DIR --out DIR   the model's pooled hidden states of every message,
//          a head trained in TypeScript (no Python), the router folder and its test report
//   eval   --data DIR [--split test]        the same report for any router (--router, or the
//          model's own) on any labelled split, e.g. a user's own messages
import { Command } from 'commander';
import { evaluateRouter, trainRouter } from '../../model/router_training';
import { formatReport } from '../../router/report';
import { addModelFlags, addPersonaFlags, loadModelFromFlags, ModelFlags, numberFlag, output } from '../options';
import { withProgressBar } from '../progress';

interface TrainFlags extends ModelFlags {
  data: string;
  out: string;
  hidden?: number;
  epochs?: number;
  lr?: number;
  weightDecay?: number;
  patience?: number;
  seed?: number;
  maxLength?: number;
}

export function routerCommand(): Command {
  const train = addPersonaFlags(addModelFlags(new Command('train').description('train a hidden-state router for a model on a labelled situation dataset')))
    .requiredOption('--data <dir>', 'table.json + train/validation/test.jsonl (data/situations in this repository)')
    .requiredOption('--out <dir>', 'the router folder to write (router.json, head.safetensors, report.json, report.md)')
    .option('--hidden <n>', 'width of a hidden layer (0: a linear head)', numberFlag('--hidden'), 0)
    .option('--epochs <n>', 'most epochs', numberFlag('--epochs'))
    .option('--lr <x>', 'Adam learning rate', numberFlag('--lr'))
    .option('--weight-decay <x>', 'decoupled weight decay', numberFlag('--weight-decay'))
    .option('--patience <n>', 'epochs without a better validation loss before stopping', numberFlag('--patience'))
    .option('--seed <n>', 'seed (the same seed gives the same router)', numberFlag('--seed'), 0)
    .option('--max-length <n>', 'tokens of the message the router reads', numberFlag('--max-length'))
    .action(async (flags: TrainFlags) => {
      const model = await loadModelFromFlags({ ...flags, router: undefined });
      try {
        const report = await withProgressBar(flags, (onProgress) => trainRouter(model, {
          data: flags.data, out: flags.out, hidden: flags.hidden ? [flags.hidden] : [], epochs: flags.epochs, lr: flags.lr,
          weightDecay: flags.weightDecay, patience: flags.patience, seed: flags.seed, maxLength: flags.maxLength, onProgress,
        }));
        output(flags, { out: flags.out, ...report }, `${formatReport(report)}\nwrote ${flags.out}`);
      } finally {
        await model.dispose();
      }
    });
  const evaluate = addPersonaFlags(addModelFlags(new Command('eval').description('how often a router picks each situation\'s experts on a labelled split')))
    .requiredOption('--data <dir>', 'table.json + <split>.jsonl')
    .option('--split <name>', 'the split to read', 'test')
    .action(async (flags: ModelFlags & { data: string; split: string }) => {
      const model = await loadModelFromFlags(flags);
      try {
        const report = await withProgressBar(flags, (onProgress) => evaluateRouter(model, { data: flags.data, split: flags.split, onProgress }));
        output(flags, report, formatReport(report));
      } finally {
        await model.dispose();
      }
    });
  return new Command('router').description('train or evaluate persona routers').addCommand(train).addCommand(evaluate);
}
