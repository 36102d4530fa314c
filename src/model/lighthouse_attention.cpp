// Lighthouse attention as an AttentionOp: pyramid -> norm scores -> selection -> gather -> inner
// causal attention on S entries -> scatter (docs/lighthouse.md), each stage a Backend op. Layers
// listed in dense_layers delegate to the dense backend.
//
// Saved per layer for backward: the selection (idx), the gathered q, k, v sub-sequences, the inner
// output and its lse: O(H * S * D) per layer (S ~ N/5 at the paper's settings), not the pyramids.
// Keeping q, k, v costs 3 x H * S * D elements per layer (113 MB at N = 98K, H = 8, d = 128) and
// saves recomputing the pyramid and the gathers in backward (about 1 ms per layer on an H100 at
// 98K, measured: the pyramid pass is the costliest stage outside the inner attention).
#include <stdexcept>
#include <string>
#include <vector>

#include "config/attention_options.h"
#include "model/attention_backends.h"

namespace lh {
namespace {

class LighthouseAttention final : public AttentionOp {
 public:
  // The dense backend of the layers listed in dense_layers keeps softmax statistics for those only.
  explicit LighthouseAttention(LighthouseOptions options)
      : opt_(std::move(options)), dense_(make_dense_attention([this](int layer) { return opt_.is_dense(layer); })) {}
  std::string name() const override { return "lighthouse"; }

  // The dense backend's (full-length) workspace only where some layer runs dense.
  void prepare_workspace(Backend& be, int n_layers, const AttentionShape& s) override {
    if (any_layer(n_layers, true)) dense_->prepare_workspace(be, n_layers, s);
    const lighthouse::Geometry g = opt_.geometry(s.T);
    if (any_layer(n_layers, false) && g.problem().empty())
      be.prepare_lighthouse_sdpa(s.B * s.H, int(g.sub_len()), s.D);
  }

  void reserve(Backend& be, int n_layers, const AttentionShape& s) override {
    if (any_layer(n_layers, true)) dense_->reserve(be, n_layers, s);  // the dense layers' state
    const lighthouse::Geometry g = opt_.geometry(s.T);
    const Sizes need = sizes(g, s);
    if (int(saved_.size()) == n_layers && need.fits_in(cap_)) return;
    const DType act = be.act_dtype();
    saved_.clear();
    for (int l = 0; l < n_layers; ++l)
      saved_.push_back(opt_.is_dense(l) ? Saved{}  // dense layers keep nothing here
                                        : Saved{be.allocate(DType::I32, need.rows), be.allocate(act, need.sub),
                                                be.allocate(be.param_dtype(), need.rows), be.allocate(act, need.sub),
                                                be.allocate(act, need.sub), be.allocate(act, need.sub)});
    auto alloc_all = [&](std::vector<Buffer>& v, const std::vector<std::pair<DType, size_t>>& spec) {
      v.clear();
      for (const auto& [dtype, n] : spec) v.push_back(be.allocate(dtype, n));
    };
    // qpyr, kpyr, vpyr (the backward's pyramid gradients too), sq, sk, then the backward's dO,
    // dq, dk, dv.
    alloc_all(work_, {{act, need.qpyr}, {act, need.kvpyr}, {act, need.kvpyr}, {DType::F32, need.qscore},
                      {DType::F32, need.kscore}, {act, need.sub}, {act, need.sub}, {act, need.sub},
                      {act, need.sub}});
    cap_ = need;
  }

  void forward(Backend& be, int layer, Tensor out, const Tensor& qkv, const AttentionShape& s) override {
    if (opt_.is_dense(layer)) return dense_->forward(be, layer, out, qkv, s);
    const lighthouse::Geometry g = checked_geometry(s);
    const Sizes n = sizes(g, s);
    const Saved& keep = saved(layer);
    const Tensor idx = keep.idx.slice(0, n.rows), o = keep.o.slice(0, n.sub), lse = keep.lse.slice(0, n.rows);
    const Tensor qp = ws(kQPyr, n.qpyr), kp = ws(kKPyr, n.kvpyr), vp = ws(kVPyr, n.kvpyr);
    const Tensor sq = ws(kSQ, n.qscore), sk = ws(kSK, n.kscore);
    const Tensor q = keep.q.slice(0, n.sub), k = keep.k.slice(0, n.sub), v = keep.v.slice(0, n.sub);
    be.lighthouse_select_gather(q, k, v, idx, qkv, qp, kp, vp, sq, sk, s.B, s.H, s.Hkv, s.D, g);
    be.lighthouse_sdpa_forward(o, lse, q, k, v, s.B * s.H, int(g.sub_len()), s.D);
    be.lighthouse_scatter_forward(out, o, idx, s.B, s.H, s.D, g);
  }

  void backward(Backend& be, int layer, Tensor dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                const AttentionShape& s) override {
    if (opt_.is_dense(layer)) return dense_->backward(be, layer, dqkv, dout, qkv, out, s);
    const lighthouse::Geometry g = checked_geometry(s);
    const Sizes n = sizes(g, s);
    const Saved& keep = saved(layer);
    const Tensor idx = keep.idx.slice(0, n.rows), o = keep.o.slice(0, n.sub), lse = keep.lse.slice(0, n.rows);
    const Tensor q = keep.q.slice(0, n.sub), k = keep.k.slice(0, n.sub), v = keep.v.slice(0, n.sub);
    const Tensor dO = ws(kDO, n.sub), dq = ws(kDQ, n.sub), dk = ws(kDK, n.sub), dv = ws(kDV, n.sub);
    be.lighthouse_scatter_backward(dO, dout, idx, s.B, s.H, s.D, g);
    be.lighthouse_sdpa_backward(dq, dk, dv, dO, q, k, v, o, lse, s.B * s.H, int(g.sub_len()), s.D);
    // The pyramid gradients' scratch is the forward's pyramid buffers: no layer reads those
    // after its forward (the sub-sequences it needs are saved).
    const Tensor dqp = ws(kQPyr, n.qpyr), dkp = ws(kKPyr, n.kvpyr), dvp = ws(kVPyr, n.kvpyr);
    be.lighthouse_gather_pyramid_backward(dqkv, dq, dk, dv, idx, dqp, dkp, dvp, s.B, s.H, s.Hkv, s.D, g);
  }

 private:
  // Element counts of every buffer for one shape.
  struct Sizes {
    size_t rows = 0, sub = 0, qpyr = 0, kvpyr = 0, qscore = 0, kscore = 0;
    bool fits_in(const Sizes& c) const {
      return rows <= c.rows && sub <= c.sub && qpyr <= c.qpyr && kvpyr <= c.kvpyr && qscore <= c.qscore &&
             kscore <= c.kscore;
    }
  };
  static Sizes sizes(const lighthouse::Geometry& g, const AttentionShape& s) {
    const size_t S = size_t(g.sub_len()), P = size_t(g.pyramid_size());
    return {size_t(s.B) * s.H * S, size_t(s.B) * s.H * S * s.D, size_t(s.B) * s.H * P * s.D,
            size_t(s.B) * s.Hkv * P * s.D, size_t(s.B) * s.H * P, size_t(s.B) * s.Hkv * P};
  }
  struct Saved {
    Buffer idx, o, lse, q, k, v;
  };
  enum Work { kQPyr, kKPyr, kVPyr, kSQ, kSK, kDO, kDQ, kDK, kDV };

  bool any_layer(int n_layers, bool dense) const {
    for (int l = 0; l < n_layers; ++l)
      if (opt_.is_dense(l) == dense) return true;
    return false;
  }
  lighthouse::Geometry checked_geometry(const AttentionShape& s) const {
    const lighthouse::Geometry g = opt_.geometry(s.T);
    const std::string why = g.problem();
    if (!why.empty())
      throw std::invalid_argument("lighthouse attention at sequence length " + std::to_string(s.T) + ": " + why);
    if (!sizes(g, s).fits_in(cap_)) throw std::logic_error("lighthouse attention: shape exceeds reserve()");
    return g;
  }
  const Saved& saved(int layer) const {
    if (layer < 0 || layer >= int(saved_.size())) throw std::logic_error("lighthouse attention: reserve() not called");
    return saved_[layer];
  }
  Tensor ws(Work w, size_t n) const { return work_.at(w).slice(0, n); }
  LighthouseOptions opt_;
  std::unique_ptr<AttentionOp> dense_;
  std::vector<Saved> saved_;
  std::vector<Buffer> work_;
  Sizes cap_;
};

}  // namespace

std::unique_ptr<AttentionOp> make_lighthouse_attention(const nlohmann::json& options) {
  return std::make_unique<LighthouseAttention>(config_detail::parse_lighthouse_options(options, "options"));
}

}  // namespace lh
