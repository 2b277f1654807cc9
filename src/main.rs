//! The `leanproxy` binary: the library's command line (`leanproxy::cli`).
//! Exit codes: 0 success, 1 runtime failure, 2 bad configuration, 3 (admin
//! commands) what was asked for does not exist.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    leanproxy::cli::run(leanproxy::cli::Cli::parse())
}
