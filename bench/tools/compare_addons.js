// Compares builds of the addon in one process (dev tool, plain JS, not part of `npm run bench`):
//   node bench/tools/compare_addons.js lora|topk|fold old.node new.node   (env THR, DIMS, DT)
// Loads each .node with process.dlopen, interleaves the calls, prints medians (us) and ratios.
const [op, ...files] = process.argv.slice(2);
const thr = +(process.env.THR || 0);
const mods = files.map((f) => { const m = { exports: {} }; process.dlopen(m, f); return m.exports; });
if (thr) mods.forEach((m) => m.setThreads(thr));
function rnd(n) { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1; return a; }
function f16bits(n) { const a = new Uint16Array(n); for (let i = 0; i < n; i++) a[i] = 0x3000 + ((Math.random() * 0x800) | 0) + (Math.random() < .5 ? 0x8000 : 0); return a; }
function time(fns, budgetMs = 600) {
  const samples = fns.map(() => []);
  const reps = fns.map((f) => { let n = 0; const t0 = process.hrtime.bigint(); while (Number(process.hrtime.bigint() - t0) < 2e5) { f(); n++; } return Math.max(1, n); });
  const end = Date.now() + budgetMs * fns.length;
  while (Date.now() < end) fns.forEach((f, i) => { const t0 = process.hrtime.bigint(); for (let r = 0; r < reps[i]; r++) f(); samples[i].push(Number(process.hrtime.bigint() - t0) / reps[i] / 1e3); });
  return samples.map((s) => { s.sort((a, b) => a - b); return s[s.length >> 1]; });
}
const E = 10, r = 16, k = 2;
if (op === 'lora') {
  for (const d of (process.env.DIMS || '896,2048,4096').split(',').map(Number)) for (const [T, mode] of [[1, 'm'], [8, 'm'], [64, 'm'], [512, '1'], [512, 'm']]) for (const dt of (process.env.DT || '1,0').split(',').map(Number)) {
    const a = dt ? f16bits(E * r * d) : rnd(E * r * d), b = dt ? f16bits(E * r * d) : rnd(E * r * d);
    const banks = mods.map((m) => new m.LoraBank({ experts: E, rank: r, din: d, dout: d, dtype: dt, a, b }));
    const sets = [];
    for (let s = 0; s < 4; s++) {
      const ids = new Int32Array(T * k), w = rnd(T * k);
      const e0 = (Math.random() * E) | 0, e1 = (e0 + 1 + ((Math.random() * (E - 1)) | 0)) % E;
      for (let t = 0; t < T; t++) { if (mode === '1') { ids[2 * t] = e0; ids[2 * t + 1] = e1; } else { const a0 = (Math.random() * E) | 0; ids[2 * t] = a0; ids[2 * t + 1] = (a0 + 1 + ((Math.random() * (E - 1)) | 0)) % E; } }
      sets.push({ x: rnd(T * d), ids, w, y: new Float32Array(T * d) });
    }
    let c = 0;
    const res = time(mods.map((m, i) => () => { const s = sets[(c++) & 3]; m.loraMoe(banks[i], s.x, s.ids, s.w, s.y); }));
    console.log(`lora T=${T}${mode} d=${d} ${dt ? 'f16' : 'f32'}: ` + res.map((v) => v.toFixed(1).padStart(8)).join(' ') + '   ratio ' + (res[0] / res[1]).toFixed(2));
  }
}
if (op === 'topk') {
  for (const [E2, k2] of [[10, 2], [64, 8]]) for (const T of [1, 8, 64, 512]) {
    const sets = [0, 1, 2, 3].map(() => rnd(T * E2).map((v) => v * 4));
    let c = 0;
    const res = time(mods.map((m) => () => m.topkSoftmax(sets[(c++) & 3], E2, k2, false)), 300);
    console.log(`topk T=${T} E=${E2}: ` + res.map((v) => v.toFixed(2).padStart(8)).join(' ') + '   ratio ' + (res[0] / res[1]).toFixed(2));
  }
}
if (op === 'fold') {
  for (const d of [896, 2048, 4096]) for (const B of [1, 8]) for (const dt of [1, 0]) {
    const a = dt ? f16bits(E * r * d) : rnd(E * r * d), b = dt ? f16bits(E * r * d) : rnd(E * r * d);
    const banks = mods.map((m) => new m.LoraBank({ experts: E, rank: r, din: d, dout: d, dtype: dt, a, b }));
    const R = 32; const outs = [0, 1, 2, 3].map(() => ({ a: new Float32Array(B * d * R), b: new Float32Array(B * R * d) }));
    const ids = new Int32Array(B * k).map((_, i) => (i * 3) % E), w = rnd(B * k);
    let c = 0;
    const res = time(mods.map((m, i) => () => { const o = outs[(c++) & 3]; m.foldExperts(banks[i], ids, w, k, o.a, o.b, R); }), 300);
    const src = new Float32Array(B * R * d * 2), dsts = [0, 1, 2, 3].map(() => new Float32Array(B * R * d * 2));
    const mc = time([() => dsts[(c++) & 3].set(src)], 300)[0];
    console.log(`fold B=${B} d=${d} ${dt ? 'f16' : 'f32'}: ` + res.map((v) => v.toFixed(1).padStart(8)).join(' ') + `  memcpy ${mc.toFixed(1)}  %memcpy ` + res.map((v) => (100 * mc / v).toFixed(0) + '%').join(' '));
  }
}
