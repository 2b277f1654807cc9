//! [`ClaimLog`]: the event ids already accepted, kept on disk for a window, so
//! that a delivery Lean retries after leanproxy restarted is still a
//! duplicate (Lean retries for about four and a half hours).
//!
//! An append-only file of `<unix seconds> <event id>` lines: each accepted
//! event id is one line, written (not fsynced: a killed process keeps it, a
//! crashed machine may not) when its delivery is kept. At start the lines
//! within the window are read back and the file is rewritten with only those;
//! while running it is rewritten the same way when it holds twice what it may.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;

use crate::sync::lock;

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
