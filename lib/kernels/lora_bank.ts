// LoraBank: E LoRA experts of one linear layer, packed once for the kernels.
//   a [experts, rank, din]  (PEFT lora_A of each expert)
//   b [experts, dout, rank] (PEFT lora_B of each expert)
//   scales [experts]  alpha / r (or alpha / sqrt(r) for rsLoRA); default 1
//   ranks  [experts]  per-expert rank r_e <= rank; rows/columns past r_e are never read
//   device 'cuda': packed and uploaded to the GPU; ops then take DeviceTensors (kernels.toDevice)
import { binding, DTYPE_CODES, NativeLoraBank } from './binding';
import { BankDtype, isFloat32Array, toBits } from './dtype';
import { DisposedError, typeError } from '../errors';

export interface LoraBankOptions {
  experts: number;
  rank: number;
  din: number;
  dout: number;
  /** f32 takes Float32Array; f16/bf16 take Uint16Array bits, or Float32Array (rounded here). */
  a: Float32Array | Uint16Array;
  b: Float32Array | Uint16Array;
  dtype?: BankDtype;
  scales?: Float32Array;
  ranks?: Int32Array;
  /** Where the packed weights live: 'cpu' (default) or 'cuda' (throws when no device is usable). */
  device?: 'cpu' | 'cuda';
}

export class LoraBank {
  readonly experts: number;
  readonly rank: number;
  readonly din: number;
  readonly dout: number;
  readonly dtype: BankDtype;
  readonly device: 'cpu' | 'cuda';
  /** Per-expert scale and rank as given (copies). */
  readonly scales: Float32Array;
  readonly ranks: Int32Array;
  #native: NativeLoraBank | undefined;

  constructor(options: LoraBankOptions) {
    if (typeof options !== 'object' || options === null) throw typeError('options', 'an options object', options);
    const dtype = options.dtype ?? 'f32';
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_CODES, dtype)) throw typeError('dtype', "one of 'f32', 'f16', 'bf16'", dtype);
    const bits = (v: unknown) => (dtype !== 'f32' && isFloat32Array(v) ? toBits(v, dtype) : v);
    this.#native = new (binding().LoraBank)({
      experts: options.experts,
      rank: options.rank,
      din: options.din,
      dout: options.dout,
      dtype: DTYPE_CODES[dtype],
      a: bits(options.a) as Float32Array | Uint16Array,
      b: bits(options.b) as Float32Array | Uint16Array,
      scales: options.scales,
      ranks: options.ranks,
      // only when given, so a CPU bank reaches the addon exactly as before
      ...(options.device === undefined ? {} : { device: options.device }),
    });
    this.experts = options.experts;
    this.rank = options.rank;
    this.din = options.din;
    this.dout = options.dout;
    this.dtype = dtype;
    this.device = options.device === 'cuda' ? 'cuda' : 'cpu';
    this.scales = options.scales ? Float32Array.from(options.scales) : new Float32Array(this.experts).fill(1);
    this.ranks = options.ranks ? Int32Array.from(options.ranks) : new Int32Array(this.experts).fill(this.rank);
  }

  /** The native handle; throws DisposedError after dispose(). */
  get native(): NativeLoraBank {
    if (!this.#native) throw new DisposedError('LoraBank');
    return this.#native;
  }

  /** Bytes held by the packed weights (0 once disposed). */
  get bytes(): number {
    return this.#native ? this.#native.bytes() : 0;
  }

  /** Frees the packed weights now (calls still running keep them until they finish). */
  dispose(): void {
    this.#native?.dispose();
    this.#native = undefined;
  }
}

/** Accepts a LoraBank or throws a TypeError naming `bank`. */
export function nativeBank(bank: unknown): NativeLoraBank {
  if (!(bank instanceof LoraBank)) throw typeError('bank', 'a LoraBank (kernels.createLoraBank)', bank);
  return bank.native;
}
