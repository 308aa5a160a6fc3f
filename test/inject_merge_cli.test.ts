// `personafuse inject` and `personafuse merge` as a user runs them: the built CLI in a child
// process, its --json output, and the files it writes.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PersonaModel } from '../lib';
import { readModel } from '../lib/onnx/proto';
import { adapterFolders, FIXTURE, plainLastLogits, reference, tempDir, worstRelError } from './helpers/model';

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli', 'main.js');
const MODEL = path.join(FIXTURE, 'onnx-legacy');
const ADAPTERS = path.join(FIXTURE, 'adapters');
const out = tempDir('cli');

function cli(...args: string[]): { status: number | null; json: Record<string, unknown>; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
  } catch {
    /* non-JSON output: left empty for the assertion to show */
  }
  return { status: r.status, json, stderr: r.stderr };
}

afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

describe('personafuse inject', () => {
  test('writes the injected model once, then reports it reused', () => {
    const first = cli('inject', '--model', MODEL, '--adapters', ADAPTERS, '--out-dir', out, '--json');
    expect(first.status).toBe(0);
    expect(first.json.reused).toBe(false);
    const sites = first.json.sites as { layer: number; module: string; inputs: string[] }[];
    expect(sites).toHaveLength(14);
    expect(new Set(sites.map((s) => s.module))).toEqual(new Set(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']));
    const file = first.json.file as string;
    const inputs = readModel(file).graph!.input.map((i) => i.name);
    for (const s of sites) for (const name of s.inputs) expect(inputs).toContain(name);
    const again = cli('inject', '--model', MODEL, '--adapters', ADAPTERS, '--out-dir', out, '--json');
    expect(again.json).toMatchObject({ file, reused: true });
  });

  test('--lora-layout bank writes the experts into the model with one gates input; its logits match the per-row layout', async () => {
    const r = cli('inject', '--model', MODEL, '--adapters', ADAPTERS, '--out-dir', out, '--lora-layout', 'bank', '--json');
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ layout: 'bank', gates: { input: 'persona_gates', experts: reference.experts.length } });
    const graph = readModel(r.json.file as string).graph!;
    expect(graph.input.map((i) => i.name)).toContain('persona_gates');
    expect(graph.input.some((i) => i.name.endsWith('/lora_A'))).toBe(false);
    const sites = r.json.sites as { initializers: string[] }[];
    const inits = new Set(graph.initializer.map((t) => t.name));
    for (const s of sites) for (const name of s.initializers) expect(inits.has(name)).toBe(true);
    // the library, given the experts in the CLI's order (folders sorted), reuses the file the CLI wrote
    // and computes the per-row layout's logits
    const opts = { model: MODEL, adapters: adapterFolders([...reference.experts].sort()), cacheDir: out };
    const bank = await PersonaModel.load({ ...opts, loraLayout: 'bank' });
    const perRow = await PersonaModel.load({ ...opts, loraLayout: 'per-row' });
    try {
      expect(bank.injectedFile).toBe(r.json.file);
      const mix = reference.sequences.map(() => reference.cases[reference.cases.length - 1].mix);
      const got = await bank.forward({ inputIds: reference.sequences, mix });
      expect(worstRelError(got, await perRow.forward({ inputIds: reference.sequences, mix }))).toBeLessThanOrEqual(1e-5);
    } finally {
      await bank.dispose();
      await perRow.dispose();
    }
    const wrong = cli('inject', '--model', MODEL, '--adapters', ADAPTERS, '--lora-layout', 'rows', '--json');
    expect(wrong.status).not.toBe(0);
    expect(wrong.stderr + JSON.stringify(wrong.json)).toMatch(/--lora-layout/);
  });

  test('errors print one JSON object and exit 1: no adapters, bad --adapter, missing model', () => {
    const none = cli('inject', '--model', MODEL, '--json');
    expect(none.status).toBe(1);
    expect(none.json.error).toMatch(/needs adapters/);
    const bad = cli('inject', '--model', MODEL, '--adapter', 'nameonly', '--json');
    expect(bad.json.error).toMatch(/--adapter expects NAME=PATH/);
    const missing = cli('inject', '--model', path.join(out, 'absent.onnx'), '--adapters', ADAPTERS, '--json');
    expect(missing.json.error).toMatch(/does not exist/);
  });
});

describe('personafuse merge', () => {
  test('the merged file has no adapter inputs and equals the injected model with that mix', async () => {
    const mix = { openness_high: 0.6, extraversion_low: 0.3, neuroticism_low: 0.5 };
    const file = path.join(out, 'merged.onnx');
    const r = cli('merge', '--model', MODEL, '--adapters', ADAPTERS, '--mix', JSON.stringify(mix), '--out', file, '--json');
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ file, merged: 14, mix });
    const merged = readModel(file);
    expect(merged.graph!.input.map((i) => i.name)).toEqual(readModel(path.join(MODEL, 'model.onnx')).graph!.input.map((i) => i.name));
    const m = await PersonaModel.load({ model: MODEL, adapters: adapterFolders(), cacheDir: out });
    try {
      const injected = await m.forward({ inputIds: reference.sequences, mix: reference.sequences.map(() => mix) });
      expect(worstRelError(await plainLastLogits(file, reference.sequences), injected)).toBeLessThanOrEqual(1e-4);
    } finally {
      await m.dispose();
    }
  });

  test('a mix that is not JSON, or names an unknown expert, is refused', () => {
    const file = path.join(out, 'never.onnx');
    expect(cli('merge', '--model', MODEL, '--adapters', ADAPTERS, '--mix', '{oops', '--out', file, '--json').json.error)
      .toMatch(/--mix is not valid JSON/);
    expect(cli('merge', '--model', MODEL, '--adapters', ADAPTERS, '--mix', '{"nobody":1}', '--out', file, '--json').json.error)
      .toMatch(/'nobody'/);
    expect(fs.existsSync(file)).toBe(false);
  });
});
