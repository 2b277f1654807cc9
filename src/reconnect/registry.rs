//! The reconnect registry: which entity needs a reconnect, with which id, since
//! when, and how often the app called anyway. A `DashMap` behind a cheap handle,
//! a bounded history of resolved records, and a state file written atomically
//! (temp file + rename) after every change so a restart keeps pending records.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::state_file::{salvage, write_atomically, Persisted, Salvaged};
use crate::exchange::Api;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Lean's reconnect ids expire 30 days after they are issued.
const RECONNECT_ID_DAYS: i64 = 30;

/// Whether the app still has to reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for the user.
    Pending,
    /// The user is back.
    Resolved,
}

/// What ended a pending reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedBy {
    /// An `entity.reconnected` webhook.
    Webhook,
    /// A later OK data answer for the entity.
    OkResponse,
    /// `DELETE /api/reconnects/{entity_id}`.
    Admin,
}

/// Who produced the RECONNECT_REQUIRED the app saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Lean (or the upstream).
    Upstream,
    /// An injected fault.
    Fault,
}

/// One entity's reconnect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The entity, when the request named it.
    pub entity_id: Option<String>,
    /// The id the app passes to the LinkSDK.
    pub reconnect_id: String,
    /// The answer's `results_id`.
    pub results_id: Option<String>,
    /// API generation.
    pub api: Api,
    /// Path of the call that was answered RECONNECT_REQUIRED (latest).
    pub path: String,
    /// First RECONNECT_REQUIRED.
    pub first_seen: DateTime<Utc>,
    /// Latest RECONNECT_REQUIRED.
    pub last_seen: DateTime<Utc>,
    /// Calls answered RECONNECT_REQUIRED since first seen.
    pub hits: u64,
    /// Calls naming the entity after it was flagged and before it was resolved:
    /// an app that keeps calling instead of starting the reconnect.
    pub calls_while_pending: u64,
    /// Times Lean answered with a different reconnect id while pending.
    pub replaced: u64,
    /// `first_seen` + 30 days.
    pub expires_at: DateTime<Utc>,
    /// Pending or resolved.
    pub state: State,
    /// What resolved it.
    pub resolved_by: Option<ResolvedBy>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Upstream or injected fault.
    pub source: Source,
    /// When a `results.ready` webhook named this record's results id.
    #[serde(default)]
    pub results_ready_at: Option<DateTime<Utc>>,
}

impl Record {
    /// The registry key: the entity, or the reconnect id when the entity is unknown.
    pub fn key(&self) -> String {
        key_for(self.entity_id.as_deref(), &self.reconnect_id)
    }
}

fn key_for(entity: Option<&str>, reconnect_id: &str) -> String {
    match entity {
        Some(e) => e.to_string(),
        None => format!("reconnect:{reconnect_id}"),
    }
}

/// A RECONNECT_REQUIRED answer, as the layer saw it.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// Entity of the request, when known.
    pub entity_id: Option<String>,
    /// Reconnect id from the answer.
    pub reconnect_id: String,
    /// `results_id` from the answer.
    pub results_id: Option<String>,
    /// API generation of the answer.
    pub api: Api,
    /// Request path.
    pub path: String,
    /// Who produced it.
    pub source: Source,
}

/// What a sighting did to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SightingOutcome {
    /// A new pending record.
    New,
    /// Another hit on the same pending reconnect.
    Repeat,
    /// A pending record got a new reconnect id.
    Replaced,
}

/// What the registry tells its observer.
#[derive(Debug)]
pub enum RegistryEvent<'a> {
    /// An entity needs a reconnect (first sighting, or a new reconnect id).
    New(&'a Record),
    /// A reconnect was resolved.
    Resolved(&'a Record),
    /// An answer was inspected (`true`) or passed uninspected.
    Inspection(bool),
}

/// Receives [`RegistryEvent`]s (events, metrics).
pub type Observer = Arc<dyn Fn(&RegistryEvent<'_>) + Send + Sync>;

/// Counters for metrics and the admin API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Reconnects first seen.
    pub total: u64,
    /// JSON answers inspected.
    pub inspected: u64,
    /// Answers passed without inspection (too large or not JSON).
    pub uninspected: u64,
}

/// Handle on the registry. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ReconnectRegistry {
    inner: Arc<RegistryState>,
}

struct RegistryState {
    records: DashMap<String, Record>,
    history: Mutex<VecDeque<Record>>,
    history_limit: usize,
    state_file: Option<PathBuf>,
    dirty: Notify,
    /// Bumped on every change; the writer compares it with what it wrote.
    version: AtomicU64,
    written: Mutex<u64>,
    /// Held while the state file is written.
    flushing: tokio::sync::Mutex<()>,
    total: AtomicU64,
    inspected: AtomicU64,
    uninspected: AtomicU64,
    observer: std::sync::OnceLock<Observer>,
}

impl std::fmt::Debug for RegistryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectRegistry")
            .field("records", &self.records.len())
            .field("state_file", &self.state_file)
            .finish_non_exhaustive()
    }
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing or renaming failed.
    #[error("reconnect state file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl ReconnectRegistry {
    /// An in-memory registry keeping `history_limit` resolved records.
    pub fn in_memory(history_limit: usize) -> Self {
        Self::with_records(None, history_limit, Persisted::default())
    }

    fn with_records(
        state_file: Option<PathBuf>,
        history_limit: usize,
        persisted: Persisted,
    ) -> Self {
        let records = DashMap::new();
        let mut history: VecDeque<Record> = persisted.history.into();
        // The live map holds pending records only. Files written before
        // 2026-12-02 listed resolved records here too: copies of the
        // history's, or (from still older builds) only here. Those go into
        // the history, before the rest: they were resolved earlier.
        let mut earlier = Vec::new();
        for r in persisted.records {
            if r.state == State::Pending {
                records.insert(r.key(), r);
            } else if !history.contains(&r) {
                earlier.push(r);
            }
        }
        earlier.sort_by_key(|r| r.resolved_at);
        for r in earlier.into_iter().rev() {
            history.push_front(r);
        }
        while history.len() > history_limit {
            history.pop_front();
        }
        Self {
            inner: Arc::new(RegistryState {
                records,
                history: Mutex::new(history),
                history_limit,
                state_file,
                dirty: Notify::new(),
                version: AtomicU64::new(0),
                written: Mutex::new(0),
                flushing: tokio::sync::Mutex::new(()),
                total: AtomicU64::new(0),
                inspected: AtomicU64::new(0),
                uninspected: AtomicU64::new(0),
                observer: std::sync::OnceLock::new(),
            }),
        }
    }

    /// A registry persisted in `path`: loads it if present. Every record that
    /// parses is kept. A file that is not JSON at all is moved aside
    /// (`<name>.corrupt-<timestamp>`) and the registry starts empty; a file
    /// with records that do not parse (a field of the wrong type) keeps the
    /// others, and a copy of the whole file is set aside the same way. Either
    /// way a warning names both files and says how many records were kept.
    pub fn open(path: &Path, history_limit: usize) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::with_records(
                    Some(path.to_owned()),
                    history_limit,
                    Persisted::default(),
                ))
            }
            Err(e) => return Err(io(e)),
        };
        let aside = path.with_file_name(format!(
            "{}.corrupt-{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ));
        let persisted = match salvage(&bytes) {
            Ok(Salvaged {
                persisted,
                dropped: 0,
            }) => persisted,
            Ok(Salvaged { persisted, dropped }) => {
                // The file is rewritten at the next change: the original stays
                // beside it, for the records that could not be read.
                std::fs::write(&aside, &bytes).map_err(io)?;
                let kept = persisted.records.len() + persisted.history.len();
                tracing::warn!(
                    state_file = %path.display(),
                    copied_to = %aside.display(),
                    kept,
                    dropped,
                    "reconnect state file is corrupt in part: kept {kept} records, set {dropped} aside"
                );
                persisted
            }
            Err(e) => {
                std::fs::rename(path, &aside).map_err(io)?;
                tracing::warn!(
                    state_file = %path.display(),
                    moved_to = %aside.display(),
                    error = %e,
                    "reconnect state file is corrupt; moved aside, starting empty (kept 0 records)"
                );
                Persisted::default()
            }
        };
        Ok(Self::with_records(
            Some(path.to_owned()),
            history_limit,
            persisted,
        ))
    }

    /// Sets the observer told about new and resolved reconnects and inspections
    /// (once; later calls are ignored).
    pub fn set_observer(&self, observer: Observer) {
        let _ = self.inner.observer.set(observer);
    }

    fn notify(&self, event: RegistryEvent<'_>) {
        if let Some(observer) = self.inner.observer.get() {
            observer(&event);
        }
    }

    fn changed(&self) {
        self.inner.version.fetch_add(1, Ordering::SeqCst);
        self.inner.dirty.notify_one();
    }

    /// Records a RECONNECT_REQUIRED answer.
    pub fn observe_reconnect(&self, s: Sighting) -> SightingOutcome {
        let now = Utc::now();
        let (s_entity, s_reconnect) = (s.entity_id.clone(), s.reconnect_id.clone());
        let key = key_for(s.entity_id.as_deref(), &s.reconnect_id);
        let outcome = {
            let mut entry = self.inner.records.entry(key).or_insert_with(|| Record {
                entity_id: s.entity_id.clone(),
                reconnect_id: s.reconnect_id.clone(),
                results_id: s.results_id.clone(),
                api: s.api,
                path: s.path.clone(),
                first_seen: now,
                last_seen: now,
                hits: 0,
                calls_while_pending: 0,
                replaced: 0,
                expires_at: now + chrono::Duration::days(RECONNECT_ID_DAYS),
                state: State::Pending,
                resolved_by: None,
                resolved_at: None,
                source: s.source,
                results_ready_at: None,
            });
            let r = entry.value_mut();
            // The same reconnect seen through the other API generation: v1 shows
            // `reconnect_id` + `results_id`, v2 shows the `results_id` alone.
            let same = r.reconnect_id == s.reconnect_id
                || r.results_id.as_deref() == Some(s.reconnect_id.as_str())
                || s.results_id.as_deref() == Some(r.reconnect_id.as_str());
            let outcome = if r.hits == 0 {
                SightingOutcome::New
            } else if !same {
                r.replaced += 1;
                SightingOutcome::Replaced
            } else {
                SightingOutcome::Repeat
            };
            if outcome != SightingOutcome::Repeat || r.reconnect_id == s.reconnect_id {
                r.reconnect_id = s.reconnect_id;
                r.results_id = s.results_id;
            }
            r.api = s.api;
            r.path = s.path;
            r.source = s.source;
            r.last_seen = now;
            r.hits += 1;
            if outcome == SightingOutcome::New {
                r.first_seen = now;
            }
            outcome
        };
        if outcome == SightingOutcome::New {
            self.inner.total.fetch_add(1, Ordering::Relaxed);
        }
        if outcome != SightingOutcome::Repeat {
            if let Some(record) = self
                .inner
                .records
                .get(&key_for(s_entity.as_deref(), &s_reconnect))
                .map(|r| r.clone())
            {
                self.notify(RegistryEvent::New(&record));
            }
        }
        self.changed();
        outcome
    }

    /// Counts a call naming `entity` while its reconnect is pending (cheap when
    /// nothing is pending).
    pub fn observe_call(&self, entity: &str) {
        if let Some(mut r) = self.inner.records.get_mut(entity) {
            if r.state == State::Pending {
                r.calls_while_pending += 1;
                drop(r);
                self.changed();
            }
        }
    }

    /// Whether `entity` has a pending reconnect.
    pub fn is_pending(&self, entity: &str) -> bool {
        self.inner
            .records
            .get(entity)
            .is_some_and(|r| r.state == State::Pending)
    }

    /// Resolves the pending record of `entity`. Returns the resolved record.
    pub fn resolve_entity(&self, entity: &str, by: ResolvedBy) -> Option<Record> {
        self.resolve_key(entity, by, None)
    }

    /// Resolves the pending record with this reconnect id (v1 `reconnect_id` or
    /// v2 `results_id`), whatever its key. A record whose request named no
    /// entity learns it from `entity` (an `entity.reconnected` webhook carries
    /// both ids), so it is found by entity afterwards.
    pub fn resolve_reconnect_id(
        &self,
        reconnect_id: &str,
        entity: Option<&str>,
        by: ResolvedBy,
    ) -> Option<Record> {
        let key = self
            .inner
            .records
            .iter()
            .find(|r| {
                r.state == State::Pending
                    && (r.reconnect_id == reconnect_id
                        || r.results_id.as_deref() == Some(reconnect_id))
            })
            .map(|r| r.key().clone())?;
        self.resolve_key(&key, by, entity)
    }

    /// Notes that a `results.ready` webhook named `results_id`; returns the key of
    /// the record it belongs to.
    pub fn mark_results_ready(&self, results_id: &str) -> Option<String> {
        let matches = |r: &Record| r.results_id.as_deref() == Some(results_id);
        // Found first, in its own statement: the iterator's shard locks must be
        // released before `get_mut` takes one.
        let found = self
            .inner
            .records
            .iter()
            .find(|r| matches(r.value()))
            .map(|r| r.value().key());
        let key = match found {
            Some(key) => {
                if let Some(mut r) = self.inner.records.get_mut(&key) {
                    r.results_ready_at = Some(Utc::now());
                }
                key
            }
            // Usually already resolved by the `entity.reconnected` before it.
            None => {
                let mut history = self.lock_history();
                let r = history.iter_mut().rev().find(|r| matches(r))?;
                r.results_ready_at = Some(Utc::now());
                r.key()
            }
        };
        self.changed();
        Some(key)
    }

    /// Resolves the pending record under `key`: it leaves the live map for the
    /// bounded history. `entity` fills in an entity the record lacks.
    fn resolve_key(&self, key: &str, by: ResolvedBy, entity: Option<&str>) -> Option<Record> {
        // The history's lock is held across the move, and a snapshot takes it
        // before it reads the live map: the record is in exactly one of them.
        // The order (history, then the map's shards) is the same everywhere.
        let resolved = {
            let mut history = self.lock_history();
            let (_, mut resolved) = self
                .inner
                .records
                .remove_if(key, |_, r| r.state == State::Pending)?;
            resolved.state = State::Resolved;
            if resolved.entity_id.is_none() {
                resolved.entity_id = entity.map(str::to_string);
            }
            resolved.resolved_by = Some(by);
            resolved.resolved_at = Some(Utc::now());
            self.bounded_push(&mut history, resolved.clone());
            resolved
        };
        self.notify(RegistryEvent::Resolved(&resolved));
        self.changed();
        Some(resolved)
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, VecDeque<Record>> {
        // Records are pushed and popped whole; a poisoned lock is consistent.
        self.inner
            .history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bounded_push(&self, history: &mut VecDeque<Record>, record: Record) {
        history.push_back(record);
        while history.len() > self.inner.history_limit {
            history.pop_front();
        }
    }

    /// The record of `key` (entity id, or `reconnect:<id>`): the pending one, or
    /// the latest resolved one still in the history.
    pub fn get(&self, key: &str) -> Option<Record> {
        self.inner.records.get(key).map(|r| r.clone()).or_else(|| {
            self.lock_history()
                .iter()
                .rev()
                .find(|r| r.key() == key)
                .cloned()
        })
    }

    /// Pending records (most recently seen first), then resolved ones from the
    /// history (most recently resolved first).
    pub fn list(&self) -> Vec<Record> {
        let mut pending: Vec<Record> = self.inner.records.iter().map(|r| r.clone()).collect();
        pending.sort_by_key(|r| std::cmp::Reverse(r.last_seen));
        pending.extend(self.lock_history().iter().rev().cloned());
        pending
    }

    /// Earlier, superseded records, oldest first.
    pub fn history(&self) -> Vec<Record> {
        self.inner
            .history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Pending records.
    pub fn pending_count(&self) -> usize {
        self.inner
            .records
            .iter()
            .filter(|r| r.state == State::Pending)
            .count()
    }

    /// Counts an inspected (`true`) or uninspected answer.
    pub fn count_inspection(&self, inspected: bool) {
        let counter = if inspected {
            &self.inner.inspected
        } else {
            &self.inner.uninspected
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.notify(RegistryEvent::Inspection(inspected));
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            total: self.inner.total.load(Ordering::Relaxed),
            inspected: self.inner.inspected.load(Ordering::Relaxed),
            uninspected: self.inner.uninspected.load(Ordering::Relaxed),
        }
    }

    /// Writes the state file now if anything changed since the last write.
    /// Writes are serialized: the background writer and a final flush never
    /// race on the temporary file.
    pub async fn flush(&self) -> Result<(), StateError> {
        let Some(path) = self.inner.state_file.clone() else {
            return Ok(());
        };
        let _serial = self.inner.flushing.lock().await;
        let version = self.inner.version.load(Ordering::SeqCst);
        if *self.lock_written() >= version {
            return Ok(());
        }
        let snapshot = self.snapshot();
        let target = path.clone();
        // Rendered there too: a full history takes milliseconds.
        crate::sync::blocking(move || {
            let bytes = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
            write_atomically(&target, &bytes)
        })
        .await
        .unwrap_or_else(|| Err(std::io::Error::other("the runtime is shutting down")))
        .map_err(|source| StateError::Io { path, source })?;
        let mut written = self.lock_written();
        *written = (*written).max(version);
        Ok(())
    }

    /// What the state file holds: the live (pending) records and the history,
    /// read under the history's lock (see `resolve_key`).
    fn snapshot(&self) -> Persisted {
        let history = self.lock_history();
        Persisted {
            version: 1,
            records: self.inner.records.iter().map(|r| r.clone()).collect(),
            history: history.iter().cloned().collect(),
        }
    }

    fn lock_written(&self) -> std::sync::MutexGuard<'_, u64> {
        self.inner
            .written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps the state file up to date until `stop` completes, then writes the
    /// last changes and returns: waits for changes and writes them, coalescing
    /// bursts. Spawn it once; never abort it mid-write.
    pub async fn run_writer(self, stop: impl std::future::Future<Output = ()>) {
        if self.inner.state_file.is_none() {
            return;
        }
        tokio::pin!(stop);
        let mut reported = false;
        loop {
            let stopping = tokio::select! {
                () = self.inner.dirty.notified() => false,
                () = &mut stop => true,
            };
            match self.flush().await {
                Ok(()) => reported = false,
                // Reported once per failure streak; the proxy keeps serving.
                Err(e) if !reported => {
                    tracing::error!(error = %e, "cannot write the reconnect state file");
                    reported = true;
                }
                Err(_) => {}
            }
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
