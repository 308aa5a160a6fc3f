// One LoraBank per injection site: every expert's adapter for that (layer, module), stacked in
// expert order. An expert without that module gets rank 0 there (it adds nothing). For the bank
// form of injection (inject.ts), the same banks laid side by side as the graph's initializers.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, buildLoraBank, PeftAdapter, PeftModule } from '../adapters';
import { foldExperts, LoraBank } from '../kernels';
import { BankSource, InjectionSite, SiteBankColumns } from '../onnx/inject';

export interface SiteBank {
  site: InjectionSite;
  /** null when no expert adapts this module (its feeds are always rank 0), or when the bank is in
   *  the graph (loraLayout 'bank': the model holds no banks of its own) */
  bank: LoraBank | null;
}

export function siteBanks(sites: InjectionSite[], adapters: PeftAdapter[]): SiteBank[] {
  return sites.map((site) => {
    const parts = expertModules(adapters, site.layer, site.module);
    if (parts.every((p) => !p)) return { site, bank: null };
    return { site, bank: buildLoraBank(parts, site.din, site.dout) };
  });
}

/** Each expert's module at (layer, module), undefined where it has none: a bank's parts, in expert order. */
export function expertModules(adapters: readonly PeftAdapter[], layer: number | null, module: string): (PeftModule | undefined)[] {
  return adapters.map((a) => [...a.modules.values()].find((m) => m.layer === layer && m.module === module));
}

/** The bank form's source: each site's experts side by side, and what identifies their weights. */
export function bankSource(adapters: readonly PeftAdapter[]): { source: BankSource; identity: string } {
  const h = createHash('sha256');
  for (const a of adapters) {
    for (const f of [ADAPTER_CONFIG, ADAPTER_WEIGHTS]) {
      const file = path.resolve(a.dir, f);
      const st = fs.statSync(file);
      h.update(JSON.stringify([a.name, file, st.size, st.mtimeMs]));
    }
  }
  const source: BankSource = {
    experts: adapters.length,
    columns(site) {
      const parts = expertModules(adapters, site.layer, site.module);
      if (parts.every((p) => !p)) return null;
      const bank = buildLoraBank(parts, site.din, site.dout);
      try {
        return bankColumns(bank);
      } finally {
        bank.dispose();
      }
    },
  };
  return { source, identity: h.digest('hex') };
}

/**
 * Every expert of a bank side by side, at weight 1 (kernels.foldExperts with all of them):
 *   a [din, C] = [A_e1ᵀ | A_e2ᵀ | ...],  b [C, dout] = [s_e1·B_e1ᵀ; s_e2·B_e2ᵀ; ...]
 * over the experts of rank > 0, each with its own r_e columns (the bank's padding is dropped).
 */
export function bankColumns(bank: LoraBank): SiteBankColumns {
  const present = Array.from(bank.ranks.keys()).filter((e) => bank.ranks[e] > 0);
  const k = present.length;
  const R = k * bank.rank;
  const a = new Float32Array(bank.din * R);
  const b = new Float32Array(R * bank.dout);
  foldExperts(bank, Int32Array.from(present), new Float32Array(k).fill(1), k, { a, b, rankCapacity: R });
  // column j * rank + c is expert present[j]'s c-th: kept while c < its rank
  const keep = Array.from({ length: R }, (_, col) => col).filter((col) => col % bank.rank < bank.ranks[present[Math.floor(col / bank.rank)]]);
  const expertOf = Int32Array.from(keep, (col) => present[Math.floor(col / bank.rank)]);
  if (keep.length === R) return { a, b, expertOf };
  const C = keep.length;
  const ca = new Float32Array(bank.din * C);
  const cb = new Float32Array(C * bank.dout);
  for (let i = 0; i < bank.din; i++) keep.forEach((col, j) => (ca[i * C + j] = a[i * R + col]));
  keep.forEach((col, j) => cb.set(b.subarray(col * bank.dout, (col + 1) * bank.dout), j * bank.dout));
  return { a: ca, b: cb, expertOf };
}
