// Loaded PEFT adapters → kernels LoraBanks, one per adapted (layer, module) target, experts in load order.
//
//   bank.a [E, rank, din]   expert e's lora_A in rows 0..r_e-1, zeros after
//   bank.b [E, dout, rank]  expert e's lora_B in columns 0..r_e-1, zeros after
//   rank = max_e r_e;  ranks[e] = r_e (0 where expert e lacks the module: it adds nothing there)
//   scales[e] = expert e's PEFT scale for that module (alpha / r or alpha / sqrt(r)); 0 where it lacks it
//   dtype: the experts' common dtype, f32 when they differ (or options.dtype)
import { createLoraBank, LoraBank } from '../kernels';
import { BankDtype, fromBits, toBits } from '../kernels/dtype';
import { DisposedError, rangeError, typeError } from '../errors';
import { PeftAdapter, PeftModule } from './peft';

export interface BankBuildOptions {
  /** Convert every expert to this dtype (default: their common dtype, f32 when they differ). */
  dtype?: BankDtype;
}

/**
 * Stacks one target's modules, one entry per expert (undefined where the expert lacks the module), into a
 * LoraBank of `din` → `dout`. Every module present must have exactly that din and dout.
 */
export function buildLoraBank(
  parts: readonly (PeftModule | undefined | null)[], din: number, dout: number, options: BankBuildOptions = {},
): LoraBank {
  if (!Array.isArray(parts) || parts.length === 0) throw typeError('parts', 'a non-empty array of PeftModule or undefined', parts);
  const present = parts.filter((p): p is PeftModule => !!p);
  if (present.length === 0) {
    throw rangeError('parts', 'at least one expert with this module (a bank needs rank >= 1)', `${parts.length} experts without it`);
  }
  for (const p of present) {
    if (p.din !== din || p.dout !== dout) {
      throw rangeError(`module '${p.path}'`, `din ${din} and dout ${dout} (the target's)`, `din ${p.din} and dout ${p.dout}`);
    }
  }
  const dtype = options.dtype ?? commonDtype(present.map((p) => p.dtype));
  const experts = parts.length;
  const rank = Math.max(...present.map((p) => p.rank));
  const a = dtype === 'f32' ? new Float32Array(experts * rank * din) : new Uint16Array(experts * rank * din);
  const b = dtype === 'f32' ? new Float32Array(experts * dout * rank) : new Uint16Array(experts * dout * rank);
  const scales = new Float32Array(experts);
  const ranks = new Int32Array(experts);
  parts.forEach((p, e) => {
    if (!p) return;
    const av = convert(p.a, p.dtype, dtype);
    const bv = convert(p.b, p.dtype, dtype);
    a.set(av, e * rank * din); // A_e [r_e, din] is the first r_e rows of [rank, din]
    for (let o = 0; o < dout; o++) {
      b.set(bv.subarray(o * p.rank, (o + 1) * p.rank), (e * dout + o) * rank); // B_e row o: first r_e columns
    }
    scales[e] = p.scale;
    ranks[e] = p.rank;
  });
  return createLoraBank({ experts, rank, din, dout, a, b, dtype, scales, ranks });
}

export interface AdapterBankTarget {
  /** Module path, e.g. 'model.layers.0.self_attn.q_proj'. */
  path: string;
  layer: number | null;
  module: string;
  din: number;
  dout: number;
  /** The bank's rank: the largest expert rank here. */
  rank: number;
  /** Per expert (load order): its rank here (0 = lacks the module) and its PEFT scale (0 where it lacks it). */
  ranks: Int32Array;
  scales: Float32Array;
  bank: LoraBank;
}

/** Every adapted target of N experts, each a LoraBank with the experts in load order. */
export class AdapterBank {
  readonly experts: readonly string[];
  readonly dtype: BankDtype;
  #targets: Map<string, AdapterBankTarget> | undefined;

  constructor(experts: readonly string[], dtype: BankDtype, targets: Map<string, AdapterBankTarget>) {
    this.experts = experts;
    this.dtype = dtype;
    this.#targets = targets;
  }

  /** Targets by module path, in model order; throws DisposedError after dispose(). */
  get targets(): Map<string, AdapterBankTarget> {
    if (!this.#targets) throw new DisposedError('AdapterBank');
    return this.#targets;
  }

  /** The index of an expert in every bank (its id for kernels.loraMoe / foldExperts), or -1. */
  expertIndex(name: string): number {
    return this.experts.indexOf(name);
  }

  get bytes(): number {
    let n = 0;
    for (const t of this.#targets?.values() ?? []) n += t.bank.bytes;
    return n;
  }

  dispose(): void {
    for (const t of this.#targets?.values() ?? []) t.bank.dispose();
    this.#targets = undefined;
  }
}

/** Stacks loaded adapters (experts in the given order) into one LoraBank per target any of them adapts. */
export function buildAdapterBank(adapters: readonly PeftAdapter[], options: BankBuildOptions = {}): AdapterBank {
  if (!Array.isArray(adapters) || adapters.length === 0) throw typeError('adapters', 'a non-empty array of loaded adapters', adapters);
  const names = adapters.map((a) => a.name);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate !== undefined) throw rangeError('adapters', 'experts with distinct names', `'${duplicate}' twice`);
  const dtype = options.dtype ?? commonDtype(adapters.map((a) => a.dtype));
  const paths = new Map<string, PeftModule>(); // first expert's module of each path: its din/dout rule
  for (const a of adapters) {
    for (const [p, m] of a.modules) {
      const first = paths.get(p);
      if (!first) paths.set(p, m);
      else if (first.din !== m.din || first.dout !== m.dout) {
        const owner = adapters.find((x) => x.modules.get(p) === first)!.name;
        throw rangeError(`module '${p}' of adapter '${a.name}'`,
          `din ${first.din} and dout ${first.dout} (as in adapter '${owner}': adapters of one base model)`,
          `din ${m.din} and dout ${m.dout}`);
      }
    }
  }
  const ordered = [...paths.values()].sort((x, y) => x.path.localeCompare(y.path, 'en', { numeric: true }));
  const targets = new Map<string, AdapterBankTarget>();
  try {
    for (const m of ordered) {
      const parts = adapters.map((a) => a.modules.get(m.path));
      const bank = buildLoraBank(parts, m.din, m.dout, { dtype });
      targets.set(m.path, {
        path: m.path, layer: m.layer, module: m.module, din: m.din, dout: m.dout, rank: bank.rank,
        ranks: bank.ranks, scales: bank.scales, bank,
      });
    }
  } catch (err) {
    for (const t of targets.values()) t.bank.dispose();
    throw err;
  }
  return new AdapterBank(names, dtype, targets);
}

function commonDtype(dtypes: BankDtype[]): BankDtype {
  return dtypes.every((d) => d === dtypes[0]) ? dtypes[0] : 'f32';
}

/** Values in `to`'s representation (Float32Array for f32, Uint16Array bits otherwise); no copy when equal. */
function convert(v: Float32Array | Uint16Array, from: BankDtype, to: BankDtype): Float32Array | Uint16Array {
  if (from === to) return v;
  const f32 = from === 'f32' ? (v as Float32Array) : fromBits(v as Uint16Array, from);
  return to === 'f32' ? f32 : toBits(f32, to);
}
