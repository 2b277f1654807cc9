//! What every [`RegistryStore`] must do, as one async function a backend's
//! test calls with a fresh, empty store: the memory backend's below, a
//! Redis backend's against a server of its own.

use super::record::{ResolvedBy, Sighting, SightingOutcome, Source, State};
use super::store::{MemoryRegistry, RegistryStore};
use crate::exchange::Api;
use chrono::Utc;

/// A v1 sighting of `id` (results id `results-<id>`), naming `entity`.
pub(crate) fn sighting(entity: Option<&str>, id: &str) -> Sighting {
    Sighting {
        entity_id: entity.map(str::to_string),
        reconnect_id: id.into(),
        results_id: Some(format!("results-{id}")),
        api: Api::V1,
        path: "/data/v1/accounts".into(),
        source: Source::Upstream,
    }
}

/// Checks `store`'s operations, starting from an empty store.
pub(crate) async fn contract(store: &dyn RegistryStore) {
    // A sighting makes a pending record; its repeat and a new id update it.
    let (outcome, told) = store
        .observe_reconnect(sighting(Some("e1"), "r1"), Utc::now())
        .await;
    assert_eq!(outcome, SightingOutcome::New);
    assert_eq!(told.map(|r| r.reconnect_id).as_deref(), Some("r1"));
    let (outcome, told) = store
        .observe_reconnect(sighting(Some("e1"), "r1"), Utc::now())
        .await;
    assert_eq!((outcome, told), (SightingOutcome::Repeat, None));
    let (outcome, _) = store
        .observe_reconnect(sighting(Some("e1"), "r2"), Utc::now())
        .await;
    assert_eq!(outcome, SightingOutcome::Replaced);
    assert!(store.is_pending("e1").await);
    assert!(!store.is_pending("e2").await);

    // Calls while pending are counted on the record.
    store.observe_call("e1").await;
    store.observe_call("nobody").await;
    let r = store.get("e1").await.expect("pending e1");
    assert_eq!(
        (r.hits, r.replaced, r.calls_while_pending, r.state),
        (3, 1, 1, State::Pending)
    );

    // A sighting without an entity is keyed by its reconnect id, and a
    // webhook that names both ids resolves it and gives it the entity.
    store
        .observe_reconnect(sighting(None, "r9"), Utc::now())
        .await;
    assert!(store.get("reconnect:r9").await.is_some());
    assert_eq!(store.pending_count().await, 2);
    let r = store
        .resolve_reconnect_id("results-r9", Some("e9"), ResolvedBy::Webhook)
        .await
        .expect("found by its results id");
    assert_eq!(
        (r.entity_id.as_deref(), r.state, r.resolved_by),
        (Some("e9"), State::Resolved, Some(ResolvedBy::Webhook))
    );
    assert_eq!(
        store.mark_results_ready("results-r9").await.as_deref(),
        Some("e9"),
        "a resolved record is still found"
    );
    assert!(store.get("e9").await.unwrap().results_ready_at.is_some());

    // Resolving moves the record to the history; it resolves once.
    let r = store
        .resolve_entity("e1", ResolvedBy::OkResponse)
        .await
        .unwrap();
    assert_eq!(r.state, State::Resolved);
    assert!(store
        .resolve_entity("e1", ResolvedBy::Admin)
        .await
        .is_none());
    assert!(!store.is_pending("e1").await);
    assert_eq!(store.pending_count().await, 0);
    let history: Vec<_> = store
        .history()
        .await
        .into_iter()
        .map(|r| r.reconnect_id)
        .collect();
    assert_eq!(history, ["r9", "r2"], "oldest first");

    // An answer seen before its reconnect was resolved and written after it
    // (a backend writing in the background) does not open it again.
    let seen = Utc::now();
    store
        .observe_reconnect(sighting(Some("e3"), "r3"), seen)
        .await;
    store.resolve_entity("e3", ResolvedBy::Admin).await.unwrap();
    let late = store
        .observe_reconnect(sighting(Some("e3"), "r3"), seen)
        .await;
    assert_eq!(late, (SightingOutcome::Stale, None));
    assert!(!store.is_pending("e3").await);

    // Seen after the resolution, the same reconnect is pending again (Lean
    // still asks for it). Listed: pending first, then the history, newest
    // first.
    let (outcome, _) = store
        .observe_reconnect(sighting(Some("e3"), "r3"), Utc::now())
        .await;
    assert_eq!(outcome, SightingOutcome::New);
    let listed: Vec<_> = store
        .list()
        .await
        .into_iter()
        .map(|r| r.reconnect_id)
        .collect();
    assert_eq!(listed, ["r3", "r3", "r2", "r9"]);
    store.flush().await.expect("flushed");
}

#[tokio::test]
async fn the_memory_backend_keeps_the_contract() {
    contract(&*MemoryRegistry::new(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryRegistry::open(&dir.path().join("reconnects.json"), 10).unwrap();
    contract(&*store).await;
    let again = MemoryRegistry::open(&dir.path().join("reconnects.json"), 10).unwrap();
    assert_eq!(again.list().await.len(), 4, "flushed to its state file");
}

#[tokio::test]
async fn the_redis_backend_keeps_the_contract() {
    let Some((_server, redis)) = crate::state::test_redis("contract:").await else {
        return;
    };
    let store = super::redis::RedisRegistry::new(redis.clone(), 10);
    contract(&store).await;
    let again = super::redis::RedisRegistry::new(redis, 10);
    assert_eq!(
        again.list().await.len(),
        4,
        "kept on Redis for every replica"
    );
}
