// personafuse's OpenAI-compatible HTTP server (node:http):
//   GET  /health                  200 while the process runs (liveness)
//   GET  /ready                   200 when the model's session is open (and has not failed since) and the server
//                                 is not draining, else 503 with status not_loaded | failed | draining (readiness)
//   GET  /metrics                 Prometheus text (lib/server/metrics.ts)
//   GET  /v1/models               the model served, with its experts
//   GET  /v1/models/{id}          the same object, by its id or an alias; 404 model_not_found otherwise
//   POST /v1/chat/completions     stream (SSE, ending `data: [DONE]`) or not; `persona` in and out (lib/server/chat.ts)
//   OPTIONS *                     CORS preflight, when CORS is on
// /v1/* takes the API key when one is set. Client mistakes are 4xx with an OpenAI-style error
// body; nothing a request sends can take the server down. One log line and one metrics count
// per request, when its response closes.
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import type { PersonaModel } from '../model/persona_model';
import { Admission } from './admission';
import { ApiError, draining, methodNotAllowed, modelNotFound, notFound, unauthorized } from './api_error';
import { bearerAuth } from './auth';
import { handleChat, RequestState } from './chat';
import { ListenOptions, OptionNames, resolveServerOptions, ServerOptions } from './config';
import { cors } from './cors';
import { DrainResult, Drainer } from './drain';
import { requestLogger } from './logging';
import { LoadStats, ServerMetrics } from './metrics';
import { servedModel } from './models';
import { apiError, completionId } from './openai';

export type { ServerOptions, ListenOptions } from './config';

export interface RunningServer {
  server: http.Server;
  url: string;
  port: number;
  /** this server's metrics (its Registry is its own) */
  metrics: ServerMetrics;
  /** true from the first drain() on */
  readonly draining: boolean;
  /** requests whose response has not closed yet, from their parsed headers on (probes and
   *  requests still sending their body included): what a drain waits for */
  readonly inFlight: number;
  /** Stops now: open connections are closed, generations in flight aborted. */
  close(): Promise<void>;
  /** Graceful stop: unready, new requests 503, in-flight ones finish (at most timeoutMs, then they
   *  are aborted), then close(). The model is the caller's to dispose. */
  drain(timeoutMs: number): Promise<DrainResult>;
}

/** The server and the handles startServer exposes. */
interface Built {
  server: http.Server;
  metrics: ServerMetrics;
  drainer: Drainer;
  /** set when the server closes every connection itself (close()): what the log says of a response cut then */
  closing: { connections: boolean };
}

/** What Engine.loadStats() returns where the engine has it (an optional method, looked up at run time). */
type EngineLoad = { running: number; waiting: number; maxBatch: number; kvWidth?: number };

/** The model's engine, or undefined once the model is disposed. */
function engineOf(model: PersonaModel): (PersonaModel['engine'] & { loadStats?: () => EngineLoad }) | undefined {
  try {
    return model.engine;
  } catch {
    return undefined;
  }
}

export function createServer(model: PersonaModel, opts: ServerOptions = {}): http.Server {
  return build(model, opts).server;
}

function build(model: PersonaModel, options: ServerOptions & ListenOptions, names?: OptionNames): Built {
  // the engine's own batch size is the default; asking for it starts the engine (its worker)
  const opts = resolveServerOptions(options, options.maxBatch === undefined ? engineOf(model)?.loadStats?.().maxBatch : undefined, names);
  const served = servedModel(model, opts.names);
  const drainer = new Drainer();
  const closing = { connections: false };
  const load = (): LoadStats => {
    const s = engineOf(model)?.loadStats?.();
    if (s) return { running: s.running, waiting: s.waiting, maxBatch: s.maxBatch || opts.maxBatch, kvWidth: s.kvWidth };
    return { running: admission.running, waiting: admission.waiting, maxBatch: opts.maxBatch };
  };
  const metrics = new ServerMetrics(load);
  const admission = new Admission(opts.maxBatch, opts.maxQueue, (ms) => metrics.queued(ms));
  const authorized = opts.apiKey !== undefined ? bearerAuth(opts.apiKey) : () => true;
  const corsHeaders = cors(opts.cors);
  const log = requestLogger(opts.logFormat, opts.log);
  const chatContext = { model, served, opts, admission, metrics, drainer };
  // readiness: the engine's session open (model.ready() resolved) and no failure since; a failed
  // open, a dead worker and a disposed model all show as the engine's failure (or no engine)
  let opened = false;
  model.ready().then(() => (opened = true), () => undefined);
  const readiness = (): 'ready' | 'not_loaded' | 'failed' | 'draining' => {
    if (drainer.draining) return 'draining';
    const engine = engineOf(model);
    if (engine === undefined || engine.failure !== undefined) return 'failed';
    return opened ? 'ready' : 'not_loaded';
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const chat = url.pathname === '/v1/chat/completions';
    const st: RequestState = { id: chat ? completionId() : `req-${randomUUID().replace(/-/g, '').slice(0, 24)}`, started: performance.now(), log: {} };
    res.setHeader('x-request-id', st.id);
    corsHeaders.apply(req, res);
    // in flight from its first byte: a drain that starts while a body is still arriving waits for
    // it (it is then answered 503) rather than closing a connection it never answered; at the
    // deadline one still unanswered gets its 503 now. An admitted chat request hands over to its
    // generation's tracker (chat.ts).
    st.release = drainer.track(() => {
      if (res.headersSent) return;
      st.log.error ??= 'server_shutting_down';
      sendError(res, draining(), true);
    });
    res.on('close', () => {
      st.release?.();
      // a client gone before any answer: logged as nginx does, 499; an answer cut midway keeps the
      // status it was sent, and the log says who cut it (with the tokens sent until then)
      const status = res.headersSent ? res.statusCode : 499;
      if (res.headersSent && !res.writableEnded) st.log.error ??= closing.connections ? 'server_closed' : 'client_closed';
      metrics.request(routeOf(url.pathname), status);
      log({ ...st.log, id: st.id, method: req.method ?? '', path: url.pathname, status, durationMs: performance.now() - st.started });
    });
    handle(req, res, url, st).catch((err: unknown) => {
      const e = apiError(err);
      st.log.error ??= e.code ?? e.message;
      if (!res.headersSent) sendError(res, e, drainer.draining);
      else res.end();
    });
  });
  return { server, metrics, drainer, closing };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL, st: RequestState): Promise<void> {
    const path = url.pathname;
    if (corsHeaders.preflight(req, res)) return;
    if (path === '/health') return probe(req, res, path, 200, { status: 'ok' });
    if (path === '/ready') {
      const status = readiness();
      return probe(req, res, path, status === 'ready' ? 200 : 503, { status });
    }
    if (path === '/metrics') {
      if (req.method !== 'GET') throw methodNotAllowed(req.method ?? '', path, ['GET']);
      const text = await metrics.text();
      res.writeHead(200, { 'content-type': metrics.contentType });
      return void res.end(text);
    }
    if (!path.startsWith('/v1/')) throw notFound(req.method ?? '', path);
    if (!authorized(req)) throw unauthorized();
    if (drainer.draining) throw draining();
    if (path === '/v1/models') {
      if (req.method !== 'GET') throw methodNotAllowed(req.method ?? '', path, ['GET']);
      return sendJson(res, 200, { object: 'list', data: [served.object] });
    }
    if (path.startsWith('/v1/models/')) {
      if (req.method !== 'GET') throw methodNotAllowed(req.method ?? '', path, ['GET']);
      // ids may hold '/' (org/name), sent as is or percent-encoded
      const asked = decodeName(path.slice('/v1/models/'.length));
      if (served.resolve(asked) === undefined) throw modelNotFound(asked);
      return sendJson(res, 200, served.object);
    }
    if (path === '/v1/chat/completions') {
      if (req.method !== 'POST') throw methodNotAllowed(req.method ?? '', path, ['POST']);
      return handleChat(chatContext, req, res, st);
    }
    throw notFound(req.method ?? '', path);
  }
}

/** a percent-encoded name decoded; one that is not valid percent-encoding is taken as it is */
function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

function probe(req: http.IncomingMessage, res: http.ServerResponse, path: string, status: number, body: unknown): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') throw methodNotAllowed(req.method ?? '', path, ['GET', 'HEAD']);
  sendJson(res, status, body);
}

/** The metrics label of a path: the routes themselves, everything else 'other' (bounded cardinality). */
function routeOf(path: string): string {
  if (['/health', '/ready', '/metrics', '/v1/models', '/v1/chat/completions'].includes(path)) return path;
  if (path.startsWith('/v1/models/')) return '/v1/models/{id}';
  return 'other';
}

/** How long a drain's end waits for requests on connections accepted just before it stopped listening. */
const LAST_READ_MS = 100;

export async function startServer(model: PersonaModel, opts: ServerOptions & ListenOptions = {}, names?: OptionNames): Promise<RunningServer> {
  const { server, metrics, drainer, closing } = build(model, opts, names);
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8000, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  const close = () => new Promise<void>((resolve) => {
    closing.connections = true;
    server.closeAllConnections();
    // a server already closed (a drain then a close) answers with an error: closed is closed
    server.close(() => resolve());
  });
  return {
    server, port, metrics, url: `http://${shown}:${port}`, close,
    get draining() {
      return drainer.draining;
    },
    get inFlight() {
      return drainer.inFlight;
    },
    async drain(timeoutMs: number) {
      const result = await drainer.drain(timeoutMs);
      // the last instant: stop accepting, then let a request on a connection already accepted be
      // read and answered (503, tracked from its headers) before every connection is closed; closed
      // at once, its bytes unread, it would see a reset and no answer
      server.close();
      await new Promise((resolve) => setTimeout(resolve, LAST_READ_MS));
      await drainer.idleWithin(LAST_READ_MS);
      await close();
      return result;
    },
  };
}

function sendError(res: http.ServerResponse, e: ApiError, closing: boolean): void {
  // while draining, every answer asks the client to reconnect (to another replica)
  sendJson(res, e.status, e.body, closing ? { ...e.headers, connection: 'close' } : e.headers);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
