//! The fleet's live events: each replica's events reach every replica's
//! `/api/events`, with the replica's name on each.
//!
//! A replica with listeners of its own subscribes to the `events` channel and
//! passes on the other replicas' events ([`Events::inject`]); it drops the
//! subscription when its last listener leaves. Each replica asks Redis once a
//! second how many replicas are subscribed (`PUBSUB NUMSUB`), and publishes
//! its events only while another one is: with nobody watching, the fleet
//! costs an exchange nothing. A listener that joins sees the others' events
//! within about a second.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::RedisState;
use crate::events::{Events, Outbox, Published};

/// Events waiting to be published; more are dropped.
const OUTBOX: usize = 4096;
/// Most events published in one round trip.
const BATCH: usize = 64;
/// How often the subscription and the fleet's listeners are looked at.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// `events` named by this replica and linked to the fleet, and what runs the
/// link ([`Fleet::run`]).
pub fn link(events: Events, redis: RedisState) -> (Events, Fleet) {
    let (outbox, rx) = Outbox::new(OUTBOX);
    let events = events.for_fleet(redis.replica().clone(), outbox.clone());
    let fleet = Fleet {
        events: events.clone(),
        redis,
        outbox,
        rx,
    };
    (events, fleet)
}

/// What links a replica's events to the fleet's.
#[derive(Debug)]
pub struct Fleet {
    events: Events,
    redis: RedisState,
    outbox: Arc<Outbox>,
    rx: mpsc::Receiver<Arc<Published>>,
}

impl Fleet {
    /// Sends this replica's events to the others' listeners and passes theirs
    /// on to this one's, until `stop` completes.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let subscribed = Arc::new(AtomicBool::new(false));
        tokio::select! {
            () = stop => {}
            () = send(self.redis.clone(), self.rx) => {}
            () = watch_fleet(self.redis.clone(), self.outbox, subscribed.clone()) => {}
            () = receive(self.redis, self.events, subscribed) => {}
        }
    }
}

/// Publishes what the outbox holds, a batch per round trip.
async fn send(redis: RedisState, mut rx: mpsc::Receiver<Arc<Published>>) {
    let channel = redis.key("events");
    while let Some(first) = rx.recv().await {
        let mut pipe = redis::pipe();
        let mut next = Some(first);
        let mut n = 0;
        while let Some(published) = next.take() {
            if let Ok(text) = serde_json::to_string(&*published) {
                pipe.cmd("PUBLISH").arg(&channel).arg(text).ignore();
                n += 1;
            }
            if n < BATCH {
                next = rx.try_recv().ok();
            }
        }
        let _: Result<(), _> = redis.pipe("publish_events", pipe).await;
    }
}

/// Keeps `outbox.wanted` true while another replica listens.
async fn watch_fleet(redis: RedisState, outbox: Arc<Outbox>, subscribed: Arc<AtomicBool>) {
    let channel = redis.key("events");
    let mut tick = tokio::time::interval(LOOK_EVERY * 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cmd = redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).clone();
        let others = match redis.query::<(String, i64)>("events_listeners", cmd).await {
            Ok((_, n)) => n - i64::from(subscribed.load(Ordering::Relaxed)),
            Err(_) => 0,
        };
        outbox.wanted.store(others > 0, Ordering::Relaxed);
    }
}

/// While this replica has listeners, passes the other replicas' events on
/// to them.
async fn receive(redis: RedisState, events: Events, subscribed: Arc<AtomicBool>) {
    let channel = redis.key("events");
    let me = redis.replica().clone();
    loop {
        while events.listeners() == 0 {
            tokio::time::sleep(LOOK_EVERY).await;
        }
        let made = async {
            let mut pubsub = redis.client().get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        let Ok(Ok(pubsub)) = tokio::time::timeout(redis.timeout() * 4, made).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        subscribed.store(true, Ordering::Relaxed);
        let mut messages = pubsub.into_on_message();
        let mut look = tokio::time::interval(LOOK_EVERY);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    let Ok(published) = serde_json::from_slice::<Published>(message.get_payload_bytes()) else {
                        continue;
                    };
                    if published.replica.as_ref() != Some(&me) {
                        events.inject(published);
                    }
                }
                _ = look.tick() => {
                    if events.listeners() == 0 {
                        break;
                    }
                }
            }
        }
        subscribed.store(false, Ordering::Relaxed);
    }
}
