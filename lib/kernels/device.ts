// Device memory for the CUDA backend: kernels.toDevice(typedArray) -> DeviceTensor.
// Data that stays on the GPU across calls: pass DeviceTensors (and a bank created with
// device: 'cuda') to any op and it runs on the GPU, returning DeviceTensors for the outputs it
// allocates. The CUDA library is opened on first use; without a usable device, toDevice throws
// an Error that says why (the same text as info().cuda.reason).
import { binding, NativeDeviceTensor } from './binding';

/** Element type of a DeviceTensor: Float32Array, Int32Array or Uint16Array (f16/bf16 bits). */
export type DeviceDtype = 'f32' | 'i32' | 'u16';

/** The host typed array a DeviceTensor of each dtype comes back as. */
export type HostArrayOf<D extends DeviceDtype> = D extends 'f32' ? Float32Array : D extends 'i32' ? Int32Array : Uint16Array;

/** Device memory holding `length` elements of `dtype`, owned by this object. */
export interface DeviceTensor<D extends DeviceDtype = DeviceDtype> extends NativeDeviceTensor {
  readonly dtype: D;
  /** A new host typed array of the same type, after every op already queued on the stream. */
  toHost(): HostArrayOf<D>;
}

export type DeviceF32 = DeviceTensor<'f32'>;
export type DeviceI32 = DeviceTensor<'i32'>;

/** An op's array argument: a host typed array (CPU bank) or a DeviceTensor (bank on cuda). */
export type F32Input = Float32Array | DeviceF32;
export type I32Input = Int32Array | DeviceI32;

/** Copies a typed array to the CUDA device (returns when the copy is done). */
export function toDevice(array: Float32Array): DeviceTensor<'f32'>;
export function toDevice(array: Int32Array): DeviceTensor<'i32'>;
export function toDevice(array: Uint16Array): DeviceTensor<'u16'>;
export function toDevice(array: Float32Array | Int32Array | Uint16Array): DeviceTensor;
export function toDevice(array: Float32Array | Int32Array | Uint16Array): DeviceTensor {
  return new (binding().DeviceTensor)(array) as DeviceTensor;
}

/** Whether v is a DeviceTensor (disposed ones too). */
export function isDeviceTensor(v: unknown): v is DeviceTensor {
  return typeof v === 'object' && v !== null && v instanceof binding().DeviceTensor;
}
