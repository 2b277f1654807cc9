//! Log lines on stderr, written in batches.
//!
//! `std::io::stderr` is unbuffered: one `write(2)` per log line, that is one
//! system call per proxied exchange, which small answers pay in full
//! (benches/HISTORY.md). tracing-appender's non-blocking
//! writer moves that call to another thread but still makes one per line
//! whenever its queue runs dry, which under load is almost every line. Neither
//! it nor tracing-subscriber has a writer that batches by time, so this one is
//! written here: lines go into a shared buffer and a flusher thread writes
//! them at most [`LINGER`] later, in one call per batch. A batch that outgrows
//! [`HIGH_WATER`] is written at once by the thread that filled it.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait for others before it is written.
pub(crate) const LINGER: Duration = Duration::from_millis(20);
const HIGH_WATER: usize = 64 * 1024;

#[derive(Debug, Default)]
struct BatchState {
    pending: Mutex<Vec<u8>>,
    ready: Condvar,
    /// No flusher thread could be started: every line is written at once.
    direct: bool,
}

impl BatchState {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what is pending. Taking stderr's lock before the batch keeps
    /// batches in order between the flusher and a writer past the high-water
    /// mark; the batch's own lock is not held during the write, so threads
    /// adding lines never wait for a slow stderr.
    fn flush(&self) {
        let mut out = io::stderr().lock();
        let batch = std::mem::take(&mut *self.lock());
        if !batch.is_empty() {
            // Nothing sensible to do when stderr is gone; dropping the lines
            // matches what `eprintln!`-style logging would lose.
            let _ = out.write_all(&batch);
        }
    }
}

/// The [`MakeWriter`] for stderr batching; cheap to clone.
#[derive(Debug, Clone)]
pub struct BatchedStderr {
    shared: Arc<BatchState>,
}

static GLOBAL: OnceLock<BatchedStderr> = OnceLock::new();

impl BatchedStderr {
    /// The process-wide writer; its flusher thread starts on first use.
    pub fn global() -> &'static BatchedStderr {
        GLOBAL.get_or_init(|| {
            let shared = Arc::new(BatchState::default());
            let flushing = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("leanproxy-log".into())
                .spawn(move || flusher(&flushing));
            let shared = match spawned {
                Ok(_) => shared,
                Err(_) => Arc::new(BatchState {
                    direct: true,
                    ..BatchState::default()
                }),
            };
            BatchedStderr { shared }
        })
    }

    /// Writes every pending line now (before the process exits).
    pub fn flush_global() {
        if let Some(w) = GLOBAL.get() {
            w.shared.flush();
        }
    }
}

fn flusher(shared: &BatchState) {
    loop {
        {
            let pending = shared.lock();
            let _waited = shared
                .ready
                .wait_while(pending, |p| p.is_empty())
                .unwrap_or_else(|e| e.into_inner());
        }
        std::thread::sleep(LINGER);
        shared.flush();
    }
}

/// One log line's writer (tracing-subscriber formats a whole line, then
/// writes it with one `write_all`).
#[derive(Debug)]
pub struct Line<'a> {
    shared: &'a BatchState,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (was_empty, full) = {
            let mut pending = self.shared.lock();
            let was_empty = pending.is_empty();
            pending.extend_from_slice(buf);
            (was_empty, pending.len() >= HIGH_WATER)
        };
        if self.shared.direct || full {
            self.shared.flush();
        } else if was_empty {
            self.shared.ready.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            shared: &self.shared,
        }
    }
}
