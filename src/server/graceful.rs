//! Closing an app connection gracefully: on the listener's shutdown signal, or
//! once it has been quiet for the idle timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::conn::Activity;
use crate::sync::{fired, FlagWaker};

/// Watches an app connection's [`Activity`] with one timer, every half of
/// the idle timeout: two quiet looks in a row (no exchange for between the
/// timeout and half as long again) shut it down gracefully, a third closes
/// it. Reset per look rather than per request, so a busy connection costs
/// one timer update every half timeout. Bytes moving do not count: a head
/// trickled in a byte at a time must still end within the timeout, as
/// hyper's own header timeout had it end within 30 s.
pub(super) struct Quiet {
    activity: Arc<Activity>,
    period: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    looks: u8,
}

/// What [`Quiet`] found.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Open,
    ShutDown,
    Close,
}

impl Quiet {
    pub(super) fn new(activity: Arc<Activity>, idle: Duration) -> Self {
        Self {
            activity,
            period: idle / 2,
            timer: None,
            looks: 0,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Verdict {
        let period = self.period;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(period)));
        let mut verdict = Verdict::Open;
        while fired(timer, cx) {
            let busy = self.activity.stirred.swap(false, Ordering::Relaxed)
                || self.activity.waiting.load(Ordering::Relaxed) > 0;
            self.looks = if busy {
                0
            } else {
                self.looks.saturating_add(1)
            };
            match self.looks {
                0 | 1 => {}
                2 => verdict = Verdict::ShutDown,
                _ => return Verdict::Close,
            }
            // A deadline past what an `Instant` holds: never.
            match Instant::now().checked_add(period) {
                Some(next) => timer.as_mut().reset(next),
                None => return verdict,
            }
        }
        verdict
    }
}

pin_project_lite::pin_project! {
    /// A connection that shuts down gracefully once `signal` changes or once
    /// it has been quiet too long (see [`Quiet`]).
    ///
    /// Instead of `hyper_util`'s `GracefulShutdown::watch`, which polls the
    /// shutdown signal at every turn of the connection (a lock in tokio's
    /// `Notify`, several turns per exchange), the signal here is polled with
    /// a waker of its own, and polled again only once that waker fired.
    pub(super) struct Graceful<C, F> {
        #[pin]
        conn: C,
        #[pin]
        signal: F,
        quiet: Quiet,
        gate: Arc<FlagWaker>,
        // Once set, the signal (which has fired, or no longer matters) is
        // not polled again.
        shut_down: bool,
    }
}

/// `conn`, shut down gracefully once `signal` changes or once `quiet` says so.
pub(super) fn graceful<C>(
    conn: C,
    mut signal: watch::Receiver<()>,
    quiet: Quiet,
) -> Graceful<C, impl Future<Output = ()>> {
    Graceful {
        conn,
        signal: async move {
            let _ = signal.changed().await;
        },
        quiet,
        // Polled at the first turn, which registers the gate's waker.
        gate: FlagWaker::new(true),
        shut_down: false,
    }
}

impl<C: GracefulConnection, F: Future> Future for Graceful<C, F> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        // The signal and the quiet timer are polled with the gate's waker,
        // so only once one of them fired; the gate wakes the connection's
        // task (the task that polled them last; a connection stays in the
        // task it was spawned as).
        if this.gate.take() {
            this.gate.register(cx.waker());
            let waker = Waker::from(this.gate.clone());
            let mut gate = Context::from_waker(&waker);
            let mut shut_down = !*this.shut_down && this.signal.poll(&mut gate).is_ready();
            match this.quiet.poll(&mut gate) {
                Verdict::Open => {}
                Verdict::ShutDown => {
                    tracing::debug!("quiet connection: shutting it down");
                    shut_down = true;
                }
                Verdict::Close => {
                    tracing::debug!("quiet connection still open: closing it");
                    return Poll::Ready(Ok(()));
                }
            }
            if shut_down && !*this.shut_down {
                *this.shut_down = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.poll(cx)
    }
}
