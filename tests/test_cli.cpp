// The `lighthouse` binary end to end: exit codes and messages for bad input, and the
// data -> train -> eval -> export pipeline on a tiny model.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <csignal>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "lighthouse/provenance.h"
#include "lighthouse/safetensors.h"
#include "support/run_binary.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;

namespace {

using lh::testing::run_lighthouse;

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

const char* kTinyConfig = R"({
  "model": {"dim": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "ffn_hidden": 48, "max_seq_len": 128},
  "data": {"train": ["data/train_*.bin"], "val": ["data/val_*.bin"], "seq_len": 32, "micro_batch": 2},
  "schedule": {"decay": "constant"},
  "training": {"steps": 4, "grad_accum": 1, "eval_interval": 2, "eval_batches": 1, "device": "cpu"},
  "logging": {"dir": "runs/tiny", "interval": 1}
})";

// The weights of kTinyConfig, read from a checkpoint's model.safetensors: [rows, cols] fp32.
std::vector<float> checkpoint_rows(const lh::safetensors::File& f, const std::string& name, int64_t row_begin,
                                   int64_t rows) {
  const auto& info = f.info(name);
  std::vector<float> all(info.numel());
  f.read(name, lh::DType::F32, info.shape, all.data());
  const int64_t cols = info.shape.back();
  return {all.begin() + row_begin * cols, all.begin() + (row_begin + rows) * cols};
}

// bf16 of an fp32 value, rounded to nearest even (finite values).
uint16_t to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return uint16_t((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

// The export holds Hugging Face Llama's tensors, each the checkpoint's rows that HF's layer
// definition says (written out here from that definition, not from hf_export.cpp): q, k and v
// are consecutive row blocks of the fused wqkv, gate and up those of w_gate_up.
void check_hf_export(const fs::path& checkpoint, const fs::path& hf, bool bf16) {
  const auto ours = lh::safetensors::File::open((checkpoint / "model.safetensors").string());
  const auto theirs = lh::safetensors::File::open((hf / "model.safetensors").string());
  const int64_t C = 32, F = 48, q = 32, kv = 16, V = 257;  // kTinyConfig: 2 heads, 1 kv head of 16
  struct Expected {
    std::string hf, ours;
    int64_t row_begin, rows;
  };
  std::vector<Expected> expected = {
      {"model.embed_tokens.weight", "embed", 0, V},
      {"model.layers.0.input_layernorm.weight", "layers.0.attn_norm", 0, 1},
      {"model.layers.0.self_attn.q_proj.weight", "layers.0.wqkv", 0, q},
      {"model.layers.0.self_attn.k_proj.weight", "layers.0.wqkv", q, kv},
      {"model.layers.0.self_attn.v_proj.weight", "layers.0.wqkv", q + kv, kv},
      {"model.layers.0.self_attn.o_proj.weight", "layers.0.wo", 0, C},
      {"model.layers.0.post_attention_layernorm.weight", "layers.0.mlp_norm", 0, 1},
      {"model.layers.0.mlp.gate_proj.weight", "layers.0.w_gate_up", 0, F},
      {"model.layers.0.mlp.up_proj.weight", "layers.0.w_gate_up", F, F},
      {"model.layers.0.mlp.down_proj.weight", "layers.0.w_down", 0, C},
      {"model.norm.weight", "final_norm", 0, 1}};
  if (ours.contains("lm_head")) expected.push_back({"lm_head.weight", "lm_head", 0, V});
  CHECK(theirs.names().size() == expected.size());
  for (const Expected& e : expected) {
    INFO(e.hf << " <- " << e.ours << " rows [" << e.row_begin << ", " << e.row_begin + e.rows << ")");
    REQUIRE(theirs.contains(e.hf));
    const std::vector<float> want = checkpoint_rows(ours, e.ours, e.row_begin, e.rows);
    const auto& info = theirs.info(e.hf);
    REQUIRE(info.numel() == want.size());
    REQUIRE(info.dtype == (bf16 ? lh::DType::BF16 : lh::DType::F32));
    if (bf16) {
      std::vector<uint16_t> got(want.size());
      theirs.read(e.hf, lh::DType::BF16, info.shape, got.data());
      size_t differ = 0;
      for (size_t i = 0; i < want.size(); ++i) differ += got[i] != to_bf16(want[i]);
      CHECK(differ == 0);
    } else {
      std::vector<float> got(want.size());
      theirs.read(e.hf, lh::DType::F32, info.shape, got.data());
      CHECK(got == want);
    }
  }
}

}  // namespace

TEST_CASE("cli: unknown subcommands and flags are errors", "[cpu][cli]") {
  lh::testing::TempDir dir;
  CHECK(run_lighthouse("", dir.path()).code != 0);
  const auto r = run_lighthouse("train --no-such-flag", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("no-such-flag"));
  for (const char* unknown : {"frobnicate", "data frobnicate"}) {
    const auto u = run_lighthouse(unknown, dir.path());
    CHECK(u.code != 0);
    CHECK_THAT(u.output, Catch::Contains("unknown command 'frobnicate'"));
  }
  CHECK(run_lighthouse("train --help", dir.path()).code == 0);
  // Numbers say what they must be; negative counts and seeds are not wrapped around.
  const auto zero = run_lighthouse("train --stop-at 0", dir.path());
  CHECK(zero.code != 0);
  CHECK_THAT(zero.output, Catch::Contains("--stop-at: must be >= 1, got 0"));
  const auto word = run_lighthouse("train --stop-at ten", dir.path());
  CHECK_THAT(word.output, Catch::Contains("'ten' is not a whole number"));
  for (const char* negative : {"--val-samples -1", "--seed -1"}) {
    const auto r = run_lighthouse(std::string("data synthetic --task toy --out d --length 9 ") + negative, dir.path());
    CHECK(r.code != 0);
    CHECK_THAT(r.output, Catch::Contains(std::string(negative).substr(0, std::string(negative).find(' '))));
    CHECK_FALSE(fs::exists(dir.path() / "d"));
  }
  const auto all_val = run_lighthouse("data text --input . --out t --val-fraction 1", dir.path());
  CHECK(all_val.code != 0);  // training needs some of the documents
  CHECK_THAT(all_val.output, Catch::Contains("--val-fraction") && Catch::Contains("must be >= 0 and < 1, got 1"));
  const auto single = run_lighthouse("dist-check --nccl", dir.path());  // nothing to check, and it says so
  CHECK(single.code == 0);
  CHECK_THAT(single.output, Catch::Contains("no NCCL collectives were run") && !Catch::Contains("collectives ok"));
  const auto heads = run_lighthouse("bench attention --heads 2 --kv-heads 4 --seq-lens 64", dir.path());
  CHECK(heads.code != 0);
  CHECK_THAT(heads.output, Catch::Contains("--kv-heads (4) must divide --heads (2)"));
}

TEST_CASE("cli: --version names the commit and the CUDA and cuDNN versions of the build", "[cpu][cli]") {
  const auto r = run_lighthouse("--version");
  CHECK(r.code == 0);
  CHECK_THAT(r.output, Catch::StartsWith("lighthouse ") && Catch::Contains(", built against CUDA ") &&
                           Catch::Contains(" and cuDNN "));
}

TEST_CASE("cli: benchmark results record the build and backend that produced them", "[cpu][cli]") {
  lh::testing::TempDir dir;
  const auto r = run_lighthouse("bench --device cpu --out a.json attention --seq-lens 64 --heads 2 --kv-heads 1 "
                                "--head-dim 16 --iters 1", dir.path());
  INFO(r.output);
  REQUIRE(r.code == 0);
  const nlohmann::json j = nlohmann::json::parse(std::ifstream(dir.path() / "a.json"));
  CHECK(j.at("provenance").at("backend") == "cpu");
  CHECK(j.at("provenance").at("lighthouse") == lh::build_commit());
}

TEST_CASE("cli: train --dry-run checks and writes nothing, and --device-memory caps the device", "[cpu][cli]") {
  lh::testing::TempDir dir;
  write(dir.path() / "tiny.json", kTinyConfig);
  REQUIRE(run_lighthouse("data synthetic --task toy --out data --length 33 --train-samples 64 --val-samples 8",
                         dir.path()).code == 0);
  auto r = run_lighthouse("train --config tiny.json --dry-run", dir.path());
  INFO(r.output);
  CHECK(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("memory: phase 1 of 1 (dense, steps 1-4): recompute"));
  CHECK_THAT(r.output, Catch::Contains("dry run: checked the config, the data and the memory of 1 attention phase; "
                                       "nothing was trained or written to runs/tiny"));
  CHECK_FALSE(fs::exists(dir.path() / "runs"));
  // 0.0005 GiB (536,870 bytes) holds the tiny model and its optimizer (~380 KiB) but not its batch's
  // activations (~250 KiB without recomputation): refused before step 1, naming the phase.
  r = run_lighthouse("train --config tiny.json --device-memory 0.0005 --set training.recompute=none", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("the run's attention (dense, steps 1-4) does not fit (found before the first "
                                       "step)") && Catch::Contains("limit of 536870"));
  CHECK_FALSE(fs::exists(dir.path() / "runs/tiny/metrics.jsonl"));
  for (const char* bad : {"-1", "1e-9", "2e6", "x"}) {
    r = run_lighthouse(std::string("train --config tiny.json --device-memory ") + bad, dir.path());
    CHECK(r.code != 0);
    CHECK_THAT(r.output, Catch::Contains("--device-memory"));
  }
}

TEST_CASE("cli: quickstarts started at once generate their data once", "[cpu][cli]") {
  // As the ranks of `torchrun ... lighthouse train` do: each finds the data missing. The test holds
  // the quickstart's lock while both start, so that both find the data missing and then wait;
  // without the lock each would generate it.
  lh::testing::TempDir dir;
  fs::create_directories(dir.path() / "data");
  // Close-on-exec: a copy inherited by the children would hold the lock for them.
  const int lock = ::open((dir.path() / "data/quickstart.lock").c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(lock >= 0);
  REQUIRE(::flock(lock, LOCK_EX) == 0);
  lh::testing::CliResult a, b;
  std::thread first([&] { a = lh::testing::run_lighthouse_unchecked("train --dry-run", dir.path()); });
  std::thread second([&] { b = lh::testing::run_lighthouse_unchecked("train --dry-run", dir.path()); });
  std::this_thread::sleep_for(std::chrono::seconds(1));  // both reach the lock
  ::close(lock);
  first.join();
  second.join();
  INFO(a.output << "\n----\n" << b.output);
  CHECK(a.code == 0);
  CHECK(b.code == 0);
  auto count = [](const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
  };
  CHECK(count(a.output + b.output, "generating the quickstart's toy-language data") == 1);
}

TEST_CASE("cli: bad configs and overrides name the culprit", "[cpu][cli]") {
  lh::testing::TempDir dir;
  write(dir.path() / "bad.json", R"({"model": {"dimm": 64}, "data": {"train": ["x.bin"]}})");
  auto r = run_lighthouse("train --config bad.json", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("bad.json") && Catch::Contains("model.dimm"));

  write(dir.path() / "tiny.json", kTinyConfig);
  r = run_lighthouse("train --config tiny.json --set training.steps=-3", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("training.steps"));

  r = run_lighthouse("train --config tiny.json", dir.path());  // the shards do not exist
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("data/train_*.bin"));
}

TEST_CASE("cli: bench gemm refuses the CPU and bad options", "[cpu][cli]") {
  lh::testing::TempDir dir;
  write(dir.path() / "tiny.json", kTinyConfig);
  auto r = run_lighthouse("bench --device cpu gemm --config tiny.json", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("bench gemm") && Catch::Contains("--device cuda"));
  r = run_lighthouse("bench gemm --config tiny.json --candidates -2", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("--candidates"));
  r = run_lighthouse("bench gemm --config missing.json", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("missing.json"));
}

TEST_CASE("cli: bench train --trace and train --trace need a CUDA device", "[cpu][cli]") {
  lh::testing::TempDir dir;
  write(dir.path() / "tiny.json", kTinyConfig);
  const auto r = run_lighthouse("bench --device cpu train --config tiny.json --trace t.json", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("--trace") && Catch::Contains("CUDA device"));
  const auto t = run_lighthouse("train --config tiny.json --set training.device=cpu --trace t.json", dir.path());
  CHECK(t.code != 0);
  CHECK_THAT(t.output, Catch::Contains("--trace") && Catch::Contains("training.device cuda"));
}

TEST_CASE("cli: data, train, resume, eval and export on a tiny model", "[cpu][cli]") {
  lh::testing::TempDir dir;
  write(dir.path() / "tiny.json", kTinyConfig);
  auto r = run_lighthouse("data synthetic --task toy --out data --length 33 --train-samples 64 --val-samples 8", dir.path());
  REQUIRE(r.code == 0);

  r = run_lighthouse("train --config tiny.json --quiet --stop-at 2", dir.path());
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK(fs::exists(dir.path() / "runs/tiny/step_00000002/state.json"));
  r = run_lighthouse("train --config tiny.json --quiet", dir.path());
  CHECK(r.code != 0);  // refuses to start over a run directory with checkpoints
  // A job chunk run again once its chunk is done trains nothing (rather than past --stop-at).
  r = run_lighthouse("train --config tiny.json --resume --stop-at 1", dir.path());
  CHECK(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("already at or past --stop-at 1") && Catch::Contains("nothing to train in this call"));
  CHECK_FALSE(fs::exists(dir.path() / "runs/tiny/step_00000003"));
  // The checkpoint records what wrote it; a resume by another build says so, and goes on.
  {
    const fs::path state_file = dir.path() / "runs/tiny/step_00000002/state.json";
    nlohmann::json state = nlohmann::json::parse(std::ifstream(state_file));
    REQUIRE(state["provenance"]["backend"] == "cpu");
    state["provenance"]["lighthouse"] = "0123456789ab";
    std::ofstream(state_file) << state.dump();
  }
  r = run_lighthouse("train --config tiny.json --resume", dir.path());
  REQUIRE(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("resumed") && Catch::Contains("ETA"));
  CHECK_THAT(r.output, Catch::Contains("was written by other software or hardware (lighthouse 0123456789ab -> "));
  CHECK(fs::exists(dir.path() / "runs/tiny/step_00000004/model.safetensors"));
  CHECK(fs::exists(dir.path() / "runs/tiny/metrics.jsonl"));

  r = run_lighthouse("eval --checkpoint runs/tiny/step_00000004 --passkey-lengths 96 --passkey-depths 0.5 "
              "--passkey-samples 1 --out eval.json", dir.path());
  REQUIRE(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("val_loss") && Catch::Contains("passkey"));
  CHECK(fs::exists(dir.path() / "eval.json"));

  r = run_lighthouse("export --checkpoint runs/tiny/step_00000004 --out hf", dir.path());
  REQUIRE(r.code == 0);
  CHECK(fs::exists(dir.path() / "hf/config.json"));
  check_hf_export(dir.path() / "runs/tiny/step_00000004", dir.path() / "hf", /*bf16=*/false);
  r = run_lighthouse("export --checkpoint runs/tiny/step_00000004 --out hf --dtype bf16", dir.path());
  CHECK(r.code == 0);  // over an earlier export
  check_hf_export(dir.path() / "runs/tiny/step_00000004", dir.path() / "hf", /*bf16=*/true);
  // Never over a checkpoint, a run directory or other files.
  for (const char* taken : {"runs/tiny/step_00000004", "runs/tiny"}) {
    r = run_lighthouse(std::string("export --checkpoint runs/tiny/step_00000004 --out ") + taken, dir.path());
    CHECK(r.code != 0);
    CHECK_THAT(r.output, Catch::Contains("not an earlier export"));
  }
  r = run_lighthouse("eval --checkpoint runs/tiny/step_00000004 --passkey-lengths 512", dir.path());
  CHECK(r.code != 0);  // refused before any evaluation runs
  CHECK_THAT(r.output, Catch::Contains("--passkey-lengths 512") && Catch::Contains("model.max_seq_len 128"));
  CHECK_THAT(r.output, !Catch::Contains("val_loss"));
  {  // a model without the byte vocabulary has no embedding rows for passkey prompts
    fs::copy(dir.path() / "runs/tiny/step_00000004", dir.path() / "small_vocab");
    nlohmann::json state = nlohmann::json::parse(std::ifstream(dir.path() / "small_vocab/state.json"));
    state["config"]["model"]["vocab_size"] = 100;
    std::ofstream(dir.path() / "small_vocab/state.json") << state.dump();
  }
  r = run_lighthouse("eval --checkpoint small_vocab --passkey-lengths 96", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("--passkey-lengths needs the byte vocabulary") && Catch::Contains("has 100"));
  r = run_lighthouse("eval --checkpoint runs/tiny/step_00000004 --val-batches 1000", dir.path());
  CHECK(r.code == 0);  // the checkpoint is intact; the shards hold fewer batches than asked for
  CHECK_THAT(r.output, Catch::Contains("evaluating 4 rather than 1000") && Catch::Contains("(4 batches"));

  // Token files: ids outside the vocabulary and headers that promise more than the file holds.
  auto tokens = [&](const char* name, std::vector<int32_t> words) {
    std::ofstream(dir.path() / name, std::ios::binary)
        .write(reinterpret_cast<const char*>(words.data()), std::streamsize(words.size() * sizeof(int32_t)));
  };
  tokens("oov.bin", {1, 3, 5, 999, 7});
  tokens("short.bin", {100000, 100000, 1, 2});
  r = run_lighthouse("eval --checkpoint runs/tiny/step_00000004 --logits-for oov.bin --logits-out l.bin", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("oov.bin: token 999 at position 1 is outside"));
  r = run_lighthouse("eval --checkpoint runs/tiny/step_00000004 --logits-for short.bin --logits-out l.bin", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("short.bin: the header says 100000 x 100000 tokens"));
  r = run_lighthouse("select --checkpoint runs/tiny/step_00000004 --tokens oov.bin --layer 0 --head 0 --svg sel.svg", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("token 999"));
  r = run_lighthouse("select --checkpoint runs/tiny/step_00000004 --tokens oov.bin --layer 0 --head 0", dir.path());
  CHECK(r.code != 0);  // nowhere to put the selection: no file appears unasked
  CHECK_THAT(r.output, Catch::Contains("needs --svg or --out"));
  CHECK_FALSE(fs::exists(dir.path() / "selection.svg"));
  tokens("ok.bin", {1, 4, 1, 2, 3, 4});
  r = run_lighthouse("select --checkpoint runs/tiny/step_00000004 --tokens ok.bin --layer 0 --head 0 --svg s.svg",
                     dir.path());
  CHECK(r.code != 0);  // a dense run has no geometry to draw with
  CHECK_THAT(r.output, Catch::Contains("trained without a Lighthouse phase") && Catch::Contains("--levels, --pooling"));

  // A checkpoint whose state was edited into nonsense is refused, naming its state file.
  fs::copy(dir.path() / "runs/tiny/step_00000004", dir.path() / "edited", fs::copy_options::recursive);
  {
    std::ifstream in(dir.path() / "edited/state.json");
    nlohmann::json state = nlohmann::json::parse(in);
    state["state"]["step"] = -3;
    std::ofstream(dir.path() / "edited/state.json") << state.dump();
  }
  r = run_lighthouse("eval --checkpoint edited", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("edited/state.json") && Catch::Contains("step must be >= 0"));

  r = run_lighthouse("eval --checkpoint runs/tiny", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("a run directory, not a checkpoint; its newest checkpoint is runs/tiny/step_00000004"));
  r = run_lighthouse("eval --checkpoint runs/no_such_dir", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("no_such_dir"));
}

TEST_CASE("cli: a stop request checkpoints and exits, also when a launcher doubles it", "[cpu][cli]") {
  lh::testing::TempDir dir;
  write(dir.path() / "tiny.json", kTinyConfig);
  REQUIRE(run_lighthouse("data synthetic --task toy --out data --length 33 --train-samples 64 --val-samples 8",
                         dir.path()).code == 0);
  // The request lands between checkpoints (one is written for it) or, with a checkpoint every
  // step, on a checkpoint step (that checkpoint serves; none is written twice).
  std::string interval = "0", saying = "saving a checkpoint at step";
  SECTION("between checkpoints") {}
  SECTION("on a checkpoint step") { interval = "1", saying = "checkpoint already written at step"; }
  const std::string interval_set = "training.checkpoint_interval=" + interval;
  const fs::path log = dir.path() / "train.log";
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // the child only execs (or _exits): Catch2's state belongs to the parent
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ::chdir(dir.path().c_str()) != 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0) ::_exit(126);
    ::execl(LH_BINARY, LH_BINARY, "train", "--config", "tiny.json", "--set", "training.steps=1000000", "--set",
            "training.eval_interval=0", "--set", interval_set.c_str(), "--quiet", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const fs::path metrics = dir.path() / "runs/tiny/metrics.jsonl";
  const auto records = [&] {
    std::ifstream in(metrics);
    return std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n');
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (records() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // What a terminal's Ctrl-C gives each rank under a launcher: SIGINT, and the launcher's SIGTERM
  // right after. Together they are one request: finish the step, checkpoint, exit.
  ::kill(pid, SIGINT);
  ::kill(pid, SIGTERM);
  int status = 0;
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL("train did not stop after SIGINT + SIGTERM");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::ifstream in(log);
  const std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(output);
  REQUIRE(WIFEXITED(status));  // not killed by the second signal
  CHECK(WEXITSTATUS(status) == 1);  // interrupted, so not a finished run
  CHECK_THAT(output, Catch::Contains("stop requested") && Catch::Contains("interrupted; resume with --resume"));
  CHECK_THAT(output, !Catch::Contains("second stop request"));
  CHECK_THAT(output, Catch::Contains(saying));
  std::vector<std::string> written;  // each "checkpoint written: <dir>" line
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);)
    if (line.find("checkpoint written:") != std::string::npos) written.push_back(line.substr(line.find("checkpoint written:")));
  std::sort(written.begin(), written.end());
  CHECK(std::adjacent_find(written.begin(), written.end()) == written.end());
  bool checkpoint = false;
  for (const auto& e : fs::directory_iterator(dir.path() / "runs/tiny"))
    checkpoint |= e.path().filename().string().rfind("step_", 0) == 0 && fs::exists(e.path() / "state.json");
  CHECK(checkpoint);
}

namespace {

// `lighthouse <words> --help`, as scripts/cli_reference.sh writes it into docs/cli.md (the
// app is named, so its usage line says `lighthouse` whatever the binary's path).
std::string help_text(const std::string& words) {
  const auto r = run_lighthouse(words + (words.empty() ? "" : " ") + "--help");
  REQUIRE(r.code == 0);
  return r.output;
}

// The names listed under "Subcommands:" in a help text.
std::vector<std::string> subcommands_in(const std::string& help) {
  std::vector<std::string> names;
  std::istringstream lines(help.substr(std::min(help.size(), help.find("\nSubcommands:"))));
  std::string line;
  std::getline(lines, line), std::getline(lines, line);
  while (std::getline(lines, line) && line.rfind("  ", 0) == 0 && line.size() > 2 && line[2] != ' ')
    names.push_back(line.substr(2, line.find(' ', 2) - 2));
  return names;
}

}  // namespace

TEST_CASE("cli: docs/cli.md is every subcommand's --help", "[cpu][cli]") {
  std::ifstream in(std::string(LH_SOURCE_DIR) + "/docs/cli.md");
  REQUIRE(in);
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Every command the binary has, found through the help texts themselves, depth first.
  std::vector<std::string> commands{""};
  for (size_t i = 0; i < commands.size(); ++i)
    for (const std::string& sub : subcommands_in(help_text(commands[i])))
      commands.push_back(commands[i].empty() ? sub : commands[i] + " " + sub);
  CHECK(commands.size() > 10);
  for (const std::string& words : commands) {
    const std::string heading = "## `lighthouse" + (words.empty() ? "" : " " + words) + "`\n\n```text\n";
    const size_t at = doc.find(heading);
    INFO("docs/cli.md is out of date: run scripts/cli_reference.sh (section " << heading.substr(0, heading.find('\n'))
                                                                            << ")");
    REQUIRE(at != std::string::npos);
    const size_t begin = at + heading.size(), end = doc.find("```\n", begin);
    REQUIRE(end != std::string::npos);
    CHECK(doc.substr(begin, end - begin) == help_text(words));
  }
  size_t sections = 0;
  for (size_t at = doc.find("\n## "); at != std::string::npos; at = doc.find("\n## ", at + 1)) ++sections;
  CHECK(sections == commands.size());  // none for a command that is gone
}

TEST_CASE("cli: data info reports every shard, the bad ones too, and fails for them", "[cpu][cli]") {
  lh::testing::TempDir dir;
  auto r = run_lighthouse("data synthetic --task toy --out d --length 33 --train-samples 8 --val-samples 0", dir.path());
  REQUIRE(r.code == 0);
  write(dir.path() / "d" / "notes.bin", "some text, not tokens " + std::string(2000, '.'));  // longer than a header
  r = run_lighthouse("data info d", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("notes.bin: unknown shard magic") &&
                           Catch::Contains("`lighthouse data text`") && Catch::Contains("train_000000.bin: 264 tokens") &&
                           Catch::Contains("1 of 2 shards are not valid"));
}
