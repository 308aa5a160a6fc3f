// personafuse's OpenAI-compatible HTTP server (node:http):
//   GET  /v1/models             the one model served, with its experts
//   POST /v1/chat/completions   stream (SSE, ending `data: [DONE]`) or not; `persona` in and out
// Every request is a generate()/stream() call on one PersonaModel, so concurrent requests share
// its continuous batch. A client that disconnects aborts its generation (the slot is freed at
// the next step). Client mistakes are 4xx with an OpenAI-style error body; nothing a request
// sends can take the server down.
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import type { PersonaModel } from '../model/persona_model';
import type { Persona } from '../router/persona';
import { BadRequest, chunk, completion, completionId, errorBody, finishReason, parseChatRequest, usageOf } from './openai';

export interface ServerOptions {
  /** the id /v1/models reports and responses carry (default 'personafuse') */
  modelId?: string;
  /** largest request body in bytes (default 1 MiB) */
  maxBodyBytes?: number;
  /** the persona of requests that send none (default: the model's, 'auto' when it has a router) */
  defaultPersona?: Persona;
}

export interface RunningServer {
  server: http.Server;
  url: string;
  port: number;
  close(): Promise<void>;
}

export function createServer(model: PersonaModel, opts: ServerOptions = {}): http.Server {
  const modelId = opts.modelId ?? 'personafuse';
  const maxBody = opts.maxBodyBytes ?? 1 << 20;
  const created = Math.floor(Date.now() / 1000);

  return http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      if (!res.headersSent) sendJson(res, 500, errorBody(message, 'server_error'));
      else res.end();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/v1/models') {
      if (req.method !== 'GET') return sendJson(res, 405, errorBody(`Method ${req.method} is not allowed on /v1/models`, 'invalid_request_error'));
      return sendJson(res, 200, {
        object: 'list',
        data: [{ id: modelId, object: 'model', created, owned_by: 'personafuse', experts: model.experts, router: !!model.router }],
      });
    }
    if (url.pathname !== '/v1/chat/completions') return sendJson(res, 404, errorBody(`No route ${req.method} ${url.pathname}`, 'invalid_request_error', null, 'not_found'));
    if (req.method !== 'POST') return sendJson(res, 405, errorBody(`Method ${req.method} is not allowed on /v1/chat/completions`, 'invalid_request_error'));
    let parsed;
    try {
      parsed = parseChatRequest(parseJson(await readBody(req, maxBody)));
    } catch (err) {
      return sendError(res, err);
    }
    const ac = new AbortController();
    // the response closing before we ended it means the client went away: free its slot
    res.on('close', () => {
      if (!res.writableEnded) ac.abort();
    });
    const id = completionId();
    const now = Math.floor(Date.now() / 1000);
    const persona = parsed.options.persona ?? opts.defaultPersona;
    const events = model.stream({ ...parsed.options, ...(persona !== undefined ? { persona } : {}), signal: ac.signal });
    let first;
    try {
      // argument errors (bad persona, prompt over the context, ...) surface on the first step
      first = await events.next();
    } catch (err) {
      return sendError(res, err);
    }
    if (!parsed.stream) {
      let ev = first;
      while (!ev.done && !ev.value.done) ev = await events.next();
      if (ev.done || !ev.value.done) return; // the client left
      const r = ev.value.result;
      if (r.finishReason === 'abort') return;
      return sendJson(res, 200, completion(id, modelId, now, r));
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
    let mixSent = false;
    try {
      for (let ev = first; !ev.done; ev = await events.next()) {
        const v = ev.value;
        if (res.destroyed) break;
        if (!v.done) {
          // the first chunk names the role and the persona mix; later ones carry text only
          if (!mixSent) send(chunk(id, modelId, now, { role: 'assistant', content: v.text }, null, { persona: { mix: v.mix } }));
          else if (v.text) send(chunk(id, modelId, now, { content: v.text }, null));
          mixSent = true;
          continue;
        }
        const r = v.result;
        if (r.finishReason === 'abort') break;
        if (v.text) send(chunk(id, modelId, now, { content: v.text }, null));
        send(chunk(id, modelId, now, {}, finishReason(r.finishReason), { persona: { mix: r.mix }, usage: usageOf(r) }));
        res.write('data: [DONE]\n\n');
        break;
      }
    } catch (err) {
      send(errorBody(err instanceof Error ? err.message : String(err), 'server_error'));
    }
    res.end();
  }
}

export async function startServer(model: PersonaModel, opts: ServerOptions & { port?: number; host?: string } = {}): Promise<RunningServer> {
  const server = createServer(model, opts);
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8000, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    server, port, url: `http://${shown}:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function readBody(req: http.IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new BadRequest(`The request body is over ${max} bytes`, 413));
        req.destroy();
        return;
      }
      parts.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BadRequest(`The request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** 400 for what the client sent (our TypeError / RangeError name the argument), else 500. */
function sendError(res: http.ServerResponse, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof BadRequest) return sendJson(res, err.status, errorBody(message, 'invalid_request_error'));
  if (err instanceof TypeError || err instanceof RangeError) {
    const param = /for ([\w.[\]]+) but/.exec(message)?.[1] ?? null;
    return sendJson(res, 400, errorBody(message, 'invalid_request_error', param));
  }
  sendJson(res, 500, errorBody(message, 'server_error'));
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
