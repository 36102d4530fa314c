// The whole Lighthouse layer as the composition of its stages (lighthouse_reference.h); the model's
// AttentionOp (src/model/lighthouse_attention.cpp) performs the same sequence through the Backend.
#include <cstddef>
#include <stdexcept>
#include <string>

#include "lighthouse/ops/lighthouse_reference.h"

namespace lh::lighthouse {
namespace {
void check_heads(int H, int Hkv) {
  if (Hkv < 1 || H % Hkv != 0)
    throw std::invalid_argument("lighthouse: H = " + std::to_string(H) + " is not a multiple of Hkv = " +
                                std::to_string(Hkv));
}
}  // namespace

template <typename T>
void layer_forward(T* out, LayerState<T>& st, const T* qkv, int B, int H, int Hkv, int D, const Geometry& g) {
  g.validate();
  check_heads(H, Hkv);
  const size_t P = g.pyramid_size(), S = g.sub_len();
  st.qpyr.assign(size_t(B) * H * P * D, T(0));
  st.kpyr.assign(size_t(B) * Hkv * P * D, T(0));
  st.vpyr.assign(size_t(B) * Hkv * P * D, T(0));
  pyramid_forward(st.qpyr.data(), st.kpyr.data(), st.vpyr.data(), qkv, B, H, Hkv, D, g);

  st.sq.assign(size_t(B) * H * P, 0.0f);
  st.sk.assign(size_t(B) * Hkv * P, 0.0f);
  norm_scores(st.sq.data(), st.qpyr.data(), B, H, D, g);
  norm_scores(st.sk.data(), st.kpyr.data(), B, Hkv, D, g);
  st.idx.assign(size_t(B) * H * S, 0);
  select(st.idx.data(), st.sq.data(), st.sk.data(), B, H, Hkv, g);

  const size_t sub = size_t(B) * H * S * D;
  st.q.assign(sub, T(0));
  st.k.assign(sub, T(0));
  st.v.assign(sub, T(0));
  gather_forward(st.q.data(), st.qpyr.data(), st.idx.data(), B, H, H, D, g);
  gather_forward(st.k.data(), st.kpyr.data(), st.idx.data(), B, H, Hkv, D, g);
  gather_forward(st.v.data(), st.vpyr.data(), st.idx.data(), B, H, Hkv, D, g);

  st.o.assign(sub, T(0));
  st.lse.assign(size_t(B) * H * S, T(0));
  sdpa_forward(st.o.data(), st.lse.data(), st.q.data(), st.k.data(), st.v.data(), B * H, int(S), D);
  scatter_forward(out, st.o.data(), st.idx.data(), B, H, D, g);
}

template <typename T>
void layer_backward(T* dqkv, const T* dout, const LayerState<T>& st, int B, int H, int Hkv, int D,
                    const Geometry& g) {
  check_heads(H, Hkv);
  const size_t P = g.pyramid_size(), S = g.sub_len();
  const size_t sub = size_t(B) * H * S * D;
  if (st.o.size() != sub) throw std::logic_error("lighthouse layer_backward: state does not match the shape");
  std::vector<T> dO(sub), dq(sub), dk(sub), dv(sub);
  scatter_backward(dO.data(), dout, st.idx.data(), B, H, D, g);
  sdpa_backward(dq.data(), dk.data(), dv.data(), dO.data(), st.q.data(), st.k.data(), st.v.data(), st.o.data(),
                st.lse.data(), B * H, int(S), D);
  std::vector<T> dqpyr(size_t(B) * H * P * D), dkpyr(size_t(B) * Hkv * P * D), dvpyr(size_t(B) * Hkv * P * D);
  gather_backward(dqpyr.data(), dq.data(), st.idx.data(), B, H, H, D, g);
  gather_backward(dkpyr.data(), dk.data(), st.idx.data(), B, H, Hkv, D, g);
  gather_backward(dvpyr.data(), dv.data(), st.idx.data(), B, H, Hkv, D, g);
  pyramid_backward(dqkv, dqpyr.data(), dkpyr.data(), dvpyr.data(), B, H, Hkv, D, g);
}

#define LH_INSTANTIATE(T)                                                                               \
  template void layer_forward<T>(T*, LayerState<T>&, const T*, int, int, int, int, const Geometry&);    \
  template void layer_backward<T>(T*, const T*, const LayerState<T>&, int, int, int, int, const Geometry&);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::lighthouse
