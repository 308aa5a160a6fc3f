// Per-row persona mixes for the bank form of injection (lib/onnx/inject.ts): the whole bank is in
// the graph, so a row's mix is just its expert weights, one row of persona_gates [batch, E].
// Joining costs writing E floats (no fold), leaving a copy of E floats.
import * as ort from 'onnxruntime-node';
import type { MixEntries, RowMixes } from './mix_slots';

export interface GateInput {
  /** the graph input's name (persona_gates) */
  input: string;
  experts: number;
}

export class GateSlots implements RowMixes {
  readonly #gate: GateInput;
  #rows = new Float32Array(0);

  constructor(gate: GateInput) {
    this.#gate = gate;
  }

  set(slot: number, entries: MixEntries): void {
    const E = this.#gate.experts;
    if ((slot + 1) * E > this.#rows.length) {
      const grown = new Float32Array(Math.max(slot + 1, 2 * (this.#rows.length / E || 0), 4) * E);
      grown.set(this.#rows);
      this.#rows = grown;
    }
    writeGateRow(this.#rows.subarray(slot * E, (slot + 1) * E), entries);
  }

  release(slot: number): void {
    const E = this.#gate.experts;
    if ((slot + 1) * E <= this.#rows.length) this.#rows.fill(0, slot * E, (slot + 1) * E);
  }

  move(from: number, to: number): void {
    if (from === to) return;
    const E = this.#gate.experts;
    this.#rows.copyWithin(to * E, from * E, (from + 1) * E);
    this.release(from);
  }

  feeds(start: number, count: number): Record<string, ort.Tensor> {
    const E = this.#gate.experts;
    return { [this.#gate.input]: new ort.Tensor('float32', this.#rows.subarray(start * E, (start + count) * E), [count, E]) };
  }
}

/** A row of gates: each expert's weight in the mix, 0 for the others (an expert named twice adds up). */
export function writeGateRow(row: Float32Array, entries: MixEntries): void {
  row.fill(0);
  for (const [id, w] of entries) if (id >= 0) row[id] += w;
}
