// POST /v1/chat/completions: one stream() call on the model per request, so concurrent requests
// share its continuous batch. In order:
//   body (413 past the limit) -> fields (400, named as the API names them) -> model (404) ->
//   prompt size (400 before tokenizing) -> admission (429 when full) -> generation
// A request ends early for three reasons, told apart by what aborted it:
//   client  the connection closed before the answer: the slot is freed, nothing is sent
//   timeout --request-timeout passed (queue time included): 504, or an error event in a stream
//   shutdown the drain deadline passed: 503, or an error event in a stream
// A stream that fails after its headers ends with `data: {"error": ...}` and no [DONE]: the
// openai clients raise it as an APIError.
import type * as http from 'node:http';
import type { PersonaModel } from '../model/persona_model';
import type { GenerateResult, StreamEvent } from '../engine/engine';
import type { Admission } from './admission';
import { ApiError, cutByShutdown, draining, modelNotFound, timedOut, tooManyRequests } from './api_error';
import type { ResolvedOptions } from './config';
import type { Drainer } from './drain';
import { checkPromptSize, readBody } from './limits';
import type { RequestLog } from './logging';
import { ApiLogprobContent, apiLogprob, apiLogprobs } from './logprobs';
import type { ServerMetrics } from './metrics';
import type { ServedModel } from './models';
import { apiError, ChatRequest, chunk, completion, CompletionHeader, finishReason, parseChatRequest, parseJson, usageChunk } from './openai';

/** What a 429 asks the client to wait, in seconds: about one short generation. */
export const RETRY_AFTER_SECONDS = 1;

export interface ChatContext {
  model: PersonaModel;
  served: ServedModel;
  opts: ResolvedOptions;
  admission: Admission;
  metrics: ServerMetrics;
  drainer: Drainer;
}

/** The request as the server tracks it: its id, arrival, and what its log line reports. */
export interface RequestState {
  id: string;
  /** performance.now() at arrival */
  started: number;
  log: Partial<RequestLog>;
  /** stops counting the request in a drain from its arrival (drain.ts); called when its generation's own tracker takes over, or when it ends */
  release?: () => void;
}

type Cause = 'client' | 'timeout' | 'shutdown';

/** A token event as the engine sends it, with log-probabilities when the request asked for them. */
type TokenEvent = Extract<StreamEvent, { done: false }>;

export async function handleChat(ctx: ChatContext, req: http.IncomingMessage, res: http.ServerResponse, st: RequestState): Promise<void> {
  const { model, served, opts, admission } = ctx;
  const parsed = parseChatRequest(parseJson(await readBody(req, opts.maxBodyBytes)), { vocab: model.vocab });
  if (parsed.model !== undefined && served.resolve(parsed.model) === undefined) throw modelNotFound(parsed.model);
  checkPromptSize(parsed.options.messages!, model.codec?.maxContext);
  // the drain may have begun while the body was read
  if (ctx.drainer.draining) throw draining();
  const ticket = admission.tryAdmit();
  if (!ticket) throw tooManyRequests(admission.admitted, RETRY_AFTER_SECONDS);

  const ac = new AbortController();
  let cause: Cause | undefined;
  const abort = (why: Cause) => {
    cause ??= why;
    ac.abort();
  };
  const untrack = ctx.drainer.track(() => abort('shutdown'));
  // tracked from here on as a generation (a drain's deadline aborts it as one)
  st.release?.();
  const timer = opts.requestTimeoutMs !== undefined ? setTimeout(() => abort('timeout'), opts.requestTimeoutMs) : undefined;
  res.on('close', () => {
    // closed before we ended it: the client went away, free its slot
    if (!res.writableEnded) abort('client');
    clearTimeout(timer);
    ticket.release();
    untrack();
  });

  const header: CompletionHeader = { id: st.id, model: served.id, created: Math.floor(Date.now() / 1000), fingerprint: served.fingerprint };
  const persona = parsed.options.persona ?? opts.defaultPersona;
  const events = model.stream({ ...parsed.options, ...(persona !== undefined ? { persona } : {}), signal: ac.signal });
  const run = new Run(ctx, st, parsed, model);
  let first: IteratorResult<StreamEvent, void>;
  try {
    // argument errors (bad persona, prompt over the context, ...) surface on the first step
    first = await events.next();
  } catch (err) {
    throw apiError(err, parsed.maxTokensField);
  }
  try {
    if (parsed.stream) await streamAnswer(res, header, parsed, run, first, events, () => cause, opts);
    else await plainAnswer(res, header, run, first, events, () => cause, opts);
  } finally {
    // counted whether it finished or was cut (a timeout's tokens were computed all the same)
    run.end();
  }
}

/** Timing, tokens and log-probabilities of one generation, for the answer, the metrics and the log. */
class Run {
  result: GenerateResult | undefined;
  #firstAt: number | undefined;
  #lastAt = 0;
  /** log-probabilities not yet sent (a stream sends them with the next chunk) */
  pending: ApiLogprobContent[] = [];
  readonly all: ApiLogprobContent[] = [];
  readonly #logprobs: boolean;

  constructor(readonly ctx: ChatContext, readonly st: RequestState, parsed: ChatRequest, readonly model: PersonaModel) {
    this.#logprobs = parsed.logprobs;
  }

  token(ev: TokenEvent): void {
    const now = performance.now();
    if (this.#firstAt === undefined) {
      this.#firstAt = now;
      this.st.log.ttftMs = now - this.st.started;
      this.st.log.mix = ev.mix;
      this.ctx.metrics.firstToken(now - this.st.started);
    } else this.ctx.metrics.interToken(now - this.#lastAt);
    this.#lastAt = now;
    if (this.#logprobs && ev.logprobs) {
      const entry = apiLogprob(ev.token, ev.logprobs, (id) => this.model.codec?.decode([id], false) ?? String(id));
      this.pending.push(entry);
      this.all.push(entry);
    }
  }

  /** every token's log-probabilities, for a whole answer (null when not asked for) */
  everything(): ReturnType<typeof apiLogprobs> | null {
    return this.#logprobs ? apiLogprobs(this.all) : null;
  }

  /** the log-probabilities to send now (null when not asked for) */
  take(): ReturnType<typeof apiLogprobs> | null {
    if (!this.#logprobs) return null;
    return apiLogprobs(this.pending.splice(0));
  }

  end(): void {
    const r = this.result;
    if (!r) return;
    const log = this.st.log;
    log.mix = r.mix;
    log.promptTokens = r.usage.promptTokens;
    log.completionTokens = r.usage.completionTokens;
    const e2eMs = r.finishReason === 'abort' ? undefined : performance.now() - this.st.started;
    this.ctx.metrics.finished({ promptTokens: r.usage.promptTokens, completionTokens: r.usage.completionTokens, mix: r.mix, e2eMs });
  }
}

type Events = AsyncGenerator<StreamEvent, void, undefined>;

/** The error an aborted generation is answered with (undefined: the client left, answer nothing). */
function abortError(cause: Cause | undefined, opts: ResolvedOptions): ApiError | undefined {
  if (cause === 'timeout') return timedOut(opts.requestTimeoutMs!);
  if (cause === 'shutdown') return cutByShutdown();
  return undefined;
}

async function plainAnswer(res: http.ServerResponse, h: CompletionHeader, run: Run, first: IteratorResult<StreamEvent, void>, events: Events, cause: () => Cause | undefined, opts: ResolvedOptions): Promise<void> {
  let ev = first;
  for (; !ev.done && !ev.value.done; ev = await events.next()) run.token(ev.value as TokenEvent);
  if (ev.done || !ev.value.done) return;
  const r = (run.result = ev.value.result);
  if (r.finishReason === 'abort') {
    const err = abortError(cause(), opts);
    if (err) {
      run.st.log.error = err.code ?? err.message;
      throw err;
    }
    run.st.log.error = 'client_closed';
    return;
  }
  const text = JSON.stringify(completion(h, r, run.everything()));
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function streamAnswer(
  res: http.ServerResponse, h: CompletionHeader, parsed: ChatRequest, run: Run, first: IteratorResult<StreamEvent, void>, events: Events,
  cause: () => Cause | undefined, opts: ResolvedOptions,
): Promise<void> {
  // aborted before a token (a timeout in the queue): still a plain error answer
  if (!first.done && first.value.done && first.value.result.finishReason === 'abort') return plainAnswer(res, h, run, first, events, cause, opts);
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
  // with include_usage every chunk has usage: null but the last, as OpenAI sends them
  const usageNull = parsed.includeUsage ? { usage: null } : {};
  let sentFirst = false;
  try {
    for (let ev = first; !ev.done; ev = await events.next()) {
      const v = ev.value;
      if (res.destroyed) break;
      if (!v.done) {
        run.token(v as TokenEvent);
        // tokens sent so far: what an answer cut midway is logged with (end() sets the final count)
        run.st.log.completionTokens = (run.st.log.completionTokens ?? 0) + 1;
        // the first chunk names the role and the persona mix; later ones carry text only
        if (!sentFirst) send(chunk(h, { role: 'assistant', content: v.text }, null, run.take(), { persona: { mix: v.mix }, ...usageNull }));
        else if (v.text) send(chunk(h, { content: v.text }, null, run.take(), usageNull));
        sentFirst = true;
        continue;
      }
      const r = (run.result = v.result);
      if (r.finishReason === 'abort') {
        const err = abortError(cause(), opts);
        run.st.log.error = err ? err.code ?? err.message : 'client_closed';
        if (err && !res.destroyed) send(err.body);
        break;
      }
      if (v.text) send(chunk(h, { content: v.text }, null, run.take(), usageNull));
      send(chunk(h, {}, finishReason(r.finishReason), run.take(), { persona: { mix: r.mix }, ...usageNull }));
      if (parsed.includeUsage) send(usageChunk(h, r));
      res.write('data: [DONE]\n\n');
      break;
    }
  } catch (err) {
    const e = apiError(err, parsed.maxTokensField);
    run.st.log.error = e.message;
    if (!res.destroyed) send(e.body);
  }
  res.end();
}
