// glibc malloc's mmap and trim thresholds for the whole process (native/allocator.cc).
//
// onnxruntime-node hands back every output of a run in a freshly allocated buffer; a decode step's
// outputs are the batch's whole KV cache. With glibc's defaults, allocations past the mmap threshold
// get fresh pages and the free memory at the top of a heap goes back to the kernel, so every step
// page-faults its outputs in again. Measured on the demo model, one onnxruntime thread, KV width 100:
//
//   batch 16   default  18.0 ms a step, 828 page faults, 6.7 ms of system time
//              tuned     5.9 ms a step,   2 page faults, 0.1 ms
//   batch 8    default   4.5 ms,  69 faults        tuned  3.3 ms, 3 faults
//
// and through `serve` at 32 clients (two replicas of 16 rows), 1,678-1,721 tok/s against 1,951-2,079
// tuned, with 20-80 MB more resident memory (a heap keeps up to trimThreshold of free memory
// instead of giving it back). Those figures predate the engine's own KV cache (lib/decoder/kv_cache.ts):
// a decode step now returns only its new columns, and the tuning matters for the outputs that are
// still large (a prompt's whole new cache, a large vocabulary's logits). Measured again through
// `serve` after that change, the tuning bought no speed on the demo or the 1b slice and kept 40-300
// MiB more resident (docs/design.md §4), so the CLI's commands that run a model apply it only with
// --tune-malloc (and never over an environment that sets malloc's tuning); a program serving from the
// library may call it once, before loading.
import { binding } from './binding';

export interface AllocatorTuning {
  /** allocations from this size up get their own mapping (at most 32 MiB, mallopt's ceiling) */
  mmapThreshold: number;
  /** free memory a heap keeps at its top before giving it back */
  trimThreshold: number;
}

export const ALLOCATOR_TUNING: AllocatorTuning = { mmapThreshold: 32 * 2 ** 20, trimThreshold: 256 * 2 ** 20 };

/** Sets the thresholds process-wide; true when they took (glibc), false where malloc has no such settings. */
export function tuneAllocator(tuning: AllocatorTuning = ALLOCATOR_TUNING): boolean {
  return binding().tuneAllocator(tuning.mmapThreshold, tuning.trimThreshold);
}
