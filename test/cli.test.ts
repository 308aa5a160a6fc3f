// The generate / route / chat / serve commands of the built CLI (node dist/lib/cli/main.js;
// build first: npx tsc -p tsconfig.json), on a copy of the tiny-llama fixture laid out as a model
// folder: model.onnx, tokenizer and config files, adapters/, router/ (found by default).
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PersonaModel } from '../lib';
import { FIXTURE, tempDir } from './helpers/model';
import { withProgressBar } from '../lib/cli/progress';
import { SMALL_MODEL_REPLICAS_MAX, usableCores } from '../lib/server/threads';
import { applyMallocTuning, mallocTunedByEnvironment } from '../lib/cli/options';

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli', 'main.js');
const dir = tempDir('cli');
const ROUTER = path.join(__dirname, 'fixtures', 'router-tiny');

beforeAll(() => {
  fs.copyFileSync(path.join(FIXTURE, 'onnx-legacy', 'model.onnx'), path.join(dir, 'model.onnx'));
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'config.json', 'generation_config.json']) fs.copyFileSync(path.join(FIXTURE, f), path.join(dir, f));
  fs.cpSync(path.join(FIXTURE, 'adapters'), path.join(dir, 'adapters'), { recursive: true });
  fs.cpSync(ROUTER, path.join(dir, 'router'), { recursive: true });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function cli(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', input, timeout: 60000 });
}

describe('personafuse generate', () => {
  test('--json prints one object { text, tokens, mix, usage, finishReason } equal to generate()', async () => {
    const r = cli(['generate', '--model', dir, '--prompt', 'Hello there', '--max-new-tokens', '8', '--temperature', '0', '--persona', '{"mix":{"openness_high":0.6,"neuroticism_low":0.4}}', '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const out = JSON.parse(lines[0]);
    const m = await PersonaModel.load({ model: dir, adapters: Object.fromEntries(fs.readdirSync(path.join(dir, 'adapters')).sort().map((n) => [n, path.join(dir, 'adapters', n)])) }); // the default runner: the CLI's in-thread generate must equal it
    try {
      const want = await m.generate({ messages: [{ role: 'user', content: 'Hello there' }], persona: { mix: { openness_high: 0.6, neuroticism_low: 0.4 } }, maxNewTokens: 8, temperature: 0 });
      expect(out).toMatchObject({ text: want.text, tokens: want.tokens, mix: want.mix, usage: want.usage, finishReason: want.finishReason });
    } finally {
      await m.dispose();
    }
  });

  test('--lora-layout bank gives the per-row tokens; an unknown layout is refused by name', () => {
    const args = ['generate', '--model', dir, '--prompt', 'Hello there', '--max-new-tokens', '10', '--temperature', '0', '--persona', '{"mix":{"openness_high":0.6,"neuroticism_low":0.4}}', '--json'];
    const bank = cli([...args, '--lora-layout', 'bank']);
    const perRow = cli([...args, '--lora-layout', 'per-row']);
    expect(bank.status).toBe(0);
    expect(perRow.status).toBe(0);
    expect(JSON.parse(bank.stdout).tokens).toEqual(JSON.parse(perRow.stdout).tokens);
    const bad = cli([...args, '--lora-layout', 'rows']);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--lora-layout/);
  });

  test('without --persona the folder router picks the mix; the same --seed repeats a sampled answer', () => {
    const args = ['generate', '--model', dir, '--prompt', 'I love trying new things', '--max-new-tokens', '6', '--temperature', '1', '--seed', '42', '--json'];
    const a = JSON.parse(cli(args).stdout);
    const b = JSON.parse(cli(args).stdout);
    expect(a.tokens).toEqual(b.tokens);
    const routed = JSON.parse(cli(['route', '--router', path.join(dir, 'router'), 'I love trying new things', '--json']).stdout);
    expect(a.mix).toEqual(routed.mix);
  });

  test('without --json the answer streams to stdout, the persona and usage go to stderr', () => {
    const r = cli(['generate', '--model', dir, '--prompt', 'Hi', '--max-new-tokens', '4', '--temperature', '0', '--persona', '{"openness":0.5}']);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/\[persona: openness_high 0\.50\]/);
    expect(r.stderr).toMatch(/4 generated tokens/);
  });

  test('a bad --persona or a missing --model is a clear error (JSON with --json)', () => {
    const bad = cli(['generate', '--model', dir, '--prompt', 'Hi', '--persona', '{"mix":{"wit_high":1}}', '--json']);
    expect(bad.status).toBe(1);
    expect(JSON.parse(bad.stdout).error).toMatch(/wit_high/);
    const missing = cli(['generate', '--model', path.join(dir, 'nowhere'), '--prompt', 'Hi']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/does not exist/);
  });
});

describe('personafuse info', () => {
  test('--json reports the backends, the CPU, the model summary and the layout auto would pick for its adapters', () => {
    const r = cli(['info', '--model', dir, '--json']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.kernels.backends).toContain('cpu');
    expect(out.cores).toBeGreaterThan(0);
    expect(out.model).toMatchObject({ kvCache: true, linearLayers: 15 /* 2 layers x 7 + lm_head */, adapters: fs.readdirSync(path.join(dir, 'adapters')).sort() });
    // five experts are 43% of the fixture's weights: above 1/8, so per-row
    expect(out.model.bankBytes / out.model.weightBytes).toBeGreaterThan(0.4);
    expect(out.model.loraLayout).toBe('per-row');
    const one = JSON.parse(cli(['info', '--model', dir, '--adapter', `neuroticism_low=${path.join(dir, 'adapters', 'neuroticism_low')}`, '--json']).stdout);
    expect(one.model.loraLayout).toBe('bank');
    expect(cli(['info', '--model', dir]).stdout).toMatch(/loraLayout auto = per-row/);
  });
});

describe('personafuse route', () => {
  test('--json prints the mix and the full distribution over the experts', () => {
    const r = cli(['route', '--model', dir, 'Please leave me alone', '--json']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(Object.keys(out.mix)).toHaveLength(2);
    expect(Object.keys(out.distribution).sort()).toEqual(['agreeableness_high', 'conscientiousness_high', 'extraversion_low', 'neuroticism_low', 'openness_high']);
    const total = Object.values(out.distribution as Record<string, number>).reduce((s, p) => s + p, 0);
    expect(total).toBeCloseTo(1, 5);
  });
});

describe('personafuse chat', () => {
  test('--json prints one object per turn with the traits chosen for it', () => {
    const r = cli(['chat', '--model', dir, '--max-new-tokens', '3', '--temperature', '0', '--json'], 'hello\nI love trying new things\n/exit\n');
    expect(r.status).toBe(0);
    const turns = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(turns.map((t) => t.user)).toEqual(['hello', 'I love trying new things']);
    turns.forEach((t) => expect(Object.keys(t.mix).length).toBeGreaterThan(0));
    expect(turns[1].usage.promptTokens).toBeGreaterThan(turns[0].usage.promptTokens);
  });
});

describe('personafuse serve', () => {
  let child: ChildProcess | undefined;
  // the server drains and disposes its model on SIGTERM: wait for it to end, or the process
  // outlives the file and jest reports a worker that failed to exit gracefully
  afterEach(async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    const kill = setTimeout(() => c.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(kill);
  });

  test('PERSONAFUSE_API_KEY is the key when --api-key is not given; --served-model-name gives the id and its aliases, other names are 404', async () => {
    child = spawn(process.execPath, [CLI, 'serve', '--model', dir, '--port', '0', '--json', '--served-model-name', 'demo', 'persona'], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PERSONAFUSE_API_KEY: 'from-env' },
    });
    const { url } = await new Promise<{ url: string }>((resolve, reject) => {
      let buf = '';
      child!.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        if (buf.includes('\n')) resolve(JSON.parse(buf.split('\n')[0]));
      });
      child!.on('exit', (code) => reject(new Error(`serve exited with ${code}`)));
    });
    expect((await fetch(`${url}/v1/models`)).status).toBe(401);
    const auth = { authorization: 'Bearer from-env' };
    const models = (await (await fetch(`${url}/v1/models`, { headers: auth })).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(['demo']);
    expect((await fetch(`${url}/v1/models/persona`, { headers: auth })).status).toBe(200);
    const chat = (model: string) => fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }) });
    expect((await chat('persona')).status).toBe(200);
    const unknown = await chat('gpt-4o');
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { param: string } }).error.param).toBe('model');
  });

  test('--port 0 --json prints the URL; the server answers /v1/models and a completion (worker threads, the bank by default)', async () => {
    child = spawn(process.execPath, [CLI, 'serve', '--model', dir, '--port', '0', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const info = await new Promise<{ url: string; experts: string[]; loraLayout: string; threads: number; replicas: number; malloc: string }>((resolve, reject) => {
      let buf = '';
      child!.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        if (buf.includes('\n')) resolve(JSON.parse(buf.split('\n')[0]));
      });
      child!.on('exit', (code) => reject(new Error(`serve exited with ${code}`)));
    });
    expect(info.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // a server decodes wide batches, where the bank is the faster form (SERVE_LORA_LAYOUT)
    expect(info.loraLayout).toBe('bank');
    // a small model gets one single-threaded replica per core, at most four (lib/server/threads.ts)
    expect(info.threads).toBe(1);
    expect(info.replicas).toBe(Math.min(usableCores(), SMALL_MODEL_REPLICAS_MAX));
    // glibc malloc's own thresholds unless the environment tunes them (--tune-malloc raises them)
    expect(info.malloc).toBe(mallocTunedByEnvironment() ? 'environment' : 'system');
    const models = (await (await fetch(`${info.url}/v1/models`)).json()) as { data: { experts: string[] }[] };
    expect(models.data[0].experts).toEqual(info.experts);
    const res = await fetch(`${info.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, persona: { extraversion: -1 } }) });
    const body = (await res.json()) as { persona: unknown; usage: { completion_tokens: number } };
    expect(body.persona).toEqual({ mix: { extraversion_low: 1 } });
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
  });
});

describe('malloc flags (--system-malloc, --tune-malloc)', () => {
  const glibc = Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime);
  const env = mallocTunedByEnvironment();

  test("by default glibc's own thresholds stay, and --system-malloc says the same", () => {
    expect(applyMallocTuning({})).toBe(env ? 'environment' : 'system');
    expect(applyMallocTuning({ systemMalloc: true })).toBe(env ? 'environment' : 'system');
  });

  test('--tune-malloc raises them where malloc is glibc; an environment that sets them wins', () => {
    expect(applyMallocTuning({ tuneMalloc: true })).toBe(env ? 'environment' : glibc ? 'tuned' : 'unavailable');
  });

  test('both flags at once are refused, naming both', () => {
    const r = cli(['route', '--model', dir, '--system-malloc', '--tune-malloc', 'hello']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/--system-malloc/);
    expect(r.stderr).toMatch(/--tune-malloc/);
  });
});

describe('progress bar (withProgressBar)', () => {
  // the bar draws only on a terminal: pretend stderr is one and record what it is sent
  async function onFakeTerminal(fn: () => unknown): Promise<string> {
    const written: string[] = [];
    const wasTTY = process.stderr.isTTY;
    const write = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    process.stderr.isTTY = true;
    try {
      await fn();
    } finally {
      process.stderr.isTTY = wasTTY;
      write.mockRestore();
    }
    return written.join('');
  }
  const SHOW_CURSOR = '\x1B[?25h';

  test('a failing step still stops the bar and gives the cursor back, and its error reaches the caller', async () => {
    const written = await onFakeTerminal(() => {
      expect(() => withProgressBar({}, (onProgress) => {
        onProgress('writing weights', 3, 10);
        throw new Error('disk full');
      })).toThrow('disk full');
    });
    expect(written).toContain(SHOW_CURSOR);
  });

  test('a rejected promise stops the bar too', async () => {
    const written = await onFakeTerminal(() => expect(withProgressBar({}, async (onProgress) => {
      onProgress('injecting', 0, 4);
      throw new Error('bad adapter');
    })).rejects.toThrow('bad adapter'));
    expect(written).toContain(SHOW_CURSOR);
  });

  test('--json draws nothing', async () => {
    const written = await onFakeTerminal(() => {
      expect(withProgressBar({ json: true }, (onProgress) => {
        onProgress('injecting', 1, 2);
        return 7;
      })).toBe(7);
    });
    expect(written).toBe('');
  });
});
