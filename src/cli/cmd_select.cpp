// lighthouse select: runs the Lighthouse selection (kernels/cpu/lighthouse_select.cpp) outside a
// model, for cross-checking other implementations, and draws what a trained model selects.
//   from scores:  --scores-q FILE --scores-k FILE --heads H --seq-len N --levels L --pooling P
//                 --topk K --out FILE   (float32 [H][N] level-0 scores in, int32 [H][S] indices out)
//   from a model: --checkpoint DIR --tokens FILE --layer L --head H --svg out.svg
//                 (tokens: int32 B, int32 T, then B*T int32 ids, as `eval --logits-for`; row 0 is used)
// --svg draws one head's selection in both modes: rows = levels (coarsest on top), columns = base
// positions; selected windows filled dark, rejected windows light, attended tokens (level 0) mid.
#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <vector>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/token_file.h"
#include "cli/validators.h"
#include "config/attention_options.h"
#include "lighthouse/checkpoint.h"
#include "lighthouse/ops/lighthouse_reference.h"
#include "lighthouse/trainer.h"

namespace {
namespace lhl = lh::lighthouse;

struct SelectArgs {
  std::string scores_q, scores_k, out, checkpoint, tokens, svg, device = "cpu";
  int heads = 0, seq_len = 0, layer = 0, head = 0;
  int levels = 0, pooling = 0, topk = 0;  // 0: from the checkpoint's lighthouse phase (model mode)
};

template <typename T> std::vector<T> read_exact(const std::string& path, size_t count, const char* what) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error(path + ": cannot open " + what);
  const size_t bytes = size_t(in.tellg()), want = count * sizeof(T);
  if (bytes != want)
    throw std::runtime_error(path + ": " + what + " must be " + std::to_string(want) + " bytes, got " +
                             std::to_string(bytes));
  std::vector<T> v(count);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(want));
  return v;
}

void write_indices(const std::string& path, const std::vector<int32_t>& idx) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(idx.data()), std::streamsize(idx.size() * sizeof(int32_t)));
  if (!out) throw std::runtime_error(path + ": cannot write the indices");
}

// Scores [H][N] level 0 -> [H][P] with the window maxima filled in.
std::vector<float> pyramid_scores(const std::vector<float>& level0, int H, const lhl::Geometry& g) {
  const size_t P = g.pyramid_size();
  std::vector<float> s(size_t(H) * P);
  for (int h = 0; h < H; ++h) std::copy_n(level0.begin() + size_t(h) * g.N, g.N, s.begin() + h * P);
  lhl::pool_scores(s.data(), H, g);
  return s;
}

void write_svg(const std::string& path, const int32_t* row, const lhl::Geometry& g, const std::string& title) {
  constexpr double kWidth = 1200, kRow = 28, kGap = 6, kLeft = 70, kTop = 30;
  const double scale = kWidth / g.N;
  std::ofstream out(path);
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kLeft + kWidth + 10 << "\" height=\""
      << kTop + g.L * (kRow + kGap) + 30 << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  out << "<text x=\"" << kLeft << "\" y=\"18\">" << title << "</text>\n";
  auto y_of = [&](int level) { return kTop + (g.L - 1 - level) * (kRow + kGap); };
  for (int l = 0; l < g.L; ++l) {
    out << "<text x=\"4\" y=\"" << y_of(l) + kRow * 0.65 << "\">level " << l << "</text>\n";
    out << "<rect x=\"" << kLeft << "\" y=\"" << y_of(l) << "\" width=\"" << kWidth << "\" height=\"" << kRow
        << "\" fill=\"none\" stroke=\"#ccc\"/>\n";
  }
  for (const auto& e : lhl::describe_row(row, g)) {
    const double c = double(g.window(e.level));
    const char* fill = e.level == 0 ? "#e6862e" : e.selected ? "#1f4e9c" : "#c9d6ea";
    out << "<rect x=\"" << kLeft + c * e.i * scale << "\" y=\"" << y_of(e.level) << "\" width=\"" << c * scale
        << "\" height=\"" << kRow << "\" fill=\"" << fill << "\"/>\n";
  }
  out << "<text x=\"" << kLeft << "\" y=\"" << kTop + g.L * (kRow + kGap) + 16
      << "\">dark: selected window, light: rejected window (attended as one summary), orange: attended "
         "token; columns: base positions 0.."
      << g.N - 1 << "</text>\n</svg>\n";
  if (!out) throw std::runtime_error(path + ": cannot write the drawing");
}

void from_scores(const SelectArgs& a) {
  if (a.scores_q.empty() || a.scores_k.empty() || a.out.empty() || a.heads < 1 || a.seq_len < 1 || !a.levels)
    throw std::runtime_error("select: give --scores-q, --scores-k, --heads, --seq-len, --levels, --pooling, "
                             "--topk and --out (or --checkpoint and --tokens)");
  const lhl::Geometry g{a.seq_len, a.levels, a.pooling, a.topk};
  g.validate();
  if (a.head < 0 || a.head >= a.heads) throw std::runtime_error("select: --head must be in [0, --heads)");
  const size_t n = size_t(a.heads) * a.seq_len;
  const auto sq = pyramid_scores(read_exact<float>(a.scores_q, n, "query scores [heads][seq_len] float32"), a.heads, g);
  const auto sk = pyramid_scores(read_exact<float>(a.scores_k, n, "key scores [heads][seq_len] float32"), a.heads, g);
  std::vector<int32_t> idx(size_t(a.heads) * g.sub_len());
  lhl::select(idx.data(), sq.data(), sk.data(), 1, a.heads, a.heads, g);
  write_indices(a.out, idx);
  std::printf("wrote %s: int32 [%d][%lld] pyramid indices (S = %lld of N = %d)\n", a.out.c_str(), a.heads,
              (long long)g.sub_len(), (long long)g.sub_len(), g.N);
  if (!a.svg.empty()) write_svg(a.svg, idx.data() + size_t(a.head) * g.sub_len(), g, "head " + std::to_string(a.head));
}

// Keeps the delegate's behaviour and copies the qkv activation of one layer to the host.
class RecordQkv final : public lh::AttentionOp {
 public:
  RecordQkv(std::unique_ptr<lh::AttentionOp> inner, int layer) : inner_(std::move(inner)), layer_(layer) {}
  std::string name() const override { return inner_->name(); }
  void reserve(lh::Backend& be, int n, const lh::AttentionShape& s) override { inner_->reserve(be, n, s); }
  void prepare_workspace(lh::Backend& be, int n, const lh::AttentionShape& s) override {
    inner_->prepare_workspace(be, n, s);
  }
  void forward(lh::Backend& be, int layer, lh::Tensor out, const lh::Tensor& qkv, const lh::AttentionShape& s) override {
    if (layer == layer_) {
      lh::Buffer f32 = be.allocate(lh::DType::F32, qkv.numel);
      be.convert(f32.view(), qkv);
      qkv_.resize(qkv.numel);
      be.copy_to_host(qkv_.data(), f32.view());
    }
    inner_->forward(be, layer, out, qkv, s);
  }
  void backward(lh::Backend&, int, lh::Tensor, const lh::Tensor&, const lh::Tensor&, const lh::Tensor&,
                const lh::AttentionShape&) override {
    throw std::logic_error("select: no backward");
  }
  std::vector<float> qkv_;

 private:
  std::unique_ptr<lh::AttentionOp> inner_;
  int layer_;
};

void from_model(const SelectArgs& a) {
  const lh::CheckpointInfo info = lh::read_checkpoint_info(a.checkpoint);
  const lh::ModelConfig& m = info.config.model;
  if (a.layer < 0 || a.layer >= m.n_layers || a.head < 0 || a.head >= m.n_heads)
    throw std::runtime_error("select: --layer must be in [0, " + std::to_string(m.n_layers) + ") and --head in [0, " +
                             std::to_string(m.n_heads) + ")");
  // The attention the model ran with: its (first) lighthouse phase, else dense; flags override the knobs.
  lh::AttentionPhase phase;
  for (const auto& p : info.config.attention.phases)
    if (p.attention == "lighthouse") { phase = p; break; }
  nlohmann::json opts = phase.attention == "lighthouse" ? phase.options : nlohmann::json::object();
  if (a.levels) opts["levels"] = a.levels;
  if (a.pooling) opts["pooling"] = a.pooling;
  if (a.topk) opts["topk"] = a.topk;
  const lh::LighthouseOptions lo = lh::config_detail::parse_lighthouse_options(opts, "options");
  if (phase.attention == "lighthouse" && lo.is_dense(a.layer))
    spdlog::warn("select: layer {} is in the Lighthouse phase's dense_layers: it always ran dense attention; this "
                 "draws what the selection would have picked there",
                 a.layer);

  if (a.tokens.empty()) throw std::runtime_error("select --checkpoint needs --tokens (the token file to run)");
  if (a.svg.empty() && a.out.empty())
    throw std::runtime_error("select --checkpoint needs --svg or --out (where to put the selection)");
  const lh::cli::TokenBatch batch = lh::cli::read_token_file(a.tokens, m.vocab_size);
  if (phase.attention != "lighthouse" && !(a.levels && a.pooling && a.topk))
    throw std::runtime_error("select: " + a.checkpoint + " was trained without a Lighthouse phase, so there is no "
                             "geometry to take from it: give --levels, --pooling and --topk");
  const int T = batch.seq_len;
  const lhl::Geometry g = lo.geometry(T);
  g.validate();

  auto backend = lh::make_backend(a.device, "--device");
  lh::LlamaModel model(m, *backend);
  model.set_recompute(lh::Recompute::kFull);  // forward only: the smallest activation layout
  lh::load_checkpoint_weights(a.checkpoint, model);
  auto recorder = std::make_unique<RecordQkv>(lh::make_attention(phase, m), a.layer);
  RecordQkv* rec = recorder.get();
  model.set_attention(std::move(recorder));
  model.forward(batch.ids.data(), nullptr, 1, T);  // row 0 only

  const int H = m.n_heads, Hkv = m.n_kv_heads, D = m.head_dim();
  const size_t P = g.pyramid_size();
  std::vector<float> qp(size_t(H) * P * D), kp(size_t(Hkv) * P * D), vp(kp.size()), sq(size_t(H) * P), sk(size_t(Hkv) * P);
  lhl::pyramid_forward(qp.data(), kp.data(), vp.data(), rec->qkv_.data(), 1, H, Hkv, D, g);
  lhl::norm_scores(sq.data(), qp.data(), 1, H, D, g);
  lhl::norm_scores(sk.data(), kp.data(), 1, Hkv, D, g);
  std::vector<int32_t> idx(size_t(H) * g.sub_len());
  lhl::select(idx.data(), sq.data(), sk.data(), 1, H, Hkv, g);
  const int32_t* row = idx.data() + size_t(a.head) * g.sub_len();
  if (!a.out.empty()) write_indices(a.out, idx);
  if (a.svg.empty()) return;
  write_svg(a.svg, row, g,
            a.checkpoint + ": layer " + std::to_string(a.layer) + ", head " + std::to_string(a.head) + ", N = " +
                std::to_string(T) + ", L = " + std::to_string(g.L) + ", p = " + std::to_string(g.p) + ", k = " +
                std::to_string(g.k) + ", S = " + std::to_string(g.sub_len()));
  std::printf("wrote %s (layer %d, head %d, S = %lld of N = %d)\n", a.svg.c_str(), a.layer, a.head,
              (long long)g.sub_len(), T);
}
}  // namespace

void register_select_command(CLI::App& app) {
  auto a = std::make_shared<SelectArgs>();
  CLI::App* cmd = app.add_subcommand("select", "Run the Lighthouse selection on score files or a model; draw it as SVG");
  cmd->add_option("--scores-q", a->scores_q, "Query scores, raw float32 [heads][seq_len]");
  cmd->add_option("--scores-k", a->scores_k, "Key scores, raw float32 [heads][seq_len]");
  cmd->add_option("--heads", a->heads, "Heads in the score files")
      ->default_str("")->check(lh::cli::whole_at_least(1));
  cmd->add_option("--seq-len", a->seq_len, "Sequence length N of the score files")
      ->default_str("")->check(lh::cli::whole_at_least(1));
  cmd->add_option("--levels", a->levels, "Pyramid levels L (default in model mode: the checkpoint's Lighthouse phase)");
  cmd->add_option("--pooling", a->pooling, "Pooling factor p (default in model mode: the checkpoint's Lighthouse phase)");
  cmd->add_option("--topk", a->topk, "Selection budget k (default in model mode: the checkpoint's Lighthouse phase)");
  cmd->add_option("--out", a->out, "Write int32 [heads][S] pyramid indices (off(l) + i) in causal order");
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint directory (model mode)")->check(CLI::ExistingDirectory);
  cmd->add_option("--tokens", a->tokens, "Token file: int32 B, T, then B*T ids (model mode)")->check(CLI::ExistingFile);
  cmd->add_option("--layer", a->layer, "Layer whose selection to draw (model mode)");
  cmd->add_option("--head", a->head, "Head to draw");
  cmd->add_option("--svg", a->svg, "Draw the head's selection into this SVG file");
  cmd->add_option("--device", a->device, "auto | cpu | cuda (model mode)")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->callback([a]() { a->checkpoint.empty() ? from_scores(*a) : from_model(*a); });
}
