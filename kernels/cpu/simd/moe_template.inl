// lora_moe's two register-blocked micro-kernels, written once over the vector traits V (see
// gemv_template.inl for V's members; that file is included first and supplies load_m).
// Tokens are given as row pointers, so a kernel can run over the tokens of one expert wherever
// they sit in the batch (SGMV: every weight load feeds all the tokens routed to it).
//
// shrink: for t < nt, q < re:
//   h[t][q] = (p0 + p1) + (p2 + p3),   p_s = Σ_{i ≡ s (mod 4), ascending} x[t][i] * at[i*re + q]
//   (each p_s a chain of FMAs from 0). Few tokens: the four chains run side by side (ILP).
//   Many tokens: the chains of one residue run one after another over a chunk of din that
//   stays in L1 (12 tokens x 1 vector = 12 accumulators, 12 FMAs per weight-vector load).
//   Both forms do the same operations per output, so the results are bit-identical.
// expand: for t < nt, o0 <= o < o1:
//   acc = y[t][o];  for q < re: acc = fma(g[t][q], bt[q*ldb + o], acc);  y[t][o] = acc
//   (MT tokens x NV vectors of accumulators; the chain per output is fixed, so neither the
//   token blocking nor the column split changes a bit).

// Shrink blocking: NV vectors of rank columns (16 columns: AVX-512 1, AVX2 2, scalar capped at 4)
// times MT tokens of accumulators, within a budget of 12 (32 registers) or 4 (16 registers);
// blocks of at most kShrinkMTInterleaved tokens keep the 4 chains side by side (4x accumulators).
constexpr int kShrinkNV = 16 / V::W > 4 ? 4 : (16 / V::W < 1 ? 1 : 16 / V::W);
constexpr int kShrinkBudget = V::REGS >= 32 ? 12 : 4;
constexpr int kShrinkMT = kShrinkBudget / kShrinkNV > 0 ? kShrinkBudget / kShrinkNV : 1;
constexpr int kShrinkMTInterleaved = (V::REGS >= 32 ? 16 : 8) / (4 * kShrinkNV);  // may be 0
constexpr int64_t kShrinkChunk = 256;  // din per L1 pass; a multiple of 4

template <pf_dtype DT, int MT, int NV>
static inline void shrink_interleaved(const void* at, int64_t re, int64_t din,
                                      const float* const* x, float* const* h, int64_t q0,
                                      int lanes_last) {
  typename V::vec p[MT][NV][4];
  for (int t = 0; t < MT; ++t)
    for (int v = 0; v < NV; ++v)
      for (int s = 0; s < 4; ++s) p[t][v][s] = V::zero();
  auto step = [&](int64_t i, int s) {
    typename V::vec a[NV];
    for (int v = 0; v < NV; ++v)
      a[v] = load_m<DT>(at, i * re + q0 + v * V::W, v == NV - 1 ? lanes_last : V::W);
    for (int t = 0; t < MT; ++t) {
      const typename V::vec xv = V::set1(x[t][i]);
      for (int v = 0; v < NV; ++v) p[t][v][s] = V::fma(xv, a[v], p[t][v][s]);
    }
  };
  int64_t i = 0;
  for (; i + 4 <= din; i += 4)
    for (int s = 0; s < 4; ++s) step(i + s, s);
  for (int s = 0; i < din; ++i, ++s) step(i, s);
  for (int t = 0; t < MT; ++t)
    for (int v = 0; v < NV; ++v)
      V::store_f32(h[t] + q0 + v * V::W,
                   V::add(V::add(p[t][v][0], p[t][v][1]), V::add(p[t][v][2], p[t][v][3])),
                   v == NV - 1 ? lanes_last : V::W);
}

template <pf_dtype DT, int MT, int NV>
static inline void shrink_chunked(const void* at, int64_t re, int64_t din, const float* const* x,
                                  float* const* h, int64_t q0, int lanes_last) {
  typename V::vec part[4][MT][NV];  // the four residues' chains between chunks
  for (int s = 0; s < 4; ++s)
    for (int t = 0; t < MT; ++t)
      for (int v = 0; v < NV; ++v) part[s][t][v] = V::zero();
  for (int64_t c0 = 0; c0 < din; c0 += kShrinkChunk) {
    const int64_t c1 = din - c0 < kShrinkChunk ? din : c0 + kShrinkChunk;
    for (int s = 0; s < 4; ++s) {
      typename V::vec acc[MT][NV];
      for (int t = 0; t < MT; ++t)
        for (int v = 0; v < NV; ++v) acc[t][v] = part[s][t][v];
      for (int64_t i = c0 + s; i < c1; i += 4) {
        typename V::vec a[NV];
        for (int v = 0; v < NV; ++v)
          a[v] = load_m<DT>(at, i * re + q0 + v * V::W, v == NV - 1 ? lanes_last : V::W);
        for (int t = 0; t < MT; ++t) {
          const typename V::vec xv = V::set1(x[t][i]);
          for (int v = 0; v < NV; ++v) acc[t][v] = V::fma(xv, a[v], acc[t][v]);
        }
      }
      for (int t = 0; t < MT; ++t)
        for (int v = 0; v < NV; ++v) part[s][t][v] = acc[t][v];
    }
  }
  for (int t = 0; t < MT; ++t)
    for (int v = 0; v < NV; ++v)
      V::store_f32(h[t] + q0 + v * V::W,
                   V::add(V::add(part[0][t][v], part[1][t][v]), V::add(part[2][t][v], part[3][t][v])),
                   v == NV - 1 ? lanes_last : V::W);
}

// One block of MT tokens over all rank columns (NV vectors at a time, then single vectors).
template <pf_dtype DT, int MT>
static void shrink_tokens(const void* at, int64_t re, int64_t din, const float* const* x,
                          float* const* h) {
  constexpr bool kIL = MT <= kShrinkMTInterleaved;
  int64_t q = 0;
  for (; q + kShrinkNV * V::W <= re; q += kShrinkNV * V::W) {
    if (kIL) shrink_interleaved<DT, MT, kShrinkNV>(at, re, din, x, h, q, V::W);
    else shrink_chunked<DT, MT, kShrinkNV>(at, re, din, x, h, q, V::W);
  }
  for (; q < re; q += V::W) {
    const int lanes = re - q < V::W ? (int)(re - q) : V::W;
    if (kIL) shrink_interleaved<DT, MT, 1>(at, re, din, x, h, q, lanes);
    else shrink_chunked<DT, MT, 1>(at, re, din, x, h, q, lanes);
  }
}

// Expands CALL(N) for a run-time token count n in [1, 12] (template instantiation per count).
#define PF_TOKENS_SWITCH(n, CALL)                                                         \
  switch (n) {                                                                            \
    case 1: CALL(1); break;  case 2: CALL(2); break;  case 3: CALL(3); break;             \
    case 4: CALL(4); break;  case 5: CALL(5); break;  case 6: CALL(6); break;             \
    case 7: CALL(7); break;  case 8: CALL(8); break;  case 9: CALL(9); break;             \
    case 10: CALL(10); break; case 11: CALL(11); break; default: CALL(12); break;         \
  }

template <pf_dtype DT>
static void shrink_dt(const void* at, int64_t re, int64_t din, const float* const* x, int nt,
                      float* const* h) {
  int t = 0;
  for (; t + kShrinkMT <= nt; t += kShrinkMT) shrink_tokens<DT, kShrinkMT>(at, re, din, x + t, h + t);
  const int rest = nt - t;
  if (rest == 0) return;
#define PF_SHRINK_CALL(N) \
  if (N < kShrinkMT) shrink_tokens<DT, (N < kShrinkMT ? N : 1)>(at, re, din, x + t, h + t)
  PF_TOKENS_SWITCH(rest, PF_SHRINK_CALL)
#undef PF_SHRINK_CALL
}

static void shrink_impl(pf_dtype dt, const void* at, int64_t re, int64_t din,
                        const float* const* x, int nt, float* const* h) {
  if (re <= 0 || nt <= 0) return;
  if (dt == PF_F32) shrink_dt<PF_F32>(at, re, din, x, nt, h);
  else if (dt == PF_F16) shrink_dt<PF_F16>(at, re, din, x, nt, h);
  else shrink_dt<PF_BF16>(at, re, din, x, nt, h);
}

// Expand: MT tokens x NV vectors of y, the accumulators start from y itself.
constexpr int kExpandBudget = V::REGS >= 32 ? 24 : 12;
constexpr int kExpandMT = V::REGS >= 32 ? 6 : 4;

template <int MT>
constexpr int expand_nv() {
  return kExpandBudget / MT > 8 ? 8 : kExpandBudget / MT;
}

template <pf_dtype DT, int MT, int NV>
static inline void expand_block(const void* bt, int64_t ldb, int64_t re, const float* const* g,
                                float* const* y, int64_t o, int lanes_last) {
  typename V::vec acc[MT][NV];
  for (int t = 0; t < MT; ++t)
    for (int v = 0; v < NV; ++v)
      acc[t][v] = V::load_f32(y[t] + o + v * V::W, v == NV - 1 ? lanes_last : V::W);
  for (int64_t q = 0; q < re; ++q) {
    typename V::vec b[NV];
    for (int v = 0; v < NV; ++v)
      b[v] = load_m<DT>(bt, q * ldb + o + v * V::W, v == NV - 1 ? lanes_last : V::W);
    for (int t = 0; t < MT; ++t) {
      const typename V::vec gv = V::set1(g[t][q]);
      for (int v = 0; v < NV; ++v) acc[t][v] = V::fma(gv, b[v], acc[t][v]);
    }
  }
  for (int t = 0; t < MT; ++t)
    for (int v = 0; v < NV; ++v)
      V::store_f32(y[t] + o + v * V::W, acc[t][v], v == NV - 1 ? lanes_last : V::W);
}

template <pf_dtype DT, int MT>
static void expand_tokens(const void* bt, int64_t ldb, int64_t re, const float* const* g,
                          float* const* y, int64_t o0, int64_t o1) {
  constexpr int NV = expand_nv<MT>();
  int64_t o = o0;
  for (; o + NV * V::W <= o1; o += NV * V::W) expand_block<DT, MT, NV>(bt, ldb, re, g, y, o, V::W);
  for (; o < o1; o += V::W) {
    const int lanes = o1 - o < V::W ? (int)(o1 - o) : V::W;
    expand_block<DT, MT, 1>(bt, ldb, re, g, y, o, lanes);
  }
}

template <pf_dtype DT>
static void expand_dt(const void* bt, int64_t ldb, int64_t re, const float* const* g, int nt,
                      float* const* y, int64_t o0, int64_t o1) {
  int t = 0;
  for (; t + kExpandMT <= nt; t += kExpandMT)
    expand_tokens<DT, kExpandMT>(bt, ldb, re, g + t, y + t, o0, o1);
  const int rest = nt - t;
  if (rest == 0) return;
#define PF_EXPAND_CALL(N) \
  if (N < kExpandMT) expand_tokens<DT, (N < kExpandMT ? N : 1)>(bt, ldb, re, g + t, y + t, o0, o1)
  PF_TOKENS_SWITCH(rest, PF_EXPAND_CALL)
#undef PF_EXPAND_CALL
}

static void expand_impl(pf_dtype dt, const void* bt, int64_t ldb, int64_t re,
                        const float* const* g, int nt, float* const* y, int64_t o0, int64_t o1) {
  if (re <= 0 || nt <= 0 || o1 <= o0) return;
  if (dt == PF_F32) expand_dt<PF_F32>(bt, ldb, re, g, nt, y, o0, o1);
  else if (dt == PF_F16) expand_dt<PF_F16>(bt, ldb, re, g, nt, y, o0, o1);
  else expand_dt<PF_BF16>(bt, ldb, re, g, nt, y, o0, o1);
}
