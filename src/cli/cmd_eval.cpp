// lighthouse eval --checkpoint DIR [--val-batches N] [--passkey-lengths ...] [--passkey-depths ...]
//                 [--logits-for tokens.bin --logits-out logits.bin] [--out results.json]
#include <cstdio>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/token_file.h"
#include "cli/validators.h"
#include "lighthouse/checkpoint.h"
#include "lighthouse/data.h"
#include "lighthouse/evaluate.h"
#include "lighthouse/rng.h"
#include "lighthouse/trainer.h"

namespace {
struct EvalArgs {
  std::string checkpoint, out, logits_for, logits_out;
  std::vector<std::string> val;  // overrides the checkpoint config's data.val
  int val_batches = 0;           // 0: the config's training.eval_batches
  std::vector<int> passkey_lengths;
  std::vector<double> passkey_depths{0.0, 0.5, 1.0};
  int passkey_samples = 10;
  uint64_t seed = 1234;
  std::string device = "auto";
};

// tokens file: int32 B, int32 T, then B*T int32 ids; logits file: int32 B, T, V, then float32
// logits [B, T, V] (scripts/compare_hf.py reads both).
void dump_logits(lh::LlamaModel& model, const std::string& tokens_path, const std::string& out_path) {
  const lh::cli::TokenBatch t = lh::cli::read_token_file(tokens_path, model.config().vocab_size);
  model.forward(t.ids.data(), nullptr, t.batch, t.seq_len);
  const std::vector<float> logits = model.logits_host();
  std::ofstream out(out_path, std::ios::binary);
  const int32_t header[3] = {t.batch, t.seq_len, model.config().vocab_size};
  out.write(reinterpret_cast<const char*>(header), sizeof header);
  out.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * sizeof(float)));
  if (!out) throw std::runtime_error(out_path + ": cannot write logits");
}

void run_eval(const EvalArgs& a) {
  const lh::CheckpointInfo info = lh::read_checkpoint_info(a.checkpoint);
  const lh::Config& cfg = info.config;
  if (a.val.empty() && cfg.data.val.empty() && a.passkey_lengths.empty() && a.logits_for.empty())
    throw std::runtime_error("eval: nothing to evaluate: " + a.checkpoint +
                             " was trained without data.val; give --val, --passkey-lengths or --logits-for");
  if (!a.logits_for.empty() && a.logits_out.empty()) throw std::runtime_error("--logits-for needs --logits-out");
  if (a.logits_for.empty() && !a.logits_out.empty()) throw std::runtime_error("--logits-out needs --logits-for");
  // Passkey prompts are bytes (0-255) and end-of-document (256): a smaller vocabulary has no row
  // for them in the embedding table.
  if (!a.passkey_lengths.empty() && cfg.model.vocab_size <= lh::data::kEndOfDocument)
    throw std::runtime_error("--passkey-lengths needs the byte vocabulary (model.vocab_size >= " +
                             std::to_string(lh::data::kEndOfDocument + 1) + "); " + a.checkpoint + " has " +
                             std::to_string(cfg.model.vocab_size));
  for (int length : a.passkey_lengths) {  // found out now, not after the validation loss
    lh::Rng rng(a.seed);
    const lh::data::PasskeyPrompt p = lh::data::make_passkey_prompt(length, 0.5, lh::data::kDefaultPasskeyDigits, rng);
    const size_t longest = p.prompt.size() + p.answer.size() - 1;  // the last digit's context
    if (longest > size_t(cfg.model.max_seq_len))
      throw std::runtime_error("--passkey-lengths " + std::to_string(length) + ": its prompts run the model on up to " +
                               std::to_string(longest) + " tokens, more than its model.max_seq_len " +
                               std::to_string(cfg.model.max_seq_len));
  }
  auto backend = lh::make_backend(a.device, "--device");
  lh::LlamaModel model(cfg.model, *backend);
  // Forward only: the smallest activation layout, and with no backward nothing is recomputed.
  model.set_recompute(lh::Recompute::kFull);
  lh::load_checkpoint_weights(a.checkpoint, model);
  lh::AttentionPhase dense;  // evaluation is always dense: the exported model is a dense Llama
  model.set_attention(lh::make_attention(dense, cfg.model));
  if (info.state.attention != dense.attention)
    spdlog::info("evaluating with dense attention, as the exported model runs; step {} trained with {} "
                 "attention, so losses differ from those the run logged", info.state.step, info.state.attention);

  nlohmann::json results = {{"checkpoint", a.checkpoint}, {"step", info.state.step}};
  if (!a.logits_for.empty()) {
    dump_logits(model, a.logits_for, a.logits_out);
    results["logits_out"] = a.logits_out;
  }
  // The config's validation shards may be absent where a checkpoint is evaluated (another
  // machine): then skip the loss with a warning. Shards named with --val must exist.
  std::vector<std::string> val_shards;
  if (!a.val.empty()) {
    val_shards = lh::data::resolve_shards(a.val);
  } else if (!cfg.data.val.empty()) {
    try {
      val_shards = lh::data::resolve_shards(cfg.data.val);
    } catch (const std::exception& e) {
      if (a.passkey_lengths.empty() && a.logits_for.empty())  // the only thing asked for
        throw std::runtime_error(std::string("eval: the checkpoint config's data.val: ") + e.what() +
                                 " (relative paths resolve from the working directory; --val names others)");
      spdlog::warn("skipping the validation loss: {}", e.what());
    }
  }
  if (!val_shards.empty()) {
    lh::data::DataLoader val(val_shards, cfg.model.vocab_size, cfg.data.seq_len, cfg.data.micro_batch, 0, 1,
                             cfg.training.seed, /*shuffle=*/false);
    const int requested = a.val_batches > 0 ? a.val_batches : cfg.training.eval_batches;
    const int batches = lh::validation_batches(val, requested);
    if (batches < requested)
      spdlog::warn("the validation shards hold {} batches of {} x {}; evaluating {} rather than {}", batches,
                   cfg.data.micro_batch, cfg.data.seq_len, batches, requested);
    results["val_loss"] = lh::validation_loss(model, val, batches);
    std::printf("val_loss %.4f (%d batches of %d x %d)\n", results["val_loss"].get<double>(), batches,
                cfg.data.micro_batch, cfg.data.seq_len);
  }
  for (int length : a.passkey_lengths) {
    for (double depth : a.passkey_depths) {
      const lh::PasskeyResult r = lh::passkey_accuracy(model, length, depth, a.passkey_samples, a.seed);
      std::printf("passkey length %6d depth %.2f: %d/%d keys exact, digit accuracy %.3f\n", length, depth,
                  r.correct, r.samples, r.digit_accuracy);
      results["passkey"].push_back({{"length", length}, {"depth", depth}, {"samples", r.samples},
                                    {"correct", r.correct}, {"digit_accuracy", r.digit_accuracy}});
    }
  }
  if (!a.out.empty()) {
    std::ofstream out(a.out);
    out << results.dump(2) << "\n";
    if (!out) throw std::runtime_error(a.out + ": cannot write results");
  }
}
}  // namespace

void register_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Evaluate a checkpoint with dense attention (as its export runs): validation loss, passkey retrieval, logits");
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--val", a->val, "Validation shards (default: the checkpoint config's data.val)");
  cmd->add_option("--val-batches", a->val_batches, "Validation micro-batches (default: training.eval_batches)")
      ->check(lh::cli::whole_at_least(1));
  cmd->add_option("--passkey-lengths", a->passkey_lengths, "Passkey prompt lengths in tokens (space or comma separated)")
      ->delimiter(',')
      ->check(CLI::Range(lh::data::passkey_min_length(lh::data::kDefaultPasskeyDigits), 1 << 24));
  cmd->add_option("--passkey-depths", a->passkey_depths, "Key depths as fractions in [0, 1] (space or comma separated)")
      ->delimiter(',')
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--passkey-samples", a->passkey_samples, "Prompts per (length, depth)")->check(lh::cli::whole_at_least(1));
  cmd->add_option("--seed", a->seed, "Seed of the passkey prompts")->check(lh::cli::unsigned_64());
  cmd->add_option("--logits-for", a->logits_for, "Token file (int32 B, T, tokens) to compute logits for")
      ->check(CLI::ExistingFile);
  cmd->add_option("--logits-out", a->logits_out, "Where to write the logits (int32 B, T, V, float32 logits)");
  cmd->add_option("--device", a->device, "auto | cpu | cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--out", a->out, "Write the results as JSON here");
  cmd->callback([a]() { run_eval(*a); });
}
