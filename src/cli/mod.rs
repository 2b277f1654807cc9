//! What the `leanproxy` subcommands share: [`AdminClient`], the typed client
//! of a running instance's admin API; the terminal formatting of its answers;
//! the runtime the binary runs on.

mod args;
mod client;
mod commands;
mod format;

pub use args::Cli;
pub use client::{AdminClient, ClientError, MockbankClient};
pub use commands::run;
pub use format::{fault_table, reconnect_table, tail_line};

use std::num::NonZeroUsize;

/// The binary's runtime: multi-thread, with `workers` threads (`None`: one
/// per CPU), I/O and time enabled.
pub fn runtime(workers: Option<NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // `top -H` and /proc show whose threads these are (the blocking pool's
    // threads, started on demand, share the name).
    builder.thread_name("leanproxy-rt");
    if let Some(n) = workers {
        builder.worker_threads(n.get());
    }
    builder.enable_all().build()
}
