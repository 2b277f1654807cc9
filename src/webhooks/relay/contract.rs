//! What every [`QueueStore`] must do, as one async function a backend's test
//! calls with a fresh, empty store over two targets, `http://a/` and
//! `http://b/`, holding at most 3 deliveries: the file backend's below, a
//! Redis backend's against a server of its own.

use std::time::Duration;

use super::file::FileQueue;
use super::queue::{Job, QueueError, QueueStore, ReplayDeadError};

fn job(seq: u64, target: &str) -> Job {
    Job {
        seq,
        webhook_id: format!("w-{seq}"),
        target: target.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body_base64: "e30=".into(),
        attempts: 0,
    }
}

/// Checks `store`'s operations, starting from an empty store over the
/// targets `http://a/` and `http://b/` with room for 3 deliveries.
pub(crate) async fn contract(store: &dyn QueueStore) {
    let (a, b) = ("http://a/", "http://b/");
    let first = store.number().await;
    let second = store.number().await;
    assert!(second > first, "numbers grow");

    // Staged, a delivery takes its place but is not offered yet.
    let one = job(first, a);
    store.stage(&one).await.expect("room for it");
    assert_eq!(store.queued().await, 1);
    let next = store.next(0);
    let waiting = tokio::time::timeout(Duration::from_millis(100), next).await;
    assert!(waiting.is_err(), "not offered yet");
    store.offer(one.clone()).await;
    assert_eq!(store.next(0).await, one);
    assert_eq!(store.next(0).await, one, "first until finished");

    // Unstaged, it gives its place back.
    let other = job(second, b);
    store.stage(&other).await.unwrap();
    store.unstage(&other).await;
    assert_eq!(store.queued().await, 1);

    // In order per target; the bound counts every target.
    let (two, three) = (job(store.number().await, a), job(store.number().await, b));
    for j in [&two, &three] {
        store.stage(j).await.unwrap();
        store.offer(j.clone()).await;
    }
    let full = store.stage(&job(store.number().await, a)).await;
    assert!(matches!(full, Err(QueueError::Full(3))), "{full:?}");
    assert_eq!(store.next(1).await, three);
    store.finish(0, &one).await;
    assert_eq!(store.next(0).await, two);
    assert_eq!(store.queued().await, 2);

    // A dead letter leaves its lane, keeps its place, and is revived last.
    let letter = store
        .dead_letter(0, &two, "answered 410 Gone".into())
        .await
        .expect("set aside");
    assert_eq!(
        (letter.id, letter.reason.as_str()),
        (two.seq.to_string(), "answered 410 Gone")
    );
    assert_eq!(store.dead_letters().await.len(), 1);
    assert_eq!(store.queued().await, 1, "dead letters aside");
    let four = job(store.number().await, b);
    store.stage(&four).await.expect("one place left");
    store.offer(four.clone()).await;
    let full = store.stage(&job(store.number().await, b)).await;
    assert!(
        matches!(full, Err(QueueError::Full(_))),
        "its place is kept"
    );
    let unknown = store.revive("12", store.number().await).await;
    assert!(matches!(unknown, Err(ReplayDeadError::Unknown(_))));
    let seq = store.number().await;
    let revived = store.revive(&two.seq.to_string(), seq).await.unwrap();
    assert_eq!(
        (revived.seq, revived.attempts, &revived.webhook_id),
        (seq, 0, &two.webhook_id)
    );
    assert!(store.dead_letters().await.is_empty());
    store.offer(revived.clone()).await;
    assert_eq!(store.next(0).await, revived);
    store.finish(0, &revived).await;
    store.finish(1, &three).await;
    assert_eq!(store.next(1).await, four);
    store.finish(1, &four).await;
    assert_eq!(store.queued().await, 0);
}

// Paused time: the wait for a delivery not offered ends at once.
#[tokio::test(start_paused = true)]
async fn the_file_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let targets = ["http://a/".to_string(), "http://b/".to_string()];
    let store = FileQueue::open(dir.path(), &targets, 3).unwrap();
    contract(&*store).await;
    drop(store);
    let again = FileQueue::open(dir.path(), &targets, 3).unwrap();
    assert_eq!(again.queued().await, 0, "nothing is left on disk");
}

#[tokio::test]
async fn the_redis_backend_keeps_the_contract() {
    let Some((_server, redis)) = crate::state::test_redis("contract:").await else {
        return;
    };
    let targets = ["http://a/".to_string(), "http://b/".to_string()];
    let store = super::redis::RedisQueue::new(redis.clone(), &targets, 3);
    contract(&*store).await;
    let again = super::redis::RedisQueue::new(redis, &targets, 3);
    assert_eq!(again.queued().await, 0, "nothing is left on Redis");
}
