//! The Mockbank's one clock. Inactivity windows, token and reconnect-id expiry,
//! async results and webhook retries all read it, so a test (or a demo) can pause
//! it, advance it, or run it faster than real time (`time_scale`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// A cheap-to-clone handle on the Mockbank clock.
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<ClockState>,
}

#[derive(Debug)]
struct ClockState {
    origin_wall: DateTime<Utc>,
    origin_real: Instant,
    /// Mockbank seconds per real second.
    scale: f64,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Added by `advance`.
    offset: Duration,
    /// Real time elapsed when paused, if paused.
    frozen: Option<Duration>,
    /// Real time spent paused (it does not count).
    paused_total: Duration,
}

impl Clock {
    /// A running clock starting at `start`, going `scale` times as fast as real time.
    pub fn new(start: DateTime<Utc>, scale: f64) -> Self {
        Self {
            inner: Arc::new(ClockState {
                origin_wall: start,
                origin_real: Instant::now(),
                scale: if scale.is_finite() && scale > 0.0 {
                    scale
                } else {
                    1.0
                },
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
        }
    }

    /// A clock standing at `start` exactly, as if paused there: only
    /// [`Clock::advance`] moves it until [`Clock::resume`]. Every reading is
    /// the same, for answers a test compares byte for byte.
    pub fn paused_at(start: DateTime<Utc>) -> Self {
        let clock = Self::new(start, 1.0);
        clock.state().frozen = Some(Duration::ZERO);
        clock
    }

    /// A real-time clock starting now.
    pub fn system() -> Self {
        Self::new(Utc::now(), 1.0)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the two durations
        // inconsistent, so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Mockbank time elapsed since the clock's start.
    pub fn elapsed(&self) -> Duration {
        let state = self.state();
        let real = state
            .frozen
            .unwrap_or_else(|| self.inner.origin_real.elapsed())
            .saturating_sub(state.paused_total);
        real.mul_f64(self.inner.scale) + state.offset
    }

    /// The current Mockbank time.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.elapsed()).unwrap_or(chrono::Duration::MAX);
        self.inner.origin_wall + elapsed
    }

    /// Stops the clock; only [`Clock::advance`] moves it until [`Clock::resume`].
    pub fn pause(&self) {
        let mut state = self.state();
        if state.frozen.is_none() {
            state.frozen = Some(self.inner.origin_real.elapsed());
        }
    }

    /// Restarts a paused clock from where it stood.
    pub fn resume(&self) {
        let mut state = self.state();
        if let Some(frozen) = state.frozen.take() {
            state.paused_total += self.inner.origin_real.elapsed().saturating_sub(frozen);
        }
        drop(state);
        self.inner.changed.notify_waiters();
    }

    /// Moves the clock forward by `by` and wakes everything waiting on it.
    pub fn advance(&self, by: Duration) {
        self.state().offset += by;
        self.inner.changed.notify_waiters();
    }

    /// Whether the clock is paused.
    pub fn is_paused(&self) -> bool {
        self.state().frozen.is_some()
    }

    /// Waits until the clock reads at least `deadline` (Mockbank time since
    /// start), waking on real time passing or on an advance.
    pub async fn sleep_until(&self, deadline: Duration) {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            // Register before reading, so an advance in between is not missed.
            notified.as_mut().enable();
            let now = self.elapsed();
            if now >= deadline {
                return;
            }
            if self.is_paused() {
                notified.await;
            } else {
                let real = (deadline - now).div_f64(self.inner.scale);
                tokio::select! {
                    () = tokio::time::sleep(real) => {}
                    () = notified => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        "2026-05-13T19:00:00Z".parse().unwrap()
    }

    #[test]
    fn paused_clock_moves_only_when_advanced() {
        let clock = Clock::new(start(), 1.0);
        clock.pause();
        let before = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now(), before);
        clock.advance(Duration::from_secs(600));
        assert_eq!(clock.now() - before, chrono::Duration::seconds(600));
    }

    #[test]
    fn a_clock_paused_at_its_start_reads_the_start_until_resumed() {
        let clock = Clock::paused_at(start());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now(), start());
        assert!(clock.is_paused());
        clock.resume();
        std::thread::sleep(Duration::from_millis(20));
        assert!(clock.now() > start());
    }

    #[test]
    fn scale_speeds_the_clock_up() {
        let clock = Clock::new(start(), 1000.0);
        std::thread::sleep(Duration::from_millis(20));
        assert!(clock.elapsed() >= Duration::from_secs(20));
    }

    #[test]
    fn resume_continues_from_the_paused_reading() {
        let clock = Clock::new(start(), 1.0);
        clock.pause();
        let at_pause = clock.elapsed();
        std::thread::sleep(Duration::from_millis(30));
        clock.resume();
        assert!(clock.elapsed() < at_pause + Duration::from_millis(25));
    }

    #[tokio::test]
    async fn sleeper_wakes_on_advance() {
        let clock = Clock::new(start(), 1.0);
        clock.pause();
        let deadline = clock.elapsed() + Duration::from_secs(3600);
        let waiter = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(deadline).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        clock.advance(Duration::from_secs(3600));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the advance")
            .unwrap();
    }
}
