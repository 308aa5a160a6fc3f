#!/usr/bin/env node
// The mixes a model folder's default router picks for a list of texts, for scripts/demo/export.py
// (which samples the demo's "auto" replies with them):
//   echo '["text", ...]' | node scripts/demo/route_texts.js MODEL_DIR CACHE_DIR   -> [{expert: weight}, ...]
// Needs the package built (npm run build).
const fs = require('node:fs');
const { PersonaModel } = require('../../dist/lib');
const { modelSetup } = require('../../dist/lib/cli/options');

async function main() {
  const [dir, cacheDir] = process.argv.slice(2);
  if (!dir) throw new Error('usage: node scripts/demo/route_texts.js MODEL_DIR [CACHE_DIR] < texts.json');
  const texts = JSON.parse(fs.readFileSync(0, 'utf8'));
  // the folder's adapters/ and router/, as the CLI finds them
  const { model: file, adapters, router } = modelSetup({ model: dir, cacheDir });
  const model = await PersonaModel.load({ model: file, adapters, router, cacheDir });
  try {
    const mixes = [];
    for (const t of texts) mixes.push((await model.route(t)).mix);
    process.stdout.write(JSON.stringify(mixes));
  } finally {
    await model.dispose();
  }
}

main().catch((e) => {
  console.error(e.stack ?? e);
  process.exit(1);
});
