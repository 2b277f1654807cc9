//! What every [`QuotaStore`] must do, as one async function a backend's test
//! calls with a fresh, empty store: the memory backend's below, a Redis
//! backend's against a server of its own.

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::quota::{Counters, MemoryQuotas, QuotaStore, Sticky, Take};

/// Checks `store`'s operations, starting from an empty store.
pub(crate) async fn contract(store: &dyn QuotaStore) {
    // A rule's matches, applications and `count`.
    let rule = store.rule("f-1", "i-1", Some(2));
    assert_eq!(rule.count_match().await, 0);
    assert_eq!(rule.count_match().await, 1, "the matches before this one");
    assert_eq!(rule.take().await, Take::Took);
    rule.count_applied().await;
    assert_eq!(rule.take().await, Take::Last);
    assert_eq!(rule.take().await, Take::Gone);
    assert_eq!(
        rule.counters().await,
        Counters {
            matched: 2,
            applied: 1,
            remaining: Some(0)
        }
    );
    let unlimited = store.rule("f-2", "i-1", None);
    assert_eq!(unlimited.take().await, Take::Took);
    assert_eq!(unlimited.counters().await.remaining, None);

    // Installed again, a rule starts from nothing.
    let again = store.rule("f-1", "i-2", Some(2));
    assert_eq!(again.counters().await.matched, 0);

    // A window lets `limit` requests through, then says when it ends.
    let start = Instant::now();
    let minute = Duration::from_secs(60);
    let limited = store.rule("q", "i-1", None);
    for _ in 0..2 {
        assert_eq!(limited.over_quota(2, minute, start).await, None);
    }
    let later = start + Duration::from_millis(20_500);
    assert_eq!(limited.over_quota(2, minute, later).await, Some(40));
    assert_eq!(limited.over_quota(2, minute, start + minute).await, None);

    // One-off windows are counted per header text.
    assert_eq!(
        store.over_quota("rate_limit=1", 1, minute, start).await,
        None
    );
    assert_eq!(
        store.over_quota("rate_limit=1", 1, minute, start).await,
        Some(60)
    );
    assert_eq!(store.over_quota("other", 1, minute, start).await, None);

    // Sticky reconnects are held until released.
    assert!(store.held("e-1").await.is_none());
    let sticky = Sticky {
        rule: "s".into(),
        reconnect_id: Uuid::new_v4(),
        results_id: Uuid::new_v4(),
        since: chrono::Utc::now(),
    };
    store.hold("e-1", sticky.clone()).await;
    assert!(store.holds_any());
    assert_eq!(store.held("e-1").await, Some(sticky));
    store.release("e-1").await;
    assert!(store.held("e-1").await.is_none());
}

#[tokio::test]
async fn the_memory_backend_keeps_the_contract() {
    let store = MemoryQuotas::new();
    assert!(!store.holds_any());
    contract(&*store).await;
    assert!(!store.holds_any(), "nothing held once released");
}

#[tokio::test]
async fn the_redis_backend_keeps_the_contract() {
    let Some((_server, redis)) = crate::state::test_redis("contract:").await else {
        return;
    };
    let store = super::redis::RedisQuotas::new(redis);
    contract(&store).await;
    store.refresh().await;
    assert!(!store.holds_any(), "nothing held once released");
}
