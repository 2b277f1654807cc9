//! [`RedisQueue`]: the relay queue on Redis Streams, shared by every
//! replica, so a replica that dies does not take its queued deliveries with
//! it.
//!
//! Keys (after `state.prefix`):
//!
//! - `relay:lane:<target>`: a stream per target, read by the consumer group
//!   `relay` (each replica a consumer, by its name). A delivery is added
//!   (`XADD`) when offered, read by one replica (`XREADGROUP`), and
//!   acknowledged and deleted (`XACK`, `XDEL`) once the target answered 2xx
//!   (or it was given up or set aside);
//! - `relay:lease:<target>`: which replica delivers that target now. Only
//!   the holder reads the target's stream, so the target gets its
//!   deliveries one at a time, in order, as with one replica. The holder
//!   renews it while it works; when it dies the lease expires after
//!   [`LEASE`], another replica takes it, and claims the dead one's pending
//!   delivery first (`XAUTOCLAIM`), then goes on with the stream;
//! - `relay:staged`: hash of deliveries made durable but not offered yet
//!   (between `stage` and `offer`);
//! - `relay:taken`: places taken in `webhooks.queue_limit` (staged, queued,
//!   dead letters), `relay:seq`: the deliveries' numbers;
//! - `relay:dead`: hash of dead letters by number.
//!
//! At least once: a replica killed after its target took a delivery and
//! before the acknowledgement leaves it pending, and the replica that takes
//! the lease delivers it again. A replica killed between `stage` and `offer`
//! (microseconds) leaves its staged delivery in `relay:staged`, counted in
//! the bound and not delivered.

use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use redis::Value;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::queue::{DeadLetter, Job, QueueError, QueueStore, ReplayDeadError};
use crate::backend::Op;
use crate::state::{RedisState, Unavailable};
use crate::sync::lock;

/// How long a target's lease lasts unrenewed: a dead replica's pending
/// delivery is claimed by another within about this long.
pub(crate) const LEASE: Duration = Duration::from_secs(5);
/// How often an idle lane looks at its stream (an offer on this replica, or
/// a notice from another, wakes it sooner).
const POLL: Duration = Duration::from_millis(250);
/// The consumer group.
const GROUP: &str = "relay";

static LEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
",
    )
});

/// KEYS taken, staged; ARGV limit, seq, job: -1 - taken when full.
static STAGE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local taken = tonumber(redis.call('GET', KEYS[1]) or '0')
if taken >= tonumber(ARGV[1]) then return -1 - taken end
redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 0
",
    )
});

/// KEYS taken, staged; ARGV seq.
static UNSTAGE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('HDEL', KEYS[2], ARGV[1]) == 1 then redis.call('DECR', KEYS[1]) end
return 0
",
    )
});

/// KEYS staged, lane; ARGV seq, job, channel, notice.
static OFFER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 0
",
    )
});

/// KEYS lane, taken, dead; ARGV entry id, seq ('' unless dead), dead letter.
static DONE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local acked = redis.call('XACK', KEYS[1], 'relay', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  if acked == 1 then redis.call('HSET', KEYS[3], ARGV[2], ARGV[3]) end
elseif acked == 1 then
  redis.call('DECR', KEYS[2])
end
return acked
",
    )
});

/// KEYS dead, staged; ARGV id, seq, job: 1 when revived.
static REVIVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
",
    )
});

/// A dead letter as kept in `relay:dead`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Dead {
    job: Job,
    reason: String,
    dead_at: chrono::DateTime<Utc>,
}

impl From<&Dead> for DeadLetter {
    fn from(d: &Dead) -> Self {
        Self {
            id: d.job.seq.to_string(),
            webhook_id: d.job.webhook_id.clone(),
            target: d.job.target.clone(),
            reason: d.reason.clone(),
            attempts: d.job.attempts,
            dead_at: d.dead_at,
        }
    }
}

/// One target's lane on this replica.
#[derive(Debug)]
struct Lane {
    target: String,
    stream: String,
    lease: String,
    wake: Notify,
    /// The stream entry of the delivery `next` gave, by its number.
    current: Mutex<Option<(u64, String)>>,
    /// Renews the lease while a delivery is worked on.
    keeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The relay queue on Redis. See the module docs.
#[derive(Debug)]
pub(crate) struct RedisQueue {
    this: Weak<RedisQueue>,
    redis: RedisState,
    limit: usize,
    lanes: Vec<Arc<Lane>>,
}

impl RedisQueue {
    /// A queue on `redis` over `targets` (the relay's, in order), holding at
    /// most `limit` deliveries; wakes its lanes on the other replicas'
    /// offers (spawns a listener: inside a Tokio runtime).
    pub(crate) fn new(redis: RedisState, targets: &[String], limit: usize) -> Arc<Self> {
        let queue = Arc::new_cyclic(|this| Self {
            this: this.clone(),
            lanes: targets
                .iter()
                .map(|t| {
                    Arc::new(Lane {
                        target: t.clone(),
                        stream: redis.key(&format!("relay:lane:{t}")),
                        lease: redis.key(&format!("relay:lease:{t}")),
                        wake: Notify::new(),
                        current: Mutex::new(None),
                        keeper: Mutex::new(None),
                    })
                })
                .collect(),
            redis,
            limit,
        });
        let (weak, mut notices) = (Arc::downgrade(&queue), queue.redis.notices());
        tokio::spawn(async move {
            while let Some(notice) = notices.next().await {
                let Some(queue) = weak.upgrade() else { return };
                if notice.starts_with("relay") || &*notice == "connected" {
                    for lane in &queue.lanes {
                        lane.wake.notify_one();
                    }
                }
            }
        });
        queue
    }

    fn key(&self, name: &str) -> String {
        self.redis.key(&format!("relay:{name}"))
    }

    /// Holds (or renews) `lane`'s lease: whether this replica delivers it.
    async fn lease(&self, lane: &Lane) -> Result<bool, Unavailable> {
        let args = vec![
            self.redis.replica().as_bytes().to_vec(),
            (LEASE.as_millis() as u64).to_string().into_bytes(),
        ];
        let held: i64 = self
            .redis
            .script("relay_lease", &LEASE_SCRIPT, vec![lane.lease.clone()], args)
            .await?;
        Ok(held == 1)
    }

    async fn make_group(&self, lane: &Lane) {
        let cmd = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&lane.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .clone();
        // BUSYGROUP when it exists: fine.
        let _: Result<Value, _> = self.redis.query("relay_group", cmd).await;
    }

    /// The lane's first delivery: the oldest pending one (claimed from
    /// whichever replica read it, as only the lease's holder reads), else
    /// the next one never read.
    async fn first(&self, lane: &Lane) -> Result<Option<(String, Job)>, Unavailable> {
        let me = self.redis.replica().to_string();
        let claim = redis::cmd("XAUTOCLAIM")
            .arg(&lane.stream)
            .arg(GROUP)
            .arg(&me)
            .arg(0)
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .clone();
        let claimed: Value = match self.redis.query("relay_read", claim).await {
            Ok(v) => v,
            Err(e) if e.detail.contains("NOGROUP") => {
                self.make_group(lane).await;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let pending = match &claimed {
            Value::Array(parts) => parts.get(1).map(entries).unwrap_or_default(),
            _ => Vec::new(),
        };
        if let Some(first) = pending.into_iter().next() {
            return Ok(Some(first));
        }
        let read = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&me)
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(&lane.stream)
            .arg(">")
            .clone();
        let read: Value = self.redis.query("relay_read", read).await?;
        // [[stream, [[id, [field, value]]]]]
        let fresh = match &read {
            Value::Array(streams) => streams
                .iter()
                .filter_map(|s| match s {
                    Value::Array(pair) => pair.get(1).map(entries),
                    _ => None,
                })
                .flatten()
                .next(),
            _ => None,
        };
        Ok(fresh)
    }

    /// Keeps `lane`'s lease while its delivery is worked on.
    fn keep_lease(&self, lane: &Arc<Lane>) {
        let (weak, lane_ref) = (self.this.clone(), Arc::downgrade(lane));
        let keeper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                let (Some(queue), Some(lane)) = (weak.upgrade(), lane_ref.upgrade()) else {
                    return;
                };
                let _ = queue.lease(&lane).await;
            }
        });
        if let Some(old) = lock(&lane.keeper).replace(keeper) {
            old.abort();
        }
    }

    /// Ends `lane`'s delivery `job`: acknowledged and deleted; set aside as
    /// `dead` when given.
    async fn done(&self, lane: &Arc<Lane>, job: &Job, dead: Option<&Dead>) -> bool {
        if let Some(keeper) = lock(&lane.keeper).take() {
            keeper.abort();
        }
        let entry = match lock(&lane.current).take() {
            Some((seq, entry)) if seq == job.seq => entry,
            _ => return false,
        };
        let args = vec![
            entry.into_bytes(),
            dead.map(|d| d.job.seq.to_string())
                .unwrap_or_default()
                .into_bytes(),
            dead.and_then(|d| serde_json::to_vec(d).ok())
                .unwrap_or_default(),
        ];
        let keys = vec![lane.stream.clone(), self.key("taken"), self.key("dead")];
        let acked: Result<i64, _> = self.redis.script("relay_done", &DONE, keys, args).await;
        acked.is_ok()
    }
}

/// The `(id, job)` entries of a stream reply's list of `[id, [field,
/// value, …]]`.
fn entries(list: &Value) -> Vec<(String, Job)> {
    let Value::Array(items) = list else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id: String = redis::from_redis_value_ref(pair.first()?).ok()?;
            let fields: Vec<Vec<u8>> = redis::from_redis_value_ref(pair.get(1)?).ok()?;
            let at = fields.iter().position(|f| f == b"job")?;
            let job = serde_json::from_slice(fields.get(at + 1)?).ok()?;
            Some((id, job))
        })
        .collect()
}

fn unavailable(e: Unavailable) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

impl QueueStore for RedisQueue {
    fn number(&self) -> Op<u64> {
        let (redis, key) = (self.redis.clone(), self.key("seq"));
        Op::later(async move {
            // Unknown: a number from the clock, still growing.
            redis
                .query("relay_number", redis::cmd("INCR").arg(key).clone())
                .await
                .unwrap_or_else(|_| Utc::now().timestamp_micros().max(0) as u64)
        })
    }

    fn stage(&self, job: &Job) -> Op<Result<(), QueueError>> {
        let redis = self.redis.clone();
        let keys = vec![self.key("taken"), self.key("staged")];
        let args = vec![
            self.limit.to_string().into_bytes(),
            job.seq.to_string().into_bytes(),
            serde_json::to_vec(job).unwrap_or_default(),
        ];
        Op::later(async move {
            let staged: i64 = redis
                .script("relay_stage", &STAGE, keys, args)
                .await
                .map_err(unavailable)?;
            match staged {
                0 => Ok(()),
                full => Err(QueueError::Full((-1 - full).max(0) as usize)),
            }
        })
    }

    fn unstage(&self, job: &Job) -> Op<()> {
        let redis = self.redis.clone();
        let keys = vec![self.key("taken"), self.key("staged")];
        let args = vec![job.seq.to_string().into_bytes()];
        Op::later(async move {
            let _: Result<i64, _> = redis.script("relay_stage", &UNSTAGE, keys, args).await;
        })
    }

    fn offer(&self, job: Job) -> Op<()> {
        let Some(lane) = self.lanes.iter().find(|l| l.target == job.target).cloned() else {
            return Op::ready(());
        };
        let redis = self.redis.clone();
        let keys = vec![self.key("staged"), lane.stream.clone()];
        let args = vec![
            job.seq.to_string().into_bytes(),
            serde_json::to_vec(&job).unwrap_or_default(),
            redis.key("notices").into_bytes(),
            format!("{}|relay", redis.replica()).into_bytes(),
        ];
        Op::later(async move {
            // Not offered (Redis gone since `stage`): it stays staged.
            let _: Result<i64, _> = redis.script("relay_offer", &OFFER, keys, args).await;
            lane.wake.notify_one();
        })
    }

    fn next(&self, lane: usize) -> Op<Job> {
        let (Some(lane), Some(this)) = (self.lanes.get(lane).cloned(), self.this.upgrade()) else {
            return Op::later(std::future::pending());
        };
        Op::later(async move {
            let mut grouped = false;
            loop {
                if !grouped {
                    this.make_group(&lane).await;
                    grouped = true;
                }
                match this.lease(&lane).await {
                    Ok(true) => match this.first(&lane).await {
                        Ok(Some((entry, job))) => {
                            *lock(&lane.current) = Some((job.seq, entry));
                            this.keep_lease(&lane);
                            return job;
                        }
                        Ok(None) => {}
                        Err(_) => grouped = false,
                    },
                    Ok(false) => {}
                    Err(_) => grouped = false,
                }
                let _ = tokio::time::timeout(POLL, lane.wake.notified()).await;
            }
        })
    }

    fn finish(&self, lane: usize, job: &Job) -> Op<()> {
        let (Some(lane), Some(this)) = (self.lanes.get(lane).cloned(), self.this.upgrade()) else {
            return Op::ready(());
        };
        let job = job.clone();
        Op::later(async move {
            this.done(&lane, &job, None).await;
        })
    }

    fn dead_letter(&self, lane: usize, job: &Job, reason: String) -> Op<Option<DeadLetter>> {
        let (Some(lane), Some(this)) = (self.lanes.get(lane).cloned(), self.this.upgrade()) else {
            return Op::ready(None);
        };
        let dead = Dead {
            job: job.clone(),
            reason,
            dead_at: Utc::now(),
        };
        Op::later(async move {
            this.done(&lane, &dead.job, Some(&dead))
                .await
                .then(|| DeadLetter::from(&dead))
        })
    }

    fn dead_letters(&self) -> Op<Vec<DeadLetter>> {
        let (redis, key) = (self.redis.clone(), self.key("dead"));
        Op::later(async move {
            let all: Vec<String> = redis
                .query("relay_dead", redis::cmd("HVALS").arg(key).clone())
                .await
                .unwrap_or_default();
            let mut dead: Vec<Dead> = all
                .iter()
                .filter_map(|d| serde_json::from_str(d).ok())
                .collect();
            dead.sort_by_key(|d| (d.dead_at, d.job.seq));
            dead.iter().map(DeadLetter::from).collect()
        })
    }

    fn revive(&self, id: &str, seq: u64) -> Op<Result<Job, ReplayDeadError>> {
        let redis = self.redis.clone();
        let (dead_key, staged) = (self.key("dead"), self.key("staged"));
        let targets: Vec<String> = self.lanes.iter().map(|l| l.target.clone()).collect();
        let id = id.to_string();
        Op::later(async move {
            let io = |e: Unavailable| ReplayDeadError::Io(unavailable(e));
            let raw: Option<String> = redis
                .query(
                    "relay_dead",
                    redis::cmd("HGET").arg(&dead_key).arg(&id).clone(),
                )
                .await
                .map_err(io)?;
            let dead: Dead = raw
                .and_then(|r| serde_json::from_str(&r).ok())
                .ok_or_else(|| ReplayDeadError::Unknown(id.clone()))?;
            if !targets.contains(&dead.job.target) {
                return Err(ReplayDeadError::NoTarget(dead.job.target));
            }
            let job = Job {
                seq,
                attempts: 0,
                ..dead.job
            };
            let args = vec![
                id.clone().into_bytes(),
                seq.to_string().into_bytes(),
                serde_json::to_vec(&job).unwrap_or_default(),
            ];
            let revived: i64 = redis
                .script("relay_dead", &REVIVE, vec![dead_key, staged], args)
                .await
                .map_err(io)?;
            match revived {
                1 => Ok(job),
                _ => Err(ReplayDeadError::Unknown(id)),
            }
        })
    }

    fn queued(&self) -> Op<u64> {
        let redis = self.redis.clone();
        let (taken, dead) = (self.key("taken"), self.key("dead"));
        Op::later(async move {
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(taken).cmd("HLEN").arg(dead);
            let (taken, dead): (Option<u64>, u64) =
                redis.pipe("relay_read", pipe).await.unwrap_or_default();
            taken.unwrap_or(0).saturating_sub(dead)
        })
    }
}
