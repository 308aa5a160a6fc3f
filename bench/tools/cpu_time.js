// CPU time per lora_moe call on 1 thread, per build (process.cpuUsage: less sensitive to other
// users of the machine than wall time). Dev tool: node bench/tools/cpu_time.js a.node [b.node ...]
// env CASES=din:T:mode,... (mode 1 = one request, m = mixed), DT=1 (f16) or 0 (f32).
const files = process.argv.slice(2);
const mods = files.map((f) => { const m = { exports: {} }; process.dlopen(m, f); m.exports.setThreads(1); return m.exports; });
const E = 10, r = 16;
const cases = (process.env.CASES || '4096:512:1,896:512:1,4096:512:m,4096:64:m,4096:8:m,4096:1:m').split(',');
for (const c of cases) {
  const [d, T, mode] = c.split(':'); const dd = +d, TT = +T;
  for (const dt of (process.env.DT || '1').split(',').map(Number)) {
  const a = dt ? new Uint16Array(E * r * dd).map(() => 0x3000 + ((Math.random() * 0x800) | 0)) : new Float32Array(E * r * dd).map(() => Math.random() - 0.5), b = a.slice();
  const banks = mods.map((K) => new K.LoraBank({ experts: E, rank: r, din: dd, dout: dd, dtype: dt, a, b }));
  const x = new Float32Array(TT * dd).map(() => Math.random()), y = new Float32Array(TT * dd);
  const ids = new Int32Array(TT * 2).map((_, i) => mode === '1' ? ((i & 1) ? 3 : 7) : (i & 1) ? ((i * 7 + 3) % E) : ((i * 13) % E)), w = new Float32Array(TT * 2).fill(0.5);
  for (let i = 0; i < TT; i++) if (ids[2 * i] === ids[2 * i + 1]) ids[2 * i + 1] = (ids[2 * i] + 1) % E;
  const res = mods.map(() => []);
  for (let round = 0; round < 7; round++) mods.forEach((K, i) => {
    let n = 0; const c0 = process.cpuUsage(); const t0 = Date.now();
    while (Date.now() - t0 < 150) { K.loraMoe(banks[i], x, ids, w, y); n++; }
    const cu = process.cpuUsage(c0); res[i].push((cu.user + cu.system) / n);
  });
  const med = res.map((s) => s.sort((p, q) => p - q)[3]);
  const fl = 2 * TT * 2 * r * 2 * dd;
  console.log(`${c} ${dt ? 'f16' : 'f32'}: ` + med.map((v) => `${v.toFixed(1)}us(${(fl / v / 1e3).toFixed(0)}GF)`).join('  '));
  }
}
