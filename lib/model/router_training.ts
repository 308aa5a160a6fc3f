// Training and evaluating routers with the model they serve (lib/router/train.ts does the maths):
//
//   trainRouter(model, { data, out })   features of every message (the model's pooled hidden
//                                        states, batched, and hashed n-grams with an idf from the
//                                        train split), a head trained on the train split with
//                                        early stopping on validation, the router folder written,
//                                        and its report on the test split
//   evaluateRouter(model, { data })      the same report for whatever router the model has
// The test split is read for the final report only.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { HEAD_FILE, HiddenStateRouter } from '../router/hidden_router';
import { HeadWeightsDtype, writeHead } from '../router/head';
import { fitIdf, NGRAM_DEFAULTS, NgramConfig, ngramFeatures } from '../router/ngrams';
import { readRouterConfig, ROUTER_FORMAT, HiddenRouterConfig, SituationOutputs } from '../router/router_config';
import { expertsOfSituations, situationTable } from '../router/situation_outputs';
import { formatReport, ranked, RouterReport, scoreRoutes } from '../router/report';
import { BIG_FIVE_POLES, LabelledMessage, readSituationTable, readSplit, SituationTable, targetDistribution } from '../router/situations';
import { checkTrainOptions, EpochStats, trainHead, TrainOptions } from '../router/train';
import { expectInteger, rangeError } from '../errors';
import type { PersonaModel } from './persona_model';

export type Progress = (stage: string, done: number, total: number) => void;

export interface TrainRouterOptions extends TrainOptions {
  /** a data folder: table.json, train.jsonl, validation.jsonl, test.jsonl */
  data: string;
  /** the router folder to write */
  out: string;
  /** tokens of the user turn the router reads (default 64) */
  maxLength?: number;
  /** messages per feature batch (default 32) */
  featureBatch?: number;
  /** hashed n-gram buckets per block (words, characters) beside the hidden states; 0: hidden states only (default 8192) */
  ngramBuckets?: number;
  /** the hidden states' weight beside the n-grams (default 0.1: their standardized vector's norm is about this) */
  hiddenWeight?: number;
  /** what the head answers: the table's situations (mapped to experts) or the experts directly (default 'situations') */
  targets?: 'situations' | 'experts';
  /** the power situation probabilities are raised to before they are mapped to experts (default 4) */
  sharpen?: number;
  /** how head.safetensors stores the layers' weights (default 'float32'; 'float16' halves the file
   *  and writes router format version 4) */
  headDtype?: HeadWeightsDtype;
  onProgress?: Progress;
  onEpoch?: (s: EpochStats) => void;
}

/** The model's features of every message, `batch` at a time. */
async function featuresOf(model: PersonaModel, messages: readonly LabelledMessage[], maxLength: number, batch: number, stage: string, onProgress?: Progress): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let i = 0; i < messages.length; i += batch) {
    out.push(...(await model.features(messages.slice(i, i + batch).map((m) => m.text), maxLength)));
    onProgress?.(stage, Math.min(i + batch, messages.length), messages.length);
  }
  return out;
}

/** Median milliseconds to route one message alone, over up to `n` messages (after one warm-up). */
async function timeRouting(messages: readonly LabelledMessage[], route: (text: string) => Promise<unknown>, n = 20): Promise<number> {
  const sample = messages.slice(0, n);
  if (sample.length === 0) return 0;
  await route(sample[0].text);
  const ms: number[] = [];
  for (const m of sample) {
    const t = performance.now();
    await route(m.text);
    ms.push(performance.now() - t);
  }
  return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)];
}

export async function trainRouter(model: PersonaModel, o: TrainRouterOptions): Promise<RouterReport> {
  const table = readSituationTable(o.data);
  const [train, validation, test] = ['train', 'validation', 'test'].map((s) => readSplit(o.data, s, table));
  // the experts the table routes to: the Big Five poles in their usual order, then any others
  const named = new Set(table.situations.flatMap((s) => s.experts));
  const experts = [...BIG_FIVE_POLES.filter((e) => named.has(e)), ...[...named].filter((e) => !BIG_FIVE_POLES.includes(e))];
  const maxLength = o.maxLength ?? 96;
  const batch = o.featureBatch ?? 32;
  // every option checked before minutes of features; names as the API and the CLI spell them
  checkTrainOptions(o);
  if (train.length === 0) throw new Error(`${path.join(o.data, 'train.jsonl')} has no messages to train on`);
  const buckets = expectInteger(o.ngramBuckets ?? NGRAM_DEFAULTS.buckets, 'ngramBuckets (--ngram-buckets)', 0, 1 << 20);
  if (buckets > 0 && (o.hidden ?? []).length > 0) throw new Error('A router that reads n-grams has a linear head: hidden layers need ngramBuckets 0 (--ngram-buckets 0)');
  for (const [arg, v] of [['hiddenWeight (--hidden-weight)', o.hiddenWeight], ['sharpen (--sharpen)', o.sharpen]] as const) {
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw rangeError(arg, 'a positive number', String(v));
  }
  if (o.targets !== undefined && o.targets !== 'situations' && o.targets !== 'experts') throw rangeError('targets (--targets)', "'situations' or 'experts'", String(o.targets));
  if (o.headDtype !== undefined && o.headDtype !== 'float32' && o.headDtype !== 'float16') throw rangeError('headDtype (--head-dtype)', "'float32' or 'float16'", String(o.headDtype));
  const headDtype = o.headDtype ?? 'float32';
  if (buckets === 0 && o.hiddenWeight !== undefined) throw new Error('hiddenWeight (--hidden-weight) weighs the hidden states against n-grams: it needs ngramBuckets > 0');
  if (o.targets === 'experts' && o.sharpen !== undefined) throw new Error("sharpen (--sharpen) applies to situation targets: it has no effect with targets 'experts'");
  const ngrams: NgramConfig | undefined = buckets > 0 ? { ...NGRAM_DEFAULTS, buckets } : undefined;
  const idf = ngrams ? fitIdf(train.map((m) => m.text), ngrams) : undefined;
  const sharpen = o.sharpen ?? 4;
  const situations: SituationOutputs | undefined = (o.targets ?? 'situations') === 'situations'
    ? { names: table.situations.map((s) => s.name), experts: table.situations.map((s) => s.experts), weights: table.weights, sharpen }
    : undefined;
  const situationT = situations ? situationTable(situations, experts) : undefined;
  const target = (situation: string) => situations
    ? Float32Array.from(situations.names, (n) => (n === situation ? 1 : 0))
    : targetDistribution(table, situation, experts);
  const examples = async (msgs: LabelledMessage[], stage: string) => {
    const xs = await featuresOf(model, msgs, maxLength, batch, stage, o.onProgress);
    return msgs.map((m, i) => ({ x: xs[i], sparse: ngrams ? ngramFeatures(m.text, ngrams, idf!) : undefined, target: target(m.situation) }));
  };
  const trainEx = await examples(train, 'features (train)');
  const valEx = await examples(validation, 'features (validation)');
  const H = trainEx[0].x.length / 2;
  const hiddenWeight = o.hiddenWeight ?? 0.1;
  // a sparse linear head over 2B + 2H inputs learns fastest with larger steps on larger batches
  const steps = ngrams ? { lr: o.lr ?? 3e-2, batchSize: o.batchSize ?? 256 } : {};
  const { head, curve } = trainHead(trainEx, valEx, { ...o, ...steps }, o.onEpoch, {
    sparseSize: ngrams ? 2 * buckets : 0,
    // the standardized hidden vector (norm about sqrt(2H)) scaled to norm hiddenWeight, beside n-gram blocks of norm 1
    denseScale: ngrams ? hiddenWeight / Math.sqrt(2 * H) : 1,
    expertsOf: situationT ? (p) => expertsOfSituations(p, situationT, sharpen) : undefined,
  });
  head.idf = idf;
  const config: HiddenRouterConfig = {
    // the oldest version that describes the folder, so older releases still load what they can:
    // 2 for a version-2 shape, 3 with n-grams or situations, 4 only for float16 weights
    kind: 'hidden-state', version: headDtype === 'float16' ? 4 : ngrams || situations ? 3 : 2, experts, topK: 2, renormalize: true, input: 'last_user', maxLength,
    features: { pooling: ['mean', 'last'], hiddenSize: H, ...(ngrams ? { ngrams } : {}) },
    head: { sizes: [2 * H + (ngrams ? 2 * buckets : 0), ...(o.hidden ?? []), situations ? situations.names.length : experts.length], activation: 'tanh' },
    ...(situations ? { situations } : {}),
    trainedOn: {
      model: path.basename(path.dirname(model.modelFile)), data: path.basename(path.resolve(o.data)), train: train.length, validation: validation.length, seed: o.seed ?? 0,
      ...(ngrams ? { hiddenWeight } : {}),
    },
  };
  fs.mkdirSync(o.out, { recursive: true });
  fs.writeFileSync(path.join(o.out, 'router.json'), `${JSON.stringify({ format: ROUTER_FORMAT, ...config }, null, 2)}\n`);
  writeHead(head, path.join(o.out, HEAD_FILE), headDtype);
  // the test split, read once, for the report of the router as written: router.json and the head read back (float16 weights round)
  const testX = await featuresOf(model, test, maxLength, batch, 'features (test)', o.onProgress);
  const written = readRouterConfig(o.out);
  if (written.kind !== 'hidden-state') throw new Error(`${o.out}/router.json was written as a hidden-state router but reads as '${written.kind}'`);
  const router = HiddenStateRouter.load(o.out, written);
  const routes = test.map((m, i) => ranked(router.routeFeatures(testX[i], m.text).distribution));
  const routeMs = await timeRouting(test, async (text) => router.routeFeatures((await model.features([text], maxLength))[0], text));
  const report: RouterReport = { ...scoreRoutes('test', table, test, routes), curve, routeMs };
  fs.writeFileSync(path.join(o.out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  fs.writeFileSync(path.join(o.out, 'report.md'), `${formatReport(report)}\n`);
  return report;
}

export interface EvaluateRouterOptions {
  data: string;
  /** the split to read (default 'test') */
  split?: string;
  onProgress?: Progress;
}

/** The report of the model's router on a labelled split. */
export async function evaluateRouter(model: PersonaModel, o: EvaluateRouterOptions): Promise<RouterReport> {
  const router = model.router;
  if (!router) throw new Error('This model has no router to evaluate: load it with { router: <router folder> }');
  const table: SituationTable = readSituationTable(o.data);
  const split = o.split ?? 'test';
  const messages = readSplit(o.data, split, table);
  let routes: string[][];
  if (router.kind === 'hidden-state') {
    const xs = await featuresOf(model, messages, router.config.maxLength, 32, `routing (${split})`, o.onProgress);
    routes = messages.map((m, i) => ranked(router.routeFeatures(xs[i], m.text).distribution));
  } else {
    routes = [];
    for (const [i, m] of messages.entries()) {
      routes.push(ranked((await model.route(m.text)).distribution));
      o.onProgress?.(`routing (${split})`, i + 1, messages.length);
    }
  }
  return { ...scoreRoutes(split, table, messages, routes), routeMs: await timeRouting(messages, (text) => model.route(text)) };
}
