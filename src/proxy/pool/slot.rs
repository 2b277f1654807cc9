//! The app connection's side of the upstream pool: the [`UpstreamSlot`] that
//! keeps its upstream connections between requests, [`DriveSlot`] that polls
//! them from the app connection's task, [`UpstreamSlots`], the proxy
//! listener's hook that gives each app connection both, and [`within`], the
//! response timeout on the app connection's timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::{Idle, Readiness};
use crate::server::ConnectionHook;
use crate::sync::{fired, lock, FlagWaker};

/// The proxy listener's [`ConnectionHook`]: each app connection gets an
/// [`UpstreamSlot`], found by the [`Upstream`](crate::proxy::Upstream)
/// service in the request's [`ClientAddr`](crate::server::ClientAddr), and its
/// future is wrapped in a [`DriveSlot`]. Without it (a listener served by
/// `server::serve`) requests carry no slot, and upstream connections go back
/// to the shared pool after each answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamSlots;

impl ConnectionHook for UpstreamSlots {
    type Carried = UpstreamSlot;
    type Driven<F: Future + Send> = DriveSlot<F>;

    fn open(&self) -> Arc<UpstreamSlot> {
        Arc::default()
    }

    fn drive<F: Future + Send>(conn: F, slot: Arc<UpstreamSlot>) -> DriveSlot<F> {
        DriveSlot::new(conn, slot)
    }
}

/// The upstream connections an app connection used last, one per upstream
/// (routes), ready for its next request. One per app connection (made by
/// [`UpstreamSlots`]), driven between requests by [`DriveSlot`]; when the
/// app connection ends, the connections in it are parked in their pools.
pub struct UpstreamSlot {
    pub(super) held: Mutex<Vec<Idle>>,
    /// The waker the held connections are polled with between requests: it
    /// wakes the app connection's task and notes that one of them has
    /// something to do, so that between requests they are polled only then,
    /// not at every turn of that task.
    pub(super) waker: Arc<FlagWaker>,
    /// The response-timeout timer, lent to one request at a time (see
    /// [`within`]).
    timer: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl Default for UpstreamSlot {
    fn default() -> Self {
        Self {
            held: Mutex::default(),
            timer: Mutex::default(),
            waker: FlagWaker::new(false),
        }
    }
}

impl std::fmt::Debug for UpstreamSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamSlot")
    }
}

impl UpstreamSlot {
    /// The app connection's timer, lent to one user at a time: a request's
    /// response timeout ([`within`]), then its answer's body timeout
    /// (`LeasedBody`). `None` while lent out (HTTP/2 streams of one app
    /// connection): the borrower sets a timer of its own.
    pub(super) fn lend_timer(&self) -> Option<Pin<Box<Sleep>>> {
        lock(&self.timer).take()
    }

    /// Gives a lent timer back (or keeps the one already back).
    pub(super) fn give_back_timer(&self, timer: Pin<Box<Sleep>>) {
        let mut kept = lock(&self.timer);
        if kept.is_none() {
            *kept = Some(timer);
        }
    }

    /// Polls the connections held here with the app connection's task: drops
    /// those that ended (the upstream closed them, or answered `Connection:
    /// close`) or that stayed unused past their pool's idle timeout, and keeps
    /// sending a request body an early answer left unfinished. `timer` wakes
    /// the task for the next idle timeout; it is set at most once per timeout
    /// period, not per request.
    fn drive(&self, cx: &mut Context<'_>, timer: &mut Option<Pin<Box<Sleep>>>) {
        let mut held = lock(&self.held);
        if held.is_empty() {
            return;
        }
        self.waker.register(cx.waker());
        let woken = self.waker.take();
        if woken || held.iter().any(|idle| !idle.watched) {
            let waker = Waker::from(self.waker.clone());
            let mut slot_cx = Context::from_waker(&waker);
            held.retain_mut(|idle| {
                let readiness = idle.conn.poll_readiness(&mut slot_cx);
                idle.watched = matches!(readiness, Readiness::Ready);
                !matches!(readiness, Readiness::Ended)
            });
        }
        // The timer is set for the oldest due time it has seen and moved on
        // only when it fires: connections are released at every request, and
        // moving it each time would cost a timer-wheel update per exchange.
        loop {
            if let Some(timer) = timer.as_mut() {
                if !fired(timer, cx) {
                    return;
                }
                // Dropping one closes its connection (its sender goes).
                let now = Instant::now();
                held.retain(|idle| idle.due() > now);
            }
            let Some(due) = held.iter().map(Idle::due).min() else {
                return;
            };
            match timer {
                Some(timer) => timer.as_mut().reset(due),
                None => *timer = Some(Box::pin(tokio::time::sleep_until(due))),
            }
        }
    }
}

impl Drop for UpstreamSlot {
    fn drop(&mut self) {
        let held = std::mem::take(&mut *lock(&self.held));
        for idle in held {
            let pool = idle.conn.pool.clone();
            pool.park(idle);
        }
    }
}

pin_project_lite::pin_project! {
    /// An app connection's future that also drives, between requests, the
    /// upstream connections in its [`UpstreamSlot`].
    pub struct DriveSlot<F> {
        #[pin]
        inner: F,
        slot: Arc<UpstreamSlot>,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F> DriveSlot<F> {
    pub(crate) fn new(inner: F, slot: Arc<UpstreamSlot>) -> Self {
        Self {
            inner,
            slot,
            timer: None,
        }
    }
}

impl<F: Future> Future for DriveSlot<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let polled = this.inner.poll(cx);
        if polled.is_pending() {
            // After the app connection's turn: an answer that just ended has
            // put its connection back, and this registers the task for it.
            this.slot.drive(cx, this.timer);
        }
        polled
    }
}

/// `future`'s output, or `None` when it is not ready within `limit` of `start`.
///
/// The timer is the app connection's, from `slot`, kept between requests:
/// left at an earlier request's due time, it is moved on to this one's only
/// when it fires, where a timer of its own per request
/// (`tokio::time::timeout`) would be a timer-wheel insertion and removal per
/// exchange. A
/// request that finds the timer lent out (HTTP/2 streams of one app
/// connection) or has no slot gets a timer of its own.
pub(crate) fn within<F: Future>(
    future: F,
    start: Instant,
    limit: Duration,
    slot: Option<Arc<UpstreamSlot>>,
) -> Within<F> {
    // As `tokio::time::timeout`: a limit past what an `Instant` holds (a
    // way to say "never") is a deadline decades away, not an overflow.
    let due = start
        .checked_add(limit)
        .unwrap_or_else(|| start + Duration::from_secs(86_400 * 365 * 30));
    Within {
        future,
        due,
        timer: None,
        slot,
    }
}

pin_project_lite::pin_project! {
    /// See [`within`].
    pub(crate) struct Within<F> {
        #[pin]
        future: F,
        due: Instant,
        timer: Option<Pin<Box<Sleep>>>,
        slot: Option<Arc<UpstreamSlot>>,
    }

    impl<F> PinnedDrop for Within<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let (Some(slot), Some(timer)) = (this.slot.as_ref(), this.timer.take()) {
                slot.give_back_timer(timer);
            }
        }
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Some(output));
        }
        let due = *this.due;
        let timer = this.timer.get_or_insert_with(|| {
            let lent = this.slot.as_ref().and_then(|slot| slot.lend_timer());
            match lent {
                // Timeouts are the same for every request of an app
                // connection, so a lent timer is due no later than this
                // request (but for the clock's coarseness).
                Some(mut timer) if timer.deadline() > due => {
                    timer.as_mut().reset(due);
                    timer
                }
                Some(timer) => timer,
                None => Box::pin(tokio::time::sleep_until(due)),
            }
        });
        loop {
            if !fired(timer, cx) {
                return Poll::Pending;
            }
            if Instant::now() >= due {
                return Poll::Ready(None);
            }
            // An earlier request's due time: on to this one's.
            timer.as_mut().reset(due);
        }
    }
}
