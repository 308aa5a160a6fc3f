/*
 * personafuse kernels on CUDA: the C ABI of libpersonafuse_cuda.
 *
 * The operations of personafuse.h on device memory, plus the few device, memory, stream and
 * event helpers a caller needs to use them without the CUDA toolkit (C, Rust, Python ctypes,
 * a Node addon that opens this library as a plugin). Plain C: no CUDA or C++ types.
 *
 * Names
 *   Every symbol is pf_cuda_*, so this library and the CPU library (libpersonafuse_kernels,
 *   pf_*) load side by side in one process, link into one program, or open with dlopen in
 *   either order. A plugin loader needs one symbol: pf_cuda_get_api(PF_CUDA_ABI_VERSION)
 *   returns a table of every function below (NULL when the library speaks another ABI).
 *
 * Loading
 *   The CUDA runtime is linked statically and hidden. The library needs no libcudart and no
 *   driver to load; without a driver or GPU, pf_cuda_device_count reports 0 (PF_OK) and
 *   pf_cuda_last_error says why, and every other call returns PF_ERR_BACKEND.
 *
 * Conventions, besides those of personafuse.h
 *   - Each op takes the CPU op's arguments with a pf_cuda_bank in place of the pf_bank, every
 *     array a DEVICE pointer (pf_cuda_malloc, cudaMalloc, or mapped pinned host memory), and a
 *     trailing stream (NULL = the legacy default stream). Scalars and bad_row stay on the host.
 *   - Ops run on the calling thread's current device (pf_cuda_set_device). A bank lives on the
 *     device that was current when it was created; using it on another is PF_ERR_ARGUMENT.
 *   - Argument checks happen on the host before anything is queued, as on the CPU, and name
 *     the argument. With the option "check_pointers" on (default), each array must be device-
 *     accessible and, where CUDA can say, long enough: a host array is PF_ERR_ARGUMENT, not a
 *     crash of the CUDA context.
 *   - Data checks (ids in [-1, E), finite weights, logits rows, distinct slots) are done by the
 *     kernels, which never read or write out of bounds whatever the data holds: an id out of
 *     range counts as -1, a bad logits row gets ids -1 and weights 0, a repeated slot is written
 *     twice. The first fault (in the CPU op's check order) is recorded on the device.
 *       "sync_checks" = 1 (default): each op waits for its stream and returns the fault exactly
 *         as the CPU op would (same status, same message, bad_row filled).
 *       "sync_checks" = 0: ops return once their work is queued; pf_cuda_check(stream) waits
 *         and reports (then clears) a fault recorded since the last check on this device.
 *   - A CUDA error becomes PF_ERR_BACKEND (PF_ERR_MEMORY for failed allocations) with CUDA's
 *     error name and text in pf_cuda_last_error. Nothing aborts the process.
 *   - Results are deterministic: the same inputs give the same bits on the same device.
 *
 * Thread safety: every function may be called from any thread. pf_cuda_last_error is per
 * thread. Options are process-wide.
 */
#ifndef PERSONAFUSE_CUDA_H
#define PERSONAFUSE_CUDA_H

#include "personafuse.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_CUDA_ABI_VERSION 1

typedef struct pf_cuda_bank pf_cuda_bank;
typedef struct pf_cuda_stream_opaque* pf_cuda_stream; /* a cudaStream_t */
typedef struct pf_cuda_event_opaque* pf_cuda_event;   /* a cudaEvent_t */

/* ---- library ---------------------------------------------------------------------------- */
PF_API const char* pf_cuda_last_error(void);        /* message of this thread's last failure */
PF_API const char* pf_cuda_status_name(pf_status s);
/* "personafuse-cuda <version>; CUDA runtime <v> (static); built for <archs>" */
PF_API const char* pf_cuda_build_info(void);
/* Options (process-wide):
 *   "sync_checks"      1 (default) or 0, see Conventions
 *   "check_pointers"   1 (default) or 0: skip the per-array pointer query (saves ~1 us per array)
 *   "moe_prefill_min_tokens"  T from which lora_moe groups tokens by expert and uses tensor
 *                      cores (f16/bf16 banks, rank <= 128, compute capability >= 8.0);
 *                      default 2048 (see status.cu: on an H200 the grouped path wins at
 *                      T 4096 by 1.7-2.1x and loses at T <= 256); -1 = never;
 *                      0 = always when possible
 *   "moe_fused_max_tokens"  T up to which lora_moe runs as one kernel (shrink and expand
 *                      fused, no scratch memory; for decode steps); default 0 = never, until
 *                      a GPU benchmark sets it (kernels/cuda/README.md). Where both apply,
 *                      moe_prefill_min_tokens wins.
 *   "moe_dense_max_columns"  from moe_prefill_min_tokens on, banks of at most this many
 *                      columns (C = sum of the experts' ranks, at most 256, E <= 64) take the
 *                      dense tensor-core path: every expert multiplied, each token's gates as a
 *                      mask, so x is read and y written once whatever k; default 0 = never,
 *                      until a GPU benchmark sets it. */
PF_API pf_status pf_cuda_set_option(const char* name, int64_t value);
PF_API pf_status pf_cuda_get_option(const char* name, int64_t* value);

/* ---- devices ---------------------------------------------------------------------------- */
PF_API pf_status pf_cuda_device_count(int32_t* count);
PF_API pf_status pf_cuda_device_name(int32_t device, char* name, size_t size);
PF_API pf_status pf_cuda_device_capability(int32_t device, int32_t* major, int32_t* minor);
PF_API pf_status pf_cuda_device_memory(int32_t device, size_t* free_bytes, size_t* total_bytes);
PF_API pf_status pf_cuda_set_device(int32_t device);  /* for the calling thread */
PF_API pf_status pf_cuda_get_device(int32_t* device);
PF_API pf_status pf_cuda_device_synchronize(void);

/* ---- memory: h2d and d2h return when the copy is done; d2d and memset are queued -------- */
PF_API pf_status pf_cuda_malloc(size_t bytes, void** out);
PF_API pf_status pf_cuda_free(void* ptr);  /* NULL is a no-op */
PF_API pf_status pf_cuda_memcpy_h2d(void* dst, const void* src, size_t bytes, pf_cuda_stream stream);
PF_API pf_status pf_cuda_memcpy_d2h(void* dst, const void* src, size_t bytes, pf_cuda_stream stream);
PF_API pf_status pf_cuda_memcpy_d2d(void* dst, const void* src, size_t bytes, pf_cuda_stream stream);
PF_API pf_status pf_cuda_memset(void* dst, int byte_value, size_t bytes, pf_cuda_stream stream);

/* ---- streams and events (events time work: elapsed waits for `end`) --------------------- */
PF_API pf_status pf_cuda_stream_create(pf_cuda_stream* out);  /* non-blocking stream */
PF_API pf_status pf_cuda_stream_destroy(pf_cuda_stream stream);
PF_API pf_status pf_cuda_stream_sync(pf_cuda_stream stream);
PF_API pf_status pf_cuda_event_create(pf_cuda_event* out);
PF_API pf_status pf_cuda_event_destroy(pf_cuda_event event);
PF_API pf_status pf_cuda_event_record(pf_cuda_event event, pf_cuda_stream stream);
PF_API pf_status pf_cuda_event_elapsed_ms(pf_cuda_event start, pf_cuda_event end, float* ms);
/* waits for the stream, then reports and clears a fault recorded with sync_checks = 0 */
PF_API pf_status pf_cuda_check(pf_cuda_stream stream);

/* ---- the bank --------------------------------------------------------------------------- */
/* As pf_bank_create, from HOST arrays in PEFT layout (a [E, rank, din], b [E, dout, rank]);
 * the packed bank is uploaded to the current device before this returns. On the device each
 * expert is stored rank-outer, A_e [r_e, din] and B_eᵀ [r_e, dout], each row padded to 16
 * bytes, so every kernel reads weight rows with aligned 16-byte loads. */
PF_API pf_status pf_cuda_bank_create(int32_t experts, int32_t rank, int32_t din, int32_t dout,
                                     pf_dtype dtype, const void* a, const void* b,
                                     const float* scales, const int32_t* ranks,
                                     pf_cuda_bank** out);
PF_API void pf_cuda_bank_destroy(pf_cuda_bank* bank);
PF_API void pf_cuda_bank_shape(const pf_cuda_bank* bank, int32_t* experts, int32_t* rank,
                               int32_t* din, int32_t* dout, pf_dtype* dtype);
PF_API size_t pf_cuda_bank_bytes(const pf_cuda_bank* bank);  /* device bytes of its weights */

/* ---- ops: the maths, shapes and error cases of the pf_* op of the same name ------------- */
/* logits [T, E], ids [T, k], weights [T, k] on the device; bad_row on the host (or NULL). */
PF_API pf_status pf_cuda_topk_softmax(const float* logits, int64_t T, int32_t E, int32_t k,
                                      int renormalize, int32_t* ids, float* weights,
                                      int64_t* bad_row, pf_cuda_stream stream);
/* x [T, din], ids [T, k], w [T, k], y [T, dout] (accumulated into). Small T: per (token,
 * expert) shrink and expand passes (16-byte weight loads, warp reductions), as two kernels,
 * or as one up to moe_fused_max_tokens. From
 * moe_prefill_min_tokens on: tokens grouped by expert per slot, a shrink kernel split over
 * din and one gate -> expand kernel per slot split over dout (tensor cores; the
 * f32 operand is split in two f16/bf16 parts, so results keep about f32 accuracy; with f16
 * banks this path needs |x| < 65504, as an f16 model's activations are). */
PF_API pf_status pf_cuda_lora_moe(const pf_cuda_bank* bank, const float* x, int64_t T,
                                  const int32_t* ids, const float* w, int32_t k, float* y,
                                  pf_cuda_stream stream);
/* ids [B, k], w [B, k], slots [B] or NULL, a_out [num_slots, din, R], b_out [num_slots, R, dout] */
PF_API pf_status pf_cuda_fold_experts(const pf_cuda_bank* bank, const int32_t* ids,
                                      const float* w, int64_t B, int32_t k, const int32_t* slots,
                                      int64_t num_slots, int32_t R, float* a_out, float* b_out,
                                      pf_cuda_stream stream);
/* ids [n], w [n], W [din, dout] or [dout, din] */
PF_API pf_status pf_cuda_merge_experts(const pf_cuda_bank* bank, const int32_t* ids,
                                       const float* w, int32_t n, float* W, pf_layout layout,
                                       pf_cuda_stream stream);

/* ---- the plugin table ------------------------------------------------------------------- */
typedef struct pf_cuda_api {
  uint32_t abi_version; /* PF_CUDA_ABI_VERSION */
  uint32_t size;        /* sizeof(pf_cuda_api) of the library; later versions only append */
  const char* (*last_error)(void);
  const char* (*status_name)(pf_status);
  const char* (*build_info)(void);
  pf_status (*set_option)(const char*, int64_t);
  pf_status (*get_option)(const char*, int64_t*);
  pf_status (*device_count)(int32_t*);
  pf_status (*device_name)(int32_t, char*, size_t);
  pf_status (*device_capability)(int32_t, int32_t*, int32_t*);
  pf_status (*device_memory)(int32_t, size_t*, size_t*);
  pf_status (*set_device)(int32_t);
  pf_status (*get_device)(int32_t*);
  pf_status (*device_synchronize)(void);
  pf_status (*malloc_)(size_t, void**);
  pf_status (*free_)(void*);
  pf_status (*memcpy_h2d)(void*, const void*, size_t, pf_cuda_stream);
  pf_status (*memcpy_d2h)(void*, const void*, size_t, pf_cuda_stream);
  pf_status (*memcpy_d2d)(void*, const void*, size_t, pf_cuda_stream);
  pf_status (*memset_)(void*, int, size_t, pf_cuda_stream);
  pf_status (*stream_create)(pf_cuda_stream*);
  pf_status (*stream_destroy)(pf_cuda_stream);
  pf_status (*stream_sync)(pf_cuda_stream);
  pf_status (*event_create)(pf_cuda_event*);
  pf_status (*event_destroy)(pf_cuda_event);
  pf_status (*event_record)(pf_cuda_event, pf_cuda_stream);
  pf_status (*event_elapsed_ms)(pf_cuda_event, pf_cuda_event, float*);
  pf_status (*check)(pf_cuda_stream);
  pf_status (*bank_create)(int32_t, int32_t, int32_t, int32_t, pf_dtype, const void*, const void*,
                           const float*, const int32_t*, pf_cuda_bank**);
  void (*bank_destroy)(pf_cuda_bank*);
  void (*bank_shape)(const pf_cuda_bank*, int32_t*, int32_t*, int32_t*, int32_t*, pf_dtype*);
  size_t (*bank_bytes)(const pf_cuda_bank*);
  pf_status (*topk_softmax)(const float*, int64_t, int32_t, int32_t, int, int32_t*, float*,
                            int64_t*, pf_cuda_stream);
  pf_status (*lora_moe)(const pf_cuda_bank*, const float*, int64_t, const int32_t*, const float*,
                        int32_t, float*, pf_cuda_stream);
  pf_status (*fold_experts)(const pf_cuda_bank*, const int32_t*, const float*, int64_t, int32_t,
                            const int32_t*, int64_t, int32_t, float*, float*, pf_cuda_stream);
  pf_status (*merge_experts)(const pf_cuda_bank*, const int32_t*, const float*, int32_t, float*,
                             pf_layout, pf_cuda_stream);
} pf_cuda_api;

/* The table for ABI `abi_version`, or NULL if this library does not speak it. */
PF_API const pf_cuda_api* pf_cuda_get_api(uint32_t abi_version);
typedef const pf_cuda_api* (*pf_cuda_get_api_fn)(uint32_t abi_version);

#ifdef __cplusplus
}
#endif
#endif /* PERSONAFUSE_CUDA_H */
