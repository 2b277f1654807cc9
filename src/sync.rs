//! [`lock`]: a mutex guard that outlives a panic elsewhere; [`FlagWaker`]: a
//! waker that notes it fired; [`fired`]: a timer polled out of tokio's budget;
//! [`blocking`]: work kept off the runtime's thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Wake, Waker};

use tokio::time::Sleep;

/// Locks `mutex`, taking it over from a thread that panicked while holding
/// it: callers keep every critical section consistent (whole values are put
/// in and taken out), so a panic elsewhere does not make the data unusable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `work` on tokio's blocking pool and waits for it: file writes with
/// `fsync`, renders of megabytes. The runtime has one thread by default, and
/// what runs long on it holds every exchange. `None` when the runtime is
/// shutting down and did not run it; a panic in `work` goes on here.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => Some(done),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

/// A waker of its own for something a task polls only after it fired: it
/// sets a flag, then wakes the task registered last. A future polled with it
/// needs polling again only once [`FlagWaker::take`] says so, instead of at
/// every turn of the task.
#[derive(Debug)]
pub(crate) struct FlagWaker {
    fired: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl FlagWaker {
    /// A waker whose flag starts as `fired`.
    pub(crate) fn new(fired: bool) -> Arc<Self> {
        Arc::new(Self {
            fired: AtomicBool::new(fired),
            task: Mutex::new(None),
        })
    }

    /// Makes `task` the one woken.
    pub(crate) fn register(&self, task: &Waker) {
        let mut registered = lock(&self.task);
        if !registered.as_ref().is_some_and(|t| t.will_wake(task)) {
            *registered = Some(task.clone());
        }
    }

    /// Whether `task` is the one woken.
    pub(crate) fn wakes(&self, task: &Waker) -> bool {
        lock(&self.task).as_ref().is_some_and(|t| t.will_wake(task))
    }

    /// Whether it fired since the last `take`; clears the flag.
    pub(crate) fn take(&self) -> bool {
        self.fired.swap(false, Ordering::AcqRel)
    }

    /// Whether it fired since the last `take`.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

impl Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        if let Some(task) = lock(&self.task).as_ref() {
            task.wake_by_ref();
        }
    }
}

/// Whether `timer` has fired; if not, `cx`'s task is woken when it does.
/// Polled out of tokio's budget, like `tokio::time::timeout` does: the
/// future beside it may have spent the budget, and a refused poll would
/// neither set the timer nor come back to it.
pub(crate) fn fired(timer: &mut Pin<Box<Sleep>>, cx: &mut Context<'_>) -> bool {
    let poll = std::pin::pin!(tokio::task::unconstrained(timer.as_mut()));
    poll.poll(cx).is_ready()
}
