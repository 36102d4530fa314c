#include <cstdio>
#include <stdexcept>

#include "bench/timing.h"
#include "lighthouse/bench.h"
#include "lighthouse/gpu_monitor.h"
#include "lighthouse/kernel_trace.h"
#include "lighthouse/model.h"
#include "lighthouse/optimizer.h"
#include "lighthouse/rng.h"
#include "lighthouse/trainer.h"

namespace lh {

nlohmann::json bench_train(Backend& be, const Config& cfg, const TrainBenchOptions& o) {
  if (!o.trace_path.empty()) {  // found out now, not after the steps have run
    check_trace_device(be.device() == Device::CUDA, "bench train --trace", "a CUDA device");
    check_trace_path(o.trace_path);
  }
  const int B = cfg.data.micro_batch, T = cfg.data.seq_len, accum = cfg.grad_accum_steps(1);
  LlamaModel model(cfg.model, be);
  model.init_weights(cfg.training.seed);
  model.set_recompute(cfg.training.recompute);
  configure_kernels(be, cfg.training);
  model.set_attention(make_attention(cfg.phase_at(0), cfg.model));
  AdamW opt(cfg.optimizer, model.layout(), be);
  Rng rng(cfg.training.seed);
  std::vector<int32_t> tok(size_t(B) * T), tgt(size_t(B) * T);
  for (auto& t : tok) t = int32_t(rng.below(cfg.model.vocab_size));
  for (auto& t : tgt) t = int32_t(rng.below(cfg.model.vocab_size));
  auto step = [&] {
    model.zero_grads();
    for (int m = 0; m < accum; ++m) {
      model.forward(tok.data(), tgt.data(), B, T);
      model.backward(1.0 / accum);
    }
    opt.step(model.params(), model.grads(), model.compute_copy(), 1e-4);
  };
  for (int i = 0; i < o.warmup; ++i) step();
  be.synchronize();  // the warm-up's last kernels stay out of the clock readings and the trace
  // The clock and power of the timed steps: an H100 or H200 runs them power-capped.
  std::optional<GpuMonitor> gpu;
  if (be.device() == Device::CUDA) gpu.emplace();
  std::unique_ptr<KernelTracer> tracer;
  if (!o.trace_path.empty()) {
    std::string why;
    if (!(tracer = KernelTracer::start(&why))) throw std::runtime_error("bench train --trace: " + why);
  }
  if (gpu) gpu->start();
  const double ms = median_ms(be, 0, o.steps, step);
  const std::optional<GpuActivity> activity = gpu ? gpu->stop() : std::nullopt;
  const std::vector<TraceEvent> trace = tracer ? tracer->stop() : std::vector<TraceEvent>{};
  const double tokens = double(B) * T * accum;
  const double non_embedding = double(model.layout().total() - model.layout().at("embed").numel);
  const double flops_per_token = 6.0 * non_embedding + 6.0 * cfg.model.n_layers * T * cfg.model.q_dim();
  const double tflops = flops_per_token * tokens / ms * 1e-9;
  nlohmann::json r = {{"benchmark", "train_step"},
                      {"backend", be.name()},
                      {"parameters", model.layout().total()},
                      {"tokens_per_step", tokens},
                      {"micro_batch", B},
                      {"seq_len", T},
                      {"grad_accum", accum},
                      {"attention", cfg.phase_at(0).attention},
                      {"recompute", model.recompute_summary()},
                      {"deterministic", cfg.training.deterministic},
                      {"step_ms", ms},
                      {"tokens_per_s", tokens / ms * 1e3},
                      {"model_tflops", tflops},
                      {"mfu", tflops / o.peak_tflops},
                      {"peak_buffer_bytes", be.peak_bytes()},
                      // Attention FLOPs are always those of dense causal attention, so a sparse
                      // backend shows "dense-equivalent" throughput (above 100% MFU at long context).
                      {"flops_convention", "dense-equivalent attention"}};
  std::printf("train step (%s, recompute %s%s): %.1f ms, %.0f tokens/s, %.1f TFLOP/s, MFU %.1f%% (of %.0f TFLOP/s; dense-equivalent "
              "attention FLOPs), peak buffers %.2f GiB\n",
              cfg.phase_at(0).attention.c_str(), model.recompute_summary().c_str(),
              cfg.training.deterministic ? "" : ", non-deterministic", ms, r["tokens_per_s"].get<double>(), tflops, 100.0 * tflops / o.peak_tflops, o.peak_tflops,
              be.peak_bytes() / double(1 << 30));
  if (activity) {
    r["gpu"] = to_json(*activity);
    std::printf("  GPU over the timed steps: %s\n", describe(*activity).c_str());
  }
  if (tracer) {
    write_chrome_trace(trace, o.trace_path);
    const TraceSummary summary = summarize_trace(trace);
    r["trace"] = to_json(summary);
    r["trace"]["path"] = o.trace_path;
    std::printf("  trace of the %d timed steps (%s): %s", o.steps, o.trace_path.c_str(), describe(summary).c_str());
    if (const std::string why = tracer->incomplete(); !why.empty()) {
      r["trace"]["incomplete"] = why;
      std::printf("  the trace may be incomplete: %s\n", why.c_str());
    }
  }
  return r;
}

}  // namespace lh
