// Causal multi-head attention with grouped KV heads (GQA), reading a fused qkv activation.
// Forward keeps one row of scores (O(T) per thread); backward is flash-style: it recomputes the
// probabilities from the saved log-sum-exp instead of storing the [T, T] matrix.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "lighthouse/ops/cpu_reference.h"

namespace lh::cpu {

namespace {
// Offsets of the parts of a token's fused [H + 2*Hkv, D] row.
struct Layout {
  int H, Hkv, D;
  size_t token_stride() const { return static_cast<size_t>(H + 2 * Hkv) * D; }
  size_t q(int h) const { return static_cast<size_t>(h) * D; }
  size_t k(int g) const { return static_cast<size_t>(H + g) * D; }
  size_t v(int g) const { return static_cast<size_t>(H + Hkv + g) * D; }
};

template <typename T> T dot(const T* a, const T* b, int D) {
  T s = 0;
  for (int d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}
}  // namespace

template <typename T>
void attention_forward(T* out, T* lse, const T* qkv, int B, int Tlen, int H, int Hkv, int D) {
  const Layout L{H, Hkv, D};
  const size_t ts = L.token_stride();
  const int group = H / Hkv;
  const T scale = T(1) / std::sqrt(static_cast<T>(D));
#pragma omp parallel
  {
    std::vector<T> scores(Tlen);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h) {
        const T* base = qkv + static_cast<size_t>(b) * Tlen * ts;
        const int g = h / group;
        for (int t = 0; t < Tlen; ++t) {
          const T* q = base + t * ts + L.q(h);
          T m = -INFINITY;
          for (int j = 0; j <= t; ++j) {
            scores[j] = scale * dot(q, base + j * ts + L.k(g), D);
            m = std::max(m, scores[j]);
          }
          T sum = 0;
          T* o = out + (static_cast<size_t>(b) * Tlen + t) * H * D + static_cast<size_t>(h) * D;
          std::fill(o, o + D, T(0));
          for (int j = 0; j <= t; ++j) {
            const T p = std::exp(scores[j] - m);
            sum += p;
            const T* v = base + j * ts + L.v(g);
            for (int d = 0; d < D; ++d) o[d] += p * v[d];
          }
          for (int d = 0; d < D; ++d) o[d] /= sum;
          lse[(static_cast<size_t>(b) * H + h) * Tlen + t] = m + std::log(sum);
        }
      }
  }
}

// With S = scale * Q K^T (masked), P = exp(S - lse), O = P V:
//   dV = P^T dO;  dP = dO V^T;  dS = P * (dP - rowsum(dO * O));  dQ = scale dS K;  dK = scale dS^T Q.
// One task per (batch, kv head) owns dK and dV of that head and the dQ of its query heads, and
// sums over the group's query heads in increasing h, then t, then s.
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse, int B, int Tlen,
                        int H, int Hkv, int D) {
  const Layout L{H, Hkv, D};
  const size_t ts = L.token_stride();
  const size_t os = static_cast<size_t>(H) * D;  // token stride of out / dout
  const int group = H / Hkv;
  const T scale = T(1) / std::sqrt(static_cast<T>(D));
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int g = 0; g < Hkv; ++g) {
      const T* base = qkv + static_cast<size_t>(b) * Tlen * ts;
      T* dbase = dqkv + static_cast<size_t>(b) * Tlen * ts;
      for (int t = 0; t < Tlen; ++t) {
        std::fill_n(dbase + t * ts + L.k(g), D, T(0));
        std::fill_n(dbase + t * ts + L.v(g), D, T(0));
      }
      for (int h = g * group; h < (g + 1) * group; ++h)
        for (int t = 0; t < Tlen; ++t) {
          const size_t orow = (static_cast<size_t>(b) * Tlen + t) * os + static_cast<size_t>(h) * D;
          const T* q = base + t * ts + L.q(h);
          const T* dO = dout + orow;
          const T row_lse = lse[(static_cast<size_t>(b) * H + h) * Tlen + t];
          const T delta = dot(dO, out + orow, D);
          T* dq = dbase + t * ts + L.q(h);
          std::fill_n(dq, D, T(0));
          for (int s = 0; s <= t; ++s) {
            const T* k = base + s * ts + L.k(g);
            const T* v = base + s * ts + L.v(g);
            const T p = std::exp(scale * dot(q, k, D) - row_lse);
            const T ds = p * (dot(dO, v, D) - delta);
            T* dk = dbase + s * ts + L.k(g);
            T* dv = dbase + s * ts + L.v(g);
            for (int d = 0; d < D; ++d) {
              dq[d] += ds * k[d];
              dk[d] += scale * ds * q[d];
              dv[d] += p * dO[d];
            }
          }
          for (int d = 0; d < D; ++d) dq[d] *= scale;
        }
    }
}

#define LH_INSTANTIATE(T)                                                                              \
  template void attention_forward<T>(T*, T*, const T*, int, int, int, int, int);                      \
  template void attention_backward<T>(T*, const T*, const T*, const T*, const T*, int, int, int, int, int);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::cpu
