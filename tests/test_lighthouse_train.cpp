// The "lighthouse" AttentionOp: identical to the reference composition through the Backend, dense
// layers delegated, and the trainer crossing a lighthouse -> dense phase boundary, straight and
// across a resume, bit-exactly.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <tuple>

#include "lighthouse/attention.h"
#include "lighthouse/checkpoint.h"
#include "lighthouse/checkpoint_dir.h"
#include "lighthouse/data.h"
#include "lighthouse/ops/cpu_reference.h"
#include "lighthouse/ops/lighthouse_reference.h"
#include "lighthouse/trainer.h"
#include "support/small_run.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
using lh::testing::file_bytes;
using lh::testing::phased_run;
const json kOptions = {{"levels", 2}, {"pooling", 2}, {"topk", 128}, {"dense_layers", {0}}};

// (step, loss, phase) of every training record.
std::vector<std::tuple<int, double, std::string>> records(const fs::path& metrics) {
  std::vector<std::tuple<int, double, std::string>> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = json::parse(line);
    if (j.contains("loss")) out.emplace_back(j["step"].get<int>(), j["loss"].get<double>(), j["phase"].get<std::string>());
  }
  return out;
}
}  // namespace

TEST_CASE("the lighthouse AttentionOp equals the reference composition and dense layers delegate", "[cpu][lighthouse]") {
  auto be = lh::make_cpu_backend(lh::DType::F64);
  lh::ModelConfig m;
  m.n_layers = 2;
  lh::AttentionPhase phase{1, "lighthouse", kOptions};
  auto op = lh::make_attention(phase, m);
  REQUIRE(op->name() == "lighthouse");
  const lh::AttentionShape s{2, 256, 4, 2, 8};
  const lh::lighthouse::Geometry g{256, 2, 2, 128};
  const size_t W = size_t(s.H + 2 * s.Hkv) * s.D, n_qkv = s.tokens() * W, n_out = s.tokens() * s.H * s.D;
  std::mt19937 rng(3);
  std::normal_distribution<double> nd;
  std::vector<double> qkv(n_qkv), dout(n_out);
  for (auto& x : qkv) x = nd(rng);
  for (auto& x : dout) x = nd(rng);
  auto qkv_b = be->allocate(lh::DType::F64, n_qkv), dout_b = be->allocate(lh::DType::F64, n_out);
  be->copy_from_host(qkv_b.view(), qkv.data());
  be->copy_from_host(dout_b.view(), dout.data());
  auto out_b = be->allocate(lh::DType::F64, n_out), dqkv_b = be->allocate(lh::DType::F64, n_qkv);
  op->reserve(*be, m.n_layers, s);

  SECTION("layer 1 runs Lighthouse, bit for bit the reference") {
    op->forward(*be, 1, out_b.view(), qkv_b.view(), s);
    op->backward(*be, 1, dqkv_b.view(), dout_b.view(), qkv_b.view(), out_b.view(), s);
    lh::lighthouse::LayerState<double> st;
    std::vector<double> out(n_out), dqkv(n_qkv);
    lh::lighthouse::layer_forward(out.data(), st, qkv.data(), s.B, s.H, s.Hkv, s.D, g);
    lh::lighthouse::layer_backward(dqkv.data(), dout.data(), st, s.B, s.H, s.Hkv, s.D, g);
    CHECK(std::equal(out.begin(), out.end(), out_b.view().as<double>()));
    CHECK(std::equal(dqkv.begin(), dqkv.end(), dqkv_b.view().as<double>()));
  }
  SECTION("layer 0 is listed in dense_layers: exact causal attention, forward and backward") {
    op->forward(*be, 0, out_b.view(), qkv_b.view(), s);
    op->backward(*be, 0, dqkv_b.view(), dout_b.view(), qkv_b.view(), out_b.view(), s);
    std::vector<double> out(n_out), lse(s.tokens() * s.H), dqkv(n_qkv, 0.0);
    lh::cpu::attention_forward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.Hkv, s.D);
    lh::cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), s.B, s.T, s.H, s.Hkv,
                                s.D);
    CHECK(std::equal(out.begin(), out.end(), out_b.view().as<double>()));
    CHECK(std::equal(dqkv.begin(), dqkv.end(), dqkv_b.view().as<double>()));
  }
  SECTION("a sequence length the geometry cannot take is refused with its numbers") {
    const lh::AttentionShape bad{1, 200, 4, 2, 8};
    CHECK_THROWS_WITH(op->forward(*be, 1, out_b.view(), qkv_b.view(), bad), Catch::Contains("200"));
  }
}

TEST_CASE("training crosses lighthouse -> dense and a resume across the boundary is bit-exact", "[cpu][lighthouse][train]") {
  lh::testing::TempDir straight_dir, split_dir;
  auto be = lh::make_cpu_backend();
  const int steps = 6, boundary = 3;
  const lh::Config straight = phased_run(straight_dir.path(), steps, boundary);
  lh::train(straight, *be, {false, true});
  const auto a = records(straight_dir.path() / "run" / "metrics.jsonl");
  REQUIRE(a.size() == size_t(steps));
  for (const auto& [step, loss, phase] : a) {
    INFO("step " << step);
    CHECK(std::isfinite(loss));
    CHECK(phase == (step <= boundary ? "lighthouse" : "dense"));
  }

  // Stopped before the boundary (as a preempted job), resumed, crossing it in the second process.
  const lh::Config split = phased_run(split_dir.path(), steps, boundary);
  lh::TrainOptions stop{false, true};
  stop.stop_at_step = boundary - 1;
  REQUIRE(lh::train(split, *be, stop).steps_done == boundary - 1);
  REQUIRE(lh::train(split, *be, {true, true}).steps_done == steps);
  const auto b = records(split_dir.path() / "run" / "metrics.jsonl");
  REQUIRE(b.size() == a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("record " << i);
    CHECK(std::get<1>(a[i]) == std::get<1>(b[i]));  // bitwise
    CHECK(std::get<2>(a[i]) == std::get<2>(b[i]));
  }
  const std::string name = lh::ckpt::checkpoint_name(steps);
  CHECK(file_bytes(straight_dir.path() / "run" / name / "model.safetensors") ==
        file_bytes(split_dir.path() / "run" / name / "model.safetensors"));
  CHECK(file_bytes(straight_dir.path() / "run" / name / "optimizer.safetensors") ==
        file_bytes(split_dir.path() / "run" / name / "optimizer.safetensors"));
}
