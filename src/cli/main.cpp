// The `lighthouse` binary: data, train, eval, export.
#include <cstdio>
#include <exception>

#include <spdlog/spdlog.h>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"lighthouse: Llama-3 pretraining with Lighthouse attention"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  register_data_command(app);
  register_train_command(app);
  register_eval_command(app);
  register_export_command(app);
  register_select_command(app);
  register_bench_command(app);
  register_launch_command(app);
  register_dist_check_command(app);
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
