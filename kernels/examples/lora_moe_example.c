/*
 * Calling the personafuse kernels from C, without Node.
 *
 * Routes three tokens over a bank of four LoRA experts (topk_softmax), applies the mix
 * (lora_moe), and checks both against plain loops over the PEFT arrays.
 *
 *   cmake -S kernels -B build-kernels/release && cmake --build build-kernels/release
 *   cc -std=c99 -Ikernels/include kernels/examples/lora_moe_example.c \
 *      -Lbuild-kernels/release -lpersonafuse_kernels -Wl,-rpath,build-kernels/release -lm
 *
 * Prints the routes and outputs, then "lora_moe_example: OK" and exits 0 (1 on a mismatch).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "personafuse.h"

enum { E = 4, RANK = 3, DIN = 10, DOUT = 7, T = 3, K = 2 };

static unsigned int seed = 12345u;
static float uniform(void) { /* in [-1, 1) */
  seed = seed * 1664525u + 1013904223u;
  return (float)(seed >> 8) / 8388608.0f - 1.0f;
}

static int fail(const char* what, pf_status s) {
  fprintf(stderr, "%s failed: %s: %s\n", what, pf_status_name(s), pf_last_error());
  return 1;
}

int main(void) {
  /* PEFT layout: lora_A [E, rank, din], lora_B [E, dout, rank]; expert 3 has rank 1 */
  float a[E * RANK * DIN], b[E * DOUT * RANK], x[T * DIN], logits[T * E];
  const float scales[E] = {0.5f, 1.0f, 2.0f, 1.5f};
  const int32_t ranks[E] = {3, 2, 3, 1};
  size_t i;
  for (i = 0; i < sizeof a / sizeof a[0]; ++i) a[i] = uniform();
  for (i = 0; i < sizeof b / sizeof b[0]; ++i) b[i] = uniform();
  for (i = 0; i < sizeof x / sizeof x[0]; ++i) x[i] = uniform();
  for (i = 0; i < sizeof logits / sizeof logits[0]; ++i) logits[i] = 3.0f * uniform();

  pf_bank* bank = NULL;
  pf_status s = pf_bank_create(E, RANK, DIN, DOUT, PF_F32, a, b, scales, ranks, &bank);
  if (s != PF_OK) return fail("pf_bank_create", s);
  printf("bank: %d experts, rank %d, %d -> %d, %zu bytes; simd %s, %d threads\n", E, RANK, DIN, DOUT,
         pf_bank_bytes(bank), pf_simd_name(), pf_num_threads());

  /* route: softmax over the experts, keep the best two, renormalise */
  int32_t ids[T * K];
  float w[T * K];
  int64_t bad_row = -1;
  s = pf_topk_softmax(logits, T, E, K, 1, ids, w, &bad_row);
  if (s != PF_OK) return fail("pf_topk_softmax", s);

  /* apply the mix: y accumulates, so start from zeros */
  float y[T * DOUT];
  memset(y, 0, sizeof y);
  s = pf_lora_moe(bank, x, T, ids, w, K, y);
  if (s != PF_OK) return fail("pf_lora_moe", s);

  /* the same with loops */
  int ok = 1;
  double worst = 0.0;
  int t, j, q, o, e;
  for (t = 0; t < T; ++t) {
    const float* l = logits + t * E;
    double p[E], sum = 0.0, m = l[0], kept = 0.0;
    int best[K];
    for (e = 1; e < E; ++e) m = l[e] > m ? l[e] : m;
    for (e = 0; e < E; ++e) sum += p[e] = exp(l[e] - m);
    for (j = 0; j < K; ++j) { /* j-th largest logit, ties to the lower id */
      best[j] = -1;
      for (e = 0; e < E; ++e) {
        int taken = 0, u;
        for (u = 0; u < j; ++u) taken |= best[u] == e;
        if (!taken && (best[j] < 0 || l[e] > l[best[j]])) best[j] = e;
      }
      kept += p[best[j]] / sum;
    }
    printf("token %d: experts", t);
    for (j = 0; j < K; ++j) {
      const double ref = p[best[j]] / sum / kept;
      printf(" %d (%.4f)", ids[t * K + j], w[t * K + j]);
      if (ids[t * K + j] != best[j] || fabs(w[t * K + j] - ref) > 1e-6) ok = 0;
    }
    printf("\n  y =");
    for (o = 0; o < DOUT; ++o) {
      double ref = 0.0;
      for (j = 0; j < K; ++j) {
        e = best[j];
        for (q = 0; q < ranks[e]; ++q) {
          double h = 0.0;
          for (i = 0; i < DIN; ++i) h += (double)a[(e * RANK + q) * DIN + i] * x[t * DIN + i];
          ref += (double)w[t * K + j] * scales[e] * b[(e * DOUT + o) * RANK + q] * h;
        }
      }
      printf(" %+.5f", y[t * DOUT + o]);
      worst = fabs(y[t * DOUT + o] - ref) > worst ? fabs(y[t * DOUT + o] - ref) : worst;
    }
    printf("\n");
  }
  printf("lora_moe: largest difference from the loops %.3g\n", worst);
  if (worst > 1e-5) ok = 0;

  /* errors come back as a status and a message naming the argument; nothing aborts */
  s = pf_topk_softmax(logits, T, E, E + 1, 1, ids, w, NULL);
  printf("k = %d: %s: %s\n", E + 1, pf_status_name(s), pf_last_error());
  if (s != PF_ERR_ARGUMENT) ok = 0;

  pf_bank_destroy(bank);
  printf("lora_moe_example: %s\n", ok ? "OK" : "MISMATCH");
  return ok ? 0 : 1;
}
