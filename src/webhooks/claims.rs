//! Event-id claims: a delivery of an event id already accepted is a duplicate,
//! and one that arrives while the first is still being queued waits for it.
//!
//! [`Claims`] is the handle the catcher claims and settles through; it holds
//! a [`ClaimStore`]. Today's backend, [`MemoryClaims`], keeps the ids in
//! memory (bounded) and, with a [`ClaimLog`], on disk for a window, so that a
//! delivery Lean retries after leanproxy restarted is still a duplicate (Lean
//! retries for about four and a half hours). The second backend, for several
//! replicas, is `RedisClaims` (`redis_claims.rs`: `SET NX` with an expiry per
//! claim, the value saying settling or kept), checked by the same contract
//! (`claims_contract.rs`).
//!
//! The [`ClaimLog`] is an append-only file of `<unix seconds> <event id>`
//! lines: each accepted event id is one line, written (not fsynced: a killed
//! process keeps it, a crashed machine may not) when its delivery is kept. At
//! start the lines within the window are read back and the file is rewritten
//! with only those; while running it is rewritten the same way when it holds
//! twice what it may.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;

use crate::backend::Op;
use crate::sync::lock;

/// Where an event id stands when a delivery carrying it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen before: this delivery is its first, and must settle it.
    First,
    /// Its first delivery was kept: this one is a duplicate.
    Seen,
    /// Its first delivery is not settled yet (still being queued): wait
    /// until it is, then claim again.
    Settling,
}

/// The event ids claimed, wherever they are kept. Its calls are on the
/// webhook catcher's path, once or twice per delivery that carries an event
/// id, never on the proxy's; `settle` may be called from a `Drop`, where its
/// outcome is not awaited.
pub(crate) trait ClaimStore: Send + Sync + fmt::Debug {
    /// Where `event_id` stands; a new one is claimed ([`Claim::First`]) and
    /// must be settled.
    fn claim(&self, event_id: &str) -> Op<Claim>;

    /// Settles the claim on `event_id`: `kept`, later deliveries of it are
    /// duplicates; not kept (its delivery could not be queued), it is
    /// forgotten, and Lean's retry is taken as a first delivery.
    fn settle(&self, event_id: &str, kept: bool) -> Op<()>;

    /// Completes once `event_id` is not [`Claim::Settling`] (at once when it
    /// is not now).
    fn settled(&self, event_id: &str) -> Op<()>;
}

/// The event-id claims. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Claims {
    store: Arc<dyn ClaimStore>,
}

impl Claims {
    /// Claims kept in memory only, at most `cap` event ids (the newest).
    pub fn in_memory(cap: usize) -> Self {
        Self::with_store(Arc::new(MemoryClaims::new(cap, None)))
    }

    /// Claims kept in memory and in `log`, starting from `ids` (oldest
    /// first), which it read back: they are duplicates from the start.
    pub fn logged(log: ClaimLog, ids: Vec<String>) -> Self {
        let cap = log.cap;
        let memory = MemoryClaims::new(cap, Some(log));
        {
            let mut state = lock(&memory.state);
            for id in ids {
                state.remember(id, cap);
            }
        }
        Self::with_store(Arc::new(memory))
    }

    /// Claims on Redis, shared by every replica, kept for `window`.
    pub fn on_redis(redis: crate::state::RedisState, window: Duration) -> Self {
        Self::with_store(Arc::new(super::redis_claims::RedisClaims::new(
            redis, window,
        )))
    }

    pub(crate) fn with_store(store: Arc<dyn ClaimStore>) -> Self {
        Self { store }
    }

    /// Claims `event_id` for a delivery: its claim when it is the first,
    /// `None` when it is a duplicate. A delivery whose first is still being
    /// queued waits for it, so Lean is never told a copy arrived while the
    /// original is then lost.
    pub(crate) async fn claim(&self, event_id: &str) -> Option<Settle> {
        loop {
            match self.store.claim(event_id).await {
                Claim::First => {
                    return Some(Settle {
                        claims: self.clone(),
                        event_id: event_id.to_string(),
                        kept: false,
                    })
                }
                Claim::Seen => return None,
                Claim::Settling => self.store.settled(event_id).await,
            }
        }
    }
}

/// A first delivery's claim on its event id, settled when dropped: kept once
/// [`Settle::keep`] said so, else forgotten, for Lean's retry.
pub(crate) struct Settle {
    claims: Claims,
    event_id: String,
    kept: bool,
}

impl Settle {
    /// Keeps the claim: later deliveries of the event id are duplicates.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        // Not awaited: a delivery of the same id meanwhile finds it settling,
        // and waits.
        self.claims.store.settle(&self.event_id, self.kept).detach();
    }
}

/// Today's backend: the claimed ids in memory, the newest `cap` of them, and
/// the kept ones in a [`ClaimLog`] when there is one.
#[derive(Debug)]
pub(crate) struct MemoryClaims {
    cap: usize,
    state: Mutex<Claimed>,
    settled: Arc<Notify>,
    log: Option<ClaimLog>,
}

/// The event ids a [`MemoryClaims`] knows.
#[derive(Debug, Default)]
struct Claimed {
    /// Event ids already accepted or being settled, oldest first (bounded).
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    /// Event ids whose first delivery is not settled yet.
    settling: HashSet<String>,
}

impl Claimed {
    fn remember(&mut self, id: String, cap: usize) {
        if self.seen.insert(id.clone()) {
            self.seen_order.push_back(id);
        }
        while self.seen_order.len() > cap {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }
}

impl MemoryClaims {
    /// At most `cap` event ids, the kept ones also in `log`.
    pub(crate) fn new(cap: usize, log: Option<ClaimLog>) -> Self {
        Self {
            cap: cap.max(1),
            state: Mutex::default(),
            settled: Arc::new(Notify::new()),
            log,
        }
    }
}

impl ClaimStore for MemoryClaims {
    fn claim(&self, event_id: &str) -> Op<Claim> {
        let mut state = lock(&self.state);
        if state.settling.contains(event_id) {
            return Op::ready(Claim::Settling);
        }
        if state.seen.contains(event_id) {
            return Op::ready(Claim::Seen);
        }
        state.settling.insert(event_id.to_string());
        state.remember(event_id.to_string(), self.cap);
        Op::ready(Claim::First)
    }

    fn settle(&self, event_id: &str, kept: bool) -> Op<()> {
        {
            let mut state = lock(&self.state);
            state.settling.remove(event_id);
            if !kept {
                state.seen.remove(event_id);
                state.seen_order.retain(|e| e != event_id);
            } else if state.seen.insert(event_id.to_string()) {
                // Pushed out of `seen` by newer ids while it settled.
                state.seen_order.push_back(event_id.to_string());
            }
        }
        if let (true, Some(log)) = (kept, &self.log) {
            log.record(event_id);
        }
        self.settled.notify_waiters();
        Op::ready(())
    }

    fn settled(&self, event_id: &str) -> Op<()> {
        let mut settled = Box::pin(self.settled.clone().notified_owned());
        // Enabled before the look, so a settle in between is not missed.
        settled.as_mut().enable();
        if lock(&self.state).settling.contains(event_id) {
            Op::later(settled)
        } else {
            Op::ready(())
        }
    }
}

/// The accepted event ids, on disk.
#[derive(Debug)]
pub struct ClaimLog {
    path: PathBuf,
    window: Duration,
    /// Event ids kept at most (the newest), on disk and in memory.
    cap: usize,
    state: Mutex<LogState>,
}

#[derive(Debug)]
struct LogState {
    file: Option<File>,
    /// What the file holds that still counts, oldest first.
    entries: VecDeque<(i64, String)>,
    /// Lines in the file.
    lines: usize,
    /// Whether a failed write was reported (once per streak).
    reported: bool,
}

impl ClaimLog {
    /// Opens (or creates) the log at `path`, keeping event ids accepted
    /// within `window`, at most `cap` of them. Returns it with those ids,
    /// oldest first.
    pub fn open(path: &Path, window: Duration, cap: usize) -> std::io::Result<(Self, Vec<String>)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let since = Utc::now().timestamp() - i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        let mut entries = VecDeque::new();
        match File::open(path) {
            Ok(file) => {
                for line in BufReader::new(file).lines() {
                    let line = line?;
                    // A damaged line (a write cut by a crash) is skipped.
                    let Some((at, id)) = line.split_once(' ') else {
                        continue;
                    };
                    match at.parse::<i64>() {
                        Ok(at) if at >= since && !id.is_empty() => {
                            entries.push_back((at, id.to_string()));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        while entries.len() > cap {
            entries.pop_front();
        }
        let ids = entries.iter().map(|(_, id)| id.clone()).collect();
        let log = Self {
            path: path.to_owned(),
            window,
            cap: cap.max(1),
            state: Mutex::new(LogState {
                file: None,
                lines: 0,
                entries,
                reported: false,
            }),
        };
        log.rewrite(&mut lock(&log.state))?;
        Ok((log, ids))
    }

    /// Writes the entries still within the window to a new file, replacing
    /// the old one, and appends to it from then on.
    fn rewrite(&self, state: &mut LogState) -> std::io::Result<()> {
        let since =
            Utc::now().timestamp() - i64::try_from(self.window.as_secs()).unwrap_or(i64::MAX);
        while state.entries.front().is_some_and(|(at, _)| *at < since) {
            state.entries.pop_front();
        }
        let tmp = self.path.with_extension("log.tmp");
        {
            let mut file = File::create(&tmp)?;
            let mut text = String::new();
            for (at, id) in &state.entries {
                text.push_str(&format!("{at} {id}\n"));
            }
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        state.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        state.lines = state.entries.len();
        Ok(())
    }

    /// Records that `event_id` was accepted. A failed write is logged once and
    /// loses only the durability of that claim.
    pub fn record(&self, event_id: &str) {
        // An id with a line break would make two lines; Lean's are UUIDs.
        if event_id.contains(['\n', '\r']) {
            return;
        }
        let mut state = lock(&self.state);
        let at = Utc::now().timestamp();
        state.entries.push_back((at, event_id.to_string()));
        while state.entries.len() > self.cap {
            state.entries.pop_front();
        }
        let result = if state.lines >= 2 * self.cap {
            self.rewrite(&mut state)
        } else {
            let line = format!("{at} {event_id}\n");
            let written = match state.file.as_mut() {
                Some(file) => file.write_all(line.as_bytes()),
                None => Err(std::io::Error::other("not open")),
            };
            state.lines += 1;
            written
        };
        match result {
            Ok(()) => state.reported = false,
            Err(e) if !state.reported => {
                state.reported = true;
                tracing::error!(target: "leanproxy::webhooks", path = %self.path.display(), error = %e, "cannot write the webhook claim log: a delivery Lean retries after a restart may be relayed again");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::AtOnce;

    #[test]
    fn claims_are_bounded_and_dedup_event_ids() {
        // As many as a store of 2 deliveries remembers.
        let store = MemoryClaims::new(2 * super::super::Store::CLAIMS_PER_DELIVERY, None);
        assert_eq!(store.claim("ev-1").at_once(), Claim::First);
        assert_eq!(store.claim("ev-1").at_once(), Claim::Settling);
        store.settle("ev-1", true).at_once();
        assert_eq!(store.claim("ev-1").at_once(), Claim::Seen);
        assert_eq!(store.claim("ev-2").at_once(), Claim::First);
        store.settle("ev-2", false).at_once();
        assert_eq!(
            store.claim("ev-2").at_once(),
            Claim::First,
            "forgotten: Lean's retry is taken"
        );
    }

    #[test]
    fn an_event_id_pushed_out_while_settling_is_still_kept() {
        let store = MemoryClaims::new(super::super::Store::CLAIMS_PER_DELIVERY, None);
        assert_eq!(store.claim("slow").at_once(), Claim::First);
        for i in 0..10 {
            let other = format!("ev-{i}");
            assert_eq!(store.claim(&other).at_once(), Claim::First);
            store.settle(&other, true).at_once();
        }
        store.settle("slow", true).at_once();
        assert_eq!(store.claim("slow").at_once(), Claim::Seen);
    }

    #[test]
    fn claims_within_the_window_come_back_and_older_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claims.log");
        let old = Utc::now().timestamp() - 6 * 3600;
        std::fs::write(&path, format!("{old} ev-old\ngarbage\n")).unwrap();
        let (log, ids) = ClaimLog::open(&path, Duration::from_secs(5 * 3600), 10).unwrap();
        assert!(ids.is_empty(), "{ids:?}");
        log.record("ev-1");
        log.record("ev-2");
        drop(log);
        let (_, ids) = ClaimLog::open(&path, Duration::from_secs(5 * 3600), 10).unwrap();
        assert_eq!(ids, ["ev-1", "ev-2"]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("ev-old") && !text.contains("garbage"),
            "{text}"
        );
    }

    #[test]
    fn the_file_stays_within_twice_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claims.log");
        let (log, _) = ClaimLog::open(&path, Duration::from_secs(3600), 5).unwrap();
        for i in 0..100 {
            log.record(&format!("ev-{i}"));
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 10, "{lines} lines");
        drop(log);
        let (_, ids) = ClaimLog::open(&path, Duration::from_secs(3600), 5).unwrap();
        assert_eq!(ids, ["ev-95", "ev-96", "ev-97", "ev-98", "ev-99"]);
    }
}
