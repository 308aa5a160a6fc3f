// GET /metrics: Prometheus text format (prom-client), one Registry per server rather than the
// process-global one, so several servers in one process (tests, embedders) count separately.
//
//   personafuse_http_requests_total{route,code}         every answered request, by route and status
//   personafuse_requests_running / _waiting              the batch now (gauges)
//   personafuse_batch_occupancy                          running / max batch, 0..1
//   personafuse_max_batch                                the batch's capacity
//   personafuse_kv_width                                 columns of the shared KV cache (only when the engine reports it)
//   personafuse_prompt_tokens_total / _completion_tokens_total
//   personafuse_time_to_first_token_seconds              arrival -> first token (histogram)
//   personafuse_time_per_output_token_seconds            between consecutive tokens of a request
//   personafuse_e2e_request_latency_seconds              arrival -> the answer's end (requests that finished)
//   personafuse_request_queue_time_seconds               admission -> a batch slot (lib/server/admission.ts)
//   personafuse_routed_experts_total{expert}             requests that ran with the expert in their mix (weight > 0)
// plus prom-client's process / Node.js defaults (CPU, memory, event-loop lag, GC).
// Gauges are read when scraped: from the engine's loadStats() where it has one, else from the
// server's own admission count.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What the batch holds now (Engine.loadStats(); kvWidth only when the engine reports it). */
/** prom-client's event-loop sampling interval (ms). Its nodejs_eventloop_lag_* figures are the time
 *  between samples, so an idle loop reads about this much: the delay is the figure less this. */
export const EVENT_LOOP_RESOLUTION_MS = 10;

export interface LoadStats {
  running: number;
  waiting: number;
  maxBatch: number;
  kvWidth?: number;
}

const P = 'personafuse_';

/** The metric names the server exports (the deployment manifests refer to them; tests check both agree). */
export const METRIC_NAMES = {
  requests: `${P}http_requests_total`,
  running: `${P}requests_running`,
  waiting: `${P}requests_waiting`,
  occupancy: `${P}batch_occupancy`,
  maxBatch: `${P}max_batch`,
  kvWidth: `${P}kv_width`,
  promptTokens: `${P}prompt_tokens_total`,
  completionTokens: `${P}completion_tokens_total`,
  ttft: `${P}time_to_first_token_seconds`,
  tpot: `${P}time_per_output_token_seconds`,
  e2e: `${P}e2e_request_latency_seconds`,
  queue: `${P}request_queue_time_seconds`,
  experts: `${P}routed_experts_total`,
} as const;

export class ServerMetrics {
  readonly registry = new Registry();
  readonly #load: () => LoadStats;
  readonly #requests: Counter<'route' | 'code'>;
  readonly #running: Gauge;
  readonly #waiting: Gauge;
  readonly #occupancy: Gauge;
  readonly #maxBatch: Gauge;
  #kvWidth: Gauge | undefined;
  readonly #promptTokens: Counter;
  readonly #completionTokens: Counter;
  readonly #ttft: Histogram;
  readonly #tpot: Histogram;
  readonly #e2e: Histogram;
  readonly #queue: Histogram;
  readonly #experts: Counter<'expert'>;

  constructor(load: () => LoadStats) {
    this.#load = load;
    const registers = [this.registry];
    this.#requests = new Counter({ name: METRIC_NAMES.requests, help: 'HTTP requests answered, by route and status code', labelNames: ['route', 'code'], registers });
    this.#running = new Gauge({ name: METRIC_NAMES.running, help: 'Requests decoding in the batch', registers });
    this.#waiting = new Gauge({ name: METRIC_NAMES.waiting, help: 'Requests admitted and waiting for a batch slot', registers });
    this.#occupancy = new Gauge({ name: METRIC_NAMES.occupancy, help: 'Running requests over the batch capacity (0..1)', registers });
    this.#maxBatch = new Gauge({ name: METRIC_NAMES.maxBatch, help: 'Most requests decoded together', registers });
    this.#promptTokens = new Counter({ name: METRIC_NAMES.promptTokens, help: 'Prompt tokens of finished requests', registers });
    this.#completionTokens = new Counter({ name: METRIC_NAMES.completionTokens, help: 'Generated tokens of finished requests', registers });
    this.#ttft = new Histogram({
      name: METRIC_NAMES.ttft, help: 'Seconds from the request\'s arrival to its first generated token', registers,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    });
    this.#tpot = new Histogram({
      name: METRIC_NAMES.tpot, help: 'Seconds between consecutive generated tokens of a request', registers,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    });
    this.#e2e = new Histogram({
      name: METRIC_NAMES.e2e, help: 'Seconds from the request\'s arrival to the end of its answer (requests that finished)', registers,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    });
    this.#queue = new Histogram({
      name: METRIC_NAMES.queue, help: 'Seconds from admission to a batch slot (first come, first served, as the server counts them)', registers,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60],
    });
    this.#experts = new Counter({ name: METRIC_NAMES.experts, help: 'Requests that ran with the expert in their persona mix', labelNames: ['expert'], registers });
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_RESOLUTION_MS });
  }

  request(route: string, code: number): void {
    this.#requests.inc({ route, code: String(code) });
  }

  queued(ms: number): void {
    this.#queue.observe(ms / 1000);
  }

  firstToken(ms: number): void {
    this.#ttft.observe(ms / 1000);
  }

  interToken(ms: number): void {
    this.#tpot.observe(ms / 1000);
  }

  /** A request that ran on the model, at its end (finished or not). */
  finished(r: { promptTokens: number; completionTokens: number; mix: Record<string, number>; e2eMs?: number }): void {
    this.#promptTokens.inc(r.promptTokens);
    this.#completionTokens.inc(r.completionTokens);
    for (const [expert, w] of Object.entries(r.mix)) if (w > 0) this.#experts.inc({ expert });
    if (r.e2eMs !== undefined) this.#e2e.observe(r.e2eMs / 1000);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text, with the load gauges read now. */
  async text(): Promise<string> {
    const s = this.#load();
    this.#running.set(s.running);
    this.#waiting.set(s.waiting);
    this.#maxBatch.set(s.maxBatch);
    this.#occupancy.set(s.maxBatch > 0 ? s.running / s.maxBatch : 0);
    if (s.kvWidth !== undefined) {
      // made on the first scrape that has it: an engine without the figure exports no fake 0
      this.#kvWidth ??= new Gauge({ name: METRIC_NAMES.kvWidth, help: 'Columns (tokens) of the shared KV cache fed to each decode step', registers: [this.registry] });
      this.#kvWidth.set(s.kvWidth);
    }
    return this.registry.metrics();
  }
}
