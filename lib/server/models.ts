// The model as the API shows it: the served names (the first is its id, the rest aliases a
// request may use; every answer carries the id), the /v1/models objects, and the
// system_fingerprint: a hash of what decides the outputs for given inputs and seed (the package
// version, the model file, the experts and how they enter the graph). It changes when the
// backend does, not per request, so clients can tell a changed deployment from sampling noise.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../kernels/binding';
import type { PersonaModel } from '../model/persona_model';

export interface ServedModel {
  /** the id: what /v1/models lists and responses carry */
  readonly id: string;
  /** the id and every alias */
  readonly names: readonly string[];
  readonly created: number;
  readonly fingerprint: string;
  /** the /v1/models object */
  readonly object: Record<string, unknown>;
  /** the id a request's `model` resolves to; undefined for a name not served */
  resolve(name: string): string | undefined;
}

export function servedModel(model: PersonaModel, names: readonly string[]): ServedModel {
  const id = names[0];
  const created = Math.floor(Date.now() / 1000);
  const object = { id, object: 'model', created, owned_by: 'personafuse', experts: model.experts, router: !!model.router };
  return {
    id, names, created, object, fingerprint: fingerprint(model),
    resolve: (name) => (names.includes(name) ? id : undefined),
  };
}

export function packageVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function fingerprint(model: PersonaModel): string {
  let size = -1;
  try {
    size = fs.statSync(model.modelFile).size;
  } catch {
    /* a model file gone since load: the rest still identifies it */
  }
  const what = JSON.stringify({
    version: packageVersion(), model: path.basename(path.dirname(model.modelFile)), file: path.basename(model.modelFile), size,
    experts: model.experts, layout: model.loraLayout, vocab: model.vocab,
  });
  return `fp_${createHash('sha256').update(what).digest('hex').slice(0, 12)}`;
}
