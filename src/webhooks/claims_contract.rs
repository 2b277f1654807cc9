//! What every [`ClaimStore`] must do, as one async function a backend's test
//! calls with a fresh, empty store: the memory backend's below, a Redis
//! backend's against a server of its own.

use std::time::Duration;

use super::claims::{Claim, ClaimStore, MemoryClaims};

/// Checks `store`'s operations, starting from an empty store.
pub(crate) async fn contract(store: &dyn ClaimStore) {
    // A new id is claimed; while it settles, its copies are told to wait.
    assert_eq!(store.claim("ev-1").await, Claim::First);
    assert_eq!(store.claim("ev-1").await, Claim::Settling);
    store.settled("ev-2").await;
    let waiting = store.settled("ev-1");
    store.settle("ev-1", true).await;
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("a settle ends the wait");
    store.settled("ev-1").await;

    // Kept, it is seen; forgotten, it is claimed anew.
    assert_eq!(store.claim("ev-1").await, Claim::Seen);
    assert_eq!(store.claim("ev-3").await, Claim::First);
    store.settle("ev-3", false).await;
    assert_eq!(store.claim("ev-3").await, Claim::First);
    store.settle("ev-3", true).await;
    assert_eq!(store.claim("ev-3").await, Claim::Seen);
}

#[tokio::test]
async fn the_memory_backend_keeps_the_contract() {
    contract(&MemoryClaims::new(100, None)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims.log");
    let (log, _) = super::ClaimLog::open(&path, Duration::from_secs(3600), 100).unwrap();
    contract(&MemoryClaims::new(100, Some(log))).await;
    let (_, ids) = super::ClaimLog::open(&path, Duration::from_secs(3600), 100).unwrap();
    assert_eq!(ids, ["ev-1", "ev-3"], "the kept ids are on disk");
}

#[tokio::test]
async fn the_redis_backend_keeps_the_contract() {
    let Some((_server, redis)) = crate::state::test_redis("contract:").await else {
        return;
    };
    contract(&super::redis_claims::RedisClaims::new(
        redis,
        Duration::from_secs(3600),
    ))
    .await;
}
