//! [`RedisClaims`]: event-id claims on Redis, so that an event id is first on
//! exactly one replica, whichever receives it and however many copies
//! arrive at once.
//!
//! One key per event id (after `state.prefix`): `claim:<event id>`, set with
//! `SET NX` to `settling` (expiring after [`SETTLING`], so a replica that dies
//! while queueing the first delivery does not hold the id for ever), then to
//! `kept` for `webhooks.claim_window`, or deleted when the delivery could not
//! be queued (Lean's retry is then a first delivery). A copy that finds it
//! `settling` looks again every few milliseconds until it is not.
//!
//! When Redis cannot answer, a delivery is taken as the first: its relay
//! (on Redis too) then cannot be queued either, and it is answered 503 so
//! Lean sends it again.

use std::sync::LazyLock;
use std::time::Duration;

use super::claims::{Claim, ClaimStore};
use crate::backend::Op;
use crate::state::RedisState;

/// How long a first delivery may take to settle its claim.
const SETTLING: Duration = Duration::from_secs(30);
/// How often a copy looks whether the first settled.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// Claims an id: `first`, or what the key holds (`settling`, `kept`), or
/// `gone` when it expired in between.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('SET', KEYS[1], 'settling', 'NX', 'PX', ARGV[1]) then return 'first' end
return redis.call('GET', KEYS[1]) or 'gone'
",
    )
});

/// Event-id claims on Redis. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct RedisClaims {
    redis: RedisState,
    window: Duration,
}

impl RedisClaims {
    /// Claims on `redis`, kept for `window` (`webhooks.claim_window`).
    pub(crate) fn new(redis: RedisState, window: Duration) -> Self {
        Self { redis, window }
    }

    fn key(&self, event_id: &str) -> String {
        self.redis.key(&format!("claim:{event_id}"))
    }
}

impl ClaimStore for RedisClaims {
    fn claim(&self, event_id: &str) -> Op<Claim> {
        let (redis, key) = (self.redis.clone(), self.key(event_id));
        Op::later(async move {
            let ttl = (SETTLING.as_millis() as u64).to_string().into_bytes();
            let found: Result<String, _> =
                redis.script("claim", &CLAIM, vec![key], vec![ttl]).await;
            match found.as_deref() {
                Ok("kept") => Claim::Seen,
                Ok("settling" | "gone") => Claim::Settling,
                // Unknown: see the module docs.
                _ => Claim::First,
            }
        })
    }

    fn settle(&self, event_id: &str, kept: bool) -> Op<()> {
        let (redis, key) = (self.redis.clone(), self.key(event_id));
        let window = self.window.as_millis().max(1) as u64;
        Op::later(async move {
            let cmd = if kept {
                redis::cmd("SET")
                    .arg(&key)
                    .arg("kept")
                    .arg("PX")
                    .arg(window)
                    .clone()
            } else {
                redis::cmd("DEL").arg(&key).clone()
            };
            let _: Result<redis::Value, _> = redis.query("claim", cmd).await;
        })
    }

    fn settled(&self, event_id: &str) -> Op<()> {
        let (redis, key) = (self.redis.clone(), self.key(event_id));
        Op::later(async move {
            let until = tokio::time::Instant::now() + SETTLING;
            while tokio::time::Instant::now() < until {
                let held: Result<Option<String>, _> = redis
                    .query("claim", redis::cmd("GET").arg(&key).clone())
                    .await;
                match held {
                    Ok(Some(v)) if v == "settling" => tokio::time::sleep(LOOK_EVERY).await,
                    _ => return,
                }
            }
        })
    }
}
