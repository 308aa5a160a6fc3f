// softmax_rows, written once over the vector traits V (after gemv_template.inl). Extra members:
//   V::sub(a, b), V::max(a, b), V::hmax(v), V::hsum(v)  (fixed lane order: deterministic)
//   V::load_f32_or(p, n, fill)   lanes >= n read as fill
//   V::not_below(v, f)           any lane with !(v < f) (NaN included)
//   V::exp(x)                    e^x for x <= 0, 0 below -87.33 (f32's normal range)
//
// for t < nt:  m[t] = max_e l[t*E + e];  s[t] = Σ_e exp(l[t*E + e] - m[t])
//   a row holding NaN or +Inf, or no finite value, gets m[t] = NaN (the caller reports it).

static void softmax_rows_impl(const float* l, int64_t nt, int32_t E, float* m, float* s) {
  const float inf = __builtin_inff();
  for (int64_t t = 0; t < nt; ++t) {
    const float* row = l + t * E;
    typename V::vec vmax = V::set1(-inf);
    bool bad = false;
    for (int32_t e = 0; e < E; e += V::W) {
      const int lanes = E - e < V::W ? E - e : V::W;
      const typename V::vec v = V::load_f32_or(row + e, lanes, -inf);
      bad = bad || V::not_below(v, inf);
      vmax = V::max(vmax, v);
    }
    const float mx = V::hmax(vmax);
    if (bad || mx == -inf) {
      m[t] = __builtin_nanf("");
      s[t] = 0.0f;
      continue;
    }
    const typename V::vec vm = V::set1(mx);
    typename V::vec sum = V::zero();
    for (int32_t e = 0; e < E; e += V::W) {
      const int lanes = E - e < V::W ? E - e : V::W;
      sum = V::add(sum, V::exp(V::sub(V::load_f32_or(row + e, lanes, -inf), vm)));
    }
    m[t] = mx;
    s[t] = V::hsum(sum);
  }
}

// topk_rows: ids[t*k + j], j < k, = the k largest logits of row t of l [nt, E] (larger first,
// ties to the lower id; -0 == +0 as in a float comparison). Rows must be free of NaN.
// Each logit becomes an int32 key with the same order (after -0 -> +0), so one pass of
// k rounds picks the maximum key and its first lane, then retires that key to INT32_MIN
// (below the key of -Inf, which stays selectable). keys: scratch of E rounded up to W.
// More V members: V::ivec, V::key(v) (the int image), V::iload / V::istore, V::imax,
// V::ihmax, V::ieq_bits(v, key) (bit i set where lane i equals key), V::iretire(v, lane)
// (lane set to INT32_MIN), V::ikeep(v, n) (lanes >= n set to INT32_MIN).
// Rows of at most NV vectors: the keys stay in registers through the k rounds.
template <int NV>
static void topk_rows_regs(const float* l, int64_t nt, int32_t E, int32_t k, int32_t* ids) {
  const float inf = __builtin_inff();
  for (int64_t t = 0; t < nt; ++t) {
    const float* row = l + t * E;
    typename V::ivec key[NV];
    for (int v = 0; v < NV; ++v) {  // lanes past E start retired: never picked
      const int32_t e = v * V::W;
      const int lanes = E - e < V::W ? (E - e > 0 ? E - e : 0) : V::W;
      key[v] = V::ikeep(V::key(V::load_f32_or(row + e, lanes, -inf)), lanes);
    }
    for (int32_t j = 0; j < k; ++j) {
      typename V::ivec best = key[0];
      for (int v = 1; v < NV; ++v) best = V::imax(best, key[v]);
      const int32_t top = V::ihmax(best);
      bool found = false;  // no break: the loop unrolls and key[] stays in registers
      for (int v = 0; v < NV; ++v) {
        const uint32_t bits = found ? 0u : V::ieq_bits(key[v], top);
        if (bits) {
          const int lane = __builtin_ctz(bits);
          ids[t * k + j] = v * V::W + lane;
          key[v] = V::iretire(key[v], lane);
          found = true;
        }
      }
    }
  }
}

static void topk_rows_impl(const float* l, int64_t nt, int32_t E, int32_t k, int32_t* ids,
                           int32_t* keys) {
  const float inf = __builtin_inff();
  const int32_t nvec = (E + V::W - 1) / V::W;
  if (nvec == 1) return topk_rows_regs<1>(l, nt, E, k, ids);
  if (nvec == 2) return topk_rows_regs<2>(l, nt, E, k, ids);
  if (nvec <= 4 && V::REGS >= 32) return topk_rows_regs<4>(l, nt, E, k, ids);
  for (int64_t t = 0; t < nt; ++t) {
    const float* row = l + t * E;
    for (int32_t e = 0; e < E; e += V::W) {  // padding lanes start retired: never picked
      const int lanes = E - e < V::W ? E - e : V::W;
      V::istore(keys + e, V::ikeep(V::key(V::load_f32_or(row + e, lanes, -inf)), lanes));
    }
    for (int32_t j = 0; j < k; ++j) {
      typename V::ivec best = V::iload(keys);
      for (int32_t v = 1; v < nvec; ++v) best = V::imax(best, V::iload(keys + v * V::W));
      const int32_t top = V::ihmax(best);
      for (int32_t v = 0; v < nvec; ++v) {
        const typename V::ivec kv = V::iload(keys + v * V::W);
        const uint32_t bits = V::ieq_bits(kv, top);
        if (bits) {
          const int lane = __builtin_ctz(bits);
          ids[t * k + j] = v * V::W + lane;
          // A whole-vector store: a scalar one would stall the next round's vector load.
          V::istore(keys + v * V::W, V::iretire(kv, lane));
          break;
        }
      }
    }
  }
}
