//! Telling a peer that is slow from one that has stopped: the app that no
//! longer reads its answer (`proxy.client_write_timeout`, in [`crate::server`])
//! and the upstream that stops sending one mid-body
//! (`proxy.upstream_body_timeout`, in [`crate::proxy`]).

use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::sync::fired;

/// How long an operation has been waiting in a row, against a limit.
///
/// The clock is read when a wait begins (an operation returns `Pending` after
/// one that did not), never for operations that complete at once, and the
/// timer is set when a wait first lasts, then moved only when it fires: an
/// answer that streams costs a clock read per pause, not a timer update.
#[derive(Debug)]
pub(crate) struct Progress {
    limit: Duration,
    /// When the current wait began; `None` while the operation moves.
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Progress {
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            limit,
            waiting_since: None,
            timer: None,
        }
    }

    /// The limit.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// The operation completed (bytes moved, or it ended).
    pub(crate) fn moved(&mut self) {
        self.waiting_since = None;
    }

    /// The operation is waiting (it returned `Pending` for `cx`'s task): true
    /// once it has waited for the limit without a [`Progress::moved`] in
    /// between. Otherwise `cx`'s task is woken when the limit would be reached.
    pub(crate) fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        // A limit past what an `Instant` holds: never.
        let Some(due) = since.checked_add(self.limit) else {
            return false;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        // The timer is due no later than `due`: it was set for this wait or
        // for an earlier one.
        loop {
            if !fired(timer, cx) {
                return false;
            }
            if Instant::now() >= due {
                return true;
            }
            timer.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(progress: &mut Progress) -> bool {
        progress.stalled(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_a_stall_once_it_lasts_the_limit_in_a_row() {
        let mut progress = Progress::new(Duration::from_secs(10));
        assert!(!poll(&mut progress));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!poll(&mut progress), "9 s of 10");
        // Bytes moved: the next wait starts from zero.
        progress.moved();
        assert!(!poll(&mut progress));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!poll(&mut progress), "9 s of the second wait");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(poll(&mut progress), "10 s of the second wait");
    }

    #[tokio::test(start_paused = true)]
    async fn time_between_waits_does_not_count() {
        let mut progress = Progress::new(Duration::from_secs(10));
        assert!(!poll(&mut progress));
        progress.moved();
        // Nothing asked for 30 s (the app's socket was full, say).
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!poll(&mut progress), "a new wait");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(poll(&mut progress));
    }
}
