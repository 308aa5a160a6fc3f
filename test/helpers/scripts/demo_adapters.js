// { expertName: folder } for the demo model's ten experts (the names in its router.json).
const fs = require('node:fs');
const path = require('node:path');

module.exports = (demo) => {
  const { experts } = JSON.parse(fs.readFileSync(path.join(demo, 'router', 'router.json'), 'utf8'));
  return Object.fromEntries(experts.map((e) => [e, path.join(demo, 'adapters', e)]));
};
