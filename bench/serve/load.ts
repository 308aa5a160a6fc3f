// One load level of `personafuse bench serve`: closed loop (N clients, each sending its next
// request when its last one ends) or open loop (Poisson arrivals at R requests/s), and what it
// measured.
//
// Phases, by the order requests are sent: the first `warmup` are warm-up; the next `requests`
// (or those sent within `duration` seconds) are measured; any sent after that are tail requests,
// which keep the load at its level until the last measured request ends and are then cut off
// (the server frees their slots). The measured part runs from the sending of the first measured
// request (t0) to the end of the last one (t1). Throughput counts every token that arrived in
// [t0, t1], whatever request it belongs to: warm-up requests still running at t0 and tail
// requests running at t1 are the same steady load, so the rate is the server's at that
// concurrency, with no ramp-up or drain in it. Latencies (TTFT, TPOT, end to end) are those of
// the measured requests only.
import { setMaxListeners } from 'node:events';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { RequestRecord, RequestSpec, streamChat } from './client';
import { CpuMark, cpuBetween, cpuMark, readRss, RssSample } from './server_process';
import { firstLast, percentiles, Percentiles, requestWindows, RequestWindow, timeWindows, TimeWindow } from './stats';
import { machineLoad, rng } from '../harness';
import { EVENT_LOOP_RESOLUTION_MS } from '../../lib/server/metrics';

export type LoadMode = { kind: 'closed'; concurrency: number } | { kind: 'open'; rate: number };

export interface LevelOptions {
  mode: LoadMode;
  warmup: number;
  /** measured requests (Infinity: until `durationS`) */
  requests: number;
  durationS?: number;
  base: URL;
  /** the `model` of every request: the id GET /v1/models lists */
  model: string;
  spec: (index: number) => RequestSpec;
  timeoutMs: number;
  headers: Record<string, string>;
  windowSeconds: number;
  requestWindow: number;
  /** the server's pid when we can read its /proc (spawned, or --server-pid) */
  serverPid: number | null;
  /** RSS samples of the whole run (the sampler's array: this level takes its part of it) */
  rssSamples: RssSample[];
  origin: number;
  seed: number;
  log: (s: string) => void;
}

export interface LevelResult {
  mode: 'closed' | 'open';
  concurrency: number | null;
  rate: number | null;
  requests: {
    sent: number; warmup: number; measured: number; tail: number;
    measured_ok: number; measured_errors: number; warmup_errors: number; tail_errors: number; tail_cut_off: number;
  };
  errors_by_kind: Record<string, number>;
  error_examples: Record<string, string>;
  finish_reasons: Record<string, number>;
  persona_kinds: Record<string, number>;
  wall_s: number;
  /** tokens that arrived in [t0, t1], every request */
  tokens_in_interval: number;
  /** completion tokens of the measured requests that succeeded (usage.completion_tokens) */
  measured_completion_tokens: number;
  tok_per_s: number;
  /** requests that completed in [t0, t1], any phase, per second */
  req_per_s: number;
  /** measured requests whose token count came from usage (else from counted chunks) */
  usage_reported: number;
  content_chunks_vs_usage: { chunks: number; usage_tokens: number };
  ttft_ms: Percentiles;
  tpot_ms: Percentiles;
  latency_ms: Percentiles;
  prompt_tokens: Percentiles;
  completion_tokens_per_request: Percentiles;
  max_tokens_asked: Percentiles;
  /** open loop: how late requests were sent against their Poisson arrival time */
  send_lag_ms: Percentiles | null;
  /** most requests in flight at once (open loop: grows without bound past the server's capacity) */
  max_in_flight: number;
  windows: {
    seconds: number;
    time: TimeWindow[];
    time_first_last: ReturnType<typeof firstLast>;
    requests: number;
    by_requests: RequestWindow[];
    requests_first_last: ReturnType<typeof firstLast>;
  };
  rss_mib: {
    at_start: number | null;
    after_500: number | null;
    at_end: number | null;
    max: number | null;
    samples: RssSample[];
  };
  event_loop_delay_ms: { p50: number; p99: number; max: number };
  /** the SERVER's event-loop delay p99 over the measured part (its /metrics, prom-client's
   *  nodejs_eventloop_lag_p99_seconds, reset at every scrape), null when it has no /metrics */
  /** the server's nodejs_eventloop_lag_p99 as prom-client reports it: time between its samples */
  server_event_loop_p99_ms: number | null;
  /** that less the sampling interval: how late the server's loop ran (its idle reading is ~0) */
  server_event_loop_delay_p99_ms: number | null;
  cpu: Record<string, number | null>;
  load: { start: ReturnType<typeof machineLoad>; end: ReturnType<typeof machineLoad> };
}

/** The server's event-loop delay p99 since its last scrape (prom-client resets it on collect). */
async function serverLoopP99(base: URL, headers?: Record<string, string>): Promise<number | null> {
  try {
    const res = await fetch(new URL('/metrics', base), { headers });
    const m = /^nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(await res.text());
    return m ? Number(m[1]) * 1000 : null;
  } catch {
    return null;
  }
}

export async function runLevel(o: LevelOptions): Promise<LevelResult> {
  const records: RequestRecord[] = [];
  const inFlight = new Set<Promise<RequestRecord>>();
  const tail = new AbortController();
  setMaxListeners(Infinity, tail.signal); // one listener per tail request in flight
  const sendLag: number[] = [];
  let maxInFlight = 0;
  let next = 0;
  let measuredSent = 0;
  let measuredDone = 0;
  let measuringOpen = true;
  let t0: number | null = null;
  let t1: number | null = null;
  let cpu0: CpuMark | undefined;
  let load0 = machineLoad();
  let rssStart: number | null = null;
  let rss500: number | null = null;
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  let serverLoop: Promise<number | null> = Promise.resolve(null);
  let cpu1: CpuMark | undefined;
  let load1 = load0;
  let rssEnd: number | null = null;
  let finished!: () => void;
  const allMeasuredDone = new Promise<void>((resolve) => (finished = resolve));
  /** the last measured request ended: the measured part is over */
  const endMeasured = () => {
    if (t1 !== null) return;
    t1 = performance.now();
    loopDelay.disable();
    serverLoop = serverLoopP99(o.base, o.headers);
    cpu1 = cpuMark(o.serverPid);
    load1 = machineLoad();
    rssEnd = o.serverPid === null ? null : readRss(o.serverPid)?.rss_mib ?? null;
    finished();
  };

  const send = (due: number): Promise<RequestRecord> => {
    const index = next++;
    let phase: RequestRecord['phase'] = 'tail';
    if (index < o.warmup) phase = 'warmup';
    else if (measuringOpen) {
      if (t0 === null) {
        t0 = performance.now();
        cpu0 = cpuMark(o.serverPid);
        load0 = machineLoad();
        rssStart = o.serverPid === null ? null : readRss(o.serverPid)?.rss_mib ?? null;
        loopDelay.enable();
        void serverLoopP99(o.base, o.headers); // resets the server's histogram: the measured part starts
      }
      phase = 'measured';
      measuredSent++;
      if (measuredSent >= o.requests) measuringOpen = false;
    }
    const spec = o.spec(index);
    const p = streamChat(o.base, spec, { index, phase, persona_kind: spec.persona_kind, max_tokens: spec.max_tokens, t_due: due }, {
      model: o.model, timeoutMs: o.timeoutMs, headers: o.headers, signal: phase === 'tail' ? tail.signal : undefined,
    });
    inFlight.add(p);
    maxInFlight = Math.max(maxInFlight, inFlight.size);
    void p.then((r) => {
      inFlight.delete(p);
      records.push(r);
      if (r.phase !== 'measured') return;
      measuredDone++;
      if (measuredDone === 500 && o.serverPid !== null) rss500 = readRss(o.serverPid)?.rss_mib ?? null;
      if (!measuringOpen && measuredDone === measuredSent) endMeasured();
    });
    return p;
  };

  let durationTimer: NodeJS.Timeout | undefined;
  const checkDuration = () => {
    // --duration: stop sending measured requests once it is up (checked at every send, and by a timer)
    if (o.durationS !== undefined && t0 !== null && measuringOpen && performance.now() - t0 >= o.durationS * 1000) {
      measuringOpen = false;
      if (measuredDone === measuredSent) endMeasured();
    }
  };
  if (o.durationS !== undefined) durationTimer = setInterval(checkDuration, 100);

  const stopped = () => t1 !== null;
  if (o.mode.kind === 'closed') {
    const client = async () => {
      while (!stopped()) {
        checkDuration();
        await send(performance.now());
      }
    };
    const clients = Array.from({ length: o.mode.concurrency }, () => client());
    await allMeasuredDone;
    tail.abort();
    await Promise.all(clients);
  } else {
    const rand = rng(o.seed ^ 0x5eed);
    const rate = o.mode.rate;
    let due = performance.now();
    const arrivals = (async () => {
      while (!stopped()) {
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (stopped()) break;
        checkDuration();
        sendLag.push(performance.now() - due);
        void send(due);
        due += (-Math.log(1 - rand()) / rate) * 1000; // exponential inter-arrival times
      }
    })();
    await allMeasuredDone;
    tail.abort();
    await arrivals;
  }
  clearInterval(durationTimer);
  await Promise.all([...inFlight]);
  const T0 = t0!;
  const T1 = t1!;

  const measured = records.filter((r) => r.phase === 'measured');
  const ok = measured.filter((r) => r.ok);
  const errorsByKind: Record<string, number> = {};
  const examples: Record<string, string> = {};
  for (const r of records) {
    if (!r.error_kind) continue;
    const key = r.phase === 'measured' ? r.error_kind : `${r.phase}:${r.error_kind}`;
    errorsByKind[key] = (errorsByKind[key] ?? 0) + 1;
    examples[key] ??= r.error_message ?? '';
  }
  const count = <K extends string>(vals: K[]) => vals.reduce((acc, v) => ((acc[v] = (acc[v] ?? 0) + 1), acc), {} as Record<string, number>);

  // every token's arrival: its chunk, or for tokens the stream sent no chunk of (a token whose
  // text is still an incomplete UTF-8 sequence), the end of the request
  const tokenTimes: number[] = [];
  for (const r of records) {
    const n = r.completion_tokens;
    for (let i = 0; i < Math.min(n, r.chunk_times.length); i++) tokenTimes.push(r.chunk_times[i]);
    if (r.ok) for (let i = r.chunk_times.length; i < n; i++) tokenTimes.push(r.t_end);
  }
  const tokensInInterval = tokenTimes.filter((t) => t >= T0 && t <= T1).length;
  const wall = (T1 - T0) / 1000;
  const completedInInterval = records.filter((r) => r.ok && r.t_end >= T0 && r.t_end <= T1).length;

  const tw = timeWindows(tokenTimes, T0, T1, o.windowSeconds);
  const fullTime = tw.filter((w) => w.full).map((w) => w.tok_per_s);
  const rw = requestWindows(ok.map((r) => ({ end: r.t_end, tokens: r.completion_tokens })), T0, o.requestWindow);
  const fullReq = rw.filter((w) => w.last - w.first + 1 === o.requestWindow).map((w) => w.tok_per_s);
  const rssSamples = o.rssSamples.filter((s) => s.t_s >= (T0 - o.origin) / 1000 && s.t_s <= (T1 - o.origin) / 1000);
  const rssAll = [rssStart, rssEnd, rss500, ...rssSamples.map((s) => s.rss_mib)].filter((v): v is number => v !== null);

  const serverLoopP99Ms = await serverLoop;
  return {
    mode: o.mode.kind,
    concurrency: o.mode.kind === 'closed' ? o.mode.concurrency : null,
    rate: o.mode.kind === 'open' ? o.mode.rate : null,
    requests: {
      sent: records.length,
      warmup: records.filter((r) => r.phase === 'warmup').length,
      measured: measured.length,
      tail: records.filter((r) => r.phase === 'tail').length,
      measured_ok: ok.length,
      measured_errors: measured.filter((r) => !r.ok).length,
      warmup_errors: records.filter((r) => r.phase === 'warmup' && !r.ok).length,
      tail_errors: records.filter((r) => r.phase === 'tail' && r.error_kind).length,
      tail_cut_off: records.filter((r) => r.aborted).length,
    },
    errors_by_kind: errorsByKind,
    error_examples: examples,
    finish_reasons: count(ok.map((r) => r.finish_reason ?? 'none')),
    persona_kinds: count(measured.map((r) => r.persona_kind)),
    wall_s: wall,
    tokens_in_interval: tokensInInterval,
    measured_completion_tokens: ok.reduce((n, r) => n + r.completion_tokens, 0),
    tok_per_s: tokensInInterval / wall,
    req_per_s: completedInInterval / wall,
    usage_reported: ok.filter((r) => r.usage_completion_tokens !== null).length,
    content_chunks_vs_usage: { chunks: ok.reduce((n, r) => n + r.content_chunks, 0), usage_tokens: ok.reduce((n, r) => n + (r.usage_completion_tokens ?? 0), 0) },
    ttft_ms: percentiles(ok.filter((r) => r.t_first !== null).map((r) => r.t_first! - r.t_start)),
    tpot_ms: percentiles(ok.filter((r) => r.t_first !== null && r.completion_tokens > 1).map((r) => (r.t_end - r.t_first!) / (r.completion_tokens - 1))),
    latency_ms: percentiles(ok.map((r) => r.t_end - r.t_start)),
    prompt_tokens: percentiles(ok.filter((r) => r.prompt_tokens !== null).map((r) => r.prompt_tokens!)),
    completion_tokens_per_request: percentiles(ok.map((r) => r.completion_tokens)),
    max_tokens_asked: percentiles(measured.map((r) => r.max_tokens)),
    send_lag_ms: o.mode.kind === 'open' ? percentiles(sendLag) : null,
    max_in_flight: maxInFlight,
    windows: {
      seconds: o.windowSeconds,
      time: tw,
      time_first_last: firstLast(fullTime),
      requests: o.requestWindow,
      by_requests: rw,
      requests_first_last: firstLast(fullReq),
    },
    rss_mib: { at_start: rssStart, after_500: rss500, at_end: rssEnd, max: rssAll.length ? Math.max(...rssAll) : null, samples: rssSamples },
    event_loop_delay_ms: { p50: loopDelay.percentile(50) / 1e6, p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
    server_event_loop_p99_ms: serverLoopP99Ms,
    server_event_loop_delay_p99_ms: serverLoopP99Ms === null ? null : Math.max(0, serverLoopP99Ms - EVENT_LOOP_RESOLUTION_MS),
    cpu: cpuBetween(cpu0!, cpu1!),
    load: { start: load0, end: load1 },
  };
}
