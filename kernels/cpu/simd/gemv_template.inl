// gemv_acc and convert_scale written once over a vector-traits type V. Each instruction-set
// file includes this inside an anonymous namespace (internal linkage: no symbol compiled with
// AVX-512 flags can be shared with a scalar caller) after defining V:
//   V::W                        f32 lanes per vector
//   V::vec                      the register type
//   V::REGS                     vector registers (sizes the register blocking)
//   V::zero(), V::set1(f), V::add(a, b), V::mul(a, b), V::fma(a, b, c)   (a*b + c)
//   V::load_f32(p, n), V::store_f32(p, v, n)   n = lanes to touch (n < W only at a tail)
//   V::load_f16(p, n), V::load_bf16(p, n)      convert on load, same lane rule
// Tails use the same vector code with partial loads, so every element follows one path.

template <pf_dtype DT>
static inline typename V::vec load_m(const void* m, int64_t idx, int n) {
  if (DT == PF_F32) return V::load_f32(static_cast<const float*>(m) + idx, n);
  if (DT == PF_F16) return V::load_f16(static_cast<const uint16_t*>(m) + idx, n);
  return V::load_bf16(static_cast<const uint16_t*>(m) + idx, n);
}

// NT tokens x OV vectors of output, four partial sums each.
template <pf_dtype DT, int NT, int OV>
static inline void gemv_block(const void* m, int64_t ldm, int64_t nq, const float* g, int64_t ldg,
                              float* y, int64_t ldy, int64_t o0, int lanes_last) {
  typename V::vec p[NT][OV][4];
  for (int t = 0; t < NT; ++t)
    for (int v = 0; v < OV; ++v)
      for (int s = 0; s < 4; ++s) p[t][v][s] = V::zero();
  int64_t q = 0;
  for (; q + 4 <= nq; q += 4) {
    for (int s = 0; s < 4; ++s) {
      typename V::vec mv[OV];
      for (int v = 0; v < OV; ++v)
        mv[v] = load_m<DT>(m, (q + s) * ldm + o0 + v * V::W, v == OV - 1 ? lanes_last : V::W);
      for (int t = 0; t < NT; ++t) {
        const typename V::vec gv = V::set1(g[t * ldg + q + s]);
        for (int v = 0; v < OV; ++v) p[t][v][s] = V::fma(gv, mv[v], p[t][v][s]);
      }
    }
  }
  for (int s = 0; q < nq; ++q, ++s) {
    typename V::vec mv[OV];
    for (int v = 0; v < OV; ++v)
      mv[v] = load_m<DT>(m, q * ldm + o0 + v * V::W, v == OV - 1 ? lanes_last : V::W);
    for (int t = 0; t < NT; ++t) {
      const typename V::vec gv = V::set1(g[t * ldg + q]);
      for (int v = 0; v < OV; ++v) p[t][v][s] = V::fma(gv, mv[v], p[t][v][s]);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int v = 0; v < OV; ++v) {
      const int lanes = v == OV - 1 ? lanes_last : V::W;
      float* yp = y + t * ldy + o0 + v * V::W;
      const typename V::vec d = V::add(V::add(p[t][v][0], p[t][v][1]), V::add(p[t][v][2], p[t][v][3]));
      V::store_f32(yp, V::add(V::load_f32(yp, lanes), d), lanes);
    }
}

// Register budget: NT * OV * 4 accumulators must fit with room for the loads.
template <pf_dtype DT, int NT>
static void gemv_tokens(const void* m, int64_t ldm, int64_t nq, const float* g, int64_t ldg,
                        float* y, int64_t ldy, int64_t n) {
  constexpr int BUDGET = V::REGS >= 32 ? 4 : 2;  // NT * OV vectors of 4 partial sums
  constexpr int OV = BUDGET / NT > 0 ? BUDGET / NT : 1;
  int64_t o = 0;
  for (; o + OV * V::W <= n; o += OV * V::W)
    gemv_block<DT, NT, OV>(m, ldm, nq, g, ldg, y, ldy, o, V::W);
  for (; o < n; o += V::W) {
    const int lanes = n - o < V::W ? (int)(n - o) : V::W;
    gemv_block<DT, NT, 1>(m, ldm, nq, g, ldg, y, ldy, o, lanes);
  }
}

template <pf_dtype DT>
static void gemv_dt(const void* m, int64_t ldm, int64_t nq, const float* g, int64_t ldg, int nt,
                    float* y, int64_t ldy, int64_t n) {
  constexpr int NTMAX = V::REGS >= 32 ? 4 : 2;
  int t = 0;
  for (; t + NTMAX <= nt; t += NTMAX)
    gemv_tokens<DT, NTMAX>(m, ldm, nq, g + t * ldg, ldg, y + t * ldy, ldy, n);
  if (NTMAX == 4 && nt - t >= 2) {
    gemv_tokens<DT, 2>(m, ldm, nq, g + t * ldg, ldg, y + t * ldy, ldy, n);
    t += 2;
  }
  for (; t < nt; ++t) gemv_tokens<DT, 1>(m, ldm, nq, g + t * ldg, ldg, y + t * ldy, ldy, n);
}

static void gemv_acc_impl(pf_dtype dt, const void* m, int64_t ldm, int64_t nq, const float* g,
                          int64_t ldg, int nt, float* y, int64_t ldy, int64_t n) {
  if (dt == PF_F32) gemv_dt<PF_F32>(m, ldm, nq, g, ldg, nt, y, ldy, n);
  else if (dt == PF_F16) gemv_dt<PF_F16>(m, ldm, nq, g, ldg, nt, y, ldy, n);
  else gemv_dt<PF_BF16>(m, ldm, nq, g, ldg, nt, y, ldy, n);
}

template <pf_dtype DT>
static void convert_scale_dt(const void* src, float alpha, float* out, int64_t n) {
  const typename V::vec a = V::set1(alpha);
  int64_t i = 0;
  // A short head first, so that the stores below are vector-aligned: a store that straddles
  // two cache lines costs two (fold writes rows of a few KiB into caller-owned buffers).
  const int64_t mis = (int64_t)((reinterpret_cast<uintptr_t>(out) / sizeof(float)) % V::W);
  if (mis != 0 && n > V::W) {
    i = V::W - mis;
    V::store_f32(out, V::mul(a, load_m<DT>(src, 0, (int)i)), (int)i);
  }
  for (; i + 4 * V::W <= n; i += 4 * V::W)
    for (int v = 0; v < 4; ++v)
      V::store_f32(out + i + v * V::W, V::mul(a, load_m<DT>(src, i + v * V::W, V::W)), V::W);
  for (; i < n; i += V::W) {
    const int lanes = n - i < V::W ? (int)(n - i) : V::W;
    V::store_f32(out + i, V::mul(a, load_m<DT>(src, i, lanes)), lanes);
  }
}

static void convert_scale_impl(pf_dtype dt, const void* src, float alpha, float* out, int64_t n) {
  if (dt == PF_F32) convert_scale_dt<PF_F32>(src, alpha, out, n);
  else if (dt == PF_F16) convert_scale_dt<PF_F16>(src, alpha, out, n);
  else convert_scale_dt<PF_BF16>(src, alpha, out, n);
}

// convert_rows: out[i*ldo + c] = alpha * src[i*lds + c] for i < rows, c < n: a strided block
// (fold's A_cat side writes din rows of r_e values each; one call per block, not per row).
template <pf_dtype DT>
static void convert_rows_dt(const void* src, int64_t lds, float alpha, float* out, int64_t ldo,
                            int64_t rows, int64_t n) {
  const typename V::vec a = V::set1(alpha);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < n; c += V::W) {
      const int lanes = n - c < V::W ? (int)(n - c) : V::W;
      V::store_f32(out + i * ldo + c, V::mul(a, load_m<DT>(src, i * lds + c, lanes)), lanes);
    }
}

static void convert_rows_impl(pf_dtype dt, const void* src, int64_t lds, float alpha, float* out,
                              int64_t ldo, int64_t rows, int64_t n) {
  if (dt == PF_F32) convert_rows_dt<PF_F32>(src, lds, alpha, out, ldo, rows, n);
  else if (dt == PF_F16) convert_rows_dt<PF_F16>(src, lds, alpha, out, ldo, rows, n);
  else convert_rows_dt<PF_BF16>(src, lds, alpha, out, ldo, rows, n);
}
