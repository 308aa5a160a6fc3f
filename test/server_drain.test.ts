// `personafuse serve` stopped by SIGTERM, as Kubernetes stops a pod (or by SIGINT): the streams in flight run to
// [DONE], /ready answers 503 meanwhile (the server keeps listening while it drains), new requests
// are refused, and the process exits 0 once they are done. The built CLI (dist/) on the embedded
// demo model, on loopback; the model's cache goes to a temporary folder.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { openStream } from './helpers/server';
import * as path from 'node:path';
import { loadModelFromFlags } from '../lib/cli/options';
import { tempDir } from './helpers/model';

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli', 'main.js');
const cacheDir = tempDir('server-drain');
let child: ChildProcess | undefined;
let stderr = '';

afterAll(() => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  fs.rmSync(cacheDir, { recursive: true, force: true });
});

const messages = [{ role: 'user', content: 'Tell me a long story' }];

/** A request body that runs its whole budget (near-uniform sampling; the seed found on the same model in-process). */
async function longRequest(): Promise<Record<string, unknown>> {
  const model = await loadModelFromFlags({ cacheDir }, { worker: true }); // as the server runs it
  try {
    for (let seed = 1; seed < 40; seed++) {
      const r = await model.generate({ messages, persona: { mix: {} }, maxNewTokens: 100, temperature: 5, topK: 0, topP: 1, seed });
      if (r.finishReason === 'length') return { messages, persona: { mix: {} }, max_tokens: 100, temperature: 5, top_k: 0, top_p: 1, seed, stream: true };
    }
    throw new Error('no seed runs the whole budget');
  } finally {
    await model.dispose();
  }
}

function startCli(args: string[]): Promise<{ url: string }> {
  child = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    child!.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]));
    });
    child!.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
  });
}


// SIGTERM is how Kubernetes stops a pod, SIGINT is Ctrl-C in a terminal: both drain the same way
test.each(['SIGTERM', 'SIGINT'] as const)('%s: /ready turns 503, new requests are refused, streams in flight end with [DONE], exit code 0', async (signal) => {
  stderr = '';
  const body = await longRequest();
  const { url } = await startCli(['--port', '0', '--json', '--cache-dir', cacheDir, '--max-batch', '4', '--drain-timeout', '60', '--log-format', 'json']);
  expect((await fetch(`${url}/ready`)).status).toBe(200);
  const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
  const streams = await Promise.all([openStream(url, body), openStream(url, body), openStream(url, body)]);
  child!.kill(signal);
  // the signal is handled between two requests of ours: ask until the answer changes
  let ready = 200;
  while (ready === 200) ready = (await fetch(`${url}/ready`)).status;
  expect(ready).toBe(503);
  const refused = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages, max_tokens: 2 }) });
  expect(refused.status).toBe(503);
  for (const s of streams) {
    const data = await s.done;
    expect(data[data.length - 1]).toBe('[DONE]');
  }
  expect(await exited).toBe(0);
  // the drain is logged as JSON lines on stderr, with the requests it waited for
  const events = stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).filter((e) => e.event);
  expect(events.map((e) => e.event)).toEqual(['drain_start', 'drain_end']);
  expect(events[0]).toMatchObject({ signal, in_flight: 3 });
  expect(events[1]).toMatchObject({ aborted: 0 });
});
