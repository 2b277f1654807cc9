//! [`RedisRegistry`]: the registry's records on Redis, shared by every
//! replica (`[state] backend = "redis"`).
//!
//! Keys (after `state.prefix`):
//!
//! - `reconnect:record:<key>`: a pending record (JSON), expiring at its
//!   `expires_at` (Redis 7.0 has no per-field expiry, so one key per record);
//! - `reconnect:pending`: a sorted set of the pending keys, scored by their
//!   expiry, for listing and counting (members whose record expired are
//!   dropped as they are met);
//! - `reconnect:history`: the resolved records (JSON), oldest first, trimmed
//!   to `reconnect.history`.
//!
//! A change reads the record, makes the new one with the same code as the
//! memory backend (`store::sight`), and writes it with a script that
//! replaces it only if it is still what was read (else it reads again):
//! replicas changing one record at once each see the other's change.
//!
//! Most calls name an entity with nothing pending. Each replica keeps the
//! set of pending keys as it last read it (the hint): a call naming an
//! entity outside it is counted and answered at once, with no round trip.
//! A replica that adds or resolves a record says so on the `notices`
//! channel, and each replica reads the set again then (milliseconds), and
//! every second anyway; while it cannot read it (Redis away), every call
//! asks Redis. A
//! change that cannot be made (Redis gone, or slower than `state.timeout`)
//! is kept, in order, and made when Redis is back (`run`); meanwhile reads
//! answer as if there were nothing.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::record::{key_for, Record, ResolvedBy, Sighting, SightingOutcome, State};
use super::store::{
    fresh, is_stale, sight, Background, RegistryStore, StateError, RECENT_RESOLUTIONS,
};
use crate::backend::Op;
use crate::state::{RedisState, Unavailable};
use crate::sync::lock;

/// Changes kept while Redis is away; older ones are dropped past this.
const BACKLOG: usize = 10_000;
/// Tries of a change whose record keeps changing under it.
const TRIES: usize = 32;

/// Replaces a record if it is still what was read; moves a resolved one to
/// the history.
static REPLACE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
end
if ARGV[5] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[5])
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[6]), -1)
end
return 1
",
    )
});

/// Replaces a history entry if it is still what was read at that index.
static REPLACE_RESOLVED: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('LINDEX', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('LSET', KEYS[1], ARGV[1], ARGV[3])
return 1
",
    )
});

/// A change kept until Redis is back.
#[derive(Debug)]
enum Change {
    Sighting(Sighting, DateTime<Utc>),
    Call(String),
    Resolve(String, ResolvedBy, DateTime<Utc>),
    ResolveId(String, Option<String>, ResolvedBy, DateTime<Utc>),
    ResultsReady(String, DateTime<Utc>),
}

/// What a change makes of the record it read.
enum Next<T> {
    /// Nothing to write.
    Keep(T),
    /// Write this pending record.
    Put(Record, T),
    /// Move this (resolved) record to the history.
    Resolve(Record, T),
}

/// The registry on Redis. See the module docs.
#[derive(Debug)]
pub(crate) struct RedisRegistry {
    redis: RedisState,
    history_limit: usize,
    backlog: Mutex<VecDeque<Change>>,
    /// The pending keys as last read (see the module docs).
    hint: RwLock<HashSet<String>>,
    /// Whether `hint` was read and kept since (false while Redis is away).
    hinted: AtomicBool,
}

impl RedisRegistry {
    /// A registry on `redis`, keeping `history_limit` resolved records.
    pub(crate) fn new(redis: RedisState, history_limit: usize) -> Arc<Self> {
        Arc::new(Self {
            redis,
            history_limit,
            backlog: Mutex::new(VecDeque::new()),
            hint: RwLock::new(HashSet::new()),
            hinted: AtomicBool::new(false),
        })
    }

    /// Whether `key` surely has nothing pending (from the hint).
    fn surely_clear(&self, key: &str) -> bool {
        self.hinted.load(Ordering::Acquire)
            && !self
                .hint
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(key)
    }

    fn hint_write(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<String>> {
        // Keys are inserted and removed whole; a poisoned lock is consistent.
        self.hint
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the pending keys into the hint.
    async fn read_hint(&self) {
        let keys: Result<Vec<String>, _> = self
            .redis
            .query(
                "registry_read",
                redis::cmd("ZRANGE")
                    .arg(self.redis.key("reconnect:pending"))
                    .arg(0)
                    .arg(-1)
                    .clone(),
            )
            .await;
        match keys {
            Ok(keys) => {
                *self.hint_write() = keys.into_iter().collect();
                self.hinted.store(true, Ordering::Release);
            }
            Err(_) => self.hinted.store(false, Ordering::Release),
        }
    }

    fn record_key(&self, key: &str) -> String {
        self.redis.key(&format!("reconnect:record:{key}"))
    }

    fn keep(&self, change: Change) {
        let mut backlog = lock(&self.backlog);
        if backlog.len() >= BACKLOG {
            backlog.pop_front();
        }
        backlog.push_back(change);
    }

    /// Makes the changes kept while Redis was away, in order; stops at the
    /// first that still cannot be made.
    async fn catch_up(self: &Arc<Self>) {
        loop {
            let Some(change) = lock(&self.backlog).pop_front() else {
                return;
            };
            let made = match &change {
                Change::Sighting(s, at) => self.sighted(s.clone(), *at).await.map(drop),
                Change::Call(entity) => self.called(entity).await,
                Change::Resolve(entity, by, at) => {
                    self.resolve(entity, *by, None, *at).await.map(drop)
                }
                Change::ResolveId(id, entity, by, at) => self
                    .resolve_id(id, entity.as_deref(), *by, *at)
                    .await
                    .map(drop),
                Change::ResultsReady(id, at) => self.results_ready(id, *at).await.map(drop),
            };
            if made.is_err() {
                lock(&self.backlog).push_front(change);
                return;
            }
        }
    }

    /// Reads `key`'s pending record, lets `f` decide, and writes what it
    /// says if the record did not change meanwhile.
    async fn update<T>(
        &self,
        op: &'static str,
        key: &str,
        f: impl Fn(Option<Record>) -> Next<T>,
    ) -> Result<T, Unavailable> {
        let record_key = self.record_key(key);
        for _ in 0..TRIES {
            let raw: Option<String> = self
                .redis
                .query(op, redis::cmd("GET").arg(&record_key).clone())
                .await?;
            let read = raw.as_deref().and_then(|r| serde_json::from_str(r).ok());
            let (record, to_history, out) = match f(read) {
                Next::Keep(out) => return Ok(out),
                Next::Put(r, out) => (Some(r), None, out),
                Next::Resolve(r, out) => (None, Some(r), out),
            };
            let json = |r: &Record| serde_json::to_string(r).unwrap_or_default();
            let expires = record
                .as_ref()
                .map_or(0, |r| r.expires_at.timestamp_millis().max(1));
            let args = vec![
                raw.unwrap_or_default().into_bytes(),
                record.as_ref().map(json).unwrap_or_default().into_bytes(),
                expires.to_string().into_bytes(),
                key.as_bytes().to_vec(),
                match (&to_history, self.history_limit) {
                    (Some(r), 1..) => json(r).into_bytes(),
                    _ => Vec::new(),
                },
                self.history_limit.to_string().into_bytes(),
            ];
            let keys = vec![
                record_key.clone(),
                self.redis.key("reconnect:pending"),
                self.redis.key("reconnect:history"),
            ];
            let was_pending = !args[0].is_empty();
            let replaced: i64 = self.redis.script(op, &REPLACE, keys, args).await?;
            if replaced == 1 {
                let now_pending = record.is_some();
                if now_pending {
                    self.hint_write().insert(key.to_string());
                } else {
                    self.hint_write().remove(key);
                }
                if was_pending != now_pending {
                    self.redis.notify("reconnect").await;
                }
                return Ok(out);
            }
        }
        Err(Unavailable {
            op,
            detail: "the record kept changing under this replica".into(),
        })
    }

    async fn sighted(
        &self,
        s: Sighting,
        now: DateTime<Utc>,
    ) -> Result<(SightingOutcome, Option<Record>), Unavailable> {
        let key = key_for(s.entity_id.as_deref(), &s.reconnect_id);
        // A sighting of a pending reconnect, the common case, is one update.
        let pending = |read: Option<Record>| read.filter(|r| r.state == State::Pending);
        let seen = self
            .update("registry_sighting", &key, |read| match pending(read) {
                Some(mut r) => {
                    let seen = sight(&mut r, s.clone(), now);
                    Next::Put(r, Some(seen))
                }
                None => Next::Keep(None),
            })
            .await?;
        if let Some(seen) = seen {
            return Ok(seen);
        }
        // Nothing pending: the history is read after the record was found
        // gone, so the resolution that removed it is in there.
        let latest: Vec<String> = self
            .redis
            .query(
                "registry_history",
                redis::cmd("LRANGE")
                    .arg(self.redis.key("reconnect:history"))
                    .arg(-(RECENT_RESOLUTIONS as i64))
                    .arg(-1)
                    .clone(),
            )
            .await?;
        let latest: Vec<Record> = latest
            .iter()
            .filter_map(|raw| serde_json::from_str(raw).ok())
            .collect();
        if is_stale(latest.iter(), &s, now) {
            return Ok((SightingOutcome::Stale, None));
        }
        self.update("registry_sighting", &key, |read| {
            let mut r = pending(read).unwrap_or_else(|| fresh(&s, now));
            let seen = sight(&mut r, s.clone(), now);
            Next::Put(r, seen)
        })
        .await
    }

    async fn called(&self, entity: &str) -> Result<(), Unavailable> {
        self.update("registry_call", entity, |read| match read {
            Some(mut r) if r.state == State::Pending => {
                r.calls_while_pending += 1;
                Next::Put(r, ())
            }
            _ => Next::Keep(()),
        })
        .await
    }

    async fn resolve(
        &self,
        key: &str,
        by: ResolvedBy,
        entity: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, Unavailable> {
        self.update("registry_resolve", key, |read| match read {
            Some(mut r) if r.state == State::Pending => {
                r.state = State::Resolved;
                if r.entity_id.is_none() {
                    r.entity_id = entity.map(str::to_string);
                }
                r.resolved_by = Some(by);
                r.resolved_at = Some(now);
                Next::Resolve(r.clone(), Some(r))
            }
            _ => Next::Keep(None),
        })
        .await
    }

    /// The pending records, dropping the index's members whose record
    /// expired.
    async fn pending(&self) -> Result<Vec<Record>, Unavailable> {
        let index = self.redis.key("reconnect:pending");
        let keys: Vec<String> = self
            .redis
            .query(
                "registry_list",
                redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).clone(),
            )
            .await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let record_keys: Vec<String> = keys.iter().map(|k| self.record_key(k)).collect();
        let raws: Vec<Option<String>> = self
            .redis
            .query(
                "registry_list",
                redis::cmd("MGET").arg(&record_keys).clone(),
            )
            .await?;
        let mut records = Vec::with_capacity(keys.len());
        let mut gone = Vec::new();
        for (key, raw) in keys.iter().zip(raws) {
            match raw.and_then(|r| serde_json::from_str::<Record>(&r).ok()) {
                Some(r) => records.push(r),
                None => gone.push(key.clone()),
            }
        }
        if !gone.is_empty() {
            let _: Result<i64, _> = self
                .redis
                .query(
                    "registry_expire",
                    redis::cmd("ZREM").arg(&index).arg(&gone).clone(),
                )
                .await;
        }
        Ok(records)
    }

    async fn resolved(&self) -> Result<Vec<String>, Unavailable> {
        self.redis
            .query(
                "registry_history",
                redis::cmd("LRANGE")
                    .arg(self.redis.key("reconnect:history"))
                    .arg(0)
                    .arg(-1)
                    .clone(),
            )
            .await
    }

    async fn resolve_id(
        &self,
        reconnect_id: &str,
        entity: Option<&str>,
        by: ResolvedBy,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, Unavailable> {
        let found = self.pending().await?.into_iter().find(|r| {
            r.reconnect_id == reconnect_id || r.results_id.as_deref() == Some(reconnect_id)
        });
        match found {
            Some(r) => self.resolve(&r.key(), by, entity, now).await,
            None => Ok(None),
        }
    }

    async fn results_ready(
        &self,
        results_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, Unavailable> {
        let matches = |r: &Record| r.results_id.as_deref() == Some(results_id);
        if let Some(found) = self.pending().await?.into_iter().find(matches) {
            let key = found.key();
            let marked = self
                .update("registry_results", &key, |read| match read {
                    Some(mut r) if matches(&r) => {
                        r.results_ready_at = Some(now);
                        Next::Put(r, true)
                    }
                    _ => Next::Keep(false),
                })
                .await?;
            if marked {
                return Ok(Some(key));
            }
        }
        // Usually already resolved by the `entity.reconnected` before it.
        let history = self.redis.key("reconnect:history");
        for _ in 0..TRIES {
            let resolved = self.resolved().await?;
            let Some((at, raw, mut r)) =
                resolved.into_iter().enumerate().rev().find_map(|(i, raw)| {
                    let r: Record = serde_json::from_str(&raw).ok()?;
                    matches(&r).then_some((i, raw, r))
                })
            else {
                return Ok(None);
            };
            r.results_ready_at = Some(now);
            let args = vec![
                at.to_string().into_bytes(),
                raw.into_bytes(),
                serde_json::to_string(&r).unwrap_or_default().into_bytes(),
            ];
            let replaced: i64 = self
                .redis
                .script(
                    "registry_results",
                    &REPLACE_RESOLVED,
                    vec![history.clone()],
                    args,
                )
                .await?;
            if replaced == 1 {
                return Ok(Some(r.key()));
            }
        }
        Ok(None)
    }
}

impl RegistryStore for Arc<RedisRegistry> {
    fn observe_reconnect(
        &self,
        sighting: Sighting,
        at: DateTime<Utc>,
    ) -> Op<(SightingOutcome, Option<Record>)> {
        let this = self.clone();
        Op::later(async move {
            match this.sighted(sighting.clone(), at).await {
                Ok(seen) => seen,
                Err(_) => {
                    this.keep(Change::Sighting(sighting, at));
                    (SightingOutcome::Repeat, None)
                }
            }
        })
    }

    fn observe_call(&self, entity: &str) -> Op<()> {
        if self.surely_clear(entity) {
            return Op::ready(());
        }
        let (this, entity) = (self.clone(), entity.to_string());
        Op::later(async move {
            if this.called(&entity).await.is_err() {
                this.keep(Change::Call(entity));
            }
        })
    }

    fn is_pending(&self, entity: &str) -> Op<bool> {
        if self.surely_clear(entity) {
            return Op::ready(false);
        }
        let (this, key) = (self.clone(), self.record_key(entity));
        Op::later(async move {
            this.redis
                .query::<bool>("registry_read", redis::cmd("EXISTS").arg(key).clone())
                .await
                .unwrap_or(false)
        })
    }

    fn resolve_entity(&self, entity: &str, by: ResolvedBy) -> Op<Option<Record>> {
        let (this, entity) = (self.clone(), entity.to_string());
        Op::later(async move {
            let now = Utc::now();
            this.resolve(&entity, by, None, now)
                .await
                .unwrap_or_else(|_| {
                    this.keep(Change::Resolve(entity, by, now));
                    None
                })
        })
    }

    fn resolve_reconnect_id(
        &self,
        reconnect_id: &str,
        entity: Option<&str>,
        by: ResolvedBy,
    ) -> Op<Option<Record>> {
        let this = self.clone();
        let (id, entity) = (reconnect_id.to_string(), entity.map(str::to_string));
        Op::later(async move {
            let now = Utc::now();
            this.resolve_id(&id, entity.as_deref(), by, now)
                .await
                .unwrap_or_else(|_| {
                    this.keep(Change::ResolveId(id, entity, by, now));
                    None
                })
        })
    }

    fn mark_results_ready(&self, results_id: &str) -> Op<Option<String>> {
        let (this, id) = (self.clone(), results_id.to_string());
        Op::later(async move {
            let now = Utc::now();
            this.results_ready(&id, now).await.unwrap_or_else(|_| {
                this.keep(Change::ResultsReady(id, now));
                None
            })
        })
    }

    fn get(&self, key: &str) -> Op<Option<Record>> {
        let (this, key) = (self.clone(), key.to_string());
        Op::later(async move {
            let raw: Option<String> = this
                .redis
                .query(
                    "registry_read",
                    redis::cmd("GET").arg(this.record_key(&key)).clone(),
                )
                .await
                .ok()
                .flatten();
            if let Some(r) = raw.and_then(|r| serde_json::from_str(&r).ok()) {
                return Some(r);
            }
            this.resolved()
                .await
                .ok()?
                .iter()
                .rev()
                .filter_map(|raw| serde_json::from_str::<Record>(raw).ok())
                .find(|r| r.key() == key)
        })
    }

    fn list(&self) -> Op<Vec<Record>> {
        let this = self.clone();
        Op::later(async move {
            let mut pending = this.pending().await.unwrap_or_default();
            pending.sort_by_key(|r| std::cmp::Reverse(r.last_seen));
            let resolved = this.resolved().await.unwrap_or_default();
            pending.extend(
                resolved
                    .iter()
                    .rev()
                    .filter_map(|raw| serde_json::from_str::<Record>(raw).ok()),
            );
            pending
        })
    }

    fn history(&self) -> Op<Vec<Record>> {
        let this = self.clone();
        Op::later(async move {
            this.resolved()
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(|raw| serde_json::from_str::<Record>(raw).ok())
                .collect()
        })
    }

    fn pending_count(&self) -> Op<usize> {
        let this = self.clone();
        Op::later(async move {
            let index = this.redis.key("reconnect:pending");
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&index)
                .arg("-inf")
                .arg(Utc::now().timestamp_millis())
                .ignore()
                .cmd("ZCARD")
                .arg(&index);
            this.redis
                .pipe::<(usize,)>("registry_read", pipe)
                .await
                .map_or(0, |(n,)| n)
        })
    }

    fn flush(&self) -> Op<Result<(), StateError>> {
        let this = self.clone();
        Op::later(async move {
            this.catch_up().await;
            Ok(())
        })
    }

    fn run(&self, stop: Background) -> Background {
        let this = self.clone();
        let mut notices = this.redis.notices();
        Box::pin(async move {
            tokio::pin!(stop);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = &mut stop => break,
                    _ = tick.tick() => this.catch_up().await,
                    notice = notices.next() => match notice.as_deref() {
                        Some("reconnect" | "connected") => {}
                        Some(_) => continue,
                        // No notices any more: the tick alone.
                        None => notices = this.redis.notices(),
                    },
                }
                this.read_hint().await;
            }
            this.catch_up().await;
        })
    }
}

#[cfg(test)]
#[path = "redis_tests.rs"]
mod tests;
