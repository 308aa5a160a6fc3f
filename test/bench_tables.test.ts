// scripts/bench-tables.js: the result tables in bench/README.md are generated from bench/results/*.json
// and must match them, so the documentation never quotes numbers the committed files do not hold.
// The script is plain Node, run here as a child process, as a maintainer runs it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ok, root, run } from './helpers/process';

const SCRIPT = path.join(root, 'scripts', 'bench-tables.js');
const README = path.join(root, 'bench', 'README.md');
const BEGIN = '<!-- tables:begin -->';
const END = '<!-- tables:end -->';

function tables(...args: string[]) {
  return run(process.execPath, [SCRIPT, ...args], 60_000);
}

/** The text between the markers of a file (exclusive). */
function block(text: string): string {
  const b = text.indexOf(BEGIN);
  const e = text.indexOf(END);
  expect(b).toBeGreaterThanOrEqual(0);
  expect(e).toBeGreaterThan(b);
  return text.slice(b + BEGIN.length, e);
}

describe('bench/README.md tables', () => {
  test('the generated block is what the committed bench/results files give (else: node scripts/bench-tables.js --write)', () => {
    const generated = ok(tables(), 'bench-tables.js');
    expect(block(fs.readFileSync(README, 'utf8'))).toBe(`\n${generated}`);
    expect(generated).toMatch(/^### CPU kernels/m);
    expect(generated).toMatch(/^\| case \| ours \|/m);
  });

  test('--check agrees', () => {
    const r = tables('--check');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('bench-tables.js', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pf-bench-tables-'));
    fs.mkdirSync(path.join(dir, 'results'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const put = (name: string, json: unknown) => fs.writeFileSync(path.join(dir, 'results', name), JSON.stringify(json));

  function generateResult(date: string, baseB1: number) {
    return {
      bench: 'generate', date, cpu: 'Test CPU', cores: 2, loadavg: [1, 1, 1], onnxruntime_threads: 2, model: 'bench/models/m',
      experts: ['a', 'b'], prompt_tokens: 32, max_new_tokens: 32, rounds: 3,
      median_tokens_per_s: { 'base b1': baseB1, 'injected b1': baseB1 / 2, 'injected serial x8': 10 },
      targets: [{ what: 'injected / base tokens/s, batch 1', value: 0.5, paired: 0.5, required: 0.85 }],
      event_loop_delay_ms: { p99: 2.5 },
    };
  }

  test('each kind shows its newest file by the date inside it, and other JSON is left out', () => {
    // the older run has the later name: the date decides, not the name
    put('generate-m-b.json', generateResult('2026-01-01T00:00:00.000Z', 111));
    put('generate-m-a.json', generateResult('2026-02-01T00:00:00.000Z', 222));
    // another model is another kind
    put('generate-other.json', { ...generateResult('2025-01-01T00:00:00.000Z', 333), model: 'bench/models/other' });
    put('gpu-test-20260101-000000.json', {
      device: 'NVIDIA Test', compute_capability: '9.0', date: '20260101-000000', copy_gbps: 1000, results: [
        { op: 'copy', dtype: '', path: '', note: '', d: 0, E: 0, r: 0, k: 0, T: 0, median_us: 2000, of_copy: 1 },
        { op: 'lora_moe', dtype: 'f16', path: 'decode', note: '', d: 64, E: 4, r: 16, k: 2, T: 1, median_us: 10, of_copy: 0.01 },
        { op: 'lora_moe', dtype: 'f16', path: 'grouped', note: '', d: 64, E: 4, r: 16, k: 2, T: 1, median_us: 50, of_copy: 0.002 },
      ],
    });
    put('gpu-test-20260101-000000-torch.json', { device: 'NVIDIA Test', device_type: 'cuda', torch: '2', results: [] });
    put('notes.json', { something: 'else' });
    put('serve-m.json', {
      bench: 'serve', date: '2026-03-01T00:00:00.000Z', machine: { cpu: 'Test CPU', cores: 2 }, server: { model: 'm', experts: ['a'] },
      reference_level: '1', levels: [{
        mode: 'closed', concurrency: 1, rate: null, requests: { measured: 10, measured_errors: 0 }, tok_per_s: 100, tok_per_s_vs_reference: 1,
        req_per_s: 2, ttft_ms: { p50: 5, p90: 6, p99: 7 }, tpot_ms: { p50: 1, p90: 2, p99: 3 }, latency_ms: { p50: 50, p99: 70 },
        rss_mib: { at_end: 200 }, event_loop_delay_ms: { p99: 1.5 }, server_event_loop_delay_p99_ms: 4.25,
      }, {
        mode: 'closed', concurrency: 8, rate: null, requests: { measured: 20, measured_errors: 0 }, tok_per_s: 250, tok_per_s_vs_reference: 2.5,
        req_per_s: 5, ttft_ms: { p50: 9, p90: 10, p99: 11 }, tpot_ms: { p50: 2, p90: 3, p99: 4 }, latency_ms: { p50: 80, p99: 90 },
        rss_mib: { at_end: 220 }, event_loop_delay_ms: { p99: 2 }, server_event_loop_delay_p99_ms: 6,
      }],
    });
    // a steady run of one level on the same model is a kind of its own (newer): both show
    put('serve-m-steady.json', {
      bench: 'serve', date: '2026-03-02T00:00:00.000Z', machine: { cpu: 'Test CPU', cores: 2 }, server: { model: 'm', experts: ['a'] },
      reference_level: '8', levels: [{
        mode: 'closed', concurrency: 8, rate: null, requests: { measured: 5000, measured_errors: 0 }, tok_per_s: 300, tok_per_s_vs_reference: 1,
        req_per_s: 9, ttft_ms: { p50: 5, p90: 6, p99: 7 }, tpot_ms: { p50: 1, p90: 2, p99: 3 }, latency_ms: { p50: 50, p99: 70 },
        rss_mib: { at_end: 210 }, event_loop_delay_ms: { p99: 1.5 },
      }],
    });

    const out = ok(tables('--results', path.join(dir, 'results')), 'bench-tables.js');
    expect(out).toContain('generate-m-a.json');
    expect(out).not.toContain('generate-m-b.json');
    expect(out).toContain('generate-other.json');
    expect(out).toMatch(/\| 1 \| 222 \| 111 \|/); // batch 1: base, per-row
    expect(out).toContain('| per-row: the 8 requests one after another | 10.0 |');
    expect(out).toContain('| per-row / base tokens/s, batch 1 | 0.50× | 0.50× | 0.85× | **not met** |');
    expect(out).toContain('| f16 | 64 | 4 | 1 | 10.0 µs (1%) | 50.0 µs (0%) | decode |');
    expect(out).toContain('serve-m.json');
    expect(out).toContain('| 1 | 10 | 0 | 100 | 1.00× | 2.00 | 5 / 6 / 7 | 1 / 2 / 3 | 50 / 70 | 200 | 1.5 / 4.3 ms |');
    expect(out).toContain('serve-m-steady.json');
    expect(out).toContain('| 8 | 5000 | 0 | 300 | 1.00× | 9.00 | 5 / 6 / 7 | 1 / 2 / 3 | 50 / 70 | 210 | 1.5 / — ms |');
    expect(out).not.toContain('torch');
    expect(out).not.toContain('notes.json');
    expect(out).toContain('### CPU kernels (`npm run bench`)\n\n_No results of this kind yet._');
    // the same files give the same text
    expect(ok(tables('--results', path.join(dir, 'results')), 'bench-tables.js')).toBe(out);
  });

  test('--write replaces only the block; --check fails on a stale block and passes after --write', () => {
    put('generate-m.json', generateResult('2026-01-01T00:00:00.000Z', 100));
    const readme = path.join(dir, 'README.md');
    const before = '# Title\n\ntext before\n\n';
    const after = '\n\ntext after\n';
    fs.writeFileSync(readme, `${before}${BEGIN}\nstale\n${END}${after}`);
    const args = ['--results', path.join(dir, 'results'), '--readme', readme];

    const stale = tables('--check', ...args);
    expect(stale.status).toBe(1);
    expect(stale.stderr).toContain('node scripts/bench-tables.js --write');

    ok(tables('--write', ...args), 'bench-tables.js --write');
    const text = fs.readFileSync(readme, 'utf8');
    expect(text.startsWith(`${before}${BEGIN}\n`)).toBe(true);
    expect(text.endsWith(`${END}${after}`)).toBe(true);
    expect(text).toContain('generate-m.json');
    expect(tables('--check', ...args).status).toBe(0);
  });

  test('a file without the markers, or with them twice, is an error that says so', () => {
    const readme = path.join(dir, 'README.md');
    fs.writeFileSync(readme, `no markers here\n`);
    const r = tables('--check', '--results', path.join(dir, 'results'), '--readme', readme);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(BEGIN);
    fs.writeFileSync(readme, `${BEGIN}\n${END}\n${BEGIN}\n${END}\n`);
    expect(tables('--write', '--results', path.join(dir, 'results'), '--readme', readme).status).toBe(2);
  });

  test('a result file that is not JSON stops the script, naming the file', () => {
    fs.writeFileSync(path.join(dir, 'results', 'broken.json'), '{ not json');
    const r = tables('--results', path.join(dir, 'results'));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('broken.json');
  });
});
