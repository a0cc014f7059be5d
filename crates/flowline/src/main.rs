//! The `flowline` command line: the CLI of [`flowline::cli`] with the
//! connectors of this build.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: flowline::cli::Allocator = flowline::cli::Allocator;

fn main() -> ExitCode {
    flowline::cli::main_with(flowline::registry())
}
