// The typed kernel API, exported from the package root as `kernels`.
import { LoraBank, LoraBankOptions } from './lora_bank';

export { info, setThreads, setSimd, setCudaOption, getCudaOption } from './info';
export { tuneAllocator, ALLOCATOR_TUNING } from './allocator';
export type { AllocatorTuning } from './allocator';
export type { KernelInfo, CudaInfo, CudaOption } from './info';
export { toDevice, isDeviceTensor } from './device';
export type { DeviceTensor, DeviceDtype, DeviceF32, DeviceI32, HostArrayOf } from './device';
export { topkSoftmax, topkSoftmaxAsync } from './topk_softmax';
export type { TopkOptions, DeviceTopkResult } from './topk_softmax';
export { loraMoe, loraMoeAsync } from './lora_moe';
export type { LoraMoeOptions } from './lora_moe';
export { foldExperts, foldExpertsAsync } from './fold_experts';
export type { FoldOutput } from './fold_experts';
export { mergeExperts, mergeExpertsAsync } from './merge_experts';
export type { MergeOptions } from './merge_experts';
export { LoraBank } from './lora_bank';
export type { LoraBankOptions } from './lora_bank';
export type { BankDtype } from './dtype';
export { f16BitsToF32, f32ToF16Bits, bf16BitsToF32, f32ToBf16Bits, fromBits, toBits, toFloat64 } from './dtype';

export function createLoraBank(options: LoraBankOptions): LoraBank {
  return new LoraBank(options);
}
