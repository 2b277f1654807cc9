//! The reconnect registry's handle: which entity needs a reconnect, with which
//! id, since when, and how often the app called anyway. The records are kept
//! by a [`RegistryStore`] (today's: [`MemoryRegistry`], in memory with a state
//! file); the handle adds what stays with each replica: the counters for
//! metrics and the observer told about changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

pub use super::record::{Record, ResolvedBy, Sighting, SightingOutcome, Source, State};
pub use super::store::StateError;
use super::store::{MemoryRegistry, RegistryStore};
use crate::backend::Op;

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
///
/// Its operations return an [`Op`]: await it, or take it at once with
/// [`Op::now`] / [`Op::then`] where nothing can be awaited. With the memory
/// backend every one is ready at once.
#[derive(Clone, Debug)]
pub struct ReconnectRegistry {
    shared: Arc<Shared>,
}

/// What the clones of one handle share.
struct Shared {
    store: Arc<dyn RegistryStore>,
    /// This replica's counters.
    total: AtomicU64,
    inspected: AtomicU64,
    uninspected: AtomicU64,
    observer: OnceLock<Observer>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectRegistry")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl ReconnectRegistry {
    /// An in-memory registry keeping `history_limit` resolved records.
    pub fn in_memory(history_limit: usize) -> Self {
        Self::with_store(MemoryRegistry::new(history_limit))
    }

    /// An in-memory registry persisted in `path`: loads it if present (see
    /// the state file's recovery in `MemoryRegistry::open`: records that do
    /// not parse are set aside, never the whole file lost).
    pub fn open(path: &std::path::Path, history_limit: usize) -> Result<Self, StateError> {
        Ok(Self::with_store(MemoryRegistry::open(path, history_limit)?))
    }

    /// A registry on Redis, shared by every replica using the same Redis and
    /// prefix, keeping `history_limit` resolved records.
    pub fn on_redis(redis: crate::state::RedisState, history_limit: usize) -> Self {
        Self::with_store(Arc::new(super::redis::RedisRegistry::new(
            redis,
            history_limit,
        )))
    }

    /// A registry kept by `store`.
    pub(crate) fn with_store(store: Arc<dyn RegistryStore>) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                total: AtomicU64::new(0),
                inspected: AtomicU64::new(0),
                uninspected: AtomicU64::new(0),
                observer: OnceLock::new(),
            }),
        }
    }

    /// Sets the observer told about new and resolved reconnects and inspections
    /// (once; later calls are ignored).
    pub fn set_observer(&self, observer: Observer) {
        let _ = self.shared.observer.set(observer);
    }

    /// Records a RECONNECT_REQUIRED answer.
    pub fn observe_reconnect(&self, sighting: Sighting) -> Op<SightingOutcome> {
        let shared = self.shared.clone();
        self.shared
            .store
            .observe_reconnect(sighting, chrono::Utc::now())
            .map(move |(outcome, record)| {
                if outcome == SightingOutcome::New {
                    shared.total.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(record) = record {
                    shared.notify(RegistryEvent::New(&record));
                }
                outcome
            })
    }

    /// Counts a call naming `entity` while its reconnect is pending (cheap when
    /// nothing is pending).
    pub fn observe_call(&self, entity: &str) -> Op<()> {
        self.shared.store.observe_call(entity)
    }

    /// Whether `entity` has a pending reconnect.
    pub fn is_pending(&self, entity: &str) -> Op<bool> {
        self.shared.store.is_pending(entity)
    }

    /// Resolves the pending record of `entity`. Returns the resolved record.
    pub fn resolve_entity(&self, entity: &str, by: ResolvedBy) -> Op<Option<Record>> {
        let shared = self.shared.clone();
        self.shared
            .store
            .resolve_entity(entity, by)
            .map(move |resolved| shared.resolved(resolved))
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
    ) -> Op<Option<Record>> {
        let shared = self.shared.clone();
        self.shared
            .store
            .resolve_reconnect_id(reconnect_id, entity, by)
            .map(move |resolved| shared.resolved(resolved))
    }

    /// Notes that a `results.ready` webhook named `results_id`; returns the key of
    /// the record it belongs to.
    pub fn mark_results_ready(&self, results_id: &str) -> Op<Option<String>> {
        self.shared.store.mark_results_ready(results_id)
    }

    /// The record of `key` (entity id, or `reconnect:<id>`): the pending one, or
    /// the latest resolved one still in the history.
    pub fn get(&self, key: &str) -> Op<Option<Record>> {
        self.shared.store.get(key)
    }

    /// Pending records (most recently seen first), then resolved ones from the
    /// history (most recently resolved first).
    pub fn list(&self) -> Op<Vec<Record>> {
        self.shared.store.list()
    }

    /// Earlier, superseded records, oldest first.
    pub fn history(&self) -> Op<Vec<Record>> {
        self.shared.store.history()
    }

    /// Pending records.
    pub fn pending_count(&self) -> Op<usize> {
        self.shared.store.pending_count()
    }

    /// Counts an inspected (`true`) or uninspected answer.
    pub fn count_inspection(&self, inspected: bool) {
        let counter = if inspected {
            &self.shared.inspected
        } else {
            &self.shared.uninspected
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.shared.notify(RegistryEvent::Inspection(inspected));
    }

    /// This replica's counters.
    pub fn stats(&self) -> Stats {
        Stats {
            total: self.shared.total.load(Ordering::Relaxed),
            inspected: self.shared.inspected.load(Ordering::Relaxed),
            uninspected: self.shared.uninspected.load(Ordering::Relaxed),
        }
    }

    /// Makes every change so far durable (writes the state file now if
    /// anything changed since the last write).
    pub async fn flush(&self) -> Result<(), StateError> {
        self.shared.store.flush().await
    }

    /// Keeps the state durable until `stop` completes, then flushes and
    /// returns (the memory backend: writes the state file after changes,
    /// coalescing bursts). Spawn it once; never abort it mid-write.
    pub async fn run_writer(self, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        self.shared.store.run(Box::pin(stop)).await;
    }
}

impl Shared {
    fn notify(&self, event: RegistryEvent<'_>) {
        if let Some(observer) = self.observer.get() {
            observer(&event);
        }
    }

    fn resolved(&self, resolved: Option<Record>) -> Option<Record> {
        if let Some(record) = &resolved {
            self.notify(RegistryEvent::Resolved(record));
        }
        resolved
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
