//! The fault rules on Redis, shared by every replica: [`RedisQuotas`] (the
//! counters and quotas, [`QuotaStore`]) and [`RedisBook`] (the rules,
//! [`RuleBook`]).
//!
//! Keys (after `state.prefix`):
//!
//! - `fault:order` (list of rule ids in evaluation order), `fault:rules`
//!   (hash: id → the rule as written, its installation and time),
//!   `fault:paused` (set of ids), `fault:installed` (hash: id →
//!   installation), `fault:version` (bumped by every change). Each change is
//!   one Lua script: the durable write, then a `PUBLISH` of `rules` on the
//!   `notices` channel so the others load it at once (they also look at the
//!   version every second, which covers a missed notice);
//! - `fault:rule:<id>:<installation>:{matched,applied,remaining,window}`:
//!   a rule's counters. `matched` and `applied` are `INCR`s; `remaining` is
//!   taken by a script (exact across replicas: one of them takes the last);
//!   `window` (`rate_limit`) is a hash (its start, its count) counted by a
//!   script, so the replicas share one window (their wall clocks must
//!   agree, as NTP keeps them);
//! - `fault:oneoff:<header text>`: the windows of `x-leanproxy-fault`
//!   one-offs, expiring after two windows;
//! - `fault:sticky`: hash of entities held in a sticky synthetic reconnect.
//!
//! When Redis cannot answer, a rule that needs its counters lets the request
//! through (`after`, `rate_limit`) or declines it (`count`): without Redis a
//! request is never failed by a rule that cannot be counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;

use super::book::{Added, Entry, RuleBook, Shared};
use super::quota::{Counters, QuotaStore, RuleQuota, Sticky, Take};
use super::rules::Placement;
use crate::backend::Op;
use crate::state::{Notices, RedisState, Unavailable};

/// Counts a request at `now` (milliseconds since the epoch) in a
/// `rate_limit` window: the left milliseconds of the window when over the
/// limit, else -1.
static WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[3])
local length = tonumber(ARGV[2])
local start = tonumber(redis.call('HGET', KEYS[1], 'start'))
local seen
if (not start) or now - start >= length then
  start = now
  redis.call('HSET', KEYS[1], 'start', start, 'seen', 1)
  seen = 1
else
  seen = redis.call('HINCRBY', KEYS[1], 'seen', 1)
end
redis.call('PEXPIRE', KEYS[1], length * 2 + 60000)
if seen > tonumber(ARGV[1]) then return length - (now - start) end
return -1
",
    )
});

/// Takes one of a rule's `count`: what is left after it, or -1 when none
/// was.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local left = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if left <= 0 then return -1 end
redis.call('SET', KEYS[1], left - 1)
return left - 1
",
    )
});

/// KEYS of the book's scripts: order, rules, paused, version, installed.
static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = ARGV[1]
if redis.call('HEXISTS', KEYS[2], id) == 1 then return -1 end
local kind = ARGV[4]
if kind == 'position' and tonumber(ARGV[5]) < redis.call('LLEN', KEYS[1]) then
  local pivot = redis.call('LINDEX', KEYS[1], tonumber(ARGV[5]))
  redis.call('LINSERT', KEYS[1], 'BEFORE', pivot, id)
elseif kind == 'before' then
  if redis.call('HEXISTS', KEYS[2], ARGV[5]) == 0 then return -2 end
  redis.call('LINSERT', KEYS[1], 'BEFORE', ARGV[5], id)
else
  redis.call('RPUSH', KEYS[1], id)
end
redis.call('HSET', KEYS[2], id, ARGV[2])
redis.call('HSET', KEYS[5], id, ARGV[3])
local version = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return version
",
    )
});

static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = ARGV[1]
if redis.call('HEXISTS', KEYS[2], id) == 0 then return 0 end
local installation = redis.call('HGET', KEYS[5], id)
redis.call('LREM', KEYS[1], 0, id)
redis.call('HDEL', KEYS[2], id)
redis.call('SREM', KEYS[3], id)
redis.call('HDEL', KEYS[5], id)
if installation then
  local base = ARGV[4] .. id .. ':' .. installation .. ':'
  redis.call('DEL', base .. 'matched', base .. 'applied', base .. 'remaining', base .. 'window')
end
redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
",
    )
});

static PAUSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
if ARGV[2] == '1' then redis.call('SADD', KEYS[3], ARGV[1]) else redis.call('SREM', KEYS[3], ARGV[1]) end
redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
",
    )
});

/// Replaces the book: ARGV channel, notice, counters' prefix, only-if-none,
/// then (id, entry, installation) triples.
static REPLACE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
local had = redis.call('HLEN', KEYS[2])
local old = redis.call('HGETALL', KEYS[5])
for i = 1, #old, 2 do
  local base = ARGV[3] .. old[i] .. ':' .. old[i + 1] .. ':'
  redis.call('DEL', base .. 'matched', base .. 'applied', base .. 'remaining', base .. 'window')
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5])
for i = 5, #ARGV, 3 do
  redis.call('RPUSH', KEYS[1], ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 2])
end
redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return had
",
    )
});

/// An instant of this process and the wall clock's time then, read once:
/// instants are turned into times from the epoch through it, so that two
/// instants a window apart are exactly a window apart on Redis too, and
/// the replicas (whose wall clocks agree) share one clock.
static ANCHOR: LazyLock<(Instant, i64)> =
    LazyLock::new(|| (Instant::now(), chrono::Utc::now().timestamp_millis()));

/// `now` in milliseconds since the epoch.
fn epoch_ms(now: Instant) -> i64 {
    let (at, wall) = *ANCHOR;
    let nanos = match now.checked_duration_since(at) {
        Some(after) => after.as_nanos() as i128,
        None => -(at.saturating_duration_since(now).as_nanos() as i128),
    };
    // Rounded down either side of the anchor alike.
    wall + nanos.div_euclid(1_000_000) as i64
}

/// Whole seconds (at least 1) in `left_ms`.
fn retry_after(left_ms: i64) -> u64 {
    let left = left_ms.max(0) as u64;
    (left / 1000 + u64::from(!left.is_multiple_of(1000))).max(1)
}

/// Counts a request in the window at `key`.
async fn window(
    redis: &RedisState,
    key: String,
    limit: u64,
    length: Duration,
    now: Instant,
) -> Option<u64> {
    let args = vec![
        limit.to_string().into_bytes(),
        (length.as_millis() as u64).max(1).to_string().into_bytes(),
        epoch_ms(now).to_string().into_bytes(),
    ];
    let left: i64 = redis
        .script("fault_window", &WINDOW, vec![key], args)
        .await
        .ok()?;
    (left >= 0).then(|| retry_after(left))
}

/// The fault rules' counters and quotas on Redis. See the module docs.
#[derive(Debug)]
pub(crate) struct RedisQuotas {
    redis: RedisState,
    /// Whether any entity may be held, here or on another replica.
    held: AtomicBool,
}

impl RedisQuotas {
    pub(crate) fn new(redis: RedisState) -> Arc<Self> {
        Arc::new(Self {
            redis,
            // Until the first refresh says otherwise.
            held: AtomicBool::new(true),
        })
    }
}

impl QuotaStore for Arc<RedisQuotas> {
    fn rule(&self, id: &str, installation: &str, count: Option<u64>) -> Arc<dyn RuleQuota> {
        Arc::new(RedisRuleQuota {
            redis: self.redis.clone(),
            base: self.redis.key(&format!("fault:rule:{id}:{installation}:")),
            count,
        })
    }

    fn over_quota(&self, key: &str, limit: u64, length: Duration, now: Instant) -> Op<Option<u64>> {
        let redis = self.redis.clone();
        let key = self.redis.key(&format!("fault:oneoff:{key}"));
        Op::later(async move { window(&redis, key, limit, length, now).await })
    }

    fn hold(&self, entity: &str, sticky: Sticky) -> Op<()> {
        self.held.store(true, Ordering::Release);
        let this = self.clone();
        let entity = entity.to_string();
        Op::later(async move {
            let Ok(json) = serde_json::to_string(&sticky) else {
                return;
            };
            let cmd = redis::cmd("HSET")
                .arg(this.redis.key("fault:sticky"))
                .arg(entity)
                .arg(json)
                .clone();
            if this.redis.query::<i64>("fault_sticky", cmd).await.is_ok() {
                this.redis.notify("sticky").await;
            }
        })
    }

    fn held(&self, entity: &str) -> Op<Option<Sticky>> {
        let this = self.clone();
        let entity = entity.to_string();
        Op::later(async move {
            let cmd = redis::cmd("HGET")
                .arg(this.redis.key("fault:sticky"))
                .arg(entity)
                .clone();
            let raw: Option<String> = this.redis.query("fault_sticky", cmd).await.ok()?;
            serde_json::from_str(&raw?).ok()
        })
    }

    fn release(&self, entity: &str) -> Op<()> {
        let this = self.clone();
        let entity = entity.to_string();
        Op::later(async move {
            let cmd = redis::cmd("HDEL")
                .arg(this.redis.key("fault:sticky"))
                .arg(entity)
                .clone();
            let _: Result<i64, _> = this.redis.query("fault_sticky", cmd).await;
        })
    }

    fn holds_any(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    fn refresh(&self) -> Op<()> {
        let this = self.clone();
        Op::later(async move {
            let cmd = redis::cmd("HLEN")
                .arg(this.redis.key("fault:sticky"))
                .clone();
            // Erring towards `true`: a replica that cannot tell asks.
            let held = this
                .redis
                .query::<u64>("fault_sticky", cmd)
                .await
                .map_or(true, |n| n > 0);
            this.held.store(held, Ordering::Release);
        })
    }
}

/// One rule's counters on Redis.
#[derive(Debug)]
struct RedisRuleQuota {
    redis: RedisState,
    /// `…fault:rule:<id>:<installation>:`
    base: String,
    count: Option<u64>,
}

impl RuleQuota for RedisRuleQuota {
    fn count_match(&self) -> Op<u64> {
        let redis = self.redis.clone();
        let key = format!("{}matched", self.base);
        Op::later(async move {
            // Unknown: as the first match, so `after` lets it through.
            redis
                .query::<u64>("fault_count", redis::cmd("INCR").arg(key).clone())
                .await
                .map_or(0, |n| n.saturating_sub(1))
        })
    }

    fn over_quota(&self, limit: u64, length: Duration, now: Instant) -> Op<Option<u64>> {
        let redis = self.redis.clone();
        let key = format!("{}window", self.base);
        Op::later(async move { window(&redis, key, limit, length, now).await })
    }

    fn take(&self) -> Op<Take> {
        let Some(count) = self.count else {
            return Op::ready(Take::Took);
        };
        let redis = self.redis.clone();
        let key = format!("{}remaining", self.base);
        Op::later(async move {
            let left: Result<i64, _> = redis
                .script(
                    "fault_take",
                    &TAKE,
                    vec![key],
                    vec![count.to_string().into_bytes()],
                )
                .await;
            match left {
                Ok(0) => Take::Last,
                Ok(1..) => Take::Took,
                // None left, or unknown: declined, never faulted uncounted.
                _ => Take::Gone,
            }
        })
    }

    fn count_applied(&self) -> Op<()> {
        let redis = self.redis.clone();
        let key = format!("{}applied", self.base);
        Op::later(async move {
            let _: Result<u64, _> = redis
                .query("fault_count", redis::cmd("INCR").arg(key).clone())
                .await;
        })
    }

    fn counters(&self) -> Op<Counters> {
        let redis = self.redis.clone();
        let keys = ["matched", "applied", "remaining"].map(|k| format!("{}{k}", self.base));
        let count = self.count;
        Op::later(async move {
            let (matched, applied, remaining): (Option<u64>, Option<u64>, Option<u64>) = redis
                .query("fault_read", redis::cmd("MGET").arg(&keys[..]).clone())
                .await
                .unwrap_or_default();
            Counters {
                matched: matched.unwrap_or(0),
                applied: applied.unwrap_or(0),
                remaining: count.map(|c| remaining.unwrap_or(c)),
            }
        })
    }
}

/// The rule set on Redis. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct RedisBook {
    redis: RedisState,
}

impl RedisBook {
    pub(crate) fn new(redis: RedisState) -> Arc<Self> {
        Arc::new(Self { redis })
    }

    fn keys(&self) -> Vec<String> {
        ["order", "rules", "paused", "version", "installed"]
            .iter()
            .map(|k| self.redis.key(&format!("fault:{k}")))
            .collect()
    }

    /// The notices channel and this replica's `rules` notice.
    fn notice(&self) -> [Vec<u8>; 2] {
        [
            self.redis.key("notices").into_bytes(),
            format!("{}|rules", self.redis.replica()).into_bytes(),
        ]
    }
}

impl RuleBook for RedisBook {
    fn version(&self) -> Op<Result<Option<u64>, Unavailable>> {
        let this = self.clone();
        Op::later(async move {
            let cmd = redis::cmd("GET")
                .arg(this.redis.key("fault:version"))
                .clone();
            this.redis.query("fault_rules", cmd).await
        })
    }

    fn load(&self) -> Op<Result<Option<Shared>, Unavailable>> {
        let this = self.clone();
        Op::later(async move {
            let keys = this.keys();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("GET")
                .arg(&keys[3])
                .cmd("LRANGE")
                .arg(&keys[0])
                .arg(0)
                .arg(-1)
                .cmd("HGETALL")
                .arg(&keys[1])
                .cmd("SMEMBERS")
                .arg(&keys[2]);
            type Read = (
                Option<u64>,
                Vec<String>,
                std::collections::HashMap<String, String>,
                std::collections::HashSet<String>,
            );
            let (version, order, mut rules, paused): Read =
                this.redis.pipe("fault_rules", pipe).await?;
            let Some(version) = version else {
                return Ok(None);
            };
            let entries = order
                .into_iter()
                .filter_map(|id| {
                    let entry: Entry = serde_json::from_str(&rules.remove(&id)?).ok()?;
                    Some((entry, paused.contains(&id)))
                })
                .collect();
            Ok(Some(Shared { version, entries }))
        })
    }

    fn add(&self, entry: Entry, placement: Placement) -> Op<Result<Added, Unavailable>> {
        let this = self.clone();
        Op::later(async move {
            let id = entry.id.clone();
            let (kind, at) = match placement {
                Placement::Last => ("last", String::new()),
                Placement::Position(n) => ("position", n.to_string()),
                Placement::Before(id) => ("before", id),
            };
            let [channel, notice] = this.notice();
            let args = vec![
                id.into_bytes(),
                serde_json::to_vec(&entry).unwrap_or_default(),
                entry.installation.into_bytes(),
                kind.as_bytes().to_vec(),
                at.into_bytes(),
                channel,
                notice,
            ];
            let added: i64 = this
                .redis
                .script("fault_rules", &ADD, this.keys(), args)
                .await?;
            Ok(match added {
                -1 => Added::Taken,
                -2 => Added::NoSuchRule,
                _ => Added::Yes,
            })
        })
    }

    fn remove(&self, id: &str) -> Op<Result<bool, Unavailable>> {
        let this = self.clone();
        let id = id.to_string();
        Op::later(async move {
            let [channel, notice] = this.notice();
            let args = vec![
                id.into_bytes(),
                channel,
                notice,
                this.redis.key("fault:rule:").into_bytes(),
            ];
            let removed: i64 = this
                .redis
                .script("fault_rules", &REMOVE, this.keys(), args)
                .await?;
            Ok(removed == 1)
        })
    }

    fn pause(&self, id: &str, paused: bool) -> Op<Result<bool, Unavailable>> {
        let this = self.clone();
        let id = id.to_string();
        Op::later(async move {
            let [channel, notice] = this.notice();
            let args = vec![
                id.into_bytes(),
                if paused { b"1".to_vec() } else { b"0".to_vec() },
                channel,
                notice,
            ];
            let found: i64 = this
                .redis
                .script("fault_rules", &PAUSE, this.keys(), args)
                .await?;
            Ok(found == 1)
        })
    }

    fn replace(
        &self,
        entries: Vec<Entry>,
        only_if_none: bool,
    ) -> Op<Result<Option<usize>, Unavailable>> {
        let this = self.clone();
        Op::later(async move {
            let [channel, notice] = this.notice();
            let mut args = vec![
                channel,
                notice,
                this.redis.key("fault:rule:").into_bytes(),
                if only_if_none {
                    b"1".to_vec()
                } else {
                    b"0".to_vec()
                },
            ];
            for entry in entries {
                args.push(entry.id.clone().into_bytes());
                args.push(serde_json::to_vec(&entry).unwrap_or_default());
                args.push(entry.installation.into_bytes());
            }
            let had: i64 = this
                .redis
                .script("fault_rules", &REPLACE, this.keys(), args)
                .await?;
            Ok(usize::try_from(had).ok())
        })
    }

    fn changes(&self) -> Notices {
        self.redis.notices()
    }
}
