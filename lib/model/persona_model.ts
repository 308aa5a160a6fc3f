// PersonaModel: a stock ONNX decoder plus a bank of PEFT persona experts, run with a different
// mix per row through onnxruntime-node.
//
//   load:    read the model, find its linear layers, match every adapter module to one, inject
//            A_in/B_in inputs per adapted module, or the whole bank with one gates input
//            (loraLayout; lib/model/lora_layout.ts picks by default), cached next to the model
//   forward: fold each row's mix into its slot of every site's A_in/B_in (kernels.foldExperts)
//            and run; return each row's last-position logits. With loraLayout 'bank' the whole
//            bank is in the graph and a row's mix is fed as its gates [E] (no fold)
//   generate / stream: text generation with continuous batching (lib/engine), in a worker thread
//            by default; the tokenizer and configs are read from the model's folder or its parent,
//            and a router folder (lib/router) enables persona 'auto'
// Sessions run the runtime copy of the injected model (logits at the last position only,
// lib/onnx/last_logits.ts). The main thread's session opens on first use (forward, or generation
// with { worker: false }): generation in the worker thread has a session of its own, and a model
// that only generates should not hold its weights twice.
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { DisposedError, expectInteger, rangeError, typeError } from '../errors';
import { loadPeftAdapter, PeftAdapter } from '../adapters';
import { injectedModel, runtimeModel } from '../onnx/cache';
import { touchCacheEntry } from '../onnx/cache_prune';
import { HIDDEN_OUTPUT, LAST_INDEX_INPUT } from '../onnx/last_logits';
import { Progress } from '../onnx/write';
import { readModel, valueInfoDims, valueInfoElemType, ONNX_FLOAT16 } from '../onnx/proto';
import { Mix, mixEntries } from '../decoder/mix';
import { staticPersona } from '../router/persona';
import { checkRows, decoderFeeds, DecoderIO } from '../decoder/feeds';
import { lastLogits } from '../decoder/logits';
import { bankSource, SiteBank, siteBanks } from '../decoder/site_banks';
import { autoLayoutFor, LORA_LAYOUTS, LoraLayout } from '../decoder/lora_layout';
import { openDecoderSession } from '../decoder/session_options';
import { Engine, GenerateResult, ResolvedMix, StreamEvent } from '../engine/engine';
import { checkGenerateOptions } from '../engine/options';
import { Batcher, DecoderModel, DEFAULT_MAX_BATCH } from '../engine/batcher';
import { GenerateOptions } from '../engine/options';
import { sideFileDirs, findFile, readPadId, resolveModelFile } from '../decoder/model_files';
import { TextCodec } from '../decoder/text_codec';
import { WorkerClient } from '../engine/worker_client';
import { MAX_REPLICAS, replicaThreads, RunnerPool } from '../engine/runner_pool';
import type { GateInput } from '../decoder/gate_slots';
import { newRowMixes, openSiteBanks, SlotLayout, SlotLayoutSource, slotLayoutOf } from '../decoder/slot_layout';
import type { ChatMessage } from '../decoder/text_codec';
import { AnyRouter, loadRouter, RouteMessage, RouteResult } from '../router/router';

export type { LoraLayout } from '../decoder/lora_layout';

/** How often a live model marks its cache entry used: twice a day, far inside the 30-day limit. */
const IN_USE_MARK_MS = 12 * 3600 * 1000;

export interface PersonaModelOptions {
  /** an .onnx file, or a folder holding model.onnx or onnx/model.onnx */
  model: string;
  /** expert name -> PEFT adapter folder, in the order the experts get their ids */
  adapters?: Record<string, string>;
  /** where the injected model is cached (default: beside the model) */
  cacheDir?: string;
  /** when a load builds a new injected model, the cache folder's entries no process has used for this
   *  many days are removed (lib/onnx/cache_prune.ts; default 30; 0 or Infinity keeps everything) */
  pruneUnusedDays?: number;
  /** onnxruntime execution providers (default ['cpu']) */
  executionProviders?: string[];
  /** threads onnxruntime uses inside one operator (default: every core this process may use, a cgroup's CPU quota included: lib/cores.ts) */
  intraOpNumThreads?: number;
  /** give onnxruntime the weights inline rather than its reading the external data file (models
   *  under 2 GB; a transient copy of the weights while the session opens). On our 2-core VM a 1 GB
   *  model decoded 2-3x faster at batch 8 this way (lib/onnx/inline_weights.ts). Default false. */
  inlineWeights?: boolean;
  onProgress?: Progress;
  /** folder with tokenizer.json / tokenizer_config.json (default: the model's folder, then its parent) */
  tokenizer?: string;
  /** a router folder (router.json, and model.onnx + tokenizer.json or head.safetensors): enables persona 'auto' */
  router?: string;
  /** run generation's onnxruntime session in a worker thread (default true); false runs it on the
   *  calling thread (session.run is async but blocks the event loop while it computes) */
  worker?: boolean;
  /** most requests decoded together, per replica (default 16) */
  maxBatch?: number;
  /** engine workers, each with its own session and batch, requests going to the least loaded
   *  (lib/engine/runner_pool.ts; default 1). For small models on several cores: one session's decode
   *  step keeps to about one core, and a second replica decodes on another while the first prefills.
   *  Each holds its own copy of the weights. Needs the worker (not { worker: false }). Without
   *  intraOpNumThreads each replica gets the cores divided by the replicas (at least 1). */
  replicas?: number;
  /** how the experts enter the graph (lib/onnx/inject.ts; docs/design.md §4, formulations (a) and (c)):
   *  'per-row': each row's mix folded into its own A_in/B_in inputs when it joins: reads k·r
   *    columns per row and step, the cheaper form at small batches;
   *  'bank': every expert side by side as initializers, each row feeds only its gates [E]: reads
   *    the whole bank (E·r columns) once per step whatever the batch, and a joining request needs
   *    no fold, the cheaper form from E/k rows on;
   *  'auto' (default): 'bank' when the bank adds at most 1/8 of the weights' bytes (wide models),
   *    else 'per-row' (lib/model/lora_layout.ts). The same logits either way (float32 rounding). */
  loraLayout?: LoraLayout | 'auto';
}

export interface ForwardOptions {
  inputIds: number[][];
  /** one mix per row; {} = the base model */
  mix: Mix[];
}

export { resolveModelFile };

export class PersonaModel {
  readonly experts: string[];
  readonly modelFile: string;
  /** the injected model (what `personafuse inject` writes) */
  readonly injectedFile: string;
  /** what the sessions run: the injected model computing logits only where they are read */
  readonly #runtimeFile: string;
  /** how rows feed their persona, decided once at load (per-row folds or bank gates), as plain data */
  readonly #layoutSource: SlotLayoutSource;
  #sites: SiteBank[] | undefined;
  #slotLayout: SlotLayout | undefined;
  /** The injection sites with their banks on this thread. Built on first use when generation runs
   *  in the worker (which folds with banks of its own), at load with { worker: false }. */
  get sites(): readonly SiteBank[] {
    if (this.#disposed) throw new DisposedError('PersonaModel');
    this.#sites ??= openSiteBanks(this.#layoutSource);
    return this.#sites;
  }
  /** How rows feed their persona on this thread (per-row with this thread's banks, or gates). */
  get slotLayout(): SlotLayout {
    this.#slotLayout ??= slotLayoutOf(this.#layoutSource, this.sites);
    return this.#slotLayout;
  }
  /** the gates input when the bank is in the graph (loraLayout 'bank') */
  get gates(): GateInput | undefined {
    return this.#layoutSource.kind === 'bank' ? this.#layoutSource.gates : undefined;
  }
  /** the form the experts took in the graph (loraLayout, 'auto' resolved) */
  get loraLayout(): LoraLayout {
    return this.#layoutSource.kind;
  }
  readonly padId: number;
  /** vocabulary size from the logits output (token ids must be below it), null when symbolic */
  readonly vocab: number | null;
  #session: ort.InferenceSession | undefined;
  #opening: Promise<ort.InferenceSession> | undefined;
  #disposed = false;
  readonly #io: DecoderIO;
  /** text <-> ids, chat template, EOS ids; undefined when no tokenizer.json was found */
  readonly codec: TextCodec | undefined;
  readonly router: AnyRouter | undefined;
  /** the runtime graph's output of hidden states (features of hidden-state routers), when it has one */
  readonly #hidden: string | undefined;
  readonly #options: PersonaModelOptions;
  #engine: Engine | undefined;
  /** marks the cache entry used while this model lives, so no other process prunes it from under a
   *  session opened later (lib/onnx/cache_prune.ts); unref'd, cleared by dispose */
  readonly #inUse: NodeJS.Timeout;

  private constructor(init: {
    experts: string[]; modelFile: string; injectedFile: string; runtimeFile: string; layout: SlotLayoutSource; sites?: SiteBank[]; session?: ort.InferenceSession;
    io: DecoderIO; padId: number; vocab: number | null; codec?: TextCodec; router?: AnyRouter; hidden?: string; options: PersonaModelOptions;
  }) {
    this.experts = init.experts;
    this.modelFile = init.modelFile;
    this.injectedFile = init.injectedFile;
    this.#runtimeFile = init.runtimeFile;
    this.#layoutSource = init.layout;
    this.#sites = init.sites;
    this.#session = init.session;
    this.#io = init.io;
    this.padId = init.padId;
    this.vocab = init.vocab;
    this.codec = init.codec;
    this.router = init.router;
    this.#hidden = init.hidden;
    this.#inUse = setInterval(() => touchCacheEntry(this.injectedFile), IN_USE_MARK_MS).unref();
    this.#options = init.options;
  }

  static async load(options: PersonaModelOptions): Promise<PersonaModel> {
    if (typeof options !== 'object' || options === null) throw typeError('options', 'an options object', options);
    const modelFile = resolveModelFile(options.model);
    const named = options.adapters ?? {};
    if (typeof named !== 'object' || named === null) throw typeError('adapters', 'an object { expertName: folder }', named);
    const experts = Object.keys(named);
    const adapters: PeftAdapter[] = experts.map((name) => loadPeftAdapter(named[name], name));
    if (options.maxBatch !== undefined) expectInteger(options.maxBatch, 'maxBatch', 1, 4096);
    if (options.pruneUnusedDays !== undefined && !(typeof options.pruneUnusedDays === 'number' && options.pruneUnusedDays >= 0)) {
      throw rangeError('pruneUnusedDays', 'a number of days >= 0 (0 or Infinity keeps everything)', String(options.pruneUnusedDays));
    }
    if (options.replicas !== undefined) {
      expectInteger(options.replicas, 'replicas', 1, MAX_REPLICAS);
      if (options.replicas > 1 && options.worker === false) throw rangeError('replicas', '1 with { worker: false } (replicas are worker threads)', String(options.replicas));
    }
    const requested = options.loraLayout ?? 'auto';
    const choices: readonly string[] = ['auto', ...LORA_LAYOUTS];
    if (!choices.includes(requested)) throw rangeError('loraLayout', choices.map((c) => `'${c}'`).join(', '), String(requested));
    const source = readModel(modelFile);
    const layout = requested === 'auto' ? autoLayoutFor(adapters, source).layout : requested;
    const bank = layout === 'bank' && adapters.length > 0 ? bankSource(adapters) : undefined;
    const built = injectedModel(modelFile, adapters, { cacheDir: options.cacheDir, onProgress: options.onProgress, bank, model: source, pruneUnusedDays: options.pruneUnusedDays });
    const layoutSource: SlotLayoutSource = built.injection.gates
      ? { kind: 'bank', gates: built.injection.gates, sites: built.injection.sites }
      : { kind: 'per-row', sites: built.injection.sites, adapters: experts.map((name) => ({ name, dir: path.resolve(named[name]) })) };
    // generating on this thread needs its banks now (from the adapters already read); the worker
    // builds its own, and this thread's wait for forward()
    const sites = options.worker === false && !built.injection.gates ? siteBanks(built.injection.sites, adapters) : undefined;
    const runtime = runtimeModel(built);
    // generating on this thread: its session is the one generation runs, open it now
    const session = options.worker === false ? await openDecoderSession(runtime.file, options) : undefined;
    const graph = built.model.graph!;
    const initializers = new Set(graph.initializer.map((t) => t.name));
    const inputNames = graph.input.map((i) => i.name).filter((n) => !initializers.has(n));
    if (runtime.lastIndex) inputNames.push(LAST_INDEX_INPUT);
    const past = graph.input
      .filter((i) => i.name.startsWith('past_key_values.') || i.name.startsWith('past.'))
      .map((i) => {
        const dims = valueInfoDims(i) ?? [];
        const heads = dims[1], headDim = dims[3];
        if (typeof heads !== 'number' || typeof headDim !== 'number') {
          throw new Error(`The cache input ${i.name} has no fixed head count / head size (dims ${JSON.stringify(dims)})`);
        }
        return { name: i.name, heads, headDim, type: valueInfoElemType(i) === ONNX_FLOAT16 ? 'float16' as const : 'float32' as const };
      });
    const dirs = sideFileDirs(modelFile, options.tokenizer);
    const padId = readPadId(dirs);
    const codec = findFile(dirs, 'tokenizer.json') ? new TextCodec(dirs) : undefined;
    const router = options.router !== undefined ? await loadRouter(options.router) : undefined;
    const unrouted = router?.config.experts.filter((e) => !experts.includes(e)) ?? [];
    if (unrouted.length) {
      await router!.dispose();
      await session?.release();
      throw new Error(`The router ${options.router} routes to experts not loaded as adapters: ${unrouted.join(', ')} (loaded: ${experts.join(', ') || 'none'})`);
    }
    const logitsOut = graph.output.find((o) => o.name === 'logits');
    const vocabDim = logitsOut ? (valueInfoDims(logitsOut) ?? [])[2] : undefined;
    const vocab = typeof vocabDim === 'number' ? vocabDim : null;
    return new PersonaModel({
      experts, modelFile, injectedFile: built.file, runtimeFile: runtime.file, layout: layoutSource, sites, session, io: { inputNames, past }, padId, vocab,
      codec, router, hidden: runtime.lastIndex ? HIDDEN_OUTPUT : undefined, options: { ...options, onProgress: undefined },
    });
  }

  /** The main thread's onnxruntime session of the runtime model (opened on first call). */
  openSession(): Promise<ort.InferenceSession> {
    if (this.#disposed) return Promise.reject(new DisposedError('PersonaModel'));
    if (this.#session) return Promise.resolve(this.#session);
    if (!this.#opening) touchCacheEntry(this.injectedFile);
    this.#opening ??= openDecoderSession(this.#runtimeFile, this.#options).then(async (s) => {
      if (this.#disposed) {
        await s.release();
        throw new DisposedError('PersonaModel');
      }
      this.#session = s;
      return s;
    });
    return this.#opening;
  }

  /** The decoder's ordinary inputs and its cache inputs. */
  get io(): DecoderIO {
    return this.#io;
  }

  /** The generation engine, made on first use (with its worker thread unless { worker: false }). */
  get engine(): Engine {
    // dispose() clears #engine, so an existing engine belongs to a live model
    if (!this.#engine) {
      if (this.#disposed) throw new DisposedError('PersonaModel');
      const o = this.#options;
      const maxBatch = o.maxBatch ?? DEFAULT_MAX_BATCH;
      const replicas = o.replicas ?? 1;
      // replicas without a thread count share the cores out rather than each take them all
      const intraOpNumThreads = o.intraOpNumThreads ?? replicaThreads(replicas);
      const worker = () => (touchCacheEntry(this.injectedFile), new WorkerClient({
        file: this.#runtimeFile, executionProviders: o.executionProviders ?? ['cpu'], intraOpNumThreads, inlineWeights: o.inlineWeights,
        layout: this.#layoutSource, hidden: this.#hidden, io: this.#io, padId: this.padId, maxBatch,
      }));
      // { worker: false } opened the session at load: generation runs it on this thread
      const runner = o.worker === false
        ? new Batcher({ session: this.#session!, layout: this.slotLayout, hidden: this.#hidden, io: this.#io, padId: this.padId } satisfies DecoderModel, { maxBatch })
        : replicas === 1 ? worker() : new RunnerPool(startReplicas(replicas, worker));
      // the engine's capacity: every replica's batch
      this.#engine = new Engine({ runner, codec: this.codec, vocab: this.vocab, maxBatch: maxBatch * replicas });
    }
    return this.#engine;
  }

  /** Resolves when generation can start: the engine is made and its session open (in the worker,
   *  which opens it in the background); rejects with the reason when the session cannot open. */
  async ready(): Promise<void> {
    await this.engine.ready();
  }

  /** One generation; concurrent calls are decoded together, each with its own persona. */
  async generate(opts: GenerateOptions): Promise<GenerateResult> {
    const engine = this.engine;
    return engine.generate(opts, await this.resolvePersona(opts));
  }

  /** The same as generate, token by token: { done: false, token, text } ... { done: true, text, result }. */
  async *stream(opts: GenerateOptions): AsyncGenerator<StreamEvent, void, undefined> {
    const engine = this.engine;
    yield* engine.stream(opts, await this.resolvePersona(opts));
  }

  /**
   * The mix a call's persona stands for, checked once against the loaded experts: 'auto' (the
   * default when a router is loaded) asks the router about the last user turn, a Big Five profile
   * or { mix } is converted as lib/router/persona.ts says, none is the base model.
   */
  async resolvePersona(opts: GenerateOptions): Promise<ResolvedMix> {
    if (this.#disposed) throw new DisposedError('PersonaModel');
    const o = checkGenerateOptions(opts, this.vocab);
    const persona = o.persona ?? (this.router ? 'auto' : undefined);
    let mix: Mix;
    if (persona === undefined) mix = {};
    else if (persona !== 'auto') return staticPersona(persona, this.experts);
    else {
      if (!this.router) {
        throw rangeError('persona', "a Big Five profile or { mix } ('auto' needs a router: load the model with { router: <router folder> } or pass --router)", "'auto'");
      }
      let messages: ChatMessage[];
      if (o.messages) messages = o.messages;
      else if (o.prompt !== undefined) messages = [{ role: 'user', content: o.prompt }];
      else messages = [{ role: 'user', content: this.engine.needCodec('inputIds with persona auto').decode(o.inputIds!) }];
      const routed = await this.route(messages);
      mix = Object.fromEntries(Object.entries(routed.mix).filter(([, w]) => w !== 0));
    }
    return { mix, entries: mixEntries(mix, this.experts, 'persona') };
  }

  /** The mix the router picks for a text or a conversation. */
  async route(input: string | RouteMessage[]): Promise<RouteResult> {
    const router = this.router;
    if (!router) throw new Error('This model has no router: load it with { router: <router folder> }');
    if (router.kind === 'encoder') return router.route(input);
    const text = typeof input === 'string' ? input : router.situation(input);
    const [features] = await this.features([text], router.config.maxLength);
    return router.routeFeatures(features, text);
  }

  /**
   * The base model's pooled hidden states (mean and last position, lib/decoder/hidden.ts) of each
   * text as a user turn, as a hidden-state router reads them: the turn rendered with the model's
   * chat template and its generation prompt (so the last position is where the model starts its
   * answer; a plain encode without a template), no persona. A turn over maxLength tokens keeps its
   * first maxLength - 8 and its last 8 (the generation prompt). Runs where generation runs (the
   * worker thread by default).
   */
  async features(texts: readonly string[], maxLength = 96): Promise<Float32Array[]> {
    const codec = this.engine.needCodec('features');
    const rows = texts.map((t) => {
      const ids = codec.hasChatTemplate ? codec.encodeChat([{ role: 'user', content: t }]) : codec.encode(t);
      if (ids.length > maxLength) return [...ids.slice(0, maxLength - 8), ...ids.slice(-8)];
      return ids.length ? ids : [this.padId];
    });
    return this.engine.features(rows);
  }

  /** Last-position logits of each row, each row with its own mix. */
  async forward(opts: ForwardOptions): Promise<Float32Array[]> {
    if (this.#disposed) throw new DisposedError('PersonaModel');
    if (typeof opts !== 'object' || opts === null) throw typeError('options', 'an object { inputIds, mix }', opts);
    const rows = checkRows(opts.inputIds, 'inputIds', this.vocab);
    if (!Array.isArray(opts.mix) || opts.mix.length !== rows.length) {
      throw typeError('mix', `an array of ${rows.length} mixes (one per row of inputIds)`, opts.mix);
    }
    const feeds = { ...decoderFeeds(this.#io, rows, this.padId), ...this.adapterFeeds(opts.mix) };
    const session = await this.openSession();
    const out = await session.run(feeds, ['logits']);
    const logits = out.logits;
    const B = Number(logits.dims[0]);
    const result = lastLogits(logits, rows.map((r) => r.length)).map((v) => v.slice()); // copies: the tensor is freed next
    logits.dispose?.();
    if (B !== rows.length) throw new Error(`The model returned ${B} rows of logits for ${rows.length} inputs`);
    return result;
  }

  /** The persona inputs of a batch, one mix per row ({} = the base model): every site's A_in / B_in
   *  with row r's mix folded into slot r, or with the bank in the graph, the gates. The same slots
   *  generation fills, fresh for this call. */
  adapterFeeds(mixes: Mix[]): Record<string, ort.Tensor> {
    const slots = newRowMixes(this.slotLayout);
    mixes.forEach((m, r) => slots.set(r, mixEntries(m, this.experts, `mix[${r}]`)));
    return slots.feeds(0, mixes.length);
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    clearInterval(this.#inUse);
    const session = this.#session ?? (await this.#opening?.catch(() => undefined));
    this.#session = undefined;
    const engine = this.#engine;
    this.#engine = undefined;
    await engine?.close();
    await this.router?.dispose();
    for (const s of this.#sites ?? []) s.bank?.dispose();
    await session?.release();
  }
}

/** n runners; when one cannot start, those already started are closed before the error goes on. */
function startReplicas(n: number, start: () => WorkerClient): WorkerClient[] {
  const started: WorkerClient[] = [];
  try {
    for (let i = 0; i < n; i++) started.push(start());
    return started;
  } catch (err) {
    for (const w of started) void w.close();
    throw err;
  }
}
