#include "train/memory_check.h"

#include <algorithm>
#include <cstdint>

#include <spdlog/fmt/fmt.h>

#include "lighthouse/attention.h"

namespace lh {
namespace {
std::string phase_name(const Config& cfg, const PhaseMemory& m) {
  const std::string steps = fmt::format("{}, steps {}-{}", m.attention, m.first_step, m.last_step);
  if (cfg.attention.phases.empty()) return "the run's attention (" + steps + ")";
  return fmt::format("attention phase {} of {} (attention.phases[{}]: {})", m.index + 1, cfg.attention.phases.size(),
                     m.index, steps);
}
}  // namespace

std::vector<PhaseMemory> check_phases_fit(LlamaModel& model, const Config& cfg, int from_step) {
  Backend& be = model.backend();
  const int B = cfg.data.micro_batch, T = cfg.data.seq_len;
  std::vector<PhaseMemory> out;
  for (int step = std::max(from_step, 0); step < cfg.training.steps;) {
    PhaseMemory m;
    m.index = cfg.phase_index_at(step);
    const AttentionPhase& phase = cfg.phase_at(step);
    // The last phase covers the rest of the run whatever its until_step says.
    const bool last = cfg.attention.phases.empty() || m.index + 1 == int(cfg.attention.phases.size());
    const int end = last ? cfg.training.steps : std::min(phase.until_step, cfg.training.steps);
    m.attention = phase.attention, m.first_step = step + 1, m.last_step = end;

    const size_t before = be.bytes_in_use();
    model.set_attention(make_attention(phase, cfg.model));
    try {
      model.reserve_batch(B, T);
    } catch (const OutOfMemory& e) {
      model.release_batch_buffers();
      throw OutOfMemory(phase_name(cfg, m) + " does not fit (found before the first step): " + e.what());
    }
    m.recompute = model.recompute_summary();
    m.activation_bytes = model.activation_bytes();
    const size_t laid_out = be.bytes_in_use() - before;
    m.attention_bytes = laid_out - std::min(laid_out, m.activation_bytes);
    m.workspace_bytes = be.attention_workspace_bytes();
    m.held_bytes = be.bytes_in_use() + m.workspace_bytes;
    m.spare_bytes = be.allocatable_bytes();
    model.release_batch_buffers();  // the next phase starts from the same memory as this one did
    out.push_back(m);
    step = end;
  }
  return out;
}

std::string describe(const PhaseMemory& m, size_t n_phases) {
  std::string s = fmt::format("phase {} of {} ({}, steps {}-{}): recompute {}, activations {}, attention buffers {}",
                              m.index + 1, std::max<size_t>(n_phases, 1), m.attention, m.first_step, m.last_step,
                              m.recompute, format_bytes(m.activation_bytes), format_bytes(m.attention_bytes));
  if (m.workspace_bytes > 0) s += ", attention workspace " + format_bytes(m.workspace_bytes);
  s += "; " + format_bytes(m.held_bytes) + " held in all";
  if (m.spare_bytes != SIZE_MAX) s += ", " + format_bytes(m.spare_bytes) + " to spare";
  return s;
}

}  // namespace lh
