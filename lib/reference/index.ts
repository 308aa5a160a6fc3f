// Pure-TypeScript float64 references of every kernel: the oracle of the tests and the naive
// baseline of the benchmarks. Straight loops of each op's definition, nothing clever.
export { refBank } from './bank';
export type { RefBank, RefBankOptions } from './bank';
export { refTopkSoftmax } from './topk_softmax';
export { refLoraMoe } from './lora_moe';
export { refFoldExperts } from './fold_experts';
export { refMergeExperts } from './merge_experts';
