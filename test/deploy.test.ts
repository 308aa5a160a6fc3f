// deploy/: the Kubernetes manifests parse, and everything they name exists in the server: probe
// paths answer on a server started the way the container starts it (its args through the real
// `serve` flag parser), the ports agree, every flag is one `serve` takes and accepts, the drain
// fits in the grace period, and the autoscaler's metrics are on /metrics. The Dockerfile is read,
// not built (no Docker here): its stages and paths are checked against the repository.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { PersonaModel } from '../lib';
import { loadModelFromFlags } from '../lib/cli/options';
import { serveCommand } from '../lib/cli/commands/serve';
import { resolveServerOptions, RunningServer, startServer } from '../lib/server';
import { secondsToMs } from '../lib/server/config';
import { tempDir } from './helpers/model';

const ROOT = path.join(__dirname, '..');
const DEPLOY = path.join(ROOT, 'deploy');
const cacheDir = tempDir('deploy');

// the manifests are untyped YAML the assertions walk freely
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = any;

const docs: Doc[] = fs.readdirSync(path.join(DEPLOY, 'kubernetes')).filter((f) => f.endsWith('.yaml')).sort().flatMap((f) => {
  return parseAllDocuments(fs.readFileSync(path.join(DEPLOY, 'kubernetes', f), 'utf8')).map((d) => {
    if (d.errors.length) throw new Error(`${f}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS();
  });
});
const byKind = (kind: string): Doc => {
  const found = docs.filter((d) => d?.kind === kind);
  expect(found).toHaveLength(1);
  return found[0];
};

const deployment = () => byKind('Deployment');
const container = () => deployment().spec.template.spec.containers[0];

/** The container's args as `serve` parses them (the image's entrypoint adds `serve --cache-dir`). */
function serveFlags(): Record<string, unknown> {
  const cmd = serveCommand();
  const { operands, unknown } = cmd.parseOptions(container().args.map(String));
  expect({ operands, unknown }).toEqual({ operands: [], unknown: [] });
  return cmd.opts();
}

let model: PersonaModel;
let srv: RunningServer;

beforeAll(async () => {
  model = await loadModelFromFlags({ cacheDir }, { worker: true }); // as serve loads it
  await model.ready(); // and as serve, listening once the session is open (/ready says so)
  const f = serveFlags();
  // as the container runs, but on loopback and a free port
  srv = await startServer(model, { port: 0, maxBatch: f.maxBatch as number, maxQueue: f.maxQueue as number, requestTimeoutMs: secondsToMs(f.requestTimeout, '--request-timeout') });
});
afterAll(async () => {
  await srv?.close();
  await model?.dispose();
  fs.rmSync(cacheDir, { recursive: true, force: true });
});

describe('Kubernetes manifests', () => {
  test('parse as a Deployment, a Service and a HorizontalPodAutoscaler', () => {
    expect(docs.map((d) => d.kind).sort()).toEqual(['Deployment', 'HorizontalPodAutoscaler', 'Service']);
  });

  test('the container args are serve flags with valid values: --host 0.0.0.0, the port, the drain timeout', () => {
    const f = serveFlags();
    expect(f.host).toBe('0.0.0.0');
    expect(container().args).toContain('--drain-timeout');
    expect(() => resolveServerOptions({ port: f.port as number, host: f.host as string, maxBatch: f.maxBatch as number, maxQueue: f.maxQueue as number, logFormat: f.logFormat as 'json' })).not.toThrow();
    expect(secondsToMs(f.drainTimeout, '--drain-timeout')).toBeGreaterThan(0);
    expect(f.port).toBe(container().ports.find((p: Doc) => p.name === 'http').containerPort);
  });

  test('the grace period outlasts the preStop pause plus the drain timeout', () => {
    const spec = deployment().spec.template.spec;
    const preStop = container().lifecycle.preStop.exec.command;
    const pause = preStop[0] === 'sleep' ? Number(preStop[1]) : 0;
    expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(pause + (serveFlags().drainTimeout as number));
  });

  test('requests and limits are set; the Service targets the container\'s port; Prometheus scrapes /metrics on it', () => {
    const { requests, limits } = container().resources;
    for (const r of [requests, limits]) expect(Object.keys(r).sort()).toEqual(['cpu', 'memory']);
    const service = byKind('Service');
    expect(service.spec.selector).toEqual(deployment().spec.selector.matchLabels);
    const ports: Doc[] = container().ports;
    for (const p of service.spec.ports) expect(ports.some((c) => c.name === p.targetPort || c.containerPort === p.targetPort)).toBe(true);
    const ann = deployment().spec.template.metadata.annotations;
    expect(Number(ann['prometheus.io/port'])).toBe(serveFlags().port);
    expect(ann['prometheus.io/path']).toBe('/metrics');
  });

  test('every probe path answers 200 on the server, on a port the container declares', async () => {
    const probes = ['startupProbe', 'livenessProbe', 'readinessProbe'].map((k) => container()[k]);
    expect(probes.map((p) => p.httpGet.path)).toEqual(['/health', '/health', '/ready']);
    for (const p of probes) {
      expect(container().ports.some((c: Doc) => c.name === p.httpGet.port || c.containerPort === p.httpGet.port)).toBe(true);
      expect((await fetch(`${srv.url}${p.httpGet.path}`)).status).toBe(200);
    }
  });

  test('the autoscaler scales the Deployment on per-pod metrics the server exports', async () => {
    const hpa = byKind('HorizontalPodAutoscaler');
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: deployment().metadata.name });
    const names: string[] = hpa.spec.metrics.map((m: Doc) => {
      expect(m.type).toBe('Pods');
      return m.pods.metric.name;
    });
    expect(names.length).toBeGreaterThan(0);
    const exported = new Set((await (await fetch(`${srv.url}/metrics`)).text()).split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]));
    for (const n of names) expect([n, exported.has(n)]).toEqual([n, true]);
  });
});

describe('Dockerfile', () => {
  const text = fs.readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8');

  test('a builder stage that runs npm ci, and a node:20-slim runtime with dist, node_modules, the addon and the demo model', () => {
    expect(text).toMatch(/^FROM node:20\S* AS builder$/m);
    expect(text).toMatch(/^RUN npm ci$/m);
    expect(text).toMatch(/npm prune --omit=dev/);
    expect(text).toMatch(/^FROM node:20-slim AS runtime$/m);
    for (const p of ['/app/dist/lib', '/app/node_modules', '/app/build/Release/personafuse.node', '/app/models/persona-demo']) {
      expect(text).toMatch(new RegExp(`^COPY --from=builder .*${p.replace(/[/.]/g, '\\$&')} `, 'm'));
    }
  });

  test('what it copies from the repository exists, and it serves on the port the manifests use', () => {
    const copied = [...text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1].split(' '));
    expect(copied.length).toBeGreaterThan(0);
    for (const p of copied) expect([p, fs.existsSync(path.join(ROOT, p))]).toEqual([p, true]);
    expect(text).toMatch(/^ENTRYPOINT \["node", "dist\/lib\/cli\/main\.js", "serve"/m);
    expect(Number(/^EXPOSE (\d+)$/m.exec(text)![1])).toBe(serveFlags().port);
    expect(/^CMD \[(.*)\]$/m.exec(text)![1]).toMatch(/"--host", "0\.0\.0\.0"/);
  });
});
