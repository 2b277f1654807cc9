//! The `leanproxy` binary: the library's command line (`leanproxy::cli`).
//! Exit codes: 0 success, 1 runtime failure, 2 bad configuration, 3 (admin
//! commands) what was asked for does not exist.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc, with its background thread on (the crate's `background_threads`
/// feature): freed pages go back to the system after jemalloc's decay time
/// (10 s) even while the process sits idle. glibc's malloc kept the ~180 MiB
/// a storm of 5,000 connections had taken until the process ended
/// (benches/HISTORY.md, storm).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    leanproxy::cli::run(leanproxy::cli::Cli::parse())
}
