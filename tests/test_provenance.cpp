// Checkpoints record what wrote them (lighthouse/provenance.h), and the differences that a resume
// reports are exactly the changed keys.
#include <catch2/catch.hpp>

#include <regex>

#include "lighthouse/checkpoint.h"
#include "lighthouse/provenance.h"
#include "lighthouse/trainer.h"
#include "support/gpu.h"
#include "support/small_run.h"
#include "support/temp_dir.h"

using nlohmann::json;

TEST_CASE("provenance: the build's commit and the backend, kept in every checkpoint", "[cpu][checkpoint]") {
  const std::string commit = lh::build_commit();
  INFO(commit);
  CHECK(std::regex_match(commit, std::regex("([0-9a-f]{12}(\\+changes)?)|unknown")));
  auto be = lh::make_cpu_backend();
  const json p = lh::provenance(*be);
  CHECK(p.at("lighthouse") == commit);
  CHECK(p.at("backend") == "cpu");
  CHECK(p.size() == 2);  // the CPU names no library versions

  lh::testing::TempDir dir;
  const lh::Config cfg = lh::testing::small_run(dir.path(), 3);
  const lh::TrainSummary s = lh::train(cfg, *be, {false, true});
  CHECK(lh::read_checkpoint_info(s.last_checkpoint).provenance == p);
}

TEST_CASE("provenance: a resume's changes name each differing key, in key order", "[cpu][checkpoint]") {
  const json saved = {{"lighthouse", "aaaaaaaaaaaa"}, {"backend", "cuda"}, {"cudnn", "9.14.0"}, {"gpu", "NVIDIA H200 (sm_90)"}};
  json now = saved;
  CHECK(lh::provenance_changes(saved, now).empty());
  now["cudnn"] = "9.19.0";
  now["gpu"] = "NVIDIA H100 80GB HBM3 (sm_90)";
  now["cublaslt"] = "13.1.0";
  const std::vector<std::string> expected = {"cublaslt none -> 13.1.0", "cudnn 9.14.0 -> 9.19.0",
                                             "gpu NVIDIA H200 (sm_90) -> NVIDIA H100 80GB HBM3 (sm_90)"};
  CHECK(lh::provenance_changes(saved, now) == expected);
  // Checkpoints from before provenance was recorded: nothing to compare.
  CHECK(lh::provenance_changes(json(), now).empty());
}

TEST_CASE("provenance on the GPU names the device and the CUDA, cuDNN and cuBLASLt versions", "[gpu][checkpoint]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  const json p = lh::provenance(*gpu);
  INFO(p.dump());
  CHECK(p.at("backend") == "cuda");
  CHECK_THAT(p.at("gpu").get<std::string>(), Catch::Matchers::Contains(" (sm_"));
  const std::regex version("[0-9]+\\.[0-9]+(\\.[0-9]+)?");
  for (const char* key : {"cuda_runtime", "cuda_driver", "cudnn", "cublaslt"})
    CHECK(std::regex_match(p.at(key).get<std::string>(), version));
  CHECK(p.at("cudnn").get<std::string>().rfind("9.", 0) == 0);  // the cuDNN 9 this build needs
}
