//! How many exchange lines reach stderr: every one, up to a rate.
//!
//! A person reads a few lines a second; under load every exchange as a line is
//! a flood nobody reads, and the line is the most expensive thing leanproxy
//! adds to an exchange (benches/HISTORY.md). Above
//! `log.lines_per_second`, exchanges are counted instead of printed, and once a
//! second one line says how many were held back, by status class. Nothing else
//! is affected: the ring buffer, the journal, the live events and the metrics
//! still see every exchange.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Per-second budget of exchange lines.
#[derive(Debug)]
pub(crate) struct LineBudget {
    per_second: u32,
    epoch: Instant,
    /// The second (since `epoch`) that `used` counts.
    window: AtomicU64,
    used: AtomicU32,
    /// Held back since the last report, by status class (index 1 to 5; 0 for
    /// exchanges without a status).
    held: [AtomicU64; 6],
}

/// Lines held back since the last report, by status class.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) by_class: [u64; 6],
}

impl Held {
    pub(crate) fn total(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// `2xx 1204, 5xx 3`.
    pub(crate) fn breakdown(&self) -> String {
        self.by_class
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(class, n)| match class {
                0 => format!("reset {n}"),
                c => format!("{c}xx {n}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl LineBudget {
    /// At most `per_second` lines a second; 0 for no limit.
    pub(crate) fn new(per_second: u32) -> Self {
        Self {
            per_second,
            epoch: Instant::now(),
            window: AtomicU64::new(0),
            used: AtomicU32::new(0),
            held: Default::default(),
        }
    }

    /// Whether the exchange with `status` gets its line; counts it when not.
    pub(crate) fn admit(&self, status: u16) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let now = self.epoch.elapsed().as_secs();
        let window = self.window.load(Ordering::Relaxed);
        if now != window
            && self
                .window
                .compare_exchange(window, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // A line counted against the old second by a racing thread may be
            // lost here: the budget is a rate, not an exact count.
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < self.per_second {
            return true;
        }
        let class = usize::from(status / 100).min(5);
        self.held[class].fetch_add(1, Ordering::Relaxed);
        false
    }

    /// What was held back since the last call.
    pub(crate) fn take_held(&self) -> Held {
        let mut held = Held::default();
        for (slot, count) in held.by_class.iter_mut().zip(&self.held) {
            *slot = count.swap(0, Ordering::Relaxed);
        }
        held
    }

    /// The configured rate (0: no limit).
    pub(crate) fn per_second(&self) -> u32 {
        self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_beyond_the_rate_are_counted_by_class() {
        let budget = LineBudget::new(3);
        let admitted = [200, 200, 201, 200, 503, 404, 0]
            .iter()
            .filter(|s| budget.admit(**s))
            .count();
        assert_eq!(admitted, 3);
        let held = budget.take_held();
        assert_eq!(held.total(), 4);
        assert_eq!(held.breakdown(), "reset 1, 2xx 1, 4xx 1, 5xx 1");
        assert_eq!(budget.take_held().total(), 0, "taken once");
    }

    #[test]
    fn zero_means_every_line() {
        let budget = LineBudget::new(0);
        assert!((0..10_000).all(|_| budget.admit(200)));
        assert_eq!(budget.take_held().total(), 0);
    }
}
