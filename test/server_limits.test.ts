// Back-pressure and limits: options checked at start-up (library and CLI, before the model
// loads), admission (429 with Retry-After past max batch + max queue, without touching the
// model), 413 for oversized bodies that the client actually receives, and --request-timeout
// (504, or an error event in a stream). The embedded demo model in its default configuration (worker thread), loopback.
import { execFile } from 'node:child_process';
import * as http from 'node:http';
import * as path from 'node:path';
import OpenAI from 'openai';
import { resolveServerOptions, RunningServer, startServer } from '../lib/server';
import { Admission } from '../lib/server/admission';
import { demoServers, postChat } from './helpers/server';
import { tempDir } from './helpers/model';

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli', 'main.js');
const { model: demoModel, serve } = demoServers('server-limits');

const messages = [{ role: 'user', content: 'Tell me a long story' }];
const post = (srv: RunningServer, body: unknown) => postChat(srv.url, body);

/**
 * A request that runs its whole token budget (no early EOS: near-uniform sampling, a seed found
 * here): what the tests hold the server busy with. Found once per file.
 */
interface Long {
  body: Record<string, unknown>;
  /** how long it takes alone, now: what a timeout is scaled by, rather than assume how fast this machine decodes */
  timeAlone(): Promise<number>;
}
let long: Promise<Long> | undefined;
function longRequest(): Promise<Long> {
  long ??= (async () => {
    const tokens = 100;
    for (let seed = 1; seed < 40; seed++) {
      const options = { messages, persona: { mix: {} }, maxNewTokens: tokens, temperature: 5, topK: 0, topP: 1, seed };
      if ((await demoModel().generate(options)).finishReason !== 'length') continue;
      return {
        body: { messages, persona: { mix: {} }, max_tokens: tokens, temperature: 5, top_k: 0, top_p: 1, seed },
        async timeAlone() {
          const t0 = performance.now();
          await demoModel().generate(options);
          return performance.now() - t0;
        },
      };
    }
    throw new Error('no seed runs the whole budget');
  })();
  return long;
}

describe('options are checked at start-up', () => {
  test.each([
    [{ maxBatch: 0 }, /integer between 1 and 4096 for maxBatch but received 0/],
    [{ maxBatch: -1 }, /for maxBatch but received -1/],
    [{ maxBatch: 1.5 }, /for maxBatch but received 1\.5/],
    [{ maxQueue: -1 }, /for maxQueue but received -1/],
    [{ port: 70000 }, /between 0 and 65535 for port/],
    [{ requestTimeoutMs: 0 }, /above 0 .* for requestTimeoutMs/],
    [{ logFormat: 'xml' }, /'json', 'text', 'none' for logFormat/],
    [{ modelId: 'a', servedModelNames: ['b'] }, /one of modelId and servedModelNames/],
    [{ servedModelNames: [] }, /non-empty array of names for servedModelNames/],
    [{ apiKey: '' }, /non-empty string for apiKey/],
  ])('%o is refused with its name', async (opts, message) => {
    await expect(startServer(demoModel(), { port: 0, ...(opts as object) })).rejects.toThrow(message);
  });

  test('defaults: the queue is 4 x max batch, max batch the engine\'s', () => {
    expect(resolveServerOptions({}, 8)).toMatchObject({ maxBatch: 8, maxQueue: 32, maxBodyBytes: 1 << 20, logFormat: 'none', names: ['personafuse'] });
    expect(resolveServerOptions({ maxBatch: 2, maxQueue: 0, modelId: 'm' })).toMatchObject({ maxBatch: 2, maxQueue: 0, names: ['m'] });
  });

  // --model points nowhere: an error about the flag, not about the model, shows it was checked
  // first. The CLIs run side by side (each start loads the whole package).
  test('personafuse serve exits non-zero naming a bad flag, before loading the model', async () => {
    const cases: [string[], RegExp][] = [
      [['--max-batch', '0'], /for --max-batch but received 0/],
      [['--max-batch', '-1'], /for --max-batch but received -1/],
      [['--request-timeout', '0'], /seconds above 0 .* for --request-timeout but received 0/],
      [['--drain-timeout', '-5'], /for --drain-timeout but received -5/],
      [['--threads', '0'], /for --threads but received 0/],
      [['--threads', '1.5'], /for --threads but received 1.5/],
      [['--threads', 'two'], /--threads/],
      [['--replicas', '0'], /integer between 1 and 64 for --replicas but received 0/],
      [['--replicas', '65'], /for --replicas but received 65/],
      [['--replicas', 'two'], /--replicas/],
    ];
    const runs = await Promise.all(cases.map(([args]) => new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, 'serve', '--model', path.join(tempDir('server-limits-cli'), 'nowhere'), ...args], { timeout: 30000 }, (err, _out, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr });
      });
    })));
    runs.forEach((r, i) => {
      expect({ args: cases[i][0], code: r.code === 0 ? 0 : 'non-zero' }).toEqual({ args: cases[i][0], code: 'non-zero' });
      expect(r.stderr).toMatch(cases[i][1]);
      expect(r.stderr).not.toMatch(/does not exist/);
    });
  });

  test('personafuse serve refuses more requests decoding in all than the server admits, naming both flags, before loading the replicas', async () => {
    const demo = path.join(__dirname, '..', 'models', 'persona-demo');
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, 'serve', '--model', demo, '--max-batch', '4096', '--replicas', '2'], { timeout: 30000 }, (err, _out, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr });
      });
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/at most 4096 requests decoding in all for --max-batch x --replicas but received 4096 x 2 = 8192/);
  });
});

describe('admission', () => {
  test('max batch + max queue tickets; the oldest waiting one takes the next free slot, with its queue time', () => {
    const started: number[] = [];
    const a = new Admission(1, 1, (ms) => started.push(ms));
    const first = a.tryAdmit()!;
    const second = a.tryAdmit()!;
    expect(a.tryAdmit()).toBeUndefined();
    expect([a.running, a.waiting, a.admitted]).toEqual([1, 1, 2]);
    expect(first.queueMs).toBe(0);
    expect(second.queueMs).toBeUndefined();
    first.release();
    first.release(); // idempotent
    expect(second.queueMs).toBeGreaterThanOrEqual(0);
    expect(started).toHaveLength(2);
    expect([a.running, a.waiting]).toEqual([1, 0]);
    expect(a.tryAdmit()).toBeDefined();
  });

  test('a burst past max batch 1 + max queue 0 is answered 429 with Retry-After and OpenAI\'s rate-limit body; the model is not asked', async () => {
    const srv = await serve({ maxBatch: 1, maxQueue: 0 });
    const { body } = await longRequest();
    const burst = await Promise.all(Array.from({ length: 4 }, () => post(srv, body)));
    const refused = burst.filter((r) => r.status === 429);
    expect(burst.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(1);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused[0].headers.get('retry-after')).toBe('1');
    const err = ((await refused[0].json()) as { error: Record<string, unknown> }).error;
    expect(err).toMatchObject({ type: 'requests', code: 'rate_limit_exceeded', param: null });
    await Promise.all(burst.filter((r) => r !== refused[0]).map((r) => r.text()));
    // the openai client raises it as a RateLimitError (it would retry it, after Retry-After):
    // a stream holds the one slot, its first chunk shows it is running
    let held!: http.IncomingMessage;
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        held = res;
        res.once('data', () => resolve());
      });
      req.on('error', reject);
      req.end(JSON.stringify({ ...body, stream: true }));
    });
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const limited = await client.chat.completions.create({ model: 'personafuse', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }).catch((e: unknown) => e);
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError);
    await new Promise((resolve) => held.on('end', resolve).resume());
    // once the burst is over there is room again
    expect((await post(srv, { messages, max_tokens: 2 })).status).toBe(200);
  });
});

describe('oversized bodies', () => {
  test('a body over the limit is read out and answered 413 with an OpenAI error the client receives; the server keeps serving', async () => {
    const srv = await serve();
    const res = await post(srv, { messages: [{ role: 'user', content: 'x'.repeat(1.5 * (1 << 20)) }] });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: unknown }).error).toMatchObject({ type: 'invalid_request_error', code: 'request_too_large' });
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const err = await client.chat.completions.create({ model: 'personafuse', messages: [{ role: 'user', content: 'y'.repeat(2 << 20) }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(413);
    expect((await post(srv, { messages, max_tokens: 2 })).status).toBe(200);
  });

  test('a declared length far past the limit is answered at once, and the connection closed', async () => {
    const srv = await serve({ maxBodyBytes: 1024 });
    const answer = await new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
      const req = http.request(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(64 << 20) } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, body }));
      });
      req.on('error', reject);
      req.write('{"messages": [');
    });
    expect(answer.status).toBe(413);
    expect(answer.connection).toBe('close');
    expect(JSON.parse(answer.body).error.message).toMatch(/over 1024 bytes/);
  });
});

describe('--request-timeout', () => {
  test('a generation running past it is stopped and answered 504 request_timeout; the slot is freed', async () => {
    const { body } = await longRequest();
    // 1 ms: long before the 100 decode steps are done
    const srv = await serve({ requestTimeoutMs: 1 });
    const plain = await post(srv, body);
    expect(plain.status).toBe(504);
    expect(((await plain.json()) as { error: unknown }).error).toMatchObject({ type: 'server_error', code: 'request_timeout' });
    // its admission ticket and its engine row are given back (a leak would hang here)
    while (srv.inFlight > 0 || demoModel().engine.openRequests > 0) await new Promise((r) => setImmediate(r));
    expect([srv.inFlight, demoModel().engine.openRequests]).toEqual([0, 0]);
  });

  test('a stream cut after its first tokens ends with an error event and no [DONE]', async () => {
    const { body, timeAlone } = await longRequest();
    let events: string[] = [];
    // a tenth of the time the request takes alone: well after its first token (a hundredth), well
    // before its last; the load on a shared machine can still move either, so a cut on the wrong
    // side (a plain 504, or no cut) is retried with a fresh measure
    for (let attempt = 0; attempt < 4; attempt++) {
      const srv = await serve({ requestTimeoutMs: (await timeAlone()) / 10 });
      const res = await post(srv, { ...body, stream: true });
      const text = await res.text();
      if (res.status !== 200) continue;
      events = text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
      if (!events.includes('[DONE]')) break;
    }
    expect(events.length).toBeGreaterThan(1);
    expect(events).not.toContain('[DONE]');
    expect(JSON.parse(events[0]).choices[0].delta.role).toBe('assistant');
    expect(JSON.parse(events[events.length - 1]).error).toMatchObject({ type: 'server_error', code: 'request_timeout' });
  });
});
