// The `lighthouse` binary: data, train, eval, export.
#include <cstdio>
#include <exception>
#include <memory>
#include <new>
#include <string>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/help_formatter.h"
#include "lighthouse/provenance.h"

int main(int argc, char** argv) {
  // Named, so that help texts say `lighthouse` wherever the binary lives (docs/cli.md is them).
  CLI::App app{"lighthouse: Llama-3 pretraining with Lighthouse attention", "lighthouse"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  app.set_version_flag("--version", lh::build_description());
  app.formatter(std::make_shared<lh::cli::HelpFormatter>());  // inherited by every subcommand
  app.option_defaults()->always_capture_default();              // so every --help shows the defaults
  register_data_command(app);
  register_train_command(app);
  register_eval_command(app);
  register_export_command(app);
  register_select_command(app);
  register_bench_command(app);
  register_launch_command(app);
  register_dist_check_command(app);
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  // CLI11 answers an unknown command with "A subcommand is required": name it instead (at each
  // level: `data foo` as well as `foo`).
  CLI::App* level = &app;
  for (int i = 1; i < argc && argv[i][0] != '-' && !level->get_subcommands({}).empty(); ++i) {
    try {
      level = level->get_subcommand(argv[i]);
    } catch (const CLI::OptionNotFound&) {
      const std::string where = level == &app ? std::string(argv[0]) : std::string(argv[0]) + " " + level->get_name();
      std::fprintf(stderr, "error: unknown command '%s' (run %s --help for the commands)\n", argv[i], where.c_str());
      return int(CLI::ExitCodes::ExtrasError);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of host memory (a model, batch or file larger than this machine holds?)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
