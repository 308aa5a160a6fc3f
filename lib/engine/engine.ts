// Engine: generate() and stream() over a runner, for a request whose persona is already a mix.
// Runs on the main thread: it turns the call into token ids (prompt, chat template or ids), hands
// the sequence to the runner (a Batcher, usually in a worker thread), and turns the tokens that
// come back into text deltas, cut at stop strings. Resolving a persona ('auto' through the router,
// a Big Five profile) is the model facade's job (lib/model/persona_model.ts): the engine never
// sees a router.
import { DisposedError, rangeError } from '../errors';
import type { Mix, MixEntries } from '../decoder/mix';
import { BatchStats, FinishReason, SequenceRequest } from './batcher';
import { checkGenerateOptions, DEFAULT_MAX_NEW_TOKENS, GenerateOptions, samplingParams } from './options';
import { randomSeed } from '../rng';
import type { SampledLogprobs } from './sampler';
import { SequenceRunner } from './runner';
import { checkStop } from './stop';
import { Detokenizer } from './detokenizer';
import { TextCodec } from '../decoder/text_codec';

/** A persona resolved to its mix: names for the caller, (expert id, weight) pairs for the slots. */
export interface ResolvedMix {
  mix: Mix;
  entries: MixEntries;
}

export interface GenerateResult {
  /** generated tokens only; the EOS token is included when generation ended on it */
  tokens: number[];
  /** the generated text, special tokens skipped, cut before a stop string */
  text: string;
  /** the persona mix used { expertName: weight } */
  mix: Mix;
  finishReason: FinishReason;
  usage: { promptTokens: number; completionTokens: number };
  /** the seed used (given or drawn), to repeat a sampled generation */
  seed: number;
}

export type StreamEvent =
  | { done: false; token: number; /** text delta */ text: string; /** the persona mix in use */ mix: Mix; /** with options.topLogprobs */ logprobs?: SampledLogprobs }
  | { done: true; /** the last text delta */ text: string; result: GenerateResult };

export interface EngineParts {
  runner: SequenceRunner;
  codec?: TextCodec;
  /** vocabulary size (token ids must be below it), null when unknown */
  vocab?: number | null;
  /** most rows decoded together */
  maxBatch?: number;
}

export class Engine {
  readonly #p: EngineParts;

  constructor(parts: EngineParts) {
    this.#p = parts;
  }

  /** requests submitted and not yet finished (what holds or waits for a batch slot) */
  get openRequests(): number {
    return this.#open;
  }

  #open = 0;
  #closed = false;
  /** request ids: one per call, used by the runner and the worker's batch alike */
  #nextId = 1;

  /** What the batch holds now, and the batch's capacity (for metrics and load balancing). */
  loadStats(): BatchStats & { maxBatch: number } {
    return { ...this.#p.runner.stats(), maxBatch: this.#p.maxBatch ?? 0 };
  }

  /** One generation with the given mix (the options' persona is ignored: it is already resolved). */
  async generate(opts: GenerateOptions, mix: ResolvedMix): Promise<GenerateResult> {
    let result: GenerateResult | undefined;
    // nobody reads the deltas: the text is decoded once at the end (unless stop strings need it)
    for await (const ev of this.#run(opts, mix, false)) if (ev.done) result = ev.result;
    return result!;
  }

  /** The token ids a call asks to continue. */
  promptIds(o: GenerateOptions): number[] {
    if (o.inputIds) return [...o.inputIds];
    const codec = this.needCodec(o.prompt !== undefined ? 'prompt' : 'messages');
    return o.prompt !== undefined ? codec.encode(o.prompt) : codec.encodeChat(o.messages!);
  }

  /** Resolves when generation can start (the worker's session is open); rejects when it cannot. */
  ready(): Promise<void> {
    if (this.#closed) return Promise.reject(new DisposedError('PersonaModel'));
    return this.#p.runner.ready();
  }

  /** Why generation can no longer run (the worker failed or exited); undefined while it can. */
  get failure(): string | undefined {
    return this.#closed ? 'disposed' : this.#p.runner.failure;
  }

  /** Pooled hidden states of the base model for each row of token ids (hidden-state routers). */
  async features(rows: number[][]): Promise<Float32Array[]> {
    if (this.#closed) throw new DisposedError('PersonaModel');
    try {
      return await this.#p.runner.features(rows);
    } catch (err) {
      // a call cut short by dispose() says so with the error type callers can test for
      if (this.#closed) throw new DisposedError('PersonaModel');
      throw err;
    }
  }

  stream(opts: GenerateOptions, mix: ResolvedMix): AsyncGenerator<StreamEvent, void, undefined> {
    return this.#run(opts, mix, true);
  }

  /** deltas: decode the text as tokens arrive (two short decodes per token, on this thread). */
  async *#run(opts: GenerateOptions, resolved: ResolvedMix, deltas: boolean): AsyncGenerator<StreamEvent, void, undefined> {
    if (this.#closed) throw new DisposedError('PersonaModel');
    const o = checkGenerateOptions(opts, this.#p.vocab ?? null);
    const codec = this.#p.codec;
    const stops = o.stop ?? [];
    if (stops.length) this.needCodec('stop');
    const inputIds = this.promptIds(o);
    const mix = resolved.mix;
    const maxNewTokens = this.#budget(inputIds.length, o.maxNewTokens);
    const seed = o.seed ?? randomSeed();
    const req: SequenceRequest = {
      id: this.#nextId++,
      inputIds, mix: resolved.entries, maxNewTokens, seed,
      sampling: samplingParams(o, codec?.generationConfig ?? {}), eosIds: o.ignoreEos ? [] : codec?.eosIds ?? [],
    };

    const events: StreamEvent[] = [];
    let wake: (() => void) | undefined;
    const push = (ev: StreamEvent) => {
      events.push(ev);
      wake?.();
    };
    const tokens: number[] = [];
    const detok = codec && (deltas || stops.length > 0) ? new Detokenizer((ids) => codec.decode(ids)) : undefined;
    /** text of the tokens so far (deltas joined), and the part of it already shown */
    let text = '';
    let shown = '';
    let stoppedByString = false;
    let failure: string | undefined;
    let finished = false;
    const finish = (reason: FinishReason) => {
      if (finished) return;
      finished = true;
      const final = stoppedByString || !codec ? shown : codec.decode(tokens);
      const delta = final.startsWith(shown) ? final.slice(shown.length) : '';
      push({ done: true, text: delta, result: { tokens: [...tokens], text: final, mix, finishReason: reason, usage: { promptTokens: inputIds.length, completionTokens: tokens.length }, seed } });
    };

    let id = -1;
    if (o.signal?.aborted) {
      finish('abort');
    } else {
      const onAbort = () => this.#p.runner.cancel(id);
      this.#open++;
      id = this.#p.runner.submit(req, {
        token: (t, logprobs) => {
          if (finished) return;
          tokens.push(t);
          let delta = '';
          if (detok) {
            text += detok.next(tokens);
            const check = checkStop(text, stops);
            delta = check.safe.startsWith(shown) ? check.safe.slice(shown.length) : '';
            shown = check.safe.startsWith(shown) ? check.safe : shown;
            if (check.stopped) stoppedByString = true;
          }
          push({ done: false, token: t, text: delta, mix, ...(logprobs ? { logprobs } : {}) });
          if (stoppedByString) this.#p.runner.cancel(id);
        },
        done: (reason, error) => {
          this.#open--;
          o.signal?.removeEventListener('abort', onAbort);
          // dispose() ends requests with 'abort' (the worker adds a reason, the in-thread Batcher none)
          if (error || (reason === 'abort' && this.#closed)) {
            failure = error ?? 'The generation engine is closed';
            finished = true;
            wake?.();
            return;
          }
          finish(stoppedByString ? 'stop' : reason);
        },
      });
      o.signal?.addEventListener('abort', onAbort, { once: true });
    }

    try {
      for (;;) {
        while (events.length) {
          const ev = events.shift()!;
          yield ev;
          if (ev.done) return;
        }
        // a request cut short by dispose() says so with the error type callers can test for
        if (failure) throw this.#closed ? new DisposedError('PersonaModel') : new Error(failure);
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      // a consumer that stops iterating early frees the slot at once
      if (!finished && id >= 0) this.#p.runner.cancel(id);
    }
  }

  #budget(promptLen: number, asked: number | undefined): number {
    const maxContext = this.#p.codec?.maxContext;
    const want = asked ?? (typeof this.#p.codec?.generationConfig.max_new_tokens === 'number' ? (this.#p.codec.generationConfig.max_new_tokens as number) : DEFAULT_MAX_NEW_TOKENS);
    if (maxContext === undefined) return want;
    if (promptLen >= maxContext) throw rangeError('prompt', `fewer than ${maxContext} tokens (the model's context)`, `${promptLen} tokens`);
    return Math.min(want, maxContext - promptLen);
  }

  needCodec(what: string): TextCodec {
    if (!this.#p.codec) throw new Error(`${what} needs the model's tokenizer.json (none was found beside the model; pass { tokenizer: <folder> })`);
    return this.#p.codec;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#p.runner.close();
  }
}
