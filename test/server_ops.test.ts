// Operating the server: the probes (/health, /ready), Prometheus metrics that parse and move, the
// API key on /v1/* only, opt-in CORS, one log line per request, and drain() (what SIGTERM runs):
// unready, new requests refused, streams in flight finished, or cut at the deadline.
// The embedded demo model in its default configuration (worker thread); loopback only.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import OpenAI from 'openai';
import { PersonaModel } from '../lib';
import { METRIC_NAMES, RunningServer, startServer } from '../lib/server';
import { adapterFolders, FIXTURE } from './helpers/model';
import { demoServers, openStream, postChat } from './helpers/server';

const { model: demoModel, serve } = demoServers('server-ops');

const messages = [{ role: 'user', content: 'Tell me a long story' }];
const post = (srv: RunningServer, body: unknown, headers: Record<string, string> = {}) => postChat(srv.url, body, headers);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = (r: Response): Promise<any> => r.json();

/** A request that runs its whole budget (near-uniform sampling, a seed found here): it stays in flight while the tests act. */
let long: Promise<Record<string, unknown>> | undefined;
function longRequest(): Promise<Record<string, unknown>> {
  long ??= (async () => {
    for (let seed = 1; seed < 40; seed++) {
      const r = await demoModel().generate({ messages, persona: { mix: {} }, maxNewTokens: 100, temperature: 5, topK: 0, topP: 1, seed });
      if (r.finishReason === 'length') return { messages, persona: { mix: {} }, max_tokens: 100, temperature: 5, top_k: 0, top_p: 1, seed, stream: true };
    }
    throw new Error('no seed runs the whole budget');
  })();
  return long;
}


/** Prometheus text -> { 'name{labels}': value }; throws on a line that is not the format. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not Prometheus text: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

async function scrape(srv: RunningServer): Promise<Map<string, number>> {
  const res = await fetch(`${srv.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return parseMetrics(await res.text());
}

describe('probes', () => {
  test('/health is 200 while the process runs, /ready 200 once the model\'s session is open; both GET only', async () => {
    const srv = await serve();
    // readiness follows the engine's session (serve awaits it before listening; here the test does)
    await demoModel().ready();
    const health = await fetch(`${srv.url}/health`);
    expect([health.status, await json(health)]).toEqual([200, { status: 'ok' }]);
    const ready = await fetch(`${srv.url}/ready`);
    expect([ready.status, await json(ready)]).toEqual([200, { status: 'ready' }]);
    expect((await fetch(`${srv.url}/ready`, { method: 'POST' })).status).toBe(405);
  });

  test('/ready is 503 "failed" when the engine\'s worker cannot open the model, and after the model is disposed; /health stays 200', async () => {
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-ready-'));
    // loaded in the default configuration: the worker opens the session on first use, from the cache
    const model = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir });
    for (const f of fs.readdirSync(cacheDir)) fs.rmSync(path.join(cacheDir, f), { recursive: true, force: true });
    const srv = await startServer(model, { port: 0 });
    try {
      let status = 'not_loaded';
      while (status === 'not_loaded') status = (await json(await fetch(`${srv.url}/ready`))).status;
      const ready = await fetch(`${srv.url}/ready`);
      expect([ready.status, await json(ready)]).toEqual([503, { status: 'failed' }]);
      expect((await fetch(`${srv.url}/health`)).status).toBe(200);
    } finally {
      await srv.close();
      await model.dispose();
    }
    const fine = await PersonaModel.load({ model: path.join(FIXTURE, 'onnx-legacy'), adapters: adapterFolders(), cacheDir });
    const srv2 = await startServer(fine, { port: 0 });
    try {
      await fine.ready();
      expect((await fetch(`${srv2.url}/ready`)).status).toBe(200);
      await fine.dispose();
      const after = await fetch(`${srv2.url}/ready`);
      expect([after.status, await json(after)]).toEqual([503, { status: 'failed' }]);
    } finally {
      await srv2.close();
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});

describe('/metrics', () => {
  test('parses as Prometheus text, and a completion moves the counters and histograms', async () => {
    const srv = await serve({ maxBatch: 4 });
    const before = await scrape(srv);
    for (const name of [METRIC_NAMES.running, METRIC_NAMES.waiting, METRIC_NAMES.occupancy, METRIC_NAMES.maxBatch, METRIC_NAMES.promptTokens, METRIC_NAMES.completionTokens]) {
      expect(before.has(name)).toBe(true);
    }
    // the batch is the engine's (the model's 16) where it reports one, else the server's own count
    const engine = demoModel().engine as { loadStats?: () => { maxBatch: number; kvWidth?: number } };
    expect(before.get(METRIC_NAMES.maxBatch)).toBe(engine.loadStats ? engine.loadStats().maxBatch : 4);
    const body = await json(await post(srv, { messages, persona: { mix: { openness_high: 0.7, neuroticism_low: 0.3 } }, max_tokens: 5, temperature: 0 }));
    const after = await scrape(srv);
    const moved = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    expect(moved(METRIC_NAMES.promptTokens)).toBe(body.usage.prompt_tokens);
    expect(moved(METRIC_NAMES.completionTokens)).toBe(body.usage.completion_tokens);
    expect(moved(`${METRIC_NAMES.requests}{route="/v1/chat/completions",code="200"}`)).toBe(1);
    expect(moved(`${METRIC_NAMES.experts}{expert="openness_high"}`)).toBe(1);
    expect(moved(`${METRIC_NAMES.experts}{expert="neuroticism_low"}`)).toBe(1);
    for (const h of [METRIC_NAMES.ttft, METRIC_NAMES.e2e, METRIC_NAMES.queue]) expect(moved(`${h}_count`)).toBe(1);
    expect(moved(`${METRIC_NAMES.tpot}_count`)).toBe(body.usage.completion_tokens - 1);
    // the first scrape itself was counted, once it was answered
    expect(moved(`${METRIC_NAMES.requests}{route="/metrics",code="200"}`)).toBe(1);
    expect(after.has('process_cpu_user_seconds_total')).toBe(true);
    // the KV width is exported exactly when the engine reports it
    expect(after.has(METRIC_NAMES.kvWidth)).toBe(engine.loadStats?.().kvWidth !== undefined);
  });

  test('each server counts in its own registry', async () => {
    const [a, b] = [await serve(), await serve()];
    const before = await scrape(b);
    await (await post(a, { messages, max_tokens: 2 })).text();
    const after = await scrape(b);
    expect(after.get(METRIC_NAMES.completionTokens)).toBe(before.get(METRIC_NAMES.completionTokens));
  });
});

describe('--api-key', () => {
  test('/v1/* takes Authorization: Bearer <key> (401 in OpenAI\'s shape otherwise); the probes and /metrics stay open', async () => {
    const srv = await serve({ apiKey: 'sekret-key' });
    const missing = await fetch(`${srv.url}/v1/models`);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toBe('Bearer');
    expect((await json(missing)).error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });
    for (const auth of ['Bearer sekret-ke', 'Bearer sekret-keyy', 'Basic sekret-key', 'sekret-key']) {
      expect((await fetch(`${srv.url}/v1/models`, { headers: { authorization: auth } })).status).toBe(401);
    }
    expect((await post(srv, { messages, max_tokens: 2 })).status).toBe(401);
    expect((await fetch(`${srv.url}/v1/models`, { headers: { authorization: 'bearer sekret-key' } })).status).toBe(200);
    for (const p of ['/health', '/ready', '/metrics']) expect((await fetch(`${srv.url}${p}`)).status).toBe(200);
    const good = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'sekret-key', maxRetries: 0 });
    expect((await good.chat.completions.create({ model: 'personafuse', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })).choices).toHaveLength(1);
    const bad = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'guess', maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });
});

describe('--cors', () => {
  test('an allowed origin gets the CORS headers and its preflight answered (before the key check); others get none', async () => {
    const srv = await serve({ cors: 'https://app.example', apiKey: 'k' });
    const pre = await fetch(`${srv.url}/v1/chat/completions`, {
      method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(pre.headers.get('access-control-allow-methods')).toMatch(/POST/);
    expect(pre.headers.get('access-control-allow-headers')).toBe('authorization, content-type');
    const allowed = await fetch(`${srv.url}/v1/models`, { headers: { origin: 'https://app.example', authorization: 'Bearer k' } });
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(allowed.headers.get('vary')).toBe('Origin');
    const other = await fetch(`${srv.url}/v1/models`, { headers: { origin: 'https://evil.example', authorization: 'Bearer k' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  test('without --cors there are no CORS headers and OPTIONS is not answered as a preflight', async () => {
    const srv = await serve();
    const pre = await fetch(`${srv.url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
    expect(pre.status).toBe(405);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('request log', () => {
  test('one JSON line per request when its response closes: id, method, path, status, persona mix, tokens, ttft, duration', async () => {
    const lines: string[] = [];
    const srv = await serve({ logFormat: 'json', log: (l) => lines.push(l) });
    const res = await post(srv, { messages, persona: { mix: { openness_high: 1 } }, max_tokens: 4 });
    const body = await json(res);
    await (await fetch(`${srv.url}/health`)).text();
    while (lines.length < 2) await new Promise((r) => setImmediate(r));
    const [chat, health] = lines.map((l) => JSON.parse(l));
    expect(res.headers.get('x-request-id')).toBe(body.id);
    expect(chat).toMatchObject({
      id: body.id, method: 'POST', path: '/v1/chat/completions', status: 200, persona_mix: { openness_high: 1 },
      prompt_tokens: body.usage.prompt_tokens, completion_tokens: body.usage.completion_tokens,
    });
    expect(chat.ttft_ms).toBeGreaterThan(0);
    expect(chat.duration_ms).toBeGreaterThanOrEqual(chat.ttft_ms);
    expect(health).toMatchObject({ method: 'GET', path: '/health', status: 200 });
  });
});

describe('request log: a stream the client leaves', () => {
  test('is logged with its 200, error client_closed and the tokens it was sent', async () => {
    const lines: string[] = [];
    const srv = await serve({ logFormat: 'json', log: (l) => lines.push(l) });
    const body = await longRequest();
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        let chunks = 0;
        res.on('data', () => {
          if (++chunks === 3) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', () => undefined);
      req.end(JSON.stringify(body));
      setTimeout(() => reject(new Error('no three chunks in 10 s')), 10_000).unref();
    });
    const since = Date.now();
    while (!lines.some((l) => l.includes('/v1/chat/completions')) && Date.now() - since < 5000) await new Promise((r) => setTimeout(r, 5));
    const chat = JSON.parse(lines.find((l) => l.includes('/v1/chat/completions'))!);
    expect(chat).toMatchObject({ status: 200, error: 'client_closed' });
    expect(chat.completion_tokens).toBeGreaterThanOrEqual(2);
    expect(chat.completion_tokens).toBeLessThan(100);
  });
});

describe('request log: a stream the server cuts', () => {
  test('close() mid-stream is logged as server_closed, not as the client leaving', async () => {
    const lines: string[] = [];
    const srv = await serve({ logFormat: 'json', log: (l) => lines.push(l) });
    await openStream(srv.url, await longRequest());
    await srv.close();
    const since = Date.now();
    while (!lines.some((l) => l.includes('/v1/chat/completions')) && Date.now() - since < 5000) await new Promise((r) => setTimeout(r, 5));
    expect(JSON.parse(lines.find((l) => l.includes('/v1/chat/completions'))!)).toMatchObject({ status: 200, error: 'server_closed' });
  });
});

describe('drain()', () => {
  test('unready and refusing new requests while the streams in flight run to [DONE]; then closed', async () => {
    const srv = await serve();
    const body = await longRequest();
    const streams = await Promise.all([openStream(srv.url, body), openStream(srv.url, body)]);
    const drained = srv.drain(30_000);
    expect(srv.draining).toBe(true);
    const ready = await fetch(`${srv.url}/ready`);
    expect([ready.status, await json(ready)]).toEqual([503, { status: 'draining' }]);
    const refused = await post(srv, { messages, max_tokens: 2 });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('connection')).toBe('close');
    expect((await json(refused)).error).toMatchObject({ type: 'server_error', code: 'server_shutting_down' });
    expect((await fetch(`${srv.url}/health`)).status).toBe(200);
    for (const s of streams) {
      const data = await s.done;
      expect(data[data.length - 1]).toBe('[DONE]');
      expect(JSON.parse(data[data.length - 2]).choices[0].finish_reason).toBe('length');
    }
    expect(await drained).toEqual({ aborted: 0 });
    await expect(fetch(`${srv.url}/health`)).rejects.toThrow();
  });

  test('a request whose body is still arriving when the drain starts is waited for and answered 503, not dropped unanswered', async () => {
    const srv = await serve();
    const text = JSON.stringify({ messages, max_tokens: 2 });
    const answer = new Promise<{ status: number; body: string; connection?: string }>((resolve, reject) => {
      const req = http.request(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }));
      });
      req.on('error', reject);
      // half the body now, the rest once the drain has begun
      req.write(text.slice(0, 10));
      // the drain starts once the server counts the request (its headers parsed), the rest of the body 50 ms later
      const begin = () => {
        if (srv.inFlight === 0) return void setTimeout(begin, 5);
        drained = srv.drain(30_000);
        setTimeout(() => req.end(text.slice(10)), 50);
      };
      begin();
    });
    let drained: Promise<unknown> | undefined;
    // a connection closed unanswered leaves the client waiting: fail in seconds, not at jest's timeout
    const silence = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 10 s: the connection was dropped unanswered')), 10_000).unref());
    const got = await Promise.race([answer, silence]);
    expect([got.status, got.connection]).toEqual([503, 'close']);
    expect(JSON.parse(got.body).error).toMatchObject({ code: 'server_shutting_down' });
    expect(await drained).toEqual({ aborted: 0 });
  });

  test('a request on a connection accepted just as the drain ends is read and answered 503, not reset', async () => {
    const srv = await serve();
    const socket = net.connect(srv.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    const ended = new Promise<string>((resolve) => {
      socket.once('close', () => resolve(answer));
      socket.once('error', () => undefined);
    });
    // nothing is in flight: the drain ends at once, while the request is on its way
    const drained = srv.drain(30_000);
    const body = JSON.stringify({ messages, max_tokens: 2 });
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    expect(await drained).toEqual({ aborted: 0 });
    const got = await ended;
    expect(got).toMatch(/^HTTP\/1\.1 503 /);
    expect(got.toLowerCase()).toContain('connection: close');
    expect(got).toContain('server_shutting_down');
  });

  test('at the deadline a request whose body never finishes is answered 503', async () => {
    const srv = await serve();
    const answer = new Promise<number>((resolve, reject) => {
      const req = http.request(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': 1000 } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write('{"messages":');
    });
    // the request has reached the server once it counts in flight (a server that counts only admitted requests never does)
    const since = Date.now();
    while (srv.inFlight === 0) {
      if (Date.now() - since > 5000) throw new Error('a request reading its body never counted in flight');
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(await srv.drain(50)).toEqual({ aborted: 1 });
    expect(await answer).toBe(503);
  });

  test('at the deadline the requests still running are cut: a stream gets an error event and no [DONE]', async () => {
    const srv = await serve();
    const stream = await openStream(srv.url, await longRequest());
    expect(await srv.drain(1)).toEqual({ aborted: 1 });
    const data = await stream.done;
    expect(data).not.toContain('[DONE]');
    expect(JSON.parse(data[data.length - 1]).error).toMatchObject({ code: 'server_shutting_down' });
  });
});
