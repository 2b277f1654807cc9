//! Where the registry's records are kept: [`RegistryStore`], the operations the
//! layers, the webhooks and the admin API need, and [`MemoryRegistry`],
//! today's backend: a `DashMap` of pending records, a bounded history of
//! resolved ones, and a state file written atomically (temp file + rename)
//! after changes, so a restart keeps them.
//!
//! The second backend, for several replicas, is `RedisRegistry`
//! (`redis.rs`: a record per key with an expiry at its `expires_at`, the
//! history a capped list), checked by the same contract as the memory
//! backend (`store_contract.rs`).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio::sync::Notify;

use super::record::{key_for, Record, ResolvedBy, Sighting, SightingOutcome, State};
use super::state_file::{salvage, write_atomically, Persisted, Salvaged};
use crate::backend::Op;
use crate::sync::lock;

/// Lean's reconnect ids expire 30 days after they are issued.
const RECONNECT_ID_DAYS: i64 = 30;

/// A future a backend runs in the background (see [`RegistryStore::run`]).
pub(crate) type Background = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why the state could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing or renaming the state file failed.
    #[error("reconnect state file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The registry's records, wherever they are kept. Keys are entity ids, or
/// `reconnect:<id>` for a reconnect whose request named no entity
/// ([`Record::key`]).
///
/// On the request path, from the reconnect layer at the end of an answer's
/// body (where nothing can be awaited: a backend whose [`Op`] is not ready has
/// what follows run in a task of its own) and from the fault layer's sticky
/// reconnects: [`observe_call`](Self::observe_call) (every answer to a call
/// naming an entity), [`is_pending`](Self::is_pending) (every OK data answer
/// naming one), [`observe_reconnect`](Self::observe_reconnect) (RECONNECT_REQUIRED
/// answers) and [`resolve_entity`](Self::resolve_entity). The memory backend
/// answers each at once. The others serve the webhooks (on the blocking pool)
/// and the admin API.
pub(crate) trait RegistryStore: Send + Sync + fmt::Debug {
    /// Records a RECONNECT_REQUIRED answer seen at `at`: what it did, with
    /// the record when it is new or got a new reconnect id. A sighting of a
    /// reconnect resolved after `at` is [stale](SightingOutcome::Stale).
    /// Request path.
    fn observe_reconnect(
        &self,
        sighting: Sighting,
        at: DateTime<Utc>,
    ) -> Op<(SightingOutcome, Option<Record>)>;

    /// Counts a call naming `entity` while its reconnect is pending. Request
    /// path, for every call naming an entity: cheap when nothing is pending.
    fn observe_call(&self, entity: &str) -> Op<()>;

    /// Whether `entity` has a pending reconnect. Request path.
    fn is_pending(&self, entity: &str) -> Op<bool>;

    /// Resolves the pending record of `entity`, returning it resolved.
    /// Request path (an OK answer), webhooks, admin API.
    fn resolve_entity(&self, entity: &str, by: ResolvedBy) -> Op<Option<Record>>;

    /// Resolves the pending record with this reconnect id (v1 `reconnect_id`
    /// or v2 `results_id`), whatever its key; a record without an entity
    /// learns it from `entity`, and is found by it afterwards.
    fn resolve_reconnect_id(
        &self,
        reconnect_id: &str,
        entity: Option<&str>,
        by: ResolvedBy,
    ) -> Op<Option<Record>>;

    /// Notes that a `results.ready` webhook named `results_id` on the pending
    /// or resolved record that carries it; returns that record's key.
    fn mark_results_ready(&self, results_id: &str) -> Op<Option<String>>;

    /// The pending record of `key`, or the latest resolved one kept.
    fn get(&self, key: &str) -> Op<Option<Record>>;

    /// Pending records (most recently seen first), then resolved ones (most
    /// recently resolved first).
    fn list(&self) -> Op<Vec<Record>>;

    /// Resolved records kept, oldest first.
    fn history(&self) -> Op<Vec<Record>>;

    /// Pending records.
    fn pending_count(&self) -> Op<usize>;

    /// Makes every change so far durable (the memory backend: writes its state
    /// file now if anything changed).
    fn flush(&self) -> Op<Result<(), StateError>>;

    /// What the backend runs beside the server until `stop` completes (the
    /// memory backend: its state file's writer); it ends with a last flush.
    fn run(&self, stop: Background) -> Background;
}

/// A record for a reconnect first seen at `now`, before its first
/// [`sight`].
pub(super) fn fresh(s: &Sighting, now: DateTime<Utc>) -> Record {
    Record {
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
    }
}

/// How many of the latest resolutions a sighting with no pending record is
/// checked against: a stale sighting trails its resolution by milliseconds.
pub(super) const RECENT_RESOLUTIONS: usize = 64;

/// Whether `s` is the reconnect of `r`, seen through either API generation:
/// v1 shows `reconnect_id` + `results_id`, v2 shows the `results_id` alone.
fn same_reconnect(r: &Record, s: &Sighting) -> bool {
    r.reconnect_id == s.reconnect_id
        || r.results_id.as_deref() == Some(s.reconnect_id.as_str())
        || s.results_id.as_deref() == Some(r.reconnect_id.as_str())
}

/// Whether `s`, seen at `at` with no pending record, is stale: among the
/// latest of `resolved` (oldest first), its reconnect was resolved after it
/// was seen.
pub(super) fn is_stale<'a>(
    resolved: impl DoubleEndedIterator<Item = &'a Record>,
    s: &Sighting,
    at: DateTime<Utc>,
) -> bool {
    resolved
        .rev()
        .take(RECENT_RESOLUTIONS)
        .any(|r| same_reconnect(r, s) && r.resolved_at.is_some_and(|t| t > at))
}

/// Applies a sighting at `now` to the pending record `r` (every backend
/// does it the same way): what it did, with the record when the registry's
/// observer is to be told.
pub(super) fn sight(
    r: &mut Record,
    s: Sighting,
    now: DateTime<Utc>,
) -> (SightingOutcome, Option<Record>) {
    let same = same_reconnect(r, &s);
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
    let told = (outcome != SightingOutcome::Repeat).then(|| r.clone());
    (outcome, told)
}

/// Today's backend: pending records in a `DashMap`, a bounded history of
/// resolved ones under a lock, and optionally a state file.
pub(crate) struct MemoryRegistry {
    /// Itself, for the futures of [`RegistryStore::flush`] and
    /// [`RegistryStore::run`].
    this: Weak<MemoryRegistry>,
    records: DashMap<String, Record>,
    history: Mutex<VecDeque<Record>>,
    history_limit: usize,
    file: Option<StateFile>,
}

/// Where a [`MemoryRegistry`] is written, and what was written last.
struct StateFile {
    path: PathBuf,
    dirty: Notify,
    /// Bumped on every change; the writer compares it with what it wrote.
    version: AtomicU64,
    written: Mutex<u64>,
    /// Held while the file is written.
    flushing: tokio::sync::Mutex<()>,
}

impl fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRegistry")
            .field("records", &self.records.len())
            .field("state_file", &self.file.as_ref().map(|f| &f.path))
            .finish_non_exhaustive()
    }
}

impl MemoryRegistry {
    /// A registry in memory only, keeping `history_limit` resolved records.
    pub(crate) fn new(history_limit: usize) -> Arc<Self> {
        Self::with_records(None, history_limit, Persisted::default())
    }

    fn with_records(
        path: Option<PathBuf>,
        history_limit: usize,
        persisted: Persisted,
    ) -> Arc<Self> {
        let records = DashMap::new();
        let mut history: VecDeque<Record> = persisted.history.into();
        // The live map holds pending records only. Files written by earlier
        // versions listed resolved records here too: copies of the history's,
        // or (from still older ones) only here. Those go into the history,
        // before the rest: they were resolved earlier.
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
        Arc::new_cyclic(|this| Self {
            this: this.clone(),
            records,
            history: Mutex::new(history),
            history_limit,
            file: path.map(|path| StateFile {
                path,
                dirty: Notify::new(),
                version: AtomicU64::new(0),
                written: Mutex::new(0),
                flushing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// A registry persisted in `path`: loads it if present. Every record that
    /// parses is kept. A file that is not JSON at all is moved aside
    /// (`<name>.corrupt-<timestamp>`) and the registry starts empty; a file
    /// with records that do not parse (a field of the wrong type) keeps the
    /// others, and a copy of the whole file is set aside the same way. Either
    /// way a warning names both files and says how many records were kept.
    pub(crate) fn open(path: &Path, history_limit: usize) -> Result<Arc<Self>, StateError> {
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

    fn changed(&self) {
        if let Some(file) = &self.file {
            file.version.fetch_add(1, Ordering::SeqCst);
            file.dirty.notify_one();
        }
    }

    fn lock_history(&self) -> MutexGuard<'_, VecDeque<Record>> {
        // Records are pushed and popped whole; a poisoned lock is consistent.
        lock(&self.history)
    }

    fn bounded_push(&self, history: &mut VecDeque<Record>, record: Record) {
        history.push_back(record);
        while history.len() > self.history_limit {
            history.pop_front();
        }
    }

    /// Records in the live (pending) map.
    #[cfg(test)]
    pub(crate) fn live_count(&self) -> usize {
        self.records.len()
    }

    fn sighted(&self, s: Sighting, at: DateTime<Utc>) -> (SightingOutcome, Option<Record>) {
        let key = key_for(s.entity_id.as_deref(), &s.reconnect_id);
        if let Some(mut pending) = self.records.get_mut(&key) {
            return sight(pending.value_mut(), s, at);
        }
        // Held while the record is made, as `resolve_key` holds it while one
        // moves: a resolution is either seen here or comes after.
        let history = self.lock_history();
        if is_stale(history.iter(), &s, at) {
            return (SightingOutcome::Stale, None);
        }
        let mut entry = self.records.entry(key).or_insert_with(|| fresh(&s, at));
        let seen = sight(entry.value_mut(), s, at);
        drop(entry);
        drop(history);
        seen
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
        self.changed();
        Some(resolved)
    }

    fn results_ready(&self, results_id: &str) -> Option<String> {
        let matches = |r: &Record| r.results_id.as_deref() == Some(results_id);
        // Found first, in its own statement: the iterator's shard locks must be
        // released before `get_mut` takes one.
        let found = self
            .records
            .iter()
            .find(|r| matches(r.value()))
            .map(|r| r.value().key());
        let key = match found {
            Some(key) => {
                if let Some(mut r) = self.records.get_mut(&key) {
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

    /// What the state file holds: the live (pending) records and the history,
    /// read under the history's lock (see `resolve_key`).
    pub(super) fn snapshot(&self) -> Persisted {
        let history = self.lock_history();
        Persisted {
            version: 1,
            records: self.records.iter().map(|r| r.clone()).collect(),
            history: history.iter().cloned().collect(),
        }
    }

    /// Writes the state file now if anything changed since the last write.
    /// Writes are serialized: the background writer and a final flush never
    /// race on the temporary file.
    async fn write(self: Arc<Self>) -> Result<(), StateError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let _serial = file.flushing.lock().await;
        let version = file.version.load(Ordering::SeqCst);
        if *lock(&file.written) >= version {
            return Ok(());
        }
        let snapshot = self.snapshot();
        let (path, target) = (file.path.clone(), file.path.clone());
        // Rendered there too: a full history takes milliseconds.
        crate::sync::blocking(move || {
            let bytes = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
            write_atomically(&target, &bytes)
        })
        .await
        .unwrap_or_else(|| Err(std::io::Error::other("the runtime is shutting down")))
        .map_err(|source| StateError::Io { path, source })?;
        let mut written = lock(&file.written);
        *written = (*written).max(version);
        Ok(())
    }

    /// Keeps the state file up to date until `stop` completes, then writes
    /// the last changes: waits for changes and writes them, coalescing
    /// bursts.
    async fn writer(self: Arc<Self>, stop: Background) {
        let Some(file) = &self.file else {
            return;
        };
        tokio::pin!(stop);
        let mut reported = false;
        loop {
            let stopping = tokio::select! {
                () = file.dirty.notified() => false,
                () = &mut stop => true,
            };
            match self.clone().write().await {
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

impl RegistryStore for MemoryRegistry {
    fn observe_reconnect(
        &self,
        sighting: Sighting,
        at: DateTime<Utc>,
    ) -> Op<(SightingOutcome, Option<Record>)> {
        let seen = self.sighted(sighting, at);
        self.changed();
        Op::ready(seen)
    }

    fn observe_call(&self, entity: &str) -> Op<()> {
        if let Some(mut r) = self.records.get_mut(entity) {
            if r.state == State::Pending {
                r.calls_while_pending += 1;
                drop(r);
                self.changed();
            }
        }
        Op::ready(())
    }

    fn is_pending(&self, entity: &str) -> Op<bool> {
        Op::ready(
            self.records
                .get(entity)
                .is_some_and(|r| r.state == State::Pending),
        )
    }

    fn resolve_entity(&self, entity: &str, by: ResolvedBy) -> Op<Option<Record>> {
        Op::ready(self.resolve_key(entity, by, None))
    }

    fn resolve_reconnect_id(
        &self,
        reconnect_id: &str,
        entity: Option<&str>,
        by: ResolvedBy,
    ) -> Op<Option<Record>> {
        let key = self
            .records
            .iter()
            .find(|r| {
                r.state == State::Pending
                    && (r.reconnect_id == reconnect_id
                        || r.results_id.as_deref() == Some(reconnect_id))
            })
            .map(|r| r.key().clone());
        Op::ready(key.and_then(|key| self.resolve_key(&key, by, entity)))
    }

    fn mark_results_ready(&self, results_id: &str) -> Op<Option<String>> {
        Op::ready(self.results_ready(results_id))
    }

    fn get(&self, key: &str) -> Op<Option<Record>> {
        Op::ready(self.records.get(key).map(|r| r.clone()).or_else(|| {
            self.lock_history()
                .iter()
                .rev()
                .find(|r| r.key() == key)
                .cloned()
        }))
    }

    fn list(&self) -> Op<Vec<Record>> {
        let mut pending: Vec<Record> = self.records.iter().map(|r| r.clone()).collect();
        pending.sort_by_key(|r| std::cmp::Reverse(r.last_seen));
        pending.extend(self.lock_history().iter().rev().cloned());
        Op::ready(pending)
    }

    fn history(&self) -> Op<Vec<Record>> {
        Op::ready(self.lock_history().iter().cloned().collect())
    }

    fn pending_count(&self) -> Op<usize> {
        Op::ready(
            self.records
                .iter()
                .filter(|r| r.state == State::Pending)
                .count(),
        )
    }

    fn flush(&self) -> Op<Result<(), StateError>> {
        match (&self.file, self.this.upgrade()) {
            (Some(_), Some(this)) => Op::later(this.write()),
            _ => Op::ready(Ok(())),
        }
    }

    fn run(&self, stop: Background) -> Background {
        match (&self.file, self.this.upgrade()) {
            (Some(_), Some(this)) => Box::pin(this.writer(stop)),
            _ => Box::pin(async {}),
        }
    }
}
