// topkSoftmax: routing probabilities and the k best experts per row.
//   logits [T, experts] -> ids [T, k] (best first, ties to the lower id), weights [T, k]
//   weights = softmax over all experts, then (renormalize) divided by their sum over the k.
// logits as a DeviceTensor: runs on the CUDA device, ids and weights come back as DeviceTensors.
import { binding, TopkResult } from './binding';
import type { DeviceTensor } from './device';

export interface DeviceTopkResult {
  ids: DeviceTensor<'i32'>;
  weights: DeviceTensor<'f32'>;
}

export interface TopkOptions {
  renormalize?: boolean;
}

export function topkSoftmax(logits: Float32Array, experts: number, k: number, opts?: TopkOptions): TopkResult;
export function topkSoftmax(logits: DeviceTensor<'f32'>, experts: number, k: number, opts?: TopkOptions): DeviceTopkResult;
export function topkSoftmax(
  logits: Float32Array | DeviceTensor<'f32'>, experts: number, k: number, opts?: TopkOptions,
): TopkResult | DeviceTopkResult;
export function topkSoftmax(
  logits: Float32Array | DeviceTensor<'f32'>, experts: number, k: number, opts: TopkOptions = {},
): TopkResult | DeviceTopkResult {
  return binding().topkSoftmax(logits, experts, k, opts?.renormalize ?? false) as TopkResult | DeviceTopkResult;
}

// async: an argument error rejects the Promise instead of throwing.
export async function topkSoftmaxAsync(
  logits: Float32Array, experts: number, k: number, opts?: TopkOptions): Promise<TopkResult>;
export async function topkSoftmaxAsync(
  logits: DeviceTensor<'f32'>, experts: number, k: number, opts?: TopkOptions): Promise<DeviceTopkResult>;
export async function topkSoftmaxAsync(
  logits: Float32Array | DeviceTensor<'f32'>, experts: number, k: number, opts?: TopkOptions,
): Promise<TopkResult | DeviceTopkResult>;
export async function topkSoftmaxAsync(
  logits: Float32Array | DeviceTensor<'f32'>, experts: number, k: number, opts: TopkOptions = {},
): Promise<TopkResult | DeviceTopkResult> {
  return (await binding().topkSoftmaxAsync(logits, experts, k, opts?.renormalize ?? false)) as TopkResult | DeviceTopkResult;
}
