/*
 * personafuse kernels: the C ABI.
 *
 * This header is the only face of kernels/. It has no Node or CUDA types, so the same
 * functions can be called from the N-API addon, from C/C++, Rust or Python ctypes.
 *
 * Conventions
 *   - Row-major, contiguous tensors; shapes are given in comments as [dim0, dim1, ...].
 *   - Every function validates its arguments before touching memory and returns a
 *     pf_status; on failure pf_last_error() gives a message naming the argument.
 *     Nothing here aborts the process.
 *   - Activations and accumulation are float32; LoRA weights may be f32, f16 or bf16.
 *   - Expert id -1 means "no expert" in that slot.
 */
#ifndef PERSONAFUSE_H
#define PERSONAFUSE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define PF_API __declspec(dllexport)
#else
#define PF_API __attribute__((visibility("default")))
#endif

typedef enum pf_status {
  PF_OK = 0,
  PF_ERR_ARGUMENT = 1,  /* a size, pointer, id or option is out of range */
  PF_ERR_VALUE = 2,     /* the data holds a value the op refuses (NaN logit, non-finite scale) */
  PF_ERR_MEMORY = 3,    /* an allocation failed */
  PF_ERR_BACKEND = 4    /* the backend (CUDA) reported an error */
} pf_status;

typedef enum pf_dtype { PF_F32 = 0, PF_F16 = 1, PF_BF16 = 2 } pf_dtype;

typedef enum pf_layout {
  PF_LAYOUT_IN_OUT = 0, /* W [din, dout]: y = x · W (torch.onnx MatMul initializers) */
  PF_LAYOUT_OUT_IN = 1  /* W [dout, din]: y = x · Wᵀ (nn.Linear, Gemm transB=1) */
} pf_layout;

/* A bank of E LoRA experts on one linear layer, as PEFT stores them:
 *   a      [experts, rank, din]  (lora_A of each expert)
 *   b      [experts, dout, rank] (lora_B of each expert)
 *   scales [experts]             (alpha / r, or alpha / sqrt(r) for rsLoRA); NULL = all 1
 *   ranks  [experts]             per-expert rank r_e <= rank; NULL = all `rank`
 * Rows of a and columns of b past r_e are never read. The bank keeps no pointer to the
 * caller's arrays after pf_bank_create returns (it repacks them). */
typedef struct pf_bank pf_bank;

PF_API pf_status pf_bank_create(int32_t experts, int32_t rank, int32_t din, int32_t dout,
                                pf_dtype dtype, const void* a, const void* b,
                                const float* scales, const int32_t* ranks, pf_bank** out);
PF_API void pf_bank_destroy(pf_bank* bank);
/* the bank's dimensions (any pointer may be NULL) */
PF_API void pf_bank_shape(const pf_bank* bank, int32_t* experts, int32_t* rank, int32_t* din,
                          int32_t* dout, pf_dtype* dtype);
/* bytes held by the bank's packed weights */
PF_API size_t pf_bank_bytes(const pf_bank* bank);

/* topk_softmax
 *   logits [T, E] -> ids [T, k] int32, weights [T, k] float32
 *   p = softmax(logits[t, :]) over all E; keep the k largest p, ordered by p descending,
 *   ties to the lower index; if renormalize, divide the k weights by their sum.
 *   A NaN or +Inf logit, or a row with no finite logit, is PF_ERR_VALUE; *bad_row (may be
 *   NULL) receives the row. 1 <= E <= 1024, 1 <= k <= E. */
PF_API pf_status pf_topk_softmax(const float* logits, int64_t T, int32_t E, int32_t k,
                                 int renormalize, int32_t* ids, float* weights,
                                 int64_t* bad_row);

/* lora_moe (SGMV/BGMV)
 *   x [T, din], ids [T, k], w [T, k], y [T, dout]
 *   for t, j: e = ids[t, j]; if e >= 0:
 *     y[t, :] += w[t, j] * s[e] * B_e[:, :r_e] · (A_e[:r_e, :] · x[t, :])
 *   y is accumulated into (the caller zeroes it for a fresh result).
 *   ids must lie in [-1, E). */
PF_API pf_status pf_lora_moe(const pf_bank* bank, const float* x, int64_t T, const int32_t* ids,
                             const float* w, int32_t k, float* y);

/* fold_experts: the mix of request i as one rank-R adapter, into slot slots[i]
 *   ids [B, k], w [B, k], slots [B] (NULL = identity; distinct, in [0, num_slots))
 *   a_out [num_slots, din, R], b_out [num_slots, R, dout], R >= k * rank
 *   A_cat[:, j*rank + q] = A_e[q, :]ᵀ            for q < r_e
 *   B_cat[j*rank + q, :] = w_j s_e B_e[:, q]ᵀ     for q < r_e
 *   every other column of A_cat / row of B_cat in a named slot is zero (id -1 blocks too);
 *   slots not named are left untouched. */
PF_API pf_status pf_fold_experts(const pf_bank* bank, const int32_t* ids, const float* w,
                                 int64_t B, int32_t k, const int32_t* slots, int64_t num_slots,
                                 int32_t R, float* a_out, float* b_out);

/* merge_experts: W' = W + Σ_j w_j s_e (B_e A_e)ᵀ, in place on W
 *   ids [n], w [n]; W [din, dout] (PF_LAYOUT_IN_OUT) or [dout, din] (PF_LAYOUT_OUT_IN). */
PF_API pf_status pf_merge_experts(const pf_bank* bank, const int32_t* ids, const float* w,
                                  int32_t n, float* W, pf_layout layout);

/* run-time facts and settings */
PF_API const char* pf_simd_name(void);        /* "avx512", "avx2", "neon" or "scalar" */
PF_API int pf_num_threads(void);
PF_API void pf_set_num_threads(int n);         /* n <= 0: the hardware concurrency */
/* force a SIMD level no higher than the named one ("scalar", "avx2", "avx512"); for tests */
PF_API pf_status pf_set_simd(const char* name);
PF_API const char* pf_last_error(void);        /* message of this thread's last failure */
PF_API const char* pf_status_name(pf_status s);

#ifdef __cplusplus
}
#endif
#endif /* PERSONAFUSE_H */
