// One line per request (--log-format json|text|none), written when its response is over:
//   json: {"time","id","method","path","status","persona_mix","prompt_tokens","completion_tokens","ttft_ms","duration_ms"[,"error"]}
//   text: <time> <method> <path> <status> id=... persona_mix=expert:weight,... prompt_tokens=... ... duration_ms=...
// JSON for log collectors (one object per line, the field names fixed), text for a terminal.
// Fields a request does not have (tokens on GET /health) are left out, not written as null.
import type { LogFormat } from './config';

export interface RequestLog {
  id: string;
  method: string;
  path: string;
  status: number;
  /** the persona mix the request ran with */
  mix?: Record<string, number>;
  promptTokens?: number;
  completionTokens?: number;
  ttftMs?: number;
  durationMs: number;
  /** why the request failed: the error's code (rate_limit_exceeded, request_timeout, client_closed, ...)
   *  or, for errors without one, its message */
  error?: string;
}

const ms = (v: number) => Math.round(v * 10) / 10;

/** An error's text is cut here: a message may quote what the client sent. */
const MAX_ERROR_CHARS = 200;
const cut = (s: string) => (s.length > MAX_ERROR_CHARS ? `${s.slice(0, MAX_ERROR_CHARS)}...` : s);

export function requestLogger(format: LogFormat, write: (line: string) => void): (entry: RequestLog) => void {
  if (format === 'none') return () => undefined;
  return (e) => {
    const fields: [string, unknown][] = [
      ['id', e.id], ['method', e.method], ['path', e.path], ['status', e.status], ['persona_mix', e.mix],
      ['prompt_tokens', e.promptTokens], ['completion_tokens', e.completionTokens],
      ['ttft_ms', e.ttftMs === undefined ? undefined : ms(e.ttftMs)], ['duration_ms', ms(e.durationMs)], ['error', e.error === undefined ? undefined : cut(e.error)],
    ];
    const time = new Date().toISOString();
    const present = fields.filter(([, v]) => v !== undefined);
    if (format === 'json') {
      write(JSON.stringify(Object.fromEntries([['time', time], ...present])));
      return;
    }
    const rest = present.filter(([k]) => !['method', 'path', 'status'].includes(k)).map(([k, v]) => `${k}=${text(k, v)}`);
    write([time, e.method, e.path, e.status, ...rest].join(' '));
  };
}

function text(key: string, v: unknown): string {
  if (key === 'persona_mix') {
    const entries = Object.entries(v as Record<string, number>);
    return entries.length ? entries.map(([k, w]) => `${k}:${Math.round(w * 1000) / 1000}`).join(',') : 'base';
  }
  return typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : String(v);
}

/** A line about the server itself (drain start and end), in the same format as the request lines. */
export function eventLogger(format: LogFormat, write: (line: string) => void): (event: string, fields: Record<string, unknown>) => void {
  if (format === 'none') return () => undefined;
  return (event, fields) => {
    const time = new Date().toISOString();
    if (format === 'json') write(JSON.stringify({ time, event, ...fields }));
    else write([time, event, ...Object.entries(fields).map(([k, v]) => `${k}=${String(v)}`)].join(' '));
  };
}
