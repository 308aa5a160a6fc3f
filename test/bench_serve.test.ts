// `personafuse bench serve` (bench/serve.ts, run compiled: build first with npx tsc -p
// tsconfig.json, as npm test's pretest does) on the embedded demo model with tiny settings: the
// results file's structure and internal consistency (counts add up, percentiles in order, tokens
// counted two ways agree, no errors, the server's RSS sampled). Never its speed.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const SCRIPT = path.join(__dirname, '..', 'dist', 'bench', 'serve.js');
const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli', 'main.js');

interface P { count: number; p50: number; p90: number; p99: number; mean: number; min: number; max: number }
interface Level {
  mode: string; concurrency: number; requests: Record<string, number>; errors_by_kind: Record<string, number>;
  finish_reasons: Record<string, number>; persona_kinds: Record<string, number>; wall_s: number; tokens_in_interval: number;
  measured_completion_tokens: number; tok_per_s: number; req_per_s: number; usage_reported: number; tok_per_s_vs_reference: number;
  content_chunks_vs_usage: { chunks: number; usage_tokens: number };
  ttft_ms: P; tpot_ms: P; latency_ms: P; prompt_tokens: P; completion_tokens_per_request: P; max_tokens_asked: P;
  windows: { time: { tokens: number; seconds: number; tok_per_s: number }[]; by_requests: { tokens: number; first: number; last: number }[] };
  rss_mib: { at_start: number; at_end: number; after_500: number | null; max: number };
  event_loop_delay_ms: { p99: number }; cpu: Record<string, number | null>;
}

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const ordered = (p: P) => {
  expect(p.min).toBeLessThanOrEqual(p.p50);
  expect(p.p50).toBeLessThanOrEqual(p.p90);
  expect(p.p90).toBeLessThanOrEqual(p.p99);
  expect(p.p99).toBeLessThanOrEqual(p.max);
  expect(p.mean).toBeGreaterThanOrEqual(p.min);
  expect(p.mean).toBeLessThanOrEqual(p.max);
};
const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);

describe('personafuse bench serve', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-bench-serve-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('levels 1,2 on the demo model: a consistent results file, no errors', async () => {
    if (!fs.existsSync(SCRIPT) || !fs.existsSync(CLI)) throw new Error(`${SCRIPT} is not built: run npx tsc -p tsconfig.json first`);
    const out = path.join(dir, 'serve.json');
    const REQUESTS = 12;
    const r = await run(['--levels', '1,2', '--requests', String(REQUESTS), '--warmup', '2', '--max-tokens', '4..8',
      '--window-seconds', '1', '--request-window', '4', '--seed', '7', '--pause', '0.2', '--out', out], 60000);
    if (r.code !== 0) throw new Error(`bench serve exited with ${r.code}\n${r.stderr.slice(-3000)}`);
    expect(r.stdout).toMatch(/clients\s+reqs\s+errors\s+tok\/s/);
    const res = JSON.parse(fs.readFileSync(out, 'utf8'));

    expect(res).toMatchObject({ bench: 'serve', schema: 'personafuse-bench-serve/1', reference_level: '1' });
    expect(res.server.spawned).toBe(true);
    expect(res.server.model).toBe('persona-demo');
    expect(res.server.experts.length).toBeGreaterThanOrEqual(2);
    expect(res.server.router).toBe(true);
    expect(res.settings.persona_kinds).toEqual(['auto', 'big5', 'mix1', 'mix2', 'base']);
    // the server's RSS: sampled, and each level's readings present
    expect(res.server.rss_mib.samples.length).toBeGreaterThanOrEqual(1);
    for (const s of res.server.rss_mib.samples) expect(s.rss_mib).toBeGreaterThan(10);
    expect(res.server.rss_mib.at_end).toBeGreaterThan(10);
    expect(res.server.rss_mib.peak).toBeGreaterThanOrEqual(res.server.rss_mib.at_end);
    expect(res.server.stop.killed).toBe(false);

    const levels = res.levels as Level[];
    expect(levels.map((l) => l.concurrency)).toEqual([1, 2]);
    expect(levels[0].tok_per_s_vs_reference).toBe(1);
    for (const l of levels) {
      const q = l.requests;
      expect(q.measured).toBe(REQUESTS);
      expect(q.warmup).toBe(2);
      expect(q.sent).toBe(q.warmup + q.measured + q.tail);
      expect(q.tail_cut_off).toBeLessThanOrEqual(q.tail);
      expect(q.measured_ok).toBe(REQUESTS);
      expect(q.measured_errors + q.warmup_errors + q.tail_errors).toBe(0);
      expect(l.errors_by_kind).toEqual({});
      expect(sum(l.persona_kinds)).toBe(REQUESTS);
      expect(sum(l.finish_reasons)).toBe(REQUESTS);
      expect(l.usage_reported).toBe(REQUESTS);
      // tokens: > 0, within max_tokens, the same counted from usage and from the stream's chunks
      expect(l.measured_completion_tokens).toBeGreaterThan(0);
      expect(l.completion_tokens_per_request.min).toBeGreaterThanOrEqual(1);
      expect(l.completion_tokens_per_request.max).toBeLessThanOrEqual(8);
      expect(l.max_tokens_asked.min).toBeGreaterThanOrEqual(4);
      expect(l.max_tokens_asked.max).toBeLessThanOrEqual(8);
      expect(l.content_chunks_vs_usage.usage_tokens).toBe(l.measured_completion_tokens);
      expect(l.content_chunks_vs_usage.chunks).toBeGreaterThanOrEqual(REQUESTS); // the first token's chunk, at least
      expect(l.completion_tokens_per_request.mean * REQUESTS).toBeCloseTo(l.measured_completion_tokens, 6);
      expect(l.prompt_tokens.min).toBeGreaterThan(0);
      // windows add up to the totals they split
      expect(l.tokens_in_interval).toBeGreaterThan(0);
      expect(l.windows.time.reduce((n, w) => n + w.tokens, 0)).toBe(l.tokens_in_interval);
      expect(l.windows.time.reduce((n, w) => n + w.seconds, 0)).toBeCloseTo(l.wall_s, 6);
      expect(l.windows.by_requests.reduce((n, w) => n + w.tokens, 0)).toBe(l.measured_completion_tokens);
      expect(l.windows.by_requests.reduce((n, w) => n + (w.last - w.first + 1), 0)).toBe(REQUESTS);
      expect(l.tok_per_s).toBeCloseTo(l.tokens_in_interval / l.wall_s, 6);
      expect(l.req_per_s).toBeGreaterThan(0);
      // percentiles in order, over every measured request
      for (const p of [l.ttft_ms, l.tpot_ms, l.latency_ms, l.prompt_tokens, l.completion_tokens_per_request]) ordered(p);
      expect(l.ttft_ms.count).toBe(REQUESTS);
      expect(l.latency_ms.count).toBe(REQUESTS);
      expect(l.ttft_ms.min).toBeGreaterThan(0);
      expect(l.ttft_ms.max).toBeLessThanOrEqual(l.latency_ms.max);
      expect(l.rss_mib.at_start).toBeGreaterThan(10);
      expect(l.rss_mib.at_end).toBeGreaterThan(10);
      expect(l.rss_mib.after_500).toBeNull(); // 12 requests
      expect(l.rss_mib.max).toBeGreaterThanOrEqual(l.rss_mib.at_end);
      expect(Number.isFinite(l.event_loop_delay_ms.p99)).toBe(true);
      expect(l.cpu.server_s).toBeGreaterThan(0);
    }
    // at one client nothing overlaps the measured part: every token counted is a measured request's,
    // and the measured requests ran one after another within it
    expect(levels[0].tokens_in_interval).toBe(levels[0].measured_completion_tokens);
    expect(levels[0].latency_ms.mean * REQUESTS).toBeLessThanOrEqual(levels[0].wall_s * 1000 + 1e-6);
  }, 90000);

  test('--rounds 2: the levels run twice over, each ratio against the same round\'s one-client figure, medians in `paired`', async () => {
    const out = path.join(dir, 'rounds.json');
    const r = await run(['--levels', '1,2', '--requests', '4', '--warmup', '1', '--max-tokens', '4..8', '--rounds', '2',
      '--seed', '3', '--pause', '0.1', '--out', out], 60000);
    if (r.code !== 0) throw new Error(`bench serve exited with ${r.code}\n${r.stderr.slice(-3000)}`);
    expect(r.stdout).toMatch(/paired over 2 rounds/);
    const res = JSON.parse(fs.readFileSync(out, 'utf8'));
    const levels = res.levels as (Level & { round: number })[];
    expect(levels.map((l) => [l.concurrency, l.round])).toEqual([[1, 1], [2, 1], [1, 2], [2, 2]]);
    // a level's ratio is taken against the reference of its own round, not the first round's
    levels.forEach((l, k) => expect(l.tok_per_s_vs_reference).toBeCloseTo(l.tok_per_s / levels[k < 2 ? 0 : 2].tok_per_s, 12));
    expect(res.settings.rounds).toBe(2);
    expect(res.paired.rounds).toBe(2);
    expect(res.paired.reference_level).toBe('1');
    const two = res.paired.levels[1];
    expect(two.level).toBe('2');
    expect(two.tok_per_s).toEqual([levels[1].tok_per_s, levels[3].tok_per_s]);
    expect(two.vs_reference).toEqual([levels[1].tok_per_s_vs_reference, levels[3].tok_per_s_vs_reference]);
    expect(two.median_vs_reference).toBeCloseTo((two.vs_reference[0] + two.vs_reference[1]) / 2, 12);
    expect(two.min_vs_reference).toBe(Math.min(...two.vs_reference));
    expect(res.paired.levels[0].vs_reference).toEqual([1, 1]);
  }, 90000);
});
