// Shared pieces of the server tests: the demo model on the calling thread with servers started on
// port 0 (all closed after the file), a JSON POST, and a stream opened over raw HTTP.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { PersonaModel } from '../../lib';
import { loadModelFromFlags } from '../../lib/cli/options';
import { RunningServer, startServer } from '../../lib/server';
import { tempDir } from './model';

/** The demo model for one test file, and serve() to start servers on it; all closed in afterAll. */
export function demoServers(tag: string): { model: () => PersonaModel; serve: (opts?: Parameters<typeof startServer>[1]) => Promise<RunningServer> } {
  const cacheDir = tempDir(tag);
  let model: PersonaModel;
  const servers: RunningServer[] = [];
  beforeAll(async () => {
    model = await loadModelFromFlags({ cacheDir });
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    await model.dispose();
    fs.rmSync(cacheDir, { recursive: true, force: true });
  });
  return {
    model: () => model,
    serve: async (opts = {}) => {
      const s = await startServer(model, { port: 0, ...opts });
      servers.push(s);
      return s;
    },
  };
}

/** POST a JSON body to /v1/chat/completions. */
export function postChat(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

/** A stream started and running (its first chunk arrived); `done` resolves with all its data: payloads. */
export function openStream(url: string, body: unknown): Promise<{ done: Promise<string[]> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      const done = new Promise<string[]>((fin) => res.on('end', () => fin(text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6)))));
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.once('data', () => resolve({ done }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
