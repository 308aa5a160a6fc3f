// The reference's view of a LoRA bank: every weight as float64, in PEFT layout.
import { BankDtype, isFloat32Array, toBits, toFloat64 } from '../kernels/dtype';

export interface RefBankOptions {
  experts: number;
  rank: number;
  din: number;
  dout: number;
  a: Float32Array | Uint16Array;
  b: Float32Array | Uint16Array;
  dtype?: BankDtype;
  scales?: ArrayLike<number>;
  ranks?: ArrayLike<number>;
}

export interface RefBank {
  experts: number;
  rank: number;
  din: number;
  dout: number;
  a: Float64Array; // [E, rank, din]
  b: Float64Array; // [E, dout, rank]
  scales: Float64Array;
  ranks: Int32Array;
}

/** Same inputs as kernels.createLoraBank; 16-bit dtypes given as Float32Array are rounded the same way. */
export function refBank(o: RefBankOptions): RefBank {
  const dtype = o.dtype ?? 'f32';
  const values = (t: Float32Array | Uint16Array) =>
    toFloat64(dtype !== 'f32' && isFloat32Array(t) ? toBits(t, dtype) : t, dtype);
  return {
    experts: o.experts,
    rank: o.rank,
    din: o.din,
    dout: o.dout,
    a: values(o.a),
    b: values(o.b),
    scales: o.scales ? Float64Array.from(o.scales) : new Float64Array(o.experts).fill(1),
    ranks: o.ranks ? Int32Array.from(o.ranks) : new Int32Array(o.experts).fill(o.rank),
  };
}
