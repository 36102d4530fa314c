// lighthouse export --checkpoint DIR --out DIR [--dtype f32|bf16]
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "lighthouse/export.h"

namespace {
struct ExportArgs {
  std::string checkpoint, out, dtype = "f32";
};
}  // namespace

void register_export_command(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand("export", "Write a checkpoint as a Hugging Face Llama model directory");
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint directory (run_dir/step_XXXXXXXX)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--out", args->out, "Output directory (config.json + model.safetensors)")->required();
  cmd->add_option("--dtype", args->dtype, "Weight dtype of the export")->check(CLI::IsMember({"f32", "bf16"}));
  cmd->callback([args]() {
    lh::export_hf(args->checkpoint, args->out, args->dtype == "bf16" ? lh::DType::BF16 : lh::DType::F32);
    spdlog::info("exported {} to {} ({})", args->checkpoint, args->out, args->dtype);
  });
}
