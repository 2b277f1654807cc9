//! Telling a peer that is slow from one that has stopped: the app that no
//! longer reads its answer (`proxy.client_write_timeout`, in [`crate::server`])
//! and the upstream that stops sending one mid-body
//! (`proxy.upstream_body_timeout`, in [`crate::proxy`]).

use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::sync::fired;

/// How long an operation has been waiting in a row, against a limit.
///
/// Cheap while nothing stalls, because it runs for most answers: the clock is
/// read when a wait begins (an operation returns `Pending` after one that did
/// not), never for operations that complete at once; the timer is polled
/// (which registers the task) when it is set, when it has fired and when
/// another task waits, not at every `Pending`; and it is moved only when it
/// fires. A caller that has a timer to lend (the app connection's, see
/// `proxy/pool/slot.rs`) saves setting one per answer.
#[derive(Debug)]
pub(crate) struct Progress {
    limit: Duration,
    /// When the current wait began; `None` while the operation moves.
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    /// The task the timer wakes.
    wakes: Option<Waker>,
}

impl Progress {
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            limit,
            waiting_since: None,
            timer: None,
            wakes: None,
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

    /// The timer, for its lender to use again.
    pub(crate) fn take_timer(&mut self) -> Option<Pin<Box<Sleep>>> {
        self.wakes = None;
        self.timer.take()
    }

    /// The operation is waiting (it returned `Pending` for `cx`'s task): true
    /// once it has waited for the limit without a [`Progress::moved`] in
    /// between. Otherwise `cx`'s task is woken when the limit would be
    /// reached. Without a timer yet, it takes the one `lend` gives, if any.
    pub(crate) fn stalled(
        &mut self,
        cx: &mut Context<'_>,
        lend: impl FnOnce() -> Option<Pin<Box<Sleep>>>,
    ) -> bool {
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        // A limit past what an `Instant` holds: never.
        let Some(due) = since.checked_add(self.limit) else {
            return false;
        };
        let timer = match &mut self.timer {
            Some(timer) => timer,
            None => {
                let timer = match lend() {
                    Some(mut lent) => {
                        if lent.deadline() > due {
                            lent.as_mut().reset(due);
                        }
                        lent
                    }
                    None => Box::pin(tokio::time::sleep_until(due)),
                };
                self.wakes = None;
                self.timer.insert(timer)
            }
        };
        // The timer is due no later than `due` (set for this wait, an
        // earlier one or its lender's): until it fires, it wakes the task
        // it was last polled by in time.
        let registered = self
            .wakes
            .as_ref()
            .is_some_and(|task| task.will_wake(cx.waker()));
        if registered && !timer.is_elapsed() {
            return false;
        }
        loop {
            if !fired(timer, cx) {
                self.wakes = Some(cx.waker().clone());
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

    fn poll(progress: &mut Progress) -> bool {
        progress.stalled(&mut Context::from_waker(Waker::noop()), || None)
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

    #[tokio::test(start_paused = true)]
    async fn a_lent_timer_due_later_is_moved_to_the_limit() {
        let mut progress = Progress::new(Duration::from_secs(10));
        let lent = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
        let cx = &mut Context::from_waker(Waker::noop());
        assert!(!progress.stalled(cx, || Some(lent)));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(progress.stalled(cx, || panic!("it has one")));
        let back = progress.take_timer().expect("the timer goes back");
        assert!(back.deadline() <= Instant::now());
    }
}
