//! The Redis registry's own tests (the store contract is in `store_contract.rs`).

use super::*;
use crate::reconnect::store_contract::sighting;

#[tokio::test]
async fn calls_for_entities_with_nothing_pending_are_answered_without_a_round_trip() {
    let Some((_server, redis)) = crate::state::test_redis("hint:").await else {
        return;
    };
    let (a, b) = (
        RedisRegistry::new(redis.clone(), 10),
        RedisRegistry::new(redis.clone(), 10),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listen = tokio::spawn(redis.clone().listen(async {
        let _ = stopped.await;
    }));
    let run = tokio::spawn(b.run(Box::pin(std::future::pending())));
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while !b.is_pending("e-1").is_ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    waited.await.expect("the hint is read");
    assert!(!b.is_pending("e-1").await);
    a.observe_reconnect(sighting(Some("e-1"), "r-1"), Utc::now())
        .await;
    // Another replica's record: told on `notices`, B asks Redis from then on.
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        while !b.is_pending("e-1").await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    seen.await.expect("B sees A's record");
    assert!(!b.is_pending("e-1").is_ready(), "asked of Redis");
    b.observe_call("e-1").await;
    assert_eq!(a.get("e-1").await.unwrap().calls_while_pending, 1);
    run.abort();
    let _ = stop.send(());
    let _ = listen.await;
}
