// Kernel traces: the summary's interval arithmetic, the Chrome trace file and kernel names
// everywhere; CUPTI capture on the GPU machine, refused with a reason without a GPU.
#include <catch2/catch.hpp>

#include <climits>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "lighthouse/backend.h"
#include "lighthouse/device.h"
#include "lighthouse/kernel_trace.h"
#include "support/gpu.h"
#include "support/temp_dir.h"
#include "train/step_trace.h"

namespace {
lh::TraceEvent ev(const std::string& name, uint64_t start, uint64_t end, uint32_t stream = 7) {
  return {lh::TraceEvent::Kind::kKernel, name, start, end, stream};
}
std::string read_text(const std::string& path) {
  std::ostringstream s;
  s << std::ifstream(path).rdbuf();
  return s.str();
}
}  // namespace

TEST_CASE("kernel trace: busy time merges overlaps, gaps are the idle stretches between events", "[cpu]") {
  // Out of order on purpose; b overlaps a on another stream, d starts where c ends (no gap).
  const std::vector<lh::TraceEvent> events = {ev("gemm", 200, 300), ev("gemm", 0, 100), ev("norm", 50, 150, 9),
                                              ev("rope", 300, 350), ev("norm", 1000, 1100)};
  const lh::TraceSummary s = lh::summarize_trace(events);
  CHECK(s.events == 5);
  CHECK(s.span_ms == Approx(1100e-6));
  CHECK(s.busy_ms == Approx(400e-6));  // [0, 150] + [200, 350] + [1000, 1100]
  CHECK(s.idle_ms == Approx(700e-6));
  CHECK(s.gaps == 2);
  CHECK(s.largest_gap_ms == Approx(650e-6));
  REQUIRE(s.ms_by_name.size() == 3);
  CHECK(s.ms_by_name[0].first == "gemm");  // 200 ns, as norm: ties keep name order
  CHECK(s.ms_by_name[0].second == Approx(200e-6));
  CHECK(s.ms_by_name[1].first == "norm");
  CHECK(s.ms_by_name[2].first == "rope");
  CHECK(lh::describe(s).find("2 gaps") != std::string::npos);
  CHECK(lh::to_json(s).at("ms_by_name").size() == 3);
  // The gaps, longest first, with the event that ended last before each and the one after it.
  REQUIRE(s.longest_gaps.size() == 2);
  CHECK(s.longest_gaps[0].ms == Approx(650e-6));
  CHECK(s.longest_gaps[0].at_ms == Approx(350e-6));
  CHECK(s.longest_gaps[0].after == "rope");
  CHECK(s.longest_gaps[0].before == "norm");
  CHECK(s.longest_gaps[1].after == "norm");  // [50, 150] on stream 9 ended after gemm's [0, 100]
  CHECK(s.longest_gaps[1].before == "gemm");
  CHECK(s.comm_ms == 0.0);

  const lh::TraceSummary none = lh::summarize_trace({});
  CHECK(none.events == 0);
  CHECK(none.busy_ms == 0.0);
}

TEST_CASE("kernel trace: communication time beside other work is its overlap with their union", "[cpu]") {
  // The all-reduce overlaps [50, 80] and [90, 100] of two work kernels; the all-gather nothing.
  const std::vector<lh::TraceEvent> events = {ev("ncclDevKernel_AllReduce", 0, 100, 2), ev("gemm", 50, 80),
                                              ev("gemm", 90, 150), ev("ncclDevKernel_AllGather", 200, 300, 2),
                                              ev("norm", 60, 70, 9)};
  const lh::TraceSummary s = lh::summarize_trace(events);
  CHECK(s.comm_ms == Approx(200e-6));
  CHECK(s.comm_beside_work_ms == Approx(40e-6));  // norm lies inside the first gemm: counted once
  CHECK(lh::describe(s).find("communication (NCCL)") != std::string::npos);
  CHECK(lh::to_json(s).at("comm_beside_work_ms").get<double>() == Approx(40e-6));
}

TEST_CASE("kernel trace: the Chrome trace file holds every event, times from the first start", "[cpu]") {
  lh::testing::TempDir dir;
  const std::string path = (dir.path() / "trace.json").string();
  lh::write_chrome_trace({ev("a", 5000, 7000), ev("b", 8000, 8500, 3)}, path);
  std::ifstream f(path);
  const nlohmann::json j = nlohmann::json::parse(f);
  const auto& list = j.at("traceEvents");
  REQUIRE(list.size() == 2);
  CHECK(list[0].at("name") == "a");
  CHECK(list[0].at("ts").get<double>() == 0.0);
  CHECK(list[0].at("dur").get<double>() == Approx(2.0));  // microseconds
  CHECK(list[1].at("ts").get<double>() == Approx(3.0));
  CHECK(list[1].at("tid") == 3);
  // Names with quotes and backslashes stay valid JSON.
  const std::string odd = "k<\"q\\\">";
  lh::write_chrome_trace({ev(odd, 1, 2)}, path);
  CHECK(nlohmann::json::parse(std::ifstream(path)).at("traceEvents")[0].at("name") == odd);
  // Missing directories are made; a path under a regular file is refused, naming it.
  lh::write_chrome_trace({}, (dir.path() / "new_dir" / "t.json").string());
  CHECK(std::filesystem::exists(dir.path() / "new_dir" / "t.json"));
  std::ofstream(dir.path() / "a_file") << "x";
  try {
    lh::write_chrome_trace({}, (dir.path() / "a_file" / "t.json").string());
    FAIL("an unwritable trace path was accepted");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("a_file") != std::string::npos);
  }
  // The up-front check refuses the same paths and a directory, and leaves an existing file alone.
  CHECK_THROWS_WITH(lh::check_trace_path((dir.path() / "a_file" / "t.json").string()), Catch::Contains("a_file"));
  CHECK_THROWS_WITH(lh::check_trace_path(dir.path().string()), Catch::Contains("directory"));
  const std::string before = read_text(path);
  lh::check_trace_path(path);
  CHECK(read_text(path) == before);
  lh::check_trace_path((dir.path() / "fresh.json").string());
  CHECK_FALSE(std::filesystem::exists(dir.path() / "fresh.json"));
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))  // no probe left behind
    CHECK(e.path().filename().string().find("probe") == std::string::npos);
}

TEST_CASE("kernel trace: kernel names lose return type, parameters and template arguments", "[cpu]") {
  CHECK(lh::short_kernel_name("_ZN2lh4cuda3barIiEEvPf") == "lh::cuda::bar");  // void lh::cuda::bar<int>(float*)
  CHECK(lh::short_kernel_name("_Z3fooi") == "foo");
  CHECK(lh::short_kernel_name("void lh::cuda::(anonymous namespace)::ce_backward<true>(bf16*, const float*)") ==
        "lh::cuda::ce_backward");
  CHECK(lh::short_kernel_name("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NTN") ==
        "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NTN");
  CHECK(lh::short_kernel_name(nullptr) == "?");
}

TEST_CASE("kernel trace: without a GPU the tracer refuses and says why", "[cpu]") {
  if (lh::cuda_device_count() > 0) {
    // Reported as skipped, not passed: this case checks nothing where there is a GPU.
    lh::testing::record_skip(Catch::getResultCapture().getCurrentTestName().c_str(),
                             "a GPU is present: the [gpu] case covers the tracer");
    return;
  }
  std::string why;
  CHECK(lh::KernelTracer::start(&why) == nullptr);
  CHECK(why == "no CUDA device");
}

TEST_CASE("kernel trace: CUPTI records the kernels and memsets of GPU work", "[gpu]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  const int n = 2048, launches = 5;
  lh::Buffer x = gpu->allocate(lh::DType::BF16, size_t(n) * n), w = gpu->allocate(lh::DType::BF16, size_t(n) * n),
             out = gpu->allocate(lh::DType::BF16, size_t(n) * n);
  gpu->matmul_forward(out.view(), x.view(), w.view(), n, n, n, n);  // cuBLASLt's plan outside the trace
  gpu->synchronize();
  std::string why;
  std::unique_ptr<lh::KernelTracer> tracer = lh::KernelTracer::start(&why);
  INFO(why);
  REQUIRE(tracer != nullptr);
  std::string second_why;
  CHECK(lh::KernelTracer::start(&second_why) == nullptr);  // one at a time
  CHECK(second_why.find("another") != std::string::npos);
  gpu->fill_zero(out.view());
  for (int i = 0; i < launches; ++i) gpu->matmul_forward(out.view(), x.view(), w.view(), n, n, n, n);
  const std::vector<lh::TraceEvent> events = tracer->stop();
  CHECK(tracer->incomplete() == "");
  int kernels = 0, memsets = 0;
  for (const lh::TraceEvent& e : events) {
    CHECK(e.end_ns >= e.start_ns);
    CHECK_FALSE(e.name.empty());
    kernels += e.kind == lh::TraceEvent::Kind::kKernel;
    memsets += e.kind == lh::TraceEvent::Kind::kMemset;
  }
  CHECK(kernels >= launches);
  CHECK(memsets >= 1);  // fill_zero's
  for (size_t i = 1; i < events.size(); ++i) CHECK(events[i - 1].start_ns <= events[i].start_ns);
  const lh::TraceSummary s = lh::summarize_trace(events);
  CHECK(s.busy_ms > 0.0);
  CHECK(s.busy_ms <= s.span_ms + 1e-9);
  // Stopped: a new trace may start, and sees only its own work, none of the old GEMMs.
  tracer.reset();
  gpu->matmul_forward(out.view(), x.view(), w.view(), n, n, n, n);  // between the traces: in neither
  std::unique_ptr<lh::KernelTracer> again = lh::KernelTracer::start(&why);
  REQUIRE(again != nullptr);
  gpu->fill_zero(out.view());
  const std::vector<lh::TraceEvent> own = again->stop();
  REQUIRE(own.size() == 1);
  CHECK(own[0].kind == lh::TraceEvent::Kind::kMemset);
}

TEST_CASE("kernel trace: a data-parallel rank's trace failures are warnings, a single process's are errors",
          "[gpu]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  lh::Buffer x = gpu->allocate(lh::DType::F32, 1 << 20);
  lh::testing::TempDir dir;
  const std::filesystem::path sub = dir.path() / "sub";
  for (const bool fatal : {false, true}) {
    INFO("failures_fatal " << fatal);
    {  // CUPTI already taken (as by a profiler): the trace cannot start.
      std::string why;
      std::unique_ptr<lh::KernelTracer> other = lh::KernelTracer::start(&why);
      REQUIRE(other != nullptr);
      lh::StepTrace trace((sub / "a.json").string(), 1, 1, /*rank=*/1, fatal);
      if (fatal) CHECK_THROWS_WITH(trace.before_step(1), Catch::Contains("--trace"));
      else CHECK_NOTHROW(trace.before_step(1));
    }
    {  // The trace runs, but its file cannot be written: the directory became a file meanwhile.
      lh::StepTrace trace((sub / "b.json").string(), 1, 1, /*rank=*/1, fatal);
      trace.before_step(1);
      REQUIRE(trace.tracing());  // else the write below would not be reached
      gpu->fill_zero(x.view());
      gpu->synchronize();
      std::filesystem::remove_all(sub);
      std::ofstream(sub) << "not a directory";
      if (fatal) CHECK_THROWS_WITH(trace.after_step(1), Catch::Contains("--trace"));
      else CHECK_NOTHROW(trace.after_step(1));
      CHECK_FALSE(trace.tracing());  // stopped either way
      std::filesystem::remove(sub);
    }
  }
}

TEST_CASE("kernel trace: training traces name a file per rank and refuse bad settings up front", "[cpu]") {
  CHECK(lh::StepTrace::path_for_rank("t.json", 0) == "t.json");
  CHECK(lh::StepTrace::path_for_rank("runs/t.json", 2) == "runs/t.rank2.json");
  CHECK(lh::StepTrace::path_for_rank("trace", 1) == "trace.rank1");
  lh::testing::TempDir dir;
  const std::string path = (dir.path() / "t.json").string();
  auto message = [](auto&& make) {
    try {
      make();
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK_THAT(message([&] { lh::StepTrace(path, 0, 2, 0); }), Catch::Contains("--trace-from"));
  CHECK_THAT(message([&] { lh::StepTrace(path, 3, 0, 0); }), Catch::Contains("--trace-steps"));
  std::ofstream(dir.path() / "a_file") << "x";
  CHECK_THAT(message([&] { lh::StepTrace((dir.path() / "a_file" / "t.json").string(), 3, 2, 0); }),
             Catch::Contains("a_file"));
  // A range the run never reaches (e.g. a resume past it) writes nothing, and leaves a trace of
  // an earlier run as it was.
  {
    lh::StepTrace unreached(path, 3, 2, 0);
    CHECK_FALSE(std::filesystem::exists(path));
    unreached.before_step(1);
    unreached.after_step(1);
    unreached.finish();
    CHECK_FALSE(std::filesystem::exists(path));
  }
  std::ofstream(path) << "{}";
  {
    lh::StepTrace unreached(path, 3, 2, 0);
    unreached.finish();
  }
  CHECK(read_text(path) == "{}");
  // The last step of a huge range does not overflow; untraced steps before the range pass.
  lh::StepTrace huge(path, 5, INT_MAX, 0);
  CHECK(huge.last_step() == INT_MAX);
  CHECK(lh::StepTrace(path, 5, 3, 0).last_step() == 7);
  CHECK_NOTHROW(huge.before_step(4));
  // No path: steps pass through untraced on any device; with a path, the first traced step needs
  // a GPU.
  lh::StepTrace none("", 1, 1, 0);
  CHECK_NOTHROW(none.before_step(1));
  none.after_step(1);
  none.finish();
  if (lh::cuda_device_count() == 0) {
    lh::StepTrace cpu(path, 1, 1, 0);
    CHECK_THROWS_WITH(cpu.before_step(1), Catch::Contains("no CUDA device"));
    // On a rank of a data-parallel run the failure is a warning, and the run goes on untraced.
    lh::StepTrace rank1(path, 1, 1, 1, /*failures_fatal=*/false);
    CHECK_NOTHROW(rank1.before_step(1));
    CHECK_NOTHROW(rank1.after_step(1));
    rank1.finish();
    CHECK_FALSE(std::filesystem::exists(lh::StepTrace::path_for_rank(path, 1)));
  }
}
