// Dense layer matmuls: out = x @ W^T, dx = dout @ W, dW += dout^T @ x.
//
// Determinism without -ffast-math: every output element has one canonical summation order that
// does not depend on its position in a tile, on the blocking or on the thread count.
//  - forward reduces over the contiguous IC of both operands (a dot product). It keeps kLanes
//    partial sums, lane l summing the terms i = l (mod kLanes) in increasing i, then folds the
//    lanes in a fixed tree. The lanes are independent, so the compiler vectorises them with
//    plain SSE2 and no reassociation.
//  - backward reduces over a strided dimension, so it is written as axpy updates of a row of
//    contiguous outputs: one accumulator per element, terms added in increasing k. Blocking
//    over k stores the running sum and reloads it, which keeps that exact order.
#include <algorithm>
#include <cstddef>

#include "lighthouse/ops/cpu_reference.h"

namespace lh::cpu {

namespace {
constexpr int kLanes = 8;      // partial sums per dot product (two SSE vectors of float)
constexpr int kDotRows = 2;    // forward register tile: rows of x ...
constexpr int kDotCols = 2;    // ... times rows of W
constexpr int kRowBlock = 64;  // rows of the output a task owns, so its operand rows stay in L2
constexpr int kVec = 8;        // backward register tile: contiguous outputs per row ...
constexpr int kAxpyRows = 4;   // ... times rows
constexpr int kStrip = 64;     // backward: output columns per task
constexpr int kKBlock = 256;   // backward: reduction length kept hot between register tiles

// out[r*ldo + c] = dot(x row r, w row c) for an R x S tile; rows are IC long with stride IC.
template <int R, int S, typename T>
void dot_tile(T* out, size_t ldo, const T* x, const T* w, int IC) {
  T acc[R][S][kLanes] = {};
  int i = 0;
  for (; i + kLanes <= IC; i += kLanes)
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s)
        for (int l = 0; l < kLanes; ++l)
          acc[r][s][l] += x[static_cast<size_t>(r) * IC + i + l] * w[static_cast<size_t>(s) * IC + i + l];
  for (int l = 0; i + l < IC; ++l)  // the tail keeps lane = i mod kLanes
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s)
        acc[r][s][l] += x[static_cast<size_t>(r) * IC + i + l] * w[static_cast<size_t>(s) * IC + i + l];
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < S; ++s) {
      T* a = acc[r][s];
      for (int half = kLanes / 2; half > 0; half /= 2)
        for (int l = 0; l < half; ++l) a[l] += a[l + half];
      out[r * ldo + s] = a[0];
    }
}

// acc[r][c] (+)= sum_{k < K} a[r*ar + k*ak] * b[k*ldb + c] for R rows and W <= kVec columns,
// in increasing k; `init` says whether to start from zero or from out.
template <int R, int W, typename T>
void axpy_tile(T* out, size_t ldo, const T* a, size_t ar, size_t ak, const T* b, size_t ldb, int K,
               bool init) {
  T acc[R][W];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < W; ++c) acc[r][c] = init ? T(0) : out[r * ldo + c];
  for (int k = 0; k < K; ++k) {
    const T* bk = b + k * ldb;
    for (int r = 0; r < R; ++r) {
      const T s = a[r * ar + k * ak];
      for (int c = 0; c < W; ++c) acc[r][c] += s * bk[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < W; ++c) out[r * ldo + c] = acc[r][c];
}

// Runtime-width edge version of axpy_tile (same order of operations, one row at a time).
template <typename T>
void axpy_edge(T* out, const T* a, size_t ak, const T* b, size_t ldb, int K, int width, bool init) {
  T acc[kVec];
  for (int c = 0; c < width; ++c) acc[c] = init ? T(0) : out[c];
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < width; ++c) acc[c] += a[k * ak] * b[k * ldb + c];
  for (int c = 0; c < width; ++c) out[c] = acc[c];
}

// out[rows, cols] = (or += when `accumulate`) sum_k A(r, k) * B[k, cols], with
// A(r, k) = a[r*ar + k*ak] and B rows of stride ldb. One task per (row block, column strip);
// the terms are added to the running value in increasing k.
template <typename T>
void axpy_gemm(T* out, size_t ldo, const T* a, size_t ar, size_t ak, const T* b, size_t ldb, int rows,
               int cols, int K, bool accumulate) {
  const int row_blocks = (rows + kRowBlock - 1) / kRowBlock;
  const int strips = (cols + kStrip - 1) / kStrip;
#pragma omp parallel for collapse(2) schedule(static)
  for (int rb = 0; rb < row_blocks; ++rb)
    for (int cs = 0; cs < strips; ++cs) {
      const int r_end = std::min(rows, (rb + 1) * kRowBlock);
      const int c0 = cs * kStrip, c_end = std::min(cols, c0 + kStrip);
      for (int k0 = 0; k0 < K; k0 += kKBlock) {
        const int kn = std::min(kKBlock, K - k0);
        const bool init = !accumulate && k0 == 0;
        const T* ab = a + k0 * ak;
        const T* bb = b + k0 * ldb;
        int r = rb * kRowBlock;
        for (; r + kAxpyRows <= r_end; r += kAxpyRows) {
          int c = c0;
          for (; c + kVec <= c_end; c += kVec)
            axpy_tile<kAxpyRows, kVec>(out + r * ldo + c, ldo, ab + r * ar, ar, ak, bb + c, ldb, kn, init);
          for (int rr = r; rr < r + kAxpyRows && c < c_end; ++rr)
            axpy_edge(out + rr * ldo + c, ab + rr * ar, ak, bb + c, ldb, kn, c_end - c, init);
        }
        for (; r < r_end; ++r)
          for (int c = c0; c < c_end; c += kVec)
            axpy_edge(out + r * ldo + c, ab + r * ar, ak, bb + c, ldb, kn, std::min(kVec, c_end - c), init);
      }
    }
}
}  // namespace

template <typename T>
void matmul_forward(T* out, const T* x, const T* weight, int N, int IC, int OC, int ld) {
  for (int n = 0; n < N && ld > OC; ++n) std::fill(out + n * size_t(ld) + OC, out + (n + 1) * size_t(ld), T(0));
  const int row_blocks = (N + kRowBlock - 1) / kRowBlock;
  const int col_blocks = (OC + kRowBlock - 1) / kRowBlock;
  const size_t ic = IC;
#pragma omp parallel for collapse(2) schedule(static)
  for (int nb = 0; nb < row_blocks; ++nb)
    for (int ob = 0; ob < col_blocks; ++ob) {
      const int n_end = std::min(N, (nb + 1) * kRowBlock);
      const int o0 = ob * kRowBlock, o_end = std::min(OC, o0 + kRowBlock);
      int o = o0;
      for (; o + kDotCols <= o_end; o += kDotCols) {  // W rows stay in L1 across the n loop
        int n = nb * kRowBlock;
        for (; n + kDotRows <= n_end; n += kDotRows)
          dot_tile<kDotRows, kDotCols>(out + n * size_t(ld) + o, ld, x + n * ic, weight + o * ic, IC);
        for (; n < n_end; ++n) dot_tile<1, kDotCols>(out + n * size_t(ld) + o, ld, x + n * ic, weight + o * ic, IC);
      }
      for (; o < o_end; ++o)
        for (int n = nb * kRowBlock; n < n_end; ++n)
          dot_tile<1, 1>(out + n * size_t(ld) + o, ld, x + n * ic, weight + o * ic, IC);
    }
}

template <typename T>
void matmul_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight, int N, int IC, int OC, int ld) {
  // dx[n, i] = sum_oc dout[n, oc] * W[oc, i]: A(r=n, k=oc) = dout[n*ld + oc].
  if (dx != nullptr) axpy_gemm(dx, IC, dout, ld, 1, weight, IC, N, IC, OC, false);
  // dW[oc, i] += sum_n dout[n, oc] * x[n, i]: A(r=oc, k=n) = dout[n*ld + oc]. The terms are added
  // straight onto dW in increasing n (no [OC, IC] temporary: that would be the size of the LM head).
  axpy_gemm(dweight, IC, dout, 1, ld, x, IC, OC, IC, N, true);
}

#define LH_INSTANTIATE(T)                                                                  \
  template void matmul_forward<T>(T*, const T*, const T*, int, int, int, int);            \
  template void matmul_backward<T>(T*, T*, const T*, const T*, const T*, int, int, int, int);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::cpu
