// PersonaRouter (the encoder kind of router.json): the situation text -> expert logits (any ONNX
// model with input_ids and attention_mask [batch, seq] int64 -> logits [batch, E] f32) ->
// kernels.topkSoftmax -> the mix. loadRouter() opens either kind (hidden_router.ts).
//
// The text it reads is the last user message or the whole conversation (router.json `input`),
// tokenized with the router folder's tokenizer.json (its special tokens added, as a router is
// trained with `tokenizer(text)`), cut to the first maxLength tokens. The router is small and
// run once per user turn; its session.run is async but executes on the calling thread.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { Tokenizer } from '@huggingface/tokenizers';
import { DisposedError, typeError } from '../errors';
import { findFile, readJson } from '../decoder/model_files';
import { HiddenStateRouter } from './hidden_router';
import { EncoderRouterConfig, readRouterConfig } from './router_config';
import { RouteMessage, RouteResult, routeFromLogits, situationText } from './route_result';

export type { RouteMessage, RouteResult };

/** Either kind of router, as loadRouter() opens it. */
export type AnyRouter = PersonaRouter | HiddenStateRouter;

/** The router in `dir`, of the kind its router.json says. */
export async function loadRouter(dir: string): Promise<AnyRouter> {
  if (typeof dir !== 'string' || dir.length === 0) throw typeError('router', 'a router folder', dir);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`The router folder ${dir} does not exist`);
  const config = readRouterConfig(dir);
  return config.kind === 'hidden-state' ? HiddenStateRouter.load(dir, config) : PersonaRouter.load(dir);
}

export class PersonaRouter {
  readonly kind = 'encoder' as const;
  readonly config: EncoderRouterConfig;
  readonly dir: string;
  readonly #tokenizer: Tokenizer;
  #session: ort.InferenceSession | undefined;

  private constructor(dir: string, config: EncoderRouterConfig, tokenizer: Tokenizer, session: ort.InferenceSession) {
    this.dir = dir;
    this.config = config;
    this.#tokenizer = tokenizer;
    this.#session = session;
  }

  static async load(dir: string): Promise<PersonaRouter> {
    if (typeof dir !== 'string' || dir.length === 0) throw typeError('router', 'a router folder', dir);
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`The router folder ${dir} does not exist`);
    const config = readRouterConfig(dir);
    if (config.kind !== 'encoder') throw new Error(`The router in ${dir} reads the model's hidden states: open it with loadRouter() and route through the model (PersonaModel.route)`);
    const tokFile = findFile([dir], 'tokenizer.json');
    if (!tokFile) throw new Error(`The router folder ${dir} has no tokenizer.json`);
    const tokenizer = new Tokenizer(readJson(tokFile), readJson(findFile([dir], 'tokenizer_config.json')));
    const modelFile = path.join(dir, 'model.onnx');
    if (!fs.existsSync(modelFile)) throw new Error(`The router folder ${dir} has no model.onnx`);
    const session = await ort.InferenceSession.create(modelFile, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
    const E = config.experts.length;
    if (!session.inputNames.includes('input_ids') || !session.outputNames.includes('logits')) {
      throw new Error(`The router ${modelFile} must take input_ids (and attention_mask) and give logits [batch, ${E}]`);
    }
    return new PersonaRouter(dir, config, tokenizer, session);
  }

  /** The text this router reads from a conversation. */
  situation(messages: readonly RouteMessage[]): string {
    return situationText(this.config, messages);
  }

  async route(input: string | readonly RouteMessage[]): Promise<RouteResult> {
    const session = this.#session;
    if (!session) throw new DisposedError('PersonaRouter');
    const text = typeof input === 'string' ? input : this.situation(input);
    if (typeof text !== 'string') throw typeError('text', 'a string or a list of messages', input);
    let ids = this.#tokenizer.encode(text, { add_special_tokens: true }).ids;
    if (ids.length === 0) ids = [0];
    ids = ids.slice(0, this.config.maxLength);
    const n = ids.length;
    const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, n]) };
    if (session.inputNames.includes('attention_mask')) feeds.attention_mask = new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]);
    const out = await session.run(feeds, ['logits']);
    return routeFromLogits(Float32Array.from(out.logits.data as Float32Array), this.config, text);
  }

  async dispose(): Promise<void> {
    const s = this.#session;
    this.#session = undefined;
    await s?.release();
  }
}
