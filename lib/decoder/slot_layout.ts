// How a batch row's persona reaches the graph, decided once when the model loads and carried as
// this one value by everything that feeds rows (the facade, the Batcher, the worker and its client):
//   per-row  every site's A_in/B_in, the row's mix folded into its slot (MixSlots; the sites carry
//            their banks on the thread that folds, and only their shapes elsewhere)
//   bank     the whole bank is in the graph; the row feeds its gates [E] (GateSlots, no fold)
import type { GateInput } from './gate_slots';
import { GateSlots } from './gate_slots';
import { MixSlots, RowMixes, SiteShape } from './mix_slots';

export type SlotLayout = { kind: 'per-row'; sites: readonly SiteShape[] } | { kind: 'bank'; gates: GateInput };

/** Empty slots for this layout. */
export function newRowMixes(layout: SlotLayout): RowMixes {
  return layout.kind === 'bank' ? new GateSlots(layout.gates) : new MixSlots(layout.sites);
}

/** The layout as another thread can hold it: sites without their banks (native handles stay here). */
export function transferableLayout(layout: SlotLayout): SlotLayout {
  if (layout.kind === 'bank') return layout;
  return { kind: 'per-row', sites: layout.sites.map(({ din, dout, rank, aInput, bInput }) => ({ din, dout, rank, aInput, bInput })) };
}
