// How a batch row's persona reaches the graph, decided once when the model loads and carried as
// this one value by everything that feeds rows (the facade, the Batcher, the worker):
//   per-row  every site's A_in/B_in, the row's mix folded straight into its slot (MixSlots with
//            the sites' banks, kernels.foldExperts with `slots`: one write, no staging copy)
//   bank     the whole bank is in the graph; the row feeds its gates [E] (GateSlots, no fold)
// The worker thread builds its own banks from the adapter folders (SlotLayoutSource), so a
// joining request is folded where its slot lives, and the main thread holds banks only when it
// runs the model itself (forward(), { worker: false }).
import { loadPeftAdapter } from '../adapters';
import type { InjectionSite } from '../onnx/inject';
import type { GateInput } from './gate_slots';
import { GateSlots } from './gate_slots';
import { MixSlots, RowMixes, SiteShape, siteShapes } from './mix_slots';
import { SiteBank, siteBanks } from './site_banks';

export type SlotLayout = { kind: 'per-row'; sites: readonly SiteShape[] } | { kind: 'bank'; gates: GateInput };

/** What builds a SlotLayout on any thread: plain data (structured-clonable). */
export type SlotLayoutSource =
  | { kind: 'bank'; gates: GateInput; sites: InjectionSite[] }
  | { kind: 'per-row'; sites: InjectionSite[]; adapters: { name: string; dir: string }[] };

/** Empty slots for this layout. */
export function newRowMixes(layout: SlotLayout): RowMixes {
  return layout.kind === 'bank' ? new GateSlots(layout.gates) : new MixSlots(layout.sites);
}

/** The sites with their banks (per-row: each adapter read from its folder; bank: no native banks). */
export function openSiteBanks(source: SlotLayoutSource): SiteBank[] {
  if (source.kind === 'bank') return source.sites.map((site) => ({ site, bank: null }));
  return siteBanks(source.sites, source.adapters.map((a) => loadPeftAdapter(a.dir, a.name)));
}

/** The layout over sites whose banks are built (openSiteBanks). */
export function slotLayoutOf(source: SlotLayoutSource, sites: readonly SiteBank[]): SlotLayout {
  return source.kind === 'bank' ? { kind: 'bank', gates: source.gates } : { kind: 'per-row', sites: siteShapes(sites) };
}
