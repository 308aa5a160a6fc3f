// The shape of lib/: folders in layers, imports only downwards (issue 14). A folder may import its
// own files and any folder of a LOWER layer; a same-layer sibling or anything above is refused, so
// the arrows never turn back up. Files at the top of lib/ (errors.ts, index.ts) have their own
// place: errors.ts, rng.ts and cores.ts are below everything, index.ts above everything.
import * as fs from 'node:fs';
import * as path from 'node:path';

const LIB = path.join(__dirname, '..', 'lib');

/** Layer of each folder of lib/ (and of the two top-level files), lowest first. */
const LAYERS: Record<string, number> = {
  'errors.ts': 0, 'rng.ts': 0, 'cores.ts': 0,
  kernels: 1,
  reference: 2, adapters: 2, onnx: 2,
  decoder: 3,
  engine: 4, router: 4,
  model: 5,
  server: 6,
  cli: 7,
  'index.ts': 8,
};

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

/** The lib/ entry (folder or top-level file) a path lies in. */
function unit(file: string): string {
  return path.relative(LIB, file).split(path.sep)[0];
}

function imports(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"](\.[^'"]+)['"]/g)].map((m) => m[1]);
}

describe('lib/ layers: imports run one way', () => {
  const files = sources(LIB);

  test('every folder and top-level file of lib/ has a layer', () => {
    const units = [...new Set(files.map(unit))].sort();
    expect(units.filter((u) => !(u in LAYERS))).toEqual([]);
  });

  test('no import goes to a sibling of the same layer or to a higher one', () => {
    const wrong: string[] = [];
    for (const file of files) {
      const from = unit(file);
      for (const spec of imports(file)) {
        const target = path.resolve(path.dirname(file), spec);
        const to = unit(fs.existsSync(`${target}.ts`) ? `${target}.ts` : target);
        if (to === from) continue;
        if (!(LAYERS[to] < LAYERS[from])) wrong.push(`${path.relative(LIB, file)} -> ${spec} (${from} is layer ${LAYERS[from]}, ${to} is ${LAYERS[to]})`);
      }
    }
    expect(wrong).toEqual([]);
  });

  test('the check sees imports: a file importing upwards would be caught', () => {
    // the parser finds the real imports of a known file (so an empty result is not a silent pass)
    expect(imports(path.join(LIB, 'model', 'persona_model.ts'))).toEqual(expect.arrayContaining(['../engine/engine', '../router/persona']));
  });
});
