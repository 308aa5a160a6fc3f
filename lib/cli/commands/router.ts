// personafuse router train | eval: routers that read the situation the way the model does.
//   train  --model M --data DIR --out DIR   the model's pooled hidden states of every message and
//          its hashed n-grams, a head trained in TypeScript (no Python) on the table's situations,
//          the router folder and its test report
//   eval   --data DIR [--split test]        the same report for any router (--router, or the
//          model's own) on any labelled split, e.g. a user's own messages
import { Command, Option } from 'commander';
import { evaluateRouter, trainRouter } from '../../model/router_training';
import { formatReport } from '../../router/report';
import { addModelFlags, addMallocFlags, addPersonaFlags, loadModelFromFlags, ModelFlags, numberFlag, output } from '../options';
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
  batchSize?: number;
  ngramBuckets?: number;
  hiddenWeight?: number;
  targets?: 'situations' | 'experts';
  sharpen?: number;
  headDtype?: 'float32' | 'float16';
}

export function routerCommand(): Command {
  const train = addPersonaFlags(addMallocFlags(addModelFlags(new Command('train').description('train a hidden-state router for a model on a labelled situation dataset'))))
    .requiredOption('--data <dir>', 'table.json + train/validation/test.jsonl (data/situations in this repository)')
    .requiredOption('--out <dir>', 'the router folder to write (router.json, head.safetensors, report.json, report.md)')
    .option('--ngram-buckets <n>', 'hashed word and character n-gram buckets (each) read beside the hidden states; 0: hidden states only (default 8192)', numberFlag('--ngram-buckets'))
    .option('--hidden-weight <x>', 'weight of the hidden states beside the n-grams (default 0.1)', numberFlag('--hidden-weight'))
    .addOption(new Option('--targets <what>', 'what the head predicts: the table\'s situations (mapped to their experts) or the experts directly').choices(['situations', 'experts']).default('situations'))
    .option('--sharpen <x>', 'power on situation probabilities before they map to experts (default 4)', numberFlag('--sharpen'))
    .addOption(new Option('--head-dtype <dtype>', 'how head.safetensors stores the layers\' weights (float16: about half the file, router format version 4)').choices(['float32', 'float16']).default('float32'))
    .option('--hidden <n>', 'width of a hidden layer (0: a linear head; needs --ngram-buckets 0)', numberFlag('--hidden'), 0)
    .option('--epochs <n>', 'most epochs', numberFlag('--epochs'))
    .option('--batch-size <n>', 'examples per step (default 256 with n-grams, else 64)', numberFlag('--batch-size'))
    .option('--lr <x>', 'Adam learning rate (default 0.03 with n-grams, else 0.003)', numberFlag('--lr'))
    .option('--weight-decay <x>', 'decoupled weight decay', numberFlag('--weight-decay'))
    .option('--patience <n>', 'epochs without a better validation loss before stopping', numberFlag('--patience'))
    .option('--seed <n>', 'seed (the same seed gives the same router)', numberFlag('--seed'), 0)
    .option('--max-length <n>', 'tokens of the message the router reads', numberFlag('--max-length'))
    .action(async (flags: TrainFlags) => {
      const model = await loadModelFromFlags({ ...flags, router: undefined });
      try {
        const report = await withProgressBar(flags, (onProgress) => trainRouter(model, {
          data: flags.data, out: flags.out, hidden: flags.hidden ? [flags.hidden] : [], epochs: flags.epochs, lr: flags.lr, batchSize: flags.batchSize,
          weightDecay: flags.weightDecay, patience: flags.patience, seed: flags.seed, maxLength: flags.maxLength, onProgress,
          ngramBuckets: flags.ngramBuckets, hiddenWeight: flags.hiddenWeight, targets: flags.targets, sharpen: flags.sharpen, headDtype: flags.headDtype,
        }));
        output(flags, { out: flags.out, ...report }, `${formatReport(report)}\nwrote ${flags.out}`);
      } finally {
        await model.dispose();
      }
    });
  const evaluate = addPersonaFlags(addMallocFlags(addModelFlags(new Command('eval').description('how often a router picks each situation\'s experts on a labelled split'))))
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
