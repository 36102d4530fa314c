// Each subcommand of the `lighthouse` binary registers itself on the CLI11 app; its callback does
// the work and throws on error (main prints the message and exits non-zero).
#pragma once
#include <CLI/CLI.hpp>

void register_data_command(CLI::App& app);
void register_train_command(CLI::App& app);
void register_eval_command(CLI::App& app);
void register_export_command(CLI::App& app);
void register_select_command(CLI::App& app);
void register_bench_command(CLI::App& app);
void register_launch_command(CLI::App& app);      // cmd_launch.cpp
void register_dist_check_command(CLI::App& app);  // cmd_dist_check.cpp
