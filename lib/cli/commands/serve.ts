// personafuse serve: the OpenAI-compatible HTTP server (loopback by default). Generation runs in
// a worker thread so the server keeps answering while the batch decodes. Every option is checked
// before the model loads, so a bad flag fails at once with its name. SIGTERM / SIGINT drain the
// server (lib/server/drain.ts): /ready turns 503, new requests are refused, those in flight finish
// within --drain-timeout, then the model is disposed and the process exits 0. A second signal
// during the drain exits at once (1).
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { startServer } from '../../server/server';
import { eventLogger } from '../../server/logging';
import { LOG_FORMATS, LogFormat, ListenOptions, MAX_BATCH_LIMIT, OptionNames, resolveServerOptions, secondsToMs, ServerOptions } from '../../server/config';
import { servePlan, SMALL_MODEL_REPLICAS_MAX } from '../../server/threads';
import { MAX_REPLICAS } from '../../engine/runner_pool';
import { DEFAULT_MAX_BATCH } from '../../engine/batcher';
import { expectInteger, rangeError } from '../../errors';
import { modelBytesOnDisk, resolveModelFile } from '../../decoder/model_files';
import { addModelFlags, addMallocFlags, addPersonaFlags, loraLayoutOption, ModelFlags, modelSetup, numberFlag, parsePersona, loadModelAndTuning } from '../options';

interface ServeFlags extends ModelFlags {
  port: number;
  host: string;
  servedModelName?: string[];
  modelId?: string;
  maxBatch?: number;
  maxQueue?: number;
  requestTimeout?: number;
  drainTimeout: number;
  apiKey?: string;
  logFormat: LogFormat;
  cors?: string[];
  threads?: number;
  replicas?: number;
}

/** The flags behind each server option, so errors name what the user typed. */
const FLAG_NAMES: OptionNames = {
  port: '--port', host: '--host', servedModelNames: '--served-model-name', modelId: '--model-id', maxBatch: '--max-batch', maxQueue: '--max-queue',
  requestTimeoutMs: '--request-timeout', apiKey: '--api-key', logFormat: '--log-format', cors: '--cors',
};

export const DEFAULT_DRAIN_TIMEOUT_S = 30;

export function serveCommand(): Command {
  return addPersonaFlags(addMallocFlags(addModelFlags(new Command('serve').description('OpenAI-compatible server: POST /v1/chat/completions, GET /v1/models, /health, /ready, /metrics'))))
    .addOption(loraLayoutOption('serve'))
    .option('--port <n>', 'port (0 = any free one)', numberFlag('--port'), 8000)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--served-model-name <name...>', 'names the model is served under: the first is the id /v1/models reports, the others aliases (default: the model folder name)')
    .option('--model-id <id>', 'the same as --served-model-name <id>')
    .option('--max-batch <n>', 'most requests each replica decodes together (default 16)', numberFlag('--max-batch'))
    .option('--max-queue <n>', 'requests waiting for a batch slot beyond what the replicas\' batches hold; past that, 429 (default 4 x that)', numberFlag('--max-queue'))
    .option('--request-timeout <seconds>', 'stop a request running longer, queue time included: 504, or an error event in a stream (default: no limit)', numberFlag('--request-timeout'))
    .option('--drain-timeout <seconds>', 'on SIGTERM / SIGINT, how long requests in flight may finish before they are cut', numberFlag('--drain-timeout'), DEFAULT_DRAIN_TIMEOUT_S)
    .option('--api-key <key>', 'require Authorization: Bearer <key> on /v1/* (default: $PERSONAFUSE_API_KEY; /health, /ready, /metrics stay open)')
    .addOption(new Option('--log-format <format>', 'one line per request on stderr').choices(LOG_FORMATS).default('text'))
    .option('--cors <origin...>', 'let browsers call the API from these origins (* = any); answers OPTIONS preflights')
    .option('--threads <n>', 'onnxruntime threads for each replica\'s decoder session, 1 to 1024 (default: the cores shared out over --replicas; without either, every core for a model of 64 MiB or more on disk and 1 below that)', numberFlag('--threads'))
    .option('--replicas <n>', `engine workers, each with its own session and batch of up to --max-batch requests; requests go to the least loaded, 1 to ${MAX_REPLICAS} (default: the cores shared out over --threads; without either, 1 for a model of 64 MiB or more on disk and below that one per core, at most ${SMALL_MODEL_REPLICAS_MAX})`, numberFlag('--replicas'))
    .action(async (flags: ServeFlags) => {
      const requestTimeoutMs = flags.requestTimeout === undefined ? undefined : secondsToMs(flags.requestTimeout, '--request-timeout');
      const drainTimeoutMs = secondsToMs(flags.drainTimeout, '--drain-timeout');
      const options: ServerOptions & ListenOptions = {
        port: flags.port, host: flags.host, servedModelNames: flags.servedModelName, modelId: flags.modelId, maxBatch: flags.maxBatch,
        maxQueue: flags.maxQueue, requestTimeoutMs, apiKey: flags.apiKey ?? (process.env.PERSONAFUSE_API_KEY || undefined),
        logFormat: flags.logFormat, cors: flags.cors, defaultPersona: parsePersona(flags.persona),
      };
      resolveServerOptions(options, undefined, FLAG_NAMES); // before the model loads: a bad flag fails now
      const threads = flags.threads === undefined ? undefined : expectInteger(flags.threads, '--threads', 1, 1024);
      const replicasFlag = flags.replicas === undefined ? undefined : expectInteger(flags.replicas, '--replicas', 1, MAX_REPLICAS);
      const setup = modelSetup(flags);
      const { threads: intraOpNumThreads, replicas } = servePlan(modelBytesOnDisk(resolveModelFile(setup.model)), undefined, { threads, replicas: replicasFlag });
      // the server admits every replica's batch: refuse a total it cannot take before loading them all
      const perReplica = flags.maxBatch ?? DEFAULT_MAX_BATCH;
      if (perReplica * replicas > MAX_BATCH_LIMIT) {
        throw rangeError('--max-batch x --replicas', `at most ${MAX_BATCH_LIMIT} requests decoding in all`, `${perReplica} x ${replicas} = ${perReplica * replicas}`);
      }
      const { model, malloc } = await loadModelAndTuning(flags, { worker: true, maxBatch: flags.maxBatch, intraOpNumThreads, replicas }, setup);
      // --max-batch is per replica: the server admits what every replica's batch holds (the engine's capacity)
      options.maxBatch = undefined;
      // listen (and report ready) only once the worker's session is open: a model that cannot
      // load fails here, with its reason, instead of answering 500 to every request
      await model.ready();
      if (!options.servedModelNames && options.modelId === undefined) options.servedModelNames = [defaultModelId(model.modelFile)];
      const srv = await startServer(model, options, FLAG_NAMES);
      const modelId = options.servedModelNames?.[0] ?? options.modelId!;
      const info = { url: srv.url, host: flags.host, port: srv.port, model: modelId, experts: model.experts, router: !!model.router, loraLayout: model.loraLayout, threads: intraOpNumThreads, replicas, malloc };
      process.stdout.write(flags.json ? `${JSON.stringify(info)}\n`
        : `personafuse serving ${modelId} (${model.experts.length} experts${model.router ? ', router' : ''}) on ${srv.url}/v1\n`);
      const event = eventLogger(flags.logFormat, (line) => void process.stderr.write(`${line}\n`));
      let stopping = false;
      const stop = (signal: NodeJS.Signals) => {
        if (stopping) {
          event('exit_forced', { signal });
          process.exit(1);
        }
        stopping = true;
        event('drain_start', { signal, in_flight: srv.inFlight, timeout_s: drainTimeoutMs / 1000 });
        srv.drain(drainTimeoutMs)
          .then(async (r) => {
            event('drain_end', { aborted: r.aborted });
            await model.dispose();
            process.exit(0);
          })
          .catch((err: unknown) => {
            process.stderr.write(`personafuse: ${err instanceof Error ? err.message : String(err)}\n`);
            process.exit(1);
          });
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
}

/** The served name by default: the model's folder, or its parent when the file sits in onnx/
 *  (Optimum's and transformers.js's layout, where 'onnx' would name nothing). */
export function defaultModelId(modelFile: string): string {
  const dir = path.dirname(modelFile);
  return path.basename(path.basename(dir) === 'onnx' ? path.dirname(dir) : dir);
}
