// nvcuda::wmma for the CPU emulation of CUDA (cuda_emu.h): the 16 x 16 x 16 fragments the
// grouped lora_moe path uses, f16 / bf16 operands and f32 accumulators.
//
// On a GPU a fragment is spread over the warp's 32 lanes in a layout the programming guide
// leaves unspecified, which is why kernels may only load, store, fill and multiply them (and
// ours do only that). So here every lane holds the whole 16 x 16 tile: a load reads all of it,
// mma_sync computes all of it, and a store writes all of it (the 32 lanes write the same
// values). That is slow, and exact to what the kernels may rely on.
//   mma_sync: d[i][j] = c[i][j] + Σ_k a[i][k] · b[k][j]; each product of two f16 or bf16
//   numbers is exact in f32, and the 16 products are summed in double and added to c in f32
//   (the hardware's order and internal width are unspecified; test tolerances allow for it).
#ifndef PF_TESTS_WMMA_EMU_H
#define PF_TESTS_WMMA_EMU_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "only 16 x 16 x 16 fragments are emulated");
  float v[16][16];  // [row][column] of the tile, whatever Use and Layout
};

inline float to_f32(const __half& h) { return __half2float(h); }
inline float to_f32(const __nv_bfloat16& h) { return __bfloat162float(h); }

// matrix_a row-major: a[i][k] = p[i * ldm + k]
template <class T>
void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, row_major>& f, const T* p, unsigned ldm) {
  for (int i = 0; i < 16; ++i)
    for (int k = 0; k < 16; ++k) f.v[i][k] = to_f32(p[i * ldm + k]);
}
// matrix_b column-major: b[k][j] = p[j * ldm + k]
template <class T>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, col_major>& f, const T* p, unsigned ldm) {
  for (int k = 0; k < 16; ++k)
    for (int j = 0; j < 16; ++j) f.v[k][j] = to_f32(p[j * ldm + k]);
}
// matrix_b row-major: b[k][j] = p[k * ldm + j]
template <class T>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, row_major>& f, const T* p, unsigned ldm) {
  for (int k = 0; k < 16; ++k)
    for (int j = 0; j < 16; ++j) f.v[k][j] = to_f32(p[k * ldm + j]);
}

inline void fill_fragment(fragment<accumulator, 16, 16, 16, float>& f, float value) {
  for (auto& row : f.v)
    for (float& x : row) x = value;
}

template <class T, class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
  float out[16][16];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      double s = 0;
      for (int k = 0; k < 16; ++k) s += (double)a.v[i][k] * b.v[k][j];
      out[i][j] = (float)(c.v[i][j] + s);
    }
  memcpy(d.v, out, sizeof out);
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm,
                              layout_t layout) {
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) (layout == mem_row_major ? p[i * ldm + j] : p[j * ldm + i]) = f.v[i][j];
}

}  // namespace wmma
}  // namespace nvcuda
#endif
