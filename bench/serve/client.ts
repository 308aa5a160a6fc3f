// One streaming chat completion over HTTP, timed: the load generator's client.
//
// Plain node:http with a keep-alive agent and a small SSE parser, not the `openai` package nor
// fetch: (1) dist/bench ships in the package while `openai` is only a devDependency, so one code
// path that needs nothing works the same in a checkout and an install; (2) on this 2-core
// machine the load generator shares the CPUs with the server it measures, and node:http is the
// cheapest client Node has (fetch is undici plus WHATWG streams on top of the same sockets, the
// openai client adds its own stream parsing, retries and timeouts on top of fetch); (3) the
// request needs a non-OpenAI field (`persona`) and the stream's non-OpenAI fields (`persona`,
// per-chunk timing) read back as they are. Client CPU seconds are reported per level, so the
// generator's own share of the machine is visible.
import * as http from 'node:http';
import { performance } from 'node:perf_hooks';

export interface ChatMessage { role: string; content: string }

export interface RequestSpec {
  messages: ChatMessage[];
  max_tokens: number;
  /** what goes in the `persona` field (absent when undefined) */
  persona: unknown;
  persona_kind: PersonaKind;
  seed: number;
  temperature?: number;
}

export type PersonaKind = 'auto' | 'big5' | 'mix1' | 'mix2' | 'base';

export interface RequestRecord {
  index: number;
  phase: 'warmup' | 'measured' | 'tail';
  persona_kind: PersonaKind;
  max_tokens: number;
  /** performance.now() (ms) when the request was sent, and when it was due (open loop: the arrival time) */
  t_start: number;
  t_due: number;
  /** first token chunk, end of the stream ([DONE], an error, or the abort) */
  t_first: number | null;
  t_end: number;
  ok: boolean;
  /** set on failures: 'http_<status>_<type>', 'conn_<code>', 'timeout', 'stream_error', 'truncated' */
  error_kind?: string;
  error_message?: string;
  /** aborted by the load generator at the end of a level (tail requests): not an error */
  aborted: boolean;
  /** usage.completion_tokens of the last chunk, else the token chunks counted */
  completion_tokens: number;
  usage_completion_tokens: number | null;
  prompt_tokens: number | null;
  /** chunks that carried delta.content (the first token's chunk always does) */
  content_chunks: number;
  /** arrival time of each content chunk (performance.now() ms) */
  chunk_times: number[];
  finish_reason: string | null;
  /** the mix the server reported on the last chunk */
  mix: Record<string, number> | null;
}

export const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });

/** Sends one streaming request; never rejects (failures are in the record). */
export function streamChat(
  base: URL, spec: RequestSpec, rec: Omit<RequestRecord, 't_start' | 't_first' | 't_end' | 'ok' | 'aborted' | 'completion_tokens' | 'usage_completion_tokens' | 'prompt_tokens' | 'content_chunks' | 'chunk_times' | 'finish_reason' | 'mix'>,
  opts: { model: string; timeoutMs: number; signal?: AbortSignal; headers?: Record<string, string> },
): Promise<RequestRecord> {
  // usage comes on a last chunk of its own when stream_options.include_usage is set (servers
  // before that option sent it on the finish chunk unasked, and ignore the field)
  const body = JSON.stringify({
    model: opts.model, messages: spec.messages, stream: true, stream_options: { include_usage: true }, max_tokens: spec.max_tokens, seed: spec.seed,
    ...(spec.temperature !== undefined ? { temperature: spec.temperature } : {}),
    ...(spec.persona !== undefined ? { persona: spec.persona } : {}),
  });
  const r: RequestRecord = {
    ...rec, t_start: performance.now(), t_first: null, t_end: 0, ok: false, aborted: false,
    completion_tokens: 0, usage_completion_tokens: null, prompt_tokens: null, content_chunks: 0, chunk_times: [],
    finish_reason: null, mix: null,
  };
  return new Promise<RequestRecord>((resolve) => {
    let settled = false;
    let sawDone = false;
    const finish = (kind?: string, message?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      r.t_end = performance.now();
      if (opts.signal?.aborted && !sawDone) r.aborted = true;
      else if (kind) {
        r.error_kind = kind;
        r.error_message = message?.slice(0, 300);
      } else r.ok = true;
      r.completion_tokens = r.usage_completion_tokens ?? r.content_chunks;
      resolve(r);
    };
    const req = http.request(new URL('/v1/chat/completions', base), {
      method: 'POST', agent, signal: opts.signal,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), accept: 'text/event-stream', ...opts.headers },
    }, (res) => {
      res.setEncoding('utf8');
      if (res.statusCode !== 200) {
        let text = '';
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let type = 'error';
          try {
            type = (JSON.parse(text) as { error?: { type?: string } }).error?.type ?? type;
          } catch {
            // not JSON
          }
          finish(`http_${res.statusCode}_${type}`, text);
        });
        res.on('error', (err) => finish(`http_${res.statusCode}`, err.message));
        return;
      }
      let buf = '';
      let streamError: string | undefined;
      res.on('data', (c: string) => {
        buf += c;
        for (let cut = buf.indexOf('\n\n'); cut >= 0; cut = buf.indexOf('\n\n')) {
          const event = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          for (const line of event.split('\n')) {
            if (!line.startsWith('data:')) continue;
            const data = line.slice(5).trim();
            if (data === '[DONE]') {
              sawDone = true;
              continue;
            }
            let obj: ChunkJson;
            try {
              obj = JSON.parse(data) as ChunkJson;
            } catch {
              streamError = `unparsable chunk: ${data.slice(0, 100)}`;
              continue;
            }
            if (obj.error) {
              streamError = obj.error.message ?? JSON.stringify(obj.error);
              continue;
            }
            const now = performance.now();
            const choice = obj.choices?.[0];
            if (choice?.delta && typeof choice.delta.content === 'string') {
              if (r.t_first === null) r.t_first = now;
              r.content_chunks++;
              r.chunk_times.push(now);
            }
            if (choice?.finish_reason) r.finish_reason = choice.finish_reason;
            if (obj.usage) {
              r.usage_completion_tokens = obj.usage.completion_tokens ?? null;
              r.prompt_tokens = obj.usage.prompt_tokens ?? null;
            }
            if (obj.persona?.mix) r.mix = obj.persona.mix;
          }
        }
      });
      res.on('end', () => {
        if (streamError) finish('stream_error', streamError);
        else if (!sawDone) finish('truncated', 'the stream ended without data: [DONE]');
        else finish();
      });
      res.on('error', (err) => finish(streamError ? 'stream_error' : 'truncated', streamError ?? err.message));
      res.on('close', () => {
        if (!settled) finish(sawDone ? undefined : 'truncated', 'the connection closed mid-stream');
      });
    });
    const timer = setTimeout(() => {
      finish('timeout', `no end after ${opts.timeoutMs} ms`);
      req.destroy();
    }, opts.timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => finish(opts.signal?.aborted ? undefined : `conn_${err.code ?? err.name}`, err.message));
    req.end(body);
  });
}

interface ChunkJson {
  choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
  usage?: { completion_tokens?: number; prompt_tokens?: number };
  persona?: { mix?: Record<string, number> };
  error?: { message?: string };
}

/** GET a JSON document (the /v1/models list). */
export function getJson(url: URL, headers: Record<string, string> = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`GET ${url.pathname}: HTTP ${res.statusCode} ${text.slice(0, 200)}`));
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(err);
        }
      });
    }).on('error', reject);
  });
}
