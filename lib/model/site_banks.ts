// One LoraBank per injection site: every expert's adapter for that (layer, module), stacked in
// expert order. An expert without that module gets rank 0 there (it adds nothing).
import { buildLoraBank, PeftAdapter, PeftModule } from '../adapters';
import { LoraBank } from '../kernels';
import { InjectionSite } from '../onnx/inject';

export interface SiteBank {
  site: InjectionSite;
  /** null when no expert adapts this module (its feeds are always rank 0) */
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
