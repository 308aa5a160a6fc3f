// ServerOptions and their check. Everything is checked once, before the server listens (and, in
// `personafuse serve`, before the model loads), with errors.ts's wording naming the option as the
// caller spelled it (`--max-batch` from the CLI, `maxBatch` from code): a max batch of 0 used to
// be accepted and then hung every request.
import { expectInteger, rangeError, typeError } from '../errors';
import type { Persona } from '../router/persona';
import { DEFAULT_MAX_BATCH } from '../engine/batcher';

export type LogFormat = 'json' | 'text' | 'none';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'text', 'none'];

export interface ServerOptions {
  /** the names the model is served under: the first is the id /v1/models reports and responses
   *  carry, the others are aliases a request's `model` may name (default ['personafuse']) */
  servedModelNames?: string[];
  /** the same as servedModelNames: [modelId] (the older option; give one or the other) */
  modelId?: string;
  /** largest request body in bytes (default 1 MiB); a larger one is answered 413 */
  maxBodyBytes?: number;
  /** the persona of requests that send none (default: the model's, 'auto' when it has a router) */
  defaultPersona?: Persona;
  /** most requests decoded together: what the model was loaded with (default: what its engine
   *  reports, else 16, PersonaModel's default) */
  maxBatch?: number;
  /** requests admitted beyond maxBatch to wait for a slot; more are answered 429 (default 4 x maxBatch) */
  maxQueue?: number;
  /** a request running longer (queue time included) is stopped and answered 504 (default: no limit) */
  requestTimeoutMs?: number;
  /** when set, /v1/* requires Authorization: Bearer <apiKey> (/health, /ready, /metrics do not) */
  apiKey?: string;
  /** one line per request: JSON, text, or nothing (default 'none': a library writes no logs unasked) */
  logFormat?: LogFormat;
  /** where log lines go (default: process.stderr) */
  log?: (line: string) => void;
  /** origins allowed cross-origin ('*' for any); unset: no CORS headers, no preflight */
  cors?: string | string[];
}

export interface ListenOptions {
  /** default 8000; 0 = any free port */
  port?: number;
  /** default 127.0.0.1 */
  host?: string;
}

export interface ResolvedOptions {
  names: string[];
  maxBodyBytes: number;
  defaultPersona: Persona | undefined;
  maxBatch: number;
  maxQueue: number;
  requestTimeoutMs: number | undefined;
  apiKey: string | undefined;
  logFormat: LogFormat;
  log: (line: string) => void;
  cors: string[];
}

export const DEFAULT_QUEUE_PER_SLOT = 4;
export const DEFAULT_MAX_BODY_BYTES = 1 << 20;
export const MAX_BATCH_LIMIT = 4096;
/** setTimeout's largest delay (about 24.8 days) */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** How an option is named in errors: the option itself, or a CLI flag. */
export type OptionNames = Partial<Record<keyof ServerOptions | keyof ListenOptions, string>>;

export function positiveMs(v: unknown, arg: string): number {
  const what = `a number of milliseconds above 0 and at most ${MAX_TIMEOUT_MS}`;
  if (typeof v !== 'number') throw typeError(arg, what, v);
  if (!(v > 0 && v <= MAX_TIMEOUT_MS)) throw rangeError(arg, what, String(v));
  return v;
}

/** A CLI duration in seconds (above 0) as milliseconds, named in seconds in its error. */
export function secondsToMs(v: unknown, arg: string): number {
  const what = `a number of seconds above 0 and at most ${Math.floor(MAX_TIMEOUT_MS / 1000)}`;
  if (typeof v !== 'number') throw typeError(arg, what, v);
  if (!(v > 0 && v * 1000 <= MAX_TIMEOUT_MS)) throw rangeError(arg, what, String(v));
  return v * 1000;
}

function nonEmptyString(v: unknown, arg: string): string {
  if (typeof v !== 'string' || v.length === 0) throw typeError(arg, 'a non-empty string', v);
  return v;
}

/** The options with their defaults; engineMaxBatch is what the loaded model's engine reports. */
export function resolveServerOptions(opts: ServerOptions & ListenOptions, engineMaxBatch?: number, names: OptionNames = {}): ResolvedOptions {
  if (typeof opts !== 'object' || opts === null) throw typeError('options', 'an options object', opts);
  const n = (k: keyof ServerOptions | keyof ListenOptions) => names[k] ?? k;
  if (opts.port !== undefined) expectInteger(opts.port, n('port'), 0, 65535);
  if (opts.host !== undefined) nonEmptyString(opts.host, n('host'));
  if (opts.modelId !== undefined && opts.servedModelNames !== undefined) {
    throw rangeError(n('modelId'), `one of ${n('modelId')} and ${n('servedModelNames')} (they name the same thing)`, 'both');
  }
  const served = opts.servedModelNames ?? (opts.modelId !== undefined ? [opts.modelId] : ['personafuse']);
  if (!Array.isArray(served) || served.length === 0) throw typeError(n('servedModelNames'), 'a non-empty array of names', served);
  served.forEach((s, i) => nonEmptyString(s, opts.servedModelNames ? `${n('servedModelNames')}[${i}]` : n('modelId')));
  const maxBatch = expectInteger(opts.maxBatch ?? (engineMaxBatch && engineMaxBatch > 0 ? engineMaxBatch : DEFAULT_MAX_BATCH), n('maxBatch'), 1, MAX_BATCH_LIMIT);
  const maxQueue = expectInteger(opts.maxQueue ?? DEFAULT_QUEUE_PER_SLOT * maxBatch, n('maxQueue'), 0, 1_000_000);
  const maxBodyBytes = expectInteger(opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, n('maxBodyBytes'), 1, 2 ** 30);
  const requestTimeoutMs = opts.requestTimeoutMs === undefined ? undefined : positiveMs(opts.requestTimeoutMs, n('requestTimeoutMs'));
  const apiKey = opts.apiKey === undefined ? undefined : nonEmptyString(opts.apiKey, n('apiKey'));
  // a Bearer token is one word: a key with whitespace could never be sent
  if (apiKey !== undefined && /\s/.test(apiKey)) throw rangeError(n('apiKey'), 'a key without whitespace', `${apiKey.length} characters with whitespace`);
  const logFormat = opts.logFormat ?? 'none';
  if (!LOG_FORMATS.includes(logFormat)) throw rangeError(n('logFormat'), LOG_FORMATS.map((f) => `'${f}'`).join(', '), `'${String(logFormat)}'`);
  if (opts.log !== undefined && typeof opts.log !== 'function') throw typeError(n('log'), 'a function (line: string) => void', opts.log);
  const cors = opts.cors === undefined ? [] : Array.isArray(opts.cors) ? opts.cors : [opts.cors];
  cors.forEach((o, i) => nonEmptyString(o, Array.isArray(opts.cors) ? `${n('cors')}[${i}]` : n('cors')));
  return {
    names: [...new Set(served)], maxBodyBytes, defaultPersona: opts.defaultPersona, maxBatch, maxQueue, requestTimeoutMs, apiKey, logFormat,
    log: opts.log ?? ((line) => void process.stderr.write(`${line}\n`)), cors,
  };
}
