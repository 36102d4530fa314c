// `lighthouse data`: build byte-level token shards from text or synthetic tasks, and inspect shards.
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/validators.h"
#include "lighthouse/data.h"

namespace {

namespace data = lh::data;

void report(const char* split, const std::vector<std::string>& shards, uint64_t tokens) {
  if (shards.empty()) return;
  spdlog::info("{}: {} tokens in {} shard(s): {}{}", split, tokens, shards.size(), shards.front(),
               shards.size() > 1 ? " ... " + shards.back() : std::string());
}

void register_text(CLI::App& parent) {
  struct Args {
    std::vector<std::string> inputs;
    std::string out;
    double val_fraction = 0.05;
    uint64_t shard_tokens = data::kDefaultShardTokens;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = parent.add_subcommand(
      "text", "Byte-level shards from text files: every file is one document followed by the "
              "end-of-document token (id 256); vocab_size 257");
  cmd->add_option("--input,-i", args->inputs, "Text files or directories (searched recursively)")
      ->required()->check(CLI::ExistingPath);
  cmd->add_option("--out,-o", args->out, "Output directory for train_NNNNNN.bin / val_NNNNNN.bin")->required();
  cmd->add_option("--val-fraction", args->val_fraction,
                  "Fraction of documents (evenly spaced in path order) held out for validation")
      ->capture_default_str()->check(lh::cli::fraction_below_one());
  cmd->add_option("--shard-tokens", args->shard_tokens, "Maximum tokens per shard")
      ->capture_default_str()->check(lh::cli::whole_at_least(1));
  cmd->callback([args] {
    const auto st = data::build_text_shards(args->inputs, args->out, args->val_fraction, args->shard_tokens);
    if (st.documents == 1 && st.val_documents == 1)
      spdlog::info("1 document, split by bytes: its first {:.0f}% train, the rest validation",
                   100.0 * (1.0 - args->val_fraction));
    else
      spdlog::info("{} documents: {} train, {} validation", st.documents, st.train_documents, st.val_documents);
    if (st.documents > 1 && double(st.val_documents) > 2.0 * args->val_fraction * double(st.documents))
      spdlog::warn("{} of {} documents went to validation, far more than --val-fraction {} (at least one is held "
                   "out when the fraction is above 0): give more documents or --val-fraction 0",
                   st.val_documents, st.documents, args->val_fraction);
    if (!st.binary_documents.empty())
      spdlog::warn("{} input file(s) hold NUL bytes and went in as bytes all the same (binary files?), e.g. {}",
                   st.binary_documents.size(), st.binary_documents.front());
    report("train", st.train_shards, st.train_tokens);
    report("val", st.val_shards, st.val_tokens);
  });
}

void register_synthetic(CLI::App& parent) {
  struct Args {
    std::string task;
    std::string out;
    data::SyntheticOptions options;
  };
  auto args = std::make_shared<Args>();
  data::SyntheticOptions& o = args->options;
  CLI::App* cmd = parent.add_subcommand(
      "synthetic", "Deterministic synthetic byte-level data: passkey retrieval, multi-query "
                   "associative recall (mqar) or the toy language (toy). Every sample is exactly "
                   "--length tokens ending with end-of-document, so train with seq_len = length - 1");
  cmd->add_option("--task", args->task, "passkey | mqar | toy")
      ->required()->check(CLI::IsMember({"passkey", "mqar", "toy"}));
  cmd->add_option("--out,-o", args->out, "Output directory for train_NNNNNN.bin / val_NNNNNN.bin")->required();
  cmd->add_option("--length", o.length, "Tokens per sample (seq_len + 1)")->required()->check(CLI::Range(2, 1 << 30));
  cmd->add_option("--train-samples", o.train_samples, "Training samples")->capture_default_str()->check(lh::cli::whole_at_least(1));
  cmd->add_option("--val-samples", o.val_samples, "Validation samples (0: none)")->capture_default_str()->check(lh::cli::whole_at_least(0));
  cmd->add_option("--depth", o.depth, "passkey: key position as a fraction of the filler; < 0 draws it per sample")
      ->capture_default_str()->check(CLI::Range(-1.0, 1.0));
  cmd->add_option("--key-digits", o.key_digits, "passkey: digits in the key")
      ->capture_default_str()->check(CLI::Range(1, data::kMaxPasskeyDigits));
  cmd->add_option("--pairs", o.mqar_pairs, "mqar: key-value pairs per sample (0: as many as fit)")
      ->capture_default_str()->check(lh::cli::whole_at_least(0));
  cmd->add_option("--queries", o.mqar_queries, "mqar: queried keys per sample (0: all pairs)")
      ->capture_default_str()->check(lh::cli::whole_at_least(0));
  cmd->add_option("--seed", o.seed, "Random seed (train and val use streams derived from it)")
      ->capture_default_str()->check(lh::cli::unsigned_64());
  cmd->add_option("--shard-tokens", o.shard_tokens, "Maximum tokens per shard (rounded down to whole samples)")
      ->capture_default_str()->check(lh::cli::whole_at_least(1));
  cmd->callback([args] {
    args->options.task = data::parse_synthetic_task(args->task);
    const auto st = data::generate_synthetic(args->options, args->out);
    spdlog::info("{} task, {} tokens per sample", args->task, args->options.length);
    report("train", st.train_shards, st.train_tokens);
    report("val", st.val_shards, st.val_tokens);
  });
}

void register_info(CLI::App& parent) {
  auto specs = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = parent.add_subcommand("info", "Validate shards and print their token counts and widths");
  cmd->add_option("shards", *specs, "Shard files, directories or glob patterns")->required();
  cmd->callback([specs] {
    uint64_t total = 0;
    size_t bad = 0;
    const auto paths = data::resolve_shards(*specs);
    for (const auto& path : paths) {  // every shard is looked at: a bad one does not hide the rest
      try {
        const data::ShardView shard = data::open_shard(path);
        spdlog::info("{}: {} tokens, uint{}, max id {}", path, shard.size(), 8 * shard.token_bytes(),
                     shard.max_token());
        total += shard.size();
      } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        ++bad;
      }
    }
    spdlog::info("{} shard(s), {} tokens", paths.size() - bad, total);
    if (bad) throw std::runtime_error(std::to_string(bad) + " of " + std::to_string(paths.size()) + " shards are not valid");
  });
}

}  // namespace

void register_data_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("data", "Prepare token shards (llm.c format) for training");
  cmd->require_subcommand(1);
  register_text(*cmd);
  register_synthetic(*cmd);
  register_info(*cmd);
}
