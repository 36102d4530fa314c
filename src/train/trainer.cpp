#include "lighthouse/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>

#include <time.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "lighthouse/checkpoint.h"
#include "lighthouse/checkpoint_dir.h"
#include "lighthouse/data.h"
#include "lighthouse/evaluate.h"
#include "lighthouse/gpu_monitor.h"
#include "lighthouse/model.h"
#include "lighthouse/optimizer.h"
#include "lighthouse/provenance.h"
#include "lighthouse/schedule.h"
#include "lighthouse/dist.h"
#include "train/data_parallel.h"
#include "train/memory_check.h"
#include "train/run_checks.h"
#include "train/metrics.h"
#include "train/resume_changes.h"
#include "train/step_trace.h"

namespace lh {
namespace fs = std::filesystem;
namespace {

// Set by SIGINT/SIGTERM; the loop finishes the current step, checkpoints and returns. A second
// request some seconds later (Ctrl-C again during a long validation pass or save) exits at once:
// checkpoints are written atomically, so the last complete one stays whole. Requests close
// together are one: a terminal's Ctrl-C reaches every rank of `lighthouse launch` (or torchrun),
// and the launcher forwards its own SIGTERM right after.
constexpr long kSecondRequestAfterS = 2;
volatile std::sig_atomic_t g_stop_requested = 0;
volatile std::sig_atomic_t g_first_request_s = 0;  // CLOCK_MONOTONIC seconds
extern "C" void request_stop(int sig) {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);  // async-signal-safe
  if (!g_stop_requested) {
    g_first_request_s = std::sig_atomic_t(now.tv_sec);
    g_stop_requested = 1;
    return;
  }
  if (now.tv_sec - g_first_request_s < kSecondRequestAfterS) return;
  static const char kMessage[] = "\nsecond stop request: exiting now; the last complete checkpoint stays\n";
  [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
  ::_exit(128 + sig);
}

class StopSignals {
 public:
  StopSignals() {
    g_stop_requested = 0;
    old_int_ = std::signal(SIGINT, request_stop);
    old_term_ = std::signal(SIGTERM, request_stop);
  }
  ~StopSignals() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }

 private:
  void (*old_int_)(int);
  void (*old_term_)(int);
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void print_progress(int step, int total, const std::string& phase, double loss, double lr, double gnorm,
                    double tok_s, double step_ms, double eta_s) {
  std::printf("step %6d/%d | %s | loss %.4f | lr %.3e | gnorm %.3f | %8.0f tok/s | %7.1f ms/step | ETA %s\n",
              step, total, phase.c_str(), loss, lr, gnorm, tok_s, step_ms, format_duration(eta_s).c_str());
  std::fflush(stdout);
}

// Until the first step each rank prepares alone: its data shards, its model and optimizer, the
// checkpoint it resumes from, the memory check. One whose preparation fails (a shard or checkpoint
// it cannot read, a device too small) must not leave the others waiting in the first collective
// until it times out, so the ranks agree on the outcome in one collective: the failing rank while
// its exception unwinds the stack (in this destructor), the others in all_succeeded(), which then
// throws. The failing rank reports its own error.
class SetupAgreement {
 public:
  explicit SetupAgreement(DataParallel* dp) : dp_(dp) {}
  SetupAgreement(const SetupAgreement&) = delete;
  SetupAgreement& operator=(const SetupAgreement&) = delete;
  ~SetupAgreement() {
    if (!dp_ || agreed_) return;
    try {
      dp_->mean(1.0);
    } catch (...) {  // the collective failed too: this rank's own error still propagates
    }
  }
  void all_succeeded() {
    agreed_ = true;
    if (dp_ && dp_->mean(0.0) > 0.0)
      throw std::runtime_error("another rank failed before the first step (its log says why)");
  }

 private:
  DataParallel* dp_;
  bool agreed_ = false;
};

}  // namespace

TrainSummary train(const Config& cfg, Backend& be, const TrainOptions& opt, Communicator* comm) {
  const int world_size = comm ? comm->world_size() : 1, rank = comm ? comm->rank() : 0;
  const bool root = rank == 0;
  if (!opt.trace_path.empty())
    check_trace_device(be.device() == Device::CUDA, "--trace", "training.device cuda (or auto with a GPU)");
  // A dry run traces nothing, and must not create the trace's directory either.
  StepTrace trace(opt.dry_run ? std::string() : opt.trace_path, opt.trace_from, opt.trace_steps, rank,
                  /*failures_fatal=*/world_size == 1);
  std::optional<DataParallel> dp;
  if (world_size > 1) dp.emplace(*comm, be, cfg.model, size_t(cfg.training.grad_bucket_mb * double(1 << 20)));
  SetupAgreement setup(dp ? &*dp : nullptr);
  const int B = cfg.data.micro_batch, T = cfg.data.seq_len;
  const int accum = cfg.grad_accum_steps(world_size);
  const std::string& run_dir = cfg.logging.dir;
  if (const std::string problem = missing_dense_tail(cfg); !problem.empty()) {
    if (!opt.resume) throw ConfigError("training.steps", problem);
    if (root) spdlog::warn("training.steps: {}", problem);
  }

  // Shard lists that resolve to nothing name their config key, and how shards are made.
  const auto resolve = [](const std::vector<std::string>& specs, const char* key) {
    try {
      return data::resolve_shards(specs);
    } catch (const std::exception& e) {
      throw ConfigError(key, std::string(e.what()) + " (shards are made with `lighthouse data text` or `lighthouse "
                                                     "data synthetic`; `lighthouse train` without --config makes "
                                                     "the quickstart's)");
    }
  };
  const std::vector<std::string> train_shards = resolve(cfg.data.train, "data.train");
  if (const std::string warning = val_named_train_shards(train_shards); !warning.empty() && root)
    spdlog::warn("{}", warning);
  data::DataLoader train_data(train_shards, cfg.model.vocab_size, T, B, rank, world_size, cfg.training.seed,
                              /*shuffle=*/true);
  std::optional<data::DataLoader> val_data;  // only where validation runs: a small set must not stop a run without it
  if (!cfg.data.val.empty() && cfg.training.eval_interval > 0) {
    const std::vector<std::string> val_shards = resolve(cfg.data.val, "data.val");
    check_disjoint(train_shards, val_shards);
    val_data.emplace(val_shards, cfg.model.vocab_size, T, B, rank, world_size, cfg.training.seed, /*shuffle=*/false);
  }
  const bool run_dir_existed = fs::exists(run_dir);  // before the lock creates it
  check_run_dir_usable(run_dir);  // every rank creates it (below), so every rank checks
  std::optional<ckpt::RunDirLock> run_lock;  // rank 0 writes the run directory; a dry run writes nothing there
  if (root && !opt.dry_run) {
    run_lock.emplace(run_dir);
    if (!run_lock->problem().empty())
      spdlog::warn("{}; nothing stops another run from using {} at the same time", run_lock->problem(), run_dir);
  } else if (root && ckpt::RunDirLock::held_elsewhere(run_dir)) {
    throw std::runtime_error("run directory " + run_dir + " is in use by another run (it holds " + run_dir +
                             "/.lock): the real run would stop here");
  }

  LlamaModel model(cfg.model, be, dp ? dp->padded_elements() : 0);
  model.init_weights(cfg.training.seed);  // the same seed on every rank: identical replicas
  model.set_recompute(cfg.training.recompute);
  configure_kernels(be, cfg.training);
  AdamW optimizer = dp ? AdamW(cfg.optimizer, model.layout(), be, dp->owned_ranges(), dp->shard_elements())
                       : AdamW(cfg.optimizer, model.layout(), be);
  TrainState state;
  state.world_size = world_size;

  std::string resumed_from;
  // step_* directories without a state.json: damaged or hand-edited checkpoints whose weights may
  // still be recoverable. A run that would start over next to them (and later save over them) stops.
  const auto damaged = ckpt::incomplete_checkpoints(run_dir);
  const auto refuse_over_damaged = [&](const std::string& what) {
    std::vector<std::string> names;
    for (const auto& d : damaged) names.push_back(d.second);
    return std::runtime_error(fmt::format(
        "run directory {} holds {} without a state.json ({}: damaged?); {} would start the run over and later save "
        "over them. Restore their state.json, move them away, or set logging.dir to a new directory",
        run_dir, damaged.size() == 1 ? "a checkpoint directory" : "checkpoint directories", fmt::join(names, ", "),
        what));
  };
  if (!opt.resume) {
    if (auto existing = ckpt::newest_checkpoint(run_dir))
      throw std::runtime_error("run directory " + run_dir + " already holds checkpoints (newest: " + *existing +
                               "); pass --resume to continue it, or set logging.dir to a new directory");
    if (!damaged.empty()) throw refuse_over_damaged("a new run");
    check_run_files(run_dir, /*resuming=*/false);
  } else {
    if (auto newest = ckpt::newest_checkpoint(run_dir)) {
      CheckpointInfo info;
      try {
        if (dp) {  // checkpoints hold whole-layout moments: load them, keep this rank's shard
          Buffer m, v;
          naming_purpose("the checkpoint's whole optimizer moments (2 x " + std::to_string(model.layout().total()) +
                             " fp32 values, read before this rank keeps its shard)",
                         [&] {
                           m = be.allocate(DType::F32, model.layout().total());
                           v = be.allocate(DType::F32, model.layout().total());
                         });
          OptimizerMoments full{m.view(), v.view(), 0};
          info = load_checkpoint(*newest, model, &full);
          dp->scatter_moments(full, optimizer);
        } else {
          info = load_checkpoint(*newest, model, &optimizer);
        }
      } catch (const CheckpointError& e) {
        // Never a silent fallback (the user decides what happens to a damaged checkpoint), but the
        // way forward is named: the one before it. Only for damage: a checkpoint of another
        // architecture or dtype is no better than the ones before it.
        const auto all = ckpt::list_checkpoints(run_dir);
        if (!e.damaged_files || all.size() < 2) throw;
        throw CheckpointError(fmt::format("{}; to resume from the checkpoint before it ({}), move {} out of {}",
                                          e.what(), all[all.size() - 2].second, *newest, run_dir),
                              /*damaged=*/true);
      }
      state = info.state;
      if (state.world_size != world_size)
        spdlog::warn("checkpoint was written with {} ranks, resuming with {}: the optimizer state is resharded; "
                     "results are no longer bit-identical to an uninterrupted run",
                     state.world_size, world_size);
      state.world_size = world_size;
      try {
        train_data.set_position(state.loader);
      } catch (const std::exception& e) {
        throw std::runtime_error(fmt::format(
            "cannot continue the data stream of {} (saved with data.micro_batch {}, data.seq_len {}, {} ranks; now {}, "
            "{}, {}): {}", *newest, info.config.data.micro_batch, info.config.data.seq_len, info.state.world_size, B, T,
            world_size, e.what()));
      }
      resumed_from = *newest;
      spdlog::info("resumed from {} (step {})", *newest, state.step);
      for (const auto& [step, skipped] : damaged)
        if (root && step > state.step)
          spdlog::warn("resume: {} has no state.json (damaged?), so the run continues from the older {}; a "
                       "checkpoint saved at step {} would replace it", skipped, *newest, step);
      if (root) {
        for (const std::string& change : resume_changes(info.config, cfg, state.step)) spdlog::warn("resume: {}", change);
        if (const auto changes = provenance_changes(info.provenance, provenance(be)); !changes.empty())
          spdlog::warn("resume: {} was written by other software or hardware ({}); the bits can differ from an "
                       "uninterrupted run", *newest, fmt::join(changes, ", "));
      }
    } else {
      if (!damaged.empty()) throw refuse_over_damaged("--resume without a complete checkpoint");
      check_run_files(run_dir, /*resuming=*/true);
      if (opt.resume_by_default)
        spdlog::info("no checkpoint in {} yet: starting the run", run_dir);
      else if (run_dir_existed)
        spdlog::warn("no complete checkpoint in {}: starting the run", run_dir);
      else
        spdlog::warn("--resume: {} does not exist (a typo in logging.dir?): starting a new run there", run_dir);
    }
  }
  if (state.step >= cfg.training.steps)
    spdlog::info("checkpoint step {} already reaches training.steps = {}; nothing to train", state.step,
                 cfg.training.steps);
  // A job chunk run again after its chunk is done: nothing to do, rather than training past it.
  const bool past_stop_at = opt.stop_at_step >= 0 && state.step >= opt.stop_at_step && state.step < cfg.training.steps;
  if (past_stop_at)
    spdlog::info("checkpoint step {} is already at or past --stop-at {}; nothing to train", state.step,
                 opt.stop_at_step);
  const size_t tokens_per_step = size_t(B) * T * accum * world_size;
  spdlog::info("model: {} parameters | backend {} | {} tokens/step ({} x {} x {} accum x {} ranks) | {} train windows",
               model.layout().total(), be.name(), tokens_per_step, B, T, accum, world_size,
               train_data.windows_per_epoch());
  if (root && val_data && validation_batches(*val_data, cfg.training.eval_batches) < cfg.training.eval_batches)
    spdlog::warn("training.eval_batches = {}, but the validation shards hold {} batches of {} x {}{}: each "
                 "validation pass scores those", cfg.training.eval_batches,
                 validation_batches(*val_data, cfg.training.eval_batches), B, T, world_size > 1 ? " per rank" : "");
  TrainSummary summary;
  summary.last_checkpoint = resumed_from;
  summary.steps_done = state.step;
  // A dry run checks what the run has left even where this call would stop at once (--stop-at).
  if (!past_stop_at || opt.dry_run) summary.memory = check_phases_fit(model, cfg, state.step);
  setup.all_succeeded();
  if (root)
    for (const std::string& warning : idle_phase_warnings(cfg)) spdlog::warn("{}", warning);
  if (root)
    for (const PhaseMemory& m : summary.memory)
      spdlog::info("memory: {}", describe(m, cfg.attention.phases.size()));
  if (opt.dry_run) return summary;  // nothing written

  fs::create_directories(run_dir);
  std::optional<MetricsLog> metrics;  // rank 0 only
  if (root) {
    // The config that runs; a call that trains nothing leaves the last run's in place.
    if (state.step < cfg.training.steps && !past_stop_at)
      ckpt::write_file_atomic((fs::path(run_dir) / "config.json").string(), cfg.to_json().dump(2) + "\n");
    metrics.emplace((fs::path(run_dir) / "metrics.jsonl").string(), state.step);
  }
  const bool quiet = opt.quiet || !root;

  std::vector<int32_t> inputs(size_t(B) * T), targets(size_t(B) * T);
  StopSignals signals;
  const auto start = Clock::now();
  const int first_step = state.step;
  // Each metrics record also says what the GPU's clock and power did since the previous one.
  std::optional<GpuMonitor> gpu;
  if (metrics && be.device() == Device::CUDA) gpu.emplace(/*sample_ms=*/100);
  if (gpu) gpu->start();
  auto save = [&]() {
    state.loader = train_data.position();
    if (dp) {
      dp->gather_master(model);  // every rank takes part in both gathers
      const OptimizerMoments full = dp->gather_moments(optimizer);
      if (root) summary.last_checkpoint = save_checkpoint(run_dir, cfg, model, full, state);
      dp->barrier();  // no rank runs ahead of a checkpoint that is not on disk yet
    } else {
      summary.last_checkpoint = save_checkpoint(run_dir, cfg, model, optimizer, state);
    }
    if (root) spdlog::info("checkpoint written: {}", summary.last_checkpoint);
  };

  int current_phase = -1;
  bool new_layout = false;  // a new attention backend: recompute auto chooses again on the next step
  for (int step = state.step; step < cfg.training.steps && !past_stop_at; ++step) {
    const int phase = cfg.phase_index_at(step);
    if (phase != current_phase) {
      new_layout = true;
      const AttentionPhase& p = cfg.phase_at(step);
      // The new phase starts from the memory the check before step 1 laid it out from: without the
      // last phase's buffers and library workspace (which otherwise only grows).
      model.release_batch_buffers();
      model.set_attention(make_attention(p, cfg.model));
      if (root && (current_phase >= 0 || step > 0))  // numbered from 1, as in progress lines
        spdlog::info("step {}: attention phase {} of {} ({})", step + 1, phase + 1,
                     std::max<size_t>(cfg.attention.phases.size(), 1), p.attention);
      current_phase = phase;
      state.phase_index = phase;
      state.attention = p.attention;
    }
    trace.before_step(step + 1);
    const auto step_start = Clock::now();
    model.zero_grads();
    double loss = 0.0;
    for (int micro = 0; micro < accum; ++micro) {
      train_data.next_batch(inputs.data(), targets.data());
      loss += model.forward(inputs.data(), targets.data(), B, T) / accum;
      // The last micro-batch's backward also reduces gradient buckets as they become final.
      const bool last_micro = micro + 1 == accum;
      model.backward(1.0 / accum, dp && last_micro ? dp->reduce_as_ready(model) : LlamaModel::GradsReadyHook{});
    }
    // Every rank must agree to stop, or the others would wait in the next collective. The request
    // travels with the loss: one host round trip, not two.
    bool stop_agreed = false;
    if (dp) {
      const std::vector<double> m = dp->means({loss, g_stop_requested ? 1.0 : 0.0});
      loss = m[0], stop_agreed = m[1] > 0.0;
    }
    if (!std::isfinite(loss))
      throw std::runtime_error("training diverged: loss is " + std::to_string(loss) + " at step " +
                               std::to_string(step + 1) + " (no checkpoint written for it)");
    const double lr = learning_rate(cfg.schedule, cfg.optimizer.lr, step, cfg.training.steps);
    const double gnorm =
        dp ? dp->step(model, optimizer, lr) : optimizer.step(model.params(), model.grads(), model.compute_copy(), lr);
    state.step = step + 1;
    state.tokens_seen += double(tokens_per_step);
    const double step_ms = 1e3 * seconds_since(step_start);  // not counting the trace's writing
    trace.after_step(state.step);  // before validation and checkpoints, which the trace leaves out
    if (root && new_layout && cfg.training.recompute == Recompute::kAuto)
      spdlog::info("training.recompute auto: {} (activations {:.2f} GiB)", model.recompute_summary(),
                   model.activation_bytes() / double(1 << 30));
    new_layout = false;

    const double elapsed = seconds_since(start);
    const double tok_s = double(tokens_per_step) * (state.step - first_step) / elapsed;
    // To the end of this call: a job chunk (--stop-at) ends before training.steps.
    const int end_step = opt.stop_at_step >= 0 ? std::min(opt.stop_at_step, cfg.training.steps) : cfg.training.steps;
    const double eta = elapsed / (state.step - first_step) * std::max(0, end_step - state.step);
    summary.last_loss = loss;
    if (state.step % cfg.logging.interval == 0 || state.step == cfg.training.steps) {
      if (metrics) {
        nlohmann::json record = {{"step", state.step}, {"loss", loss}, {"lr", lr}, {"grad_norm", gnorm},
                                 {"tokens_per_s", tok_s}, {"tokens_per_s_per_rank", tok_s / world_size},
                                 {"world_size", world_size}, {"step_ms", step_ms}, {"tokens", state.tokens_seen},
                                 {"phase", state.attention}, {"time_s", elapsed}};
        if (const std::optional<GpuActivity> a = gpu ? gpu->lap() : std::nullopt) record.update(to_json(*a));
        metrics->write(record);
      }
      if (!quiet) print_progress(state.step, cfg.training.steps, state.attention, loss, lr, gnorm, tok_s, step_ms, eta);
    }
    const bool last = state.step == cfg.training.steps;
    const int ev = cfg.training.eval_interval;
    if (val_data && ev > 0 && (state.step % ev == 0 || last)) {
      summary.last_val_loss = validation_loss(model, *val_data, cfg.training.eval_batches);
      if (dp) summary.last_val_loss = dp->mean(summary.last_val_loss);  // each rank scored its own part
      if (metrics) metrics->write({{"step", state.step}, {"val_loss", summary.last_val_loss}});
      if (!quiet) std::printf("step %6d | val_loss %.4f\n", state.step, summary.last_val_loss), std::fflush(stdout);
    }
    const int ci = cfg.training.checkpoint_interval;
    const bool saved = last || (ci > 0 && state.step % ci == 0);
    if (saved) save();
    if (!last && state.step == opt.stop_at_step) {
      spdlog::info("stopping at step {} as asked (--stop-at); resume with --resume", state.step);
      if (!saved) save();
      break;
    }
    const bool stop = dp ? stop_agreed : bool(g_stop_requested);
    if (stop && !last) {
      spdlog::warn("stop requested: {} step {}; exiting", saved ? "checkpoint already written at" : "saving a checkpoint at",
                   state.step);
      if (!saved) save();
      summary.interrupted = true;
      break;
    }
  }
  trace.finish();
  summary.steps_done = state.step;
  summary.steps_run = state.step - first_step;
  const double elapsed = seconds_since(start);
  if (state.step > first_step) summary.tokens_per_s = double(tokens_per_step) * (state.step - first_step) / elapsed;
  return summary;
}

}  // namespace lh
